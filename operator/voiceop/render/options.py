"""Operator-wide choices that rendering reads besides the objects themselves.

They come from `voiceop run` (the chart's values) or `voiceop render` flags. They are part of
every render's inputs, so a render cache keys on them too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderOptions:
    # Default of VoiceAgent spec.transport.networkPolicy when an agent leaves it unset.
    media_network_policy: bool = False
    # Prometheus for agents that read it (metrics.source prometheus, mode keda) without a URL.
    prometheus_url: str | None = None


DEFAULT_OPTIONS = RenderOptions()
