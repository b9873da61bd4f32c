"""The whole call path on the loopback cluster: operator -> routes and pods -> `voiceop edge
sync` -> Kamailio -> media-sim pods, with sipp callers (loopback addresses only).

The pod simulator starts each media pod as a media-sim process answering SIP; the edge
sync reads Ready pods (the sandbox's 127.x pod IPs are what the edge dispatches to).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import loopback_cluster, running_operator, wait_for, wait_ready
from siplib import CallPath, call_world, require_sip_tools, scale_out_and_in_under_load
from voiceop.sandbox.pods import PodSimulator
from voiceop.sandbox.sip import SyncedEdge

NS = "calls"
GB, IE, US = "+442071234567", "+35318881234", "+12125550123"


@pytest.fixture
def call_path(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CallPath]:
    require_sip_tools()
    options = getattr(request, "param", {})
    with (
        loopback_cluster() as cluster,
        PodSimulator(cluster.store, grace_cap_seconds=options.get("grace", 30)) as pods,
    ):
        kubeconfig = cluster.server.write_kubeconfig(tmp_path / "kubeconfig")
        with running_operator(cluster):
            cluster.apply_all(call_world(NS, **options.get("world", {})))
            wait_ready(cluster, NS, "hotline")
            with SyncedEdge(kubeconfig, tmp_path / "edge", namespaces=(NS,)) as edge:
                path = CallPath.on_loopback(cluster, pods, edge, NS)
                # Both regions in the sets Kamailio serves from, not only Ready in the cluster: a
                # call overflowing to a region the edge has not loaded yet gets a 503.
                wait_for(
                    lambda: path.edge_pods("hotline-eu-west-") and path.edge_pods("hotline-us-east-"),
                    timeout=30,
                    what="the edge routes to pods of both regions",
                )
                yield path


def test_callers_reach_their_region_through_the_synced_edge(call_path: CallPath) -> None:
    # The edge has had a moment to sync the pods' readiness (within its 2 s budget).
    wait_for(lambda: call_path.call([GB], calls=1).successful == 1, timeout=10, what="edge routes a call")
    before = call_path.calls_by_region()
    # Slow enough that no pod fills: overflow would rightly go to the next region.
    result = call_path.callers([GB, IE, US], calls=9, rate=5, hold_ms=100).run()
    assert (result.successful, result.failed) == (9, 0), result.output
    after = call_path.calls_by_region()
    assert after.get("eu-west", 0) - before.get("eu-west", 0) == 6
    assert after.get("us-east", 0) - before.get("us-east", 0) == 3


# us-east takes the whole GB stream (15 calls/s of 200 ms, ~3 at once) the moment eu-west goes
# into maintenance. With one 4-call pod a region, the clean-clone CI of 3ebf533 saw 58 of 60
# placed, 2 answered 503 No Pod Available by the edge (every set tried), once in five full runs
# and never in seven runs of this test alone, four of them beside two busy loops: most likely
# calls stretched past 4 at once on a loaded machine before the scaler added a pod, or the one
# pod missed a ping. Two pods a region: the test is of routing, not of the fallback's capacity.
@pytest.mark.parametrize("call_path", [{"world": {"min_replicas": 2}}], indirect=True, ids=["2-pods"])
def test_a_region_in_maintenance_takes_no_new_call_within_2s_and_its_calls_finish(
    call_path: CallPath,
) -> None:
    wait_for(lambda: call_path.call([GB], calls=1).successful == 1, timeout=10, what="edge routes a call")
    in_progress = call_path.callers([GB], calls=2, hold_ms=6000).start()
    wait_for(
        lambda: call_path.calls_by_region().get("eu-west", 0) >= 3, timeout=5, what="long calls in eu-west"
    )

    stream = call_path.callers([GB], calls=60, rate=15, hold_ms=200).start()  # 4 s of GB callers
    time.sleep(0.5)
    started = time.monotonic()
    call_path.patch_region("eu-west", {"spec": {"maintenance": True}})
    last_eu_call = started
    eu_before = call_path.calls_by_region().get("eu-west", 0)
    while stream.process is not None and stream.process.poll() is None:
        eu_now = call_path.calls_by_region().get("eu-west", 0)
        if eu_now != eu_before:
            last_eu_call, eu_before = time.monotonic(), eu_now
        time.sleep(0.05)
    streamed = stream.wait()
    answers = sorted({line.strip() for line in streamed.errors.splitlines() if line.startswith("SIP/2.0")})
    assert (streamed.successful, streamed.failed) == (60, 0), (streamed.rejections, answers)
    assert last_eu_call - started <= 2.0, (
        f"eu-west took a new call {last_eu_call - started:.2f} s after maintenance"
    )
    assert call_path.calls_by_region().get("us-east", 0) > 0

    finished = in_progress.wait()
    assert (finished.successful, finished.failed) == (2, 0), finished.output


@pytest.mark.parametrize(
    "call_path", [{"grace": 1, "world": {"calls_per_pod": 3, "delay_s": 4}}], indirect=True, ids=["grace-1s"]
)
def test_a_scale_out_and_in_cycle_under_sipp_load_fails_no_call(call_path: CallPath) -> None:
    """Grace is capped at 1 s and calls last 10 s: removing a pod with a call WOULD fail it."""
    scale_out_and_in_under_load(call_path)
