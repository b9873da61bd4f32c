"""The operator's own Prometheus metrics (its media pods' metrics are in DESIGN.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "voiceop_reconciles_total",
    "Reconciliations, by what was reconciled and how it ended.",
    ["target", "result"],
)
RECONCILE_SECONDS = Histogram(
    "voiceop_reconcile_duration_seconds",
    "Time one reconciliation took.",
    ["target"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_REQUESTS = Counter(
    "voiceop_api_requests_total", "Requests to the Kubernetes API, by verb and HTTP code.", ["verb", "code"]
)
API_LATENCY = Histogram(
    "voiceop_api_request_duration_seconds",
    "Latency of requests to the Kubernetes API.",
    ["verb"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOOP_FAILURES = Counter(
    "voiceop_loop_failures_total",
    "Failed passes of the operator's clocked loops (scaler, prober, relist); the next pass runs on time.",
    ["loop"],
)
MANAGED_OBJECTS = Gauge("voiceop_managed_objects", "Children voiceop keeps, by kind.", ["kind"])
WATCHED_OBJECTS = Gauge("voiceop_watched_objects", "voiceop resources seen, by kind.", ["kind"])
BACKEND_PROBE_SECONDS = Histogram(
    "voiceop_backend_probe_duration_seconds",
    "Latency of AIBackend health probes.",
    ["namespace", "backend"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
BACKEND_AVAILABLE = Gauge(
    "voiceop_backend_available", "1 when an AIBackend's last probes succeeded.", ["namespace", "backend"]
)
AGENT_READY = Gauge("voiceop_agent_ready", "1 when a VoiceAgent is Ready.", ["namespace", "agent"])
MAX_HANDOFF_RATE = Gauge(
    "voiceop_agent_max_handoff_rate",
    "A VoiceAgent's spec.fallback.maxHandoffRate (the chart's VoiceAgentHandoffRateHigh alert compares with it).",
    ["namespace", "agent"],
)
SCALING_LIMITED = Gauge(
    "voiceop_scaling_limited",
    "1 when a VoiceAgent wants more pods than a limit allows.",
    ["namespace", "agent"],
)
SIGNAL_READS = Counter(
    "voiceop_scaling_signal_reads_total",
    "Scaling signal reads by where they came from: prometheus, direct, or fallback (Prometheus failed).",
    ["source"],
)
