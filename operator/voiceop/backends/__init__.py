"""Which AI backend an agent uses: the failover choice (pure)."""

from voiceop.backends.failover import active_backend, backend_available

__all__ = ["active_backend", "backend_available"]
