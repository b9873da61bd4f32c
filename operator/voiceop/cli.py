"""The `voiceop` command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voiceop import __version__

EXIT_INVALID_INPUT = 2


def crd_file_name(crd: dict[str, Any]) -> str:
    """controller-gen's naming: <group>_<plural>.yaml."""
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def object_file_name(obj: dict[str, Any]) -> str:
    metadata = obj["metadata"]
    namespace = metadata.get("namespace", "_cluster")
    return f"{namespace}.{obj['kind'].lower()}.{metadata['name']}.yaml"


def write_files(directory: Path, files: dict[str, str]) -> None:
    """Write each file whole (temporary file, then rename): a reader never sees half of one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, directory / name)


def all_crds() -> list[dict[str, Any]]:
    from voiceop.api import KINDS, crd

    return [crd(kind) for kind in KINDS]


def cmd_crds(args: argparse.Namespace) -> int:
    from voiceop.yamlio import dump, dump_all

    crds = all_crds()
    if args.output:
        write_files(Path(args.output), {crd_file_name(c): dump(c) for c in crds})
    else:
        sys.stdout.write(dump_all(crds))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from voiceop.loading import load_inventory
    from voiceop.render import NameConflict, render_all
    from voiceop.yamlio import dump, dump_all

    loaded = load_inventory(args.filename)
    if not loaded.errors:
        try:
            objects = render_all(loaded.inventory)
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


def cmd_run(args: argparse.Namespace) -> int:
    from voiceop.run import main as run_main

    return run_main(
        namespaces=args.namespace or [],
        standalone=args.standalone,
        priority=args.priority,
        peering=args.peering,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        verbose=args.verbose,
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
    render.set_defaults(run=cmd_render)

    run = commands.add_parser("run", help="run the operator against the cluster in kubeconfig or in-cluster")
    run.add_argument(
        "-n", "--namespace", action="append", metavar="NS", help="watch only NS (repeatable); default all"
    )
    run.add_argument("--standalone", action="store_true", help="no peering: act even if another replica runs")
    run.add_argument("--priority", type=int, default=0, help="peering priority; the highest replica acts")
    run.add_argument("--peering", default="voiceop", help="name of the KopfPeering object (default voiceop)")
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics port (0: off)")
    run.add_argument("--health-port", type=int, default=8081, help="liveness endpoint port (0: off)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(run=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
