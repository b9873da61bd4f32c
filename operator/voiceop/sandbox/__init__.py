"""Stand-ins for what a cluster runs around voiceop, for tests and `voiceop demo` only:
pods as media-sim processes, a caller load, a Prometheus server. Never used by the operator."""
