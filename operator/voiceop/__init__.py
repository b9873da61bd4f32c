"""voiceop: a Kubernetes operator that runs voice-AI agents in production."""

__version__ = "0.1.0"
