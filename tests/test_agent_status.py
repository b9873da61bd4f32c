"""An agent's status across an operator restart: what the scaler said is kept until it speaks again."""

from __future__ import annotations

from typing import Any

from voiceop.controller.agents import AgentReconciler
from voiceop.controller.cache import ClusterCache
from voiceop.controller.signals import RegionSignals, last_reported
from voiceop.inputs.loading import Loaded
from voiceop.status import agent_region_status, scaling_limited

NS = "contact-center"


def reconciler(signals: dict[tuple[str, str, str], RegionSignals]) -> AgentReconciler:
    # Only the pure parts are exercised: no client, no status writer.
    return AgentReconciler(client=None, cache=ClusterCache(), status=None, signals=signals)  # type: ignore[arg-type]


def region_status_and_limits(
    rec: AgentReconciler, agent: Any, live: dict[str, Any] | None
) -> tuple[Any, Any]:
    signals = rec._signals_of(agent, live)
    regions = agent_region_status(rec._observe_regions(agent, signals))
    return regions, scaling_limited({name: s.limited_by for name, s in signals.items()})


def test_a_restarted_operator_keeps_the_scalers_last_word_until_its_first_tick(examples: Loaded) -> None:
    # What a scaler said under load, bounded by a Region's capacity: desired pods below what
    # the Deployment runs (draining pods on top), calls, latency and the limit.
    billing = examples.inventory.agents[NS]["billing"]
    said = {
        (NS, "billing", "eu-west"): RegionSignals(12, 340, 1, "Region eu-west capacity.maxMediaPods"),
        (NS, "billing", "us-east"): RegionSignals(3, 180, 2, None),
        (NS, "billing", "ap-southeast"): RegionSignals(0, None, 1, None),
    }
    regions, limits = region_status_and_limits(reconciler(said), billing, None)
    live = {"regions": regions}
    assert regions[0]["limitedBy"] == "Region eu-west capacity.maxMediaPods"

    # The restarted operator has reconciled before its scaler ticked: the same status, no write.
    assert region_status_and_limits(reconciler({}), billing, live) == (regions, limits)


def test_the_scaler_speaks_over_what_the_status_said(examples: Loaded) -> None:
    billing = examples.inventory.agents[NS]["billing"]
    live = {
        "regions": [{"name": "eu-west", "desiredReplicas": 5, "activeCalls": 30, "limitedBy": "maxReplicas"}]
    }
    now = {(NS, "billing", "eu-west"): RegionSignals(0, None, 2, None)}
    regions, limits = region_status_and_limits(reconciler(now), billing, live)
    assert regions[0]["desiredReplicas"] == 2 and "limitedBy" not in regions[0]
    assert limits.status == "False"


def test_only_the_builtin_scaler_leaves_a_word_to_keep(examples: Loaded) -> None:
    support = examples.inventory.agents[NS]["support"]  # mode: hpa, its desired pods are the HPA's
    assert support.spec.scaling.mode == "hpa"
    live = {"regions": [{"name": "us-east", "desiredReplicas": 7, "activeCalls": 0}]}
    signals = reconciler({})._signals_of(support, live)
    assert signals["us-east"] == RegionSignals()


def test_last_reported_reads_a_region_entry_or_nothing() -> None:
    status = {"regions": [{"name": "eu-west", "desiredReplicas": 3, "activeCalls": 4, "p95LatencyMs": 250}]}
    assert last_reported(status, "eu-west") == RegionSignals(4, 250, 3, None)
    assert last_reported(status, "us-east") is None
    assert last_reported(None, "eu-west") is None
    assert last_reported({"regions": [{"name": "eu-west"}]}, "eu-west") is None
