"""voiceop.dev/v1alpha1: Region, AIBackend, VoiceAgent, VoiceEndpoint."""

from voiceop.api.v1alpha1.aibackend import AIBackend, AIBackendSpec, AIBackendStatus
from voiceop.api.v1alpha1.region import Region, RegionSpec, RegionStatus
from voiceop.api.v1alpha1.voiceagent import VoiceAgent, VoiceAgentSpec, VoiceAgentStatus
from voiceop.api.v1alpha1.voiceendpoint import VoiceEndpoint, VoiceEndpointSpec, VoiceEndpointStatus

MODELS = (Region, AIBackend, VoiceAgent, VoiceEndpoint)

__all__ = [
    "MODELS",
    "AIBackend",
    "AIBackendSpec",
    "AIBackendStatus",
    "Region",
    "RegionSpec",
    "RegionStatus",
    "VoiceAgent",
    "VoiceAgentSpec",
    "VoiceAgentStatus",
    "VoiceEndpoint",
    "VoiceEndpointSpec",
    "VoiceEndpointStatus",
]
