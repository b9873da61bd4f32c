"""The `voiceop` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voiceop import __version__
from voiceop.inputs.files import write_files

EXIT_INVALID_INPUT = 2
DEFAULT_LISTEN = ["udp:0.0.0.0:5060"]


def crd_file_name(crd: dict[str, Any]) -> str:
    """controller-gen's naming: <group>_<plural>.yaml."""
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def object_file_name(obj: dict[str, Any]) -> str:
    metadata = obj["metadata"]
    namespace = metadata.get("namespace", "_cluster")
    return f"{namespace}.{obj['kind'].lower()}.{metadata['name']}.yaml"


def cmd_crds(args: argparse.Namespace) -> int:
    from voiceop.api import all_crds
    from voiceop.inputs.yamlio import dump, dump_all

    crds = all_crds()
    if args.output:
        write_files(Path(args.output), {crd_file_name(c): dump(c) for c in crds})
    else:
        sys.stdout.write(dump_all(crds))
    return 0


def render_options(args: argparse.Namespace) -> Any:
    """The operator-wide render choices that `run` and `render` share."""
    from voiceop.render.options import RenderOptions

    return RenderOptions(media_network_policy=args.media_network_policy, prometheus_url=args.prometheus_url)


def add_render_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--media-network-policy",
        action="store_true",
        help="a NetworkPolicy for the media pods of agents that leave spec.transport.networkPolicy unset",
    )
    parser.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="Prometheus of agents that read one (metrics.source prometheus, mode keda) and name none",
    )


def cmd_render(args: argparse.Namespace) -> int:
    from voiceop.inputs.loading import load_inventory
    from voiceop.inputs.yamlio import dump, dump_all
    from voiceop.render import NameConflict, render_all, render_problems

    loaded = load_inventory(args.filename)
    options = render_options(args)
    if not loaded.errors:
        loaded.errors += [
            f"{loaded.where(agent)}: {agent.ref}: {error}"
            for agent, error in render_problems(loaded.inventory, options)
        ]
    if not loaded.errors:
        try:
            objects = render_all(loaded.inventory, options)
        except NameConflict as conflict:
            loaded.errors.append(str(conflict))
    if loaded.errors:
        for line in loaded.errors:
            print(f"error: {line}", file=sys.stderr)
        print(f"voiceop render: {len(loaded.errors)} error(s); nothing rendered", file=sys.stderr)
        return EXIT_INVALID_INPUT
    if args.output:
        write_files(Path(args.output), {object_file_name(o): dump(o) for o in objects})
        print(f"wrote {len(objects)} objects to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(dump_all(objects))
    return 0


def cmd_edge_render(args: argparse.Namespace) -> int:
    from voiceop.edge.offline import render_edge
    from voiceop.render.edge.config import EdgeSettings

    output = Path(args.output)
    settings = EdgeSettings(
        config_dir=str(args.config_dir or output.resolve()),
        listens=tuple(args.listen or DEFAULT_LISTEN),
        handoff_gateway=args.handoff_gateway,
    )
    rendered = render_edge(args.filename, settings)
    if rendered.errors:
        for line in rendered.errors:
            print(f"error: {line}", file=sys.stderr)
        print(f"voiceop edge render: {len(rendered.errors)} error(s); nothing written", file=sys.stderr)
        return EXIT_INVALID_INPUT
    write_files(output, rendered.files)
    print(f"wrote {len(rendered.files)} files to {output} ({rendered.endpoints} endpoints)", file=sys.stderr)
    return 0


def cmd_edge_sync(args: argparse.Namespace) -> int:
    from voiceop.edge.sync import main as sync_main
    from voiceop.render.edge.config import EdgeSettings

    settings = EdgeSettings(
        config_dir=str(Path(args.config_dir).resolve()),
        listens=tuple(args.listen or DEFAULT_LISTEN),
        handoff_gateway=args.handoff_gateway,
    )
    return sync_main(settings, args.namespace or [], args.endpoints_from, args.kamcmd, args.once)


def cmd_run(args: argparse.Namespace) -> int:
    from voiceop.handlers.entry import main as run_main

    return run_main(
        namespaces=args.namespace or [],
        standalone=args.standalone,
        priority=args.priority,
        peering=args.peering,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        verbose=args.verbose,
        relist_seconds=args.relist_seconds,
        render_options=render_options(args),
        handoff_window_seconds=args.handoff_window_seconds,
        peering_lifetime=args.peering_lifetime,
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    import json

    from voiceop.scaling.baselines import POLICIES
    from voiceop.scaling.policy import ScalingConfig
    from voiceop.scaling.report import plot, table
    from voiceop.scaling.simulator import read_trace, simulate, summarize

    policies = [p.strip() for value in args.policy for p in value.split(",") if p.strip()]
    if policies == ["all"]:
        policies = list(POLICIES)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        print(
            f"error: --policy: unknown {', '.join(unknown)}; one of {', '.join(POLICIES)} or all",
            file=sys.stderr,
        )
        return EXIT_INVALID_INPUT
    try:
        calls = read_trace(args.trace)
    except (OSError, ValueError) as error:
        print(f"error: --trace: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        config = ScalingConfig(
            calls_per_pod=args.calls_per_pod,
            target_utilization=args.target_utilization,
            pod_startup_seconds=args.pod_startup,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            scale_down_delay_seconds=args.scale_down_delay,
        )
        if not 0 < config.target_utilization <= 1 or config.calls_per_pod < 1:
            raise ValueError("--target-utilization must be in (0, 1] and --calls-per-pod >= 1")
        if config.min_replicas > config.max_replicas:
            raise ValueError("--min-replicas must not exceed --max-replicas")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    results = {policy: simulate(calls, policy, config) for policy in policies}
    rows = [summarize(policy, result) for policy, result in results.items()]
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=False))
    else:
        oracle = sum(r.pod_seconds for r in results["oracle"].values()) if "oracle" in results else None
        print(table(rows, oracle))
    if args.plot:
        plot(
            results,
            args.plot,
            f"{Path(args.trace).name}: {args.calls_per_pod} calls/pod, {args.pod_startup:g} s start-up",
        )
    return 0


def cmd_media_sim(args: argparse.Namespace) -> int:
    import json
    import os

    from voiceop.sandbox.mediasim import main as media_main

    slots = args.calls_per_pod
    config = args.runtime_config or os.environ.get("VOICEOP_RUNTIME_CONFIG")
    if slots is None and config and Path(config).exists():
        slots = json.loads(Path(config).read_text()).get("callsPerPod")
    annotations = args.pod_annotations or os.environ.get("VOICEOP_POD_ANNOTATIONS")
    return media_main(
        args.host,
        args.port,
        int(slots or 10),
        Path(annotations) if annotations else None,
        args.sip_port,
        Path(config) if config else None,
    )


def cmd_handoffs(args: argparse.Namespace) -> int:
    from voiceop.reports.handoffs import Options
    from voiceop.reports.handoffs import main as report_main

    return report_main(
        Options(
            prometheus_url=args.prometheus_url,
            namespaces=tuple(args.namespace or ()),
            since=args.since,
            as_json=args.json,
            export=Path(args.export) if args.export else None,
            via=args.via,
        )
    )


def cmd_cluster(args: argparse.Namespace) -> int:
    from voiceop.sandbox.cluster.session import main as cluster_main

    return cluster_main(Path(args.kubeconfig), args.nodes, args.annotation_lag)


def cmd_demo(args: argparse.Namespace) -> int:
    from voiceop.sandbox.demo import main as demo_main

    return demo_main(args.duration, args.peak, args.scale_down_delay, args.sip, args.control_plane)


def add_handoff_gateway(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--handoff-gateway",
        metavar="SIP-URI",
        help="next hop for hand-offs to phone numbers (a PSTN gateway or SBC), e.g. sip:gw.example.com:5060",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceop", description="Run voice-AI agents on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"voiceop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.add_argument("-o", "--output", metavar="DIR", help="write one file per CRD into DIR")
    crds.set_defaults(run=cmd_crds)

    render = commands.add_parser(
        "render", help="render every object the operator would make from manifests, offline"
    )
    render.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="file or folder of YAML manifests (repeatable; - for stdin)",
    )
    render.add_argument("-o", "--output", metavar="DIR", help="write one file per object into DIR")
    add_render_options(render)
    render.set_defaults(run=cmd_render)

    sim = commands.add_parser("simulate", help="replay a call trace against an autoscaling policy")
    sim.add_argument("--trace", required=True, metavar="CSV", help="start,duration,region per call")
    sim.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="NAME",
        help="builtin, hpa, keda, kpa, agones, oracle (repeatable or comma-separated; all)",
    )
    sim.add_argument("--calls-per-pod", type=int, default=10)
    sim.add_argument("--target-utilization", type=float, default=0.7)
    sim.add_argument("--pod-startup", type=float, default=10.0, metavar="S")
    sim.add_argument("--min-replicas", type=int, default=1)
    sim.add_argument("--max-replicas", type=int, default=1000)
    sim.add_argument("--scale-down-delay", type=float, default=300.0, metavar="S")
    sim.add_argument("--json", action="store_true", help="one JSON object per policy")
    sim.add_argument("--plot", metavar="PNG", help="calls, pods and rejections over time (needs matplotlib)")
    sim.set_defaults(run=cmd_simulate)

    sim_pod = commands.add_parser("media-sim", help="a simulated media pod (metrics, call slots, drain)")
    sim_pod.add_argument("--host", default="0.0.0.0")
    sim_pod.add_argument("--port", type=int, default=9090)
    sim_pod.add_argument(
        "--calls-per-pod", type=int, help="call slots (default: callsPerPod of the runtime config, or 10)"
    )
    sim_pod.add_argument("--sip-port", type=int, metavar="PORT", help="answer SIP (UDP) on this port too")
    sim_pod.add_argument(
        "--pod-annotations",
        metavar="FILE",
        help="the downward-API annotations file to follow (default: $VOICEOP_POD_ANNOTATIONS)",
    )
    sim_pod.add_argument(
        "--runtime-config",
        metavar="FILE",
        help="the agent's runtime config to follow: backends, fallback (default: $VOICEOP_RUNTIME_CONFIG)",
    )
    sim_pod.set_defaults(run=cmd_media_sim)

    demo = commands.add_parser("demo", help="the operator at work on the examples, with no cluster")
    demo.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of caller load")
    demo.add_argument(
        "--peak", type=float, default=2.5, metavar="CALLS", help="peak calls per second (eu-west)"
    )
    demo.add_argument(
        "--scale-down-delay",
        type=float,
        default=30.0,
        metavar="S",
        help="billing's scaleDownDelaySeconds in the demo (the example says 300)",
    )
    demo.add_argument(
        "--sip",
        action="store_true",
        help="place the calls with sipp through a Kamailio edge (Debian: apt-get install -y kamailio sip-tester)",
    )
    demo.add_argument(
        "--control-plane",
        choices=("loopback", "kubernetes"),
        default="loopback",
        help="loopback: voiceop's own API server, pip alone (default); kubernetes: the real control plane "
        "built from source (controlplane/build.sh) with the sandbox kubelet",
    )
    demo.set_defaults(run=cmd_demo)

    cluster = commands.add_parser(
        "cluster",
        help="a real Kubernetes control plane on 127.0.0.1 with sandbox nodes (build: controlplane/build.sh)",
    )
    cluster.add_argument(
        "--kubeconfig", required=True, metavar="FILE", help="where to write the admin kubeconfig"
    )
    cluster.add_argument("--nodes", type=int, default=0, help="nodes to add beside one per Region zone")
    cluster.add_argument(
        "--annotation-lag",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds before the kubelet's downward-API file shows an annotation change",
    )
    cluster.set_defaults(run=cmd_cluster)

    edge = commands.add_parser("edge", help="the SIP edge (Kamailio): render its files, keep them in sync")
    edge_commands = edge.add_subparsers(dest="edge_command", required=True, metavar="EDGE_COMMAND")
    edge_render = edge_commands.add_parser("render", help="Kamailio's files from manifests, offline")
    edge_render.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="manifests, plus EndpointSlices (or Pods) of the media Services (repeatable; - for stdin)",
    )
    edge_render.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write the files")
    edge_render.add_argument(
        "--config-dir", metavar="DIR", help="where Kamailio will read them (default: the output folder)"
    )
    add_handoff_gateway(edge_render)
    edge_render.add_argument(
        "--listen",
        action="append",
        metavar="PROTO:ADDR:PORT",
        help="Kamailio listen socket (repeatable; default udp:0.0.0.0:5060)",
    )
    edge_render.set_defaults(run=cmd_edge_render)
    edge_sync = edge_commands.add_parser(
        "sync", help="watch routes and media endpoints, rewrite the edge's tables, reload Kamailio"
    )
    edge_sync.add_argument("--config-dir", required=True, metavar="DIR", help="Kamailio's config folder")
    edge_sync.add_argument(
        "--listen", action="append", metavar="PROTO:ADDR:PORT", help="as for edge render (kamailio.cfg)"
    )
    edge_sync.add_argument(
        "-n", "--namespace", action="append", metavar="NS", help="watch only NS (repeatable); default all"
    )
    edge_sync.add_argument(
        "--endpoints-from",
        choices=("endpointslices", "pods"),
        default="endpointslices",
        help="where Ready media pods are read (pods: where EndpointSlices cannot hold pod IPs)",
    )
    edge_sync.add_argument(
        "--kamcmd", default="kamcmd", help="kamcmd program for reloads over the ctl socket"
    )
    edge_sync.add_argument("--once", action="store_true", help="write the files once and exit")
    add_handoff_gateway(edge_sync)
    edge_sync.set_defaults(run=cmd_edge_sync)

    handoffs = commands.add_parser(
        "handoffs",
        help="report hand-offs to humans by agent, backend, model and reason; export their records",
    )
    handoffs.add_argument(
        "--prometheus-url", metavar="URL", help="count from Prometheus (media pods' counters)"
    )
    handoffs.add_argument(
        "-n", "--namespace", action="append", metavar="NS", help="only NS (repeatable); default all"
    )
    handoffs.add_argument(
        "--since", default="24h", metavar="DURATION", help="the window (30m, 24h, 7d); default 24h"
    )
    handoffs.add_argument("--json", action="store_true", help="the report as JSON")
    handoffs.add_argument(
        "--export", metavar="FILE.jsonl", help="write the window's hand-off records, one JSON object a line"
    )
    handoffs.add_argument(
        "--via",
        choices=("auto", "direct", "proxy"),
        default="auto",
        help="reach pods at their IPs (in the cluster, the sandbox) or through the API server's pod proxy",
    )
    handoffs.set_defaults(run=cmd_handoffs)

    run = commands.add_parser("run", help="run the operator against the cluster in kubeconfig or in-cluster")
    run.add_argument(
        "-n", "--namespace", action="append", metavar="NS", help="watch only NS (repeatable); default all"
    )
    run.add_argument("--standalone", action="store_true", help="no peering: act even if another replica runs")
    run.add_argument("--priority", type=int, default=0, help="peering priority; the highest replica acts")
    run.add_argument("--peering", default="voiceop", help="name of the KopfPeering object (default voiceop)")
    run.add_argument(
        "--peering-lifetime",
        type=float,
        metavar="S",
        help="how long a replica that stops heartbeating keeps the lead (kopf's default 60 s)",
    )
    run.add_argument(
        "--relist-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="list everything again this often and drop objects deleted unseen (after a 410)",
    )
    run.add_argument(
        "--handoff-window-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="the window over which status.handoffs counts calls and hand-offs (HandoffsHigh judges it)",
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics port (0: off)")
    run.add_argument("--health-port", type=int, default=8081, help="liveness endpoint port (0: off)")
    add_render_options(run)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(run=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
