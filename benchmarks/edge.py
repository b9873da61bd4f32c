"""The SIP edge in figures: Kamailio with voiceop's tables, media-sim pods, sipp callers.

Prints one table, every row measured in this run on loopback addresses:
1. INVITE -> 200 through the edge against straight to a pod (sipp's mean response time,
   same pod, same load): what the edge adds to call set-up;
2. routes change -> the edge serving it: a `voiceop-routes` ConfigMap is patched on the
   loopback API server and `voiceop edge sync` rewrites and reloads; timed until Kamailio's
   table holds the new value (kamcmd htable.get), against the reload alone (files written and
   reloaded over the control socket, no API in between);
3. the most concurrent calls held through one edge with no failed call (steps doubling, up to
   --max-calls), against the same through no edge (sipp straight to the pods).

    python benchmarks/edge.py [--calls 400] [--max-calls 8000]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voiceop.edge.sync import Kamailio
from voiceop.inputs.files import write_files
from voiceop.render.edge.config import MediaEndpoint, build_tables, edge_files, table_files
from voiceop.sandbox.apiserver import LoopbackApiServer
from voiceop.sandbox.mediasim import media_sim_command
from voiceop.sandbox.pods import http_get
from voiceop.sandbox.sip import Callers, KamailioEdge, SyncedEdge, sip_tools_available

NS = "bench"
NUMBER = "+35315550000"
CALLER = "+442071234567"
POD_ADDRESSES = ["127.0.20.2", "127.0.20.3", "127.0.20.4", "127.0.20.5"]
EDGE = ("127.0.0.1", 5064)
TARGET_SETUP_MS = 5.0  # the edge may add at most this to INVITE -> 200
TARGET_RELOAD_S = 2.0  # issue: a change reaches the edge within 2 s


def routes_table(first: str, second: str) -> dict[str, Any]:
    def target(region: str) -> str:
        return f"sip:hotline-{region}.{NS}.svc:5060;transport=udp"

    return {
        "endpoints": [
            {
                "endpoint": "hotline-line",
                "agent": "hotline",
                "phoneNumbers": [NUMBER],
                "sipUris": [],
                "webrtcPath": None,
                "routes": [
                    {
                        "match": {"callerCountry": "*"},
                        "regions": [
                            {"name": first, "target": target(first), "weight": 100},
                            {"name": second, "target": target(second), "weight": 0},
                        ],
                    }
                ],
            }
        ]
    }


def start_pods(slots: int) -> list[subprocess.Popen[bytes]]:
    pods = [
        subprocess.Popen(
            media_sim_command(a, 9090, slots, None, 5060),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for a in POD_ADDRESSES
    ]
    for address in POD_ADDRESSES:
        deadline = time.monotonic() + 20
        while http_get(f"http://{address}:9090/healthz")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"media-sim on {address} did not start")
            time.sleep(0.1)
    return pods


def endpoints(regions: dict[str, list[str]]) -> list[MediaEndpoint]:
    return [
        MediaEndpoint(NS, f"hotline-{region}", f"hotline-{region}-{i}", address)
        for region, addresses in regions.items()
        for i, address in enumerate(addresses)
    ]


def callers(
    target: tuple[str, int], calls: int, rate: float, hold_ms: int, port: int, concurrent: int = 100
) -> Any:
    return Callers(
        target, NUMBER, [CALLER], calls=calls, rate=rate, hold_ms=hold_ms, max_concurrent=concurrent,
        local_port=port, timeout_s=max(60.0, calls / rate + hold_ms / 1000 + 30), measure_setup=True,
    ).run()  # fmt: skip


def setup_time(edge: KamailioEdge, calls: int) -> tuple[list[float], list[float], int]:
    """INVITE -> 200 per call (ms, from sipp's message log) straight to one pod and through the edge."""
    direct = callers((POD_ADDRESSES[0], 5060), calls, 50, 100, 5201)
    through = callers((edge.address, edge.port), calls, 50, 100, 5202)
    return direct.setup_ms, through.setup_ms, direct.failed + through.failed


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def reload_times(workdir: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds from a ConfigMap patch to Kamailio serving it, and from a file write to the same."""
    key = f"{NS}/hotline-line|*|0|0"
    with LoopbackApiServer() as server:
        server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "voiceop-routes", "namespace": NS},
            "data": {"routes.json": json.dumps(routes_table("eu", "us"))},
        }
        server.apply(copy.deepcopy(configmap))
        for region, address in (("eu", POD_ADDRESSES[0]), ("us", POD_ADDRESSES[1])):
            name = f"hotline-{region}-0"
            server.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": NS,
                        "labels": {
                            "app.kubernetes.io/managed-by": "voiceop",
                            "app.kubernetes.io/component": "media",
                            "voiceop.dev/agent": "hotline",
                            "voiceop.dev/region": region,
                        },
                    },
                    "spec": {"containers": [{"name": "media", "image": "media-sim"}]},
                }
            )
            server.store.patch(
                server.store.resource_type("", "v1", "pods"), NS, name, "application/merge-patch+json",
                {"status": {"podIP": address, "conditions": [{"type": "Ready", "status": "True"}]}},
                subresource="status",
            )  # fmt: skip
        kubeconfig = server.write_kubeconfig(workdir / "kubeconfig")
        edge = SyncedEdge(kubeconfig, workdir / "synced", address=EDGE[0], port=EDGE[1] + 1, namespaces=(NS,))
        with edge:
            control = Kamailio(edge.kamailio.settings.control_socket, "kamcmd")

            def served() -> str:
                return edge.kamailio.kamcmd("htable.get", "routes", key)

            wait_until(lambda: "value" in served(), 10)
            through_api: list[float] = []
            for i in range(repeats):
                first, second = ("us", "eu") if i % 2 == 0 else ("eu", "us")
                before = served()
                configmap["data"] = {"routes.json": json.dumps(routes_table(first, second))}
                started = time.perf_counter()
                server.apply(copy.deepcopy(configmap))
                wait_until(lambda before=before: served() != before, 10)
                through_api.append(time.perf_counter() - started)
                time.sleep(1.1)  # past the dispatcher's reload limit, as a steady stream of changes
            # Baseline: the same change as files written and reloaded, no API server in between.
            alone: list[float] = []
            import asyncio

            for i in range(repeats):
                first, second = ("us", "eu") if i % 2 == 0 else ("eu", "us")
                tables = build_tables(
                    {NS: routes_table(first, second)},
                    endpoints({"eu": POD_ADDRESSES[:1], "us": POD_ADDRESSES[1:2]}),
                )
                files = table_files(tables)
                before = served()
                started = time.perf_counter()
                routes_file = Path(edge.kamailio.settings.config_dir) / "tables" / "routes"
                last_mtime = int(routes_file.stat().st_mtime)
                write_files(routes_file.parent.parent, {"tables/routes": files["tables/routes"]})
                bumped = max(
                    int(time.time()), last_mtime + 1
                )  # as the sync does: db_text reads whole seconds
                os.utime(routes_file, (bumped, bumped))
                asyncio.run(control.reload(["htable.reload", "routes"]))
                wait_until(lambda before=before: served() != before, 10)
                alone.append(time.perf_counter() - started)
        return through_api, alone


def wait_until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def most_concurrent(target: tuple[str, int] | None, edge: KamailioEdge | None, top: int, port: int) -> int:
    """Largest step (250, 500, ...) of calls held at once with no failure."""
    best = 0
    step = 250
    while step <= top:
        destinations = [(edge.address, edge.port)] if edge else [(a, 5060) for a in POD_ADDRESSES]
        share = step // len(destinations)
        runs = [
            Callers(
                d, NUMBER, [CALLER], calls=share, rate=min(200, share), hold_ms=15_000, max_concurrent=share,
                local_port=port + i, timeout_s=share / min(200, share) + 60,
            ).start()
            for i, d in enumerate(destinations)
        ]  # fmt: skip
        results = [r.wait() for r in runs]
        if any(r.failed for r in results) or sum(r.successful for r in results) != share * len(destinations):
            break
        best = share * len(destinations)
        step *= 2
    return best


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per set-up time row")
    parser.add_argument("--repeats", type=int, default=10, help="routes changes timed")
    parser.add_argument("--max-calls", type=int, default=8000, help="highest concurrency step tried")
    args = parser.parse_args()
    missing = sip_tools_available()
    if missing:
        print(f"benchmarks/edge.py: {missing}", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="voiceop-edge-bench-"))
    pods = start_pods(slots=max(1000, args.max_calls))
    try:
        settings = KamailioEdge.settings_for(workdir / "edge", *EDGE)
        regions = {"eu": POD_ADDRESSES[:1], "us": POD_ADDRESSES[1:2]}
        write_files(
            workdir / "edge", edge_files(settings, {NS: routes_table("eu", "us")}, endpoints(regions))
        )
        with KamailioEdge(settings, *EDGE) as edge:
            direct_setup, edge_setup, setup_failed = setup_time(edge, args.calls)
        direct_ms, edge_ms = statistics.median(direct_setup), statistics.median(edge_setup)
        through_api, alone = reload_times(workdir, args.repeats)
        # Concurrency: all four pods behind one set, each with room for every call.
        write_files(
            workdir / "edge",
            edge_files(settings, {NS: routes_table("eu", "us")}, endpoints({"eu": POD_ADDRESSES, "us": []})),
        )
        with KamailioEdge(settings, *EDGE) as edge:
            held_edge = most_concurrent(None, edge, args.max_calls, 5300)
        held_direct = most_concurrent(None, None, args.max_calls, 5400)
    finally:
        for pod in pods:
            pod.kill()
        for pod in pods:
            pod.wait(5)

    api_median, api_max = statistics.median(through_api), max(through_api)
    rows = [
        ("INVITE->200 through the edge (median ms)", f"{edge_ms:.2f}", f"{direct_ms:.2f} straight to the pod",
         f"+{edge_ms - direct_ms:.2f} ms", f"<= +{TARGET_SETUP_MS:g} ms, 0 failed", verdict(edge_ms - direct_ms <= TARGET_SETUP_MS and setup_failed == 0)),
        ("INVITE->200 through the edge (p95 ms)", f"{p95(edge_setup):.2f}", f"{p95(direct_setup):.2f} straight to the pod",
         f"+{p95(edge_setup) - p95(direct_setup):.2f} ms", f"<= +{TARGET_SETUP_MS:g} ms", verdict(p95(edge_setup) - p95(direct_setup) <= TARGET_SETUP_MS)),
        ("routes change -> edge serving it (median s)", f"{api_median:.3f}", f"{statistics.median(alone):.3f} reload alone",
         f"{api_median / statistics.median(alone):.1f}x", f"max <= {TARGET_RELOAD_S:g} s", verdict(api_max <= TARGET_RELOAD_S)),
        ("routes change -> edge serving it (max s)", f"{api_max:.3f}", f"{max(alone):.3f} reload alone",
         f"{api_max / max(alone):.1f}x", f"<= {TARGET_RELOAD_S:g} s", verdict(api_max <= TARGET_RELOAD_S)),
        ("calls held at once through one edge, 0 failed", str(held_edge), f"{held_direct} with no edge",
         f"{held_edge / max(1, held_direct):.2f}x", ">= 1000", verdict(held_edge >= 1000)),
    ]  # fmt: skip
    header = ("measure", "value", "baseline (same run)", "ratio", "target", "verdict")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(
        f"\n{args.calls} calls per set-up row; {args.repeats} routes changes; concurrency in doubling steps from 250"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
