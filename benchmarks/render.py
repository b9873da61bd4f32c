"""Time to admit and render 1,000 VoiceAgents x 3 regions, per agent (agents that differ).

Prints one table. The baseline, measured in the same run, is reading the rendered output back
with PyYAML's C loader: what any client pays just to parse the objects voiceop produces. A last
row times `voiceop render -f examples/` as a user runs it (a fresh interpreter, median of 5),
against starting the same interpreter with nothing to do: with voiceop's bytecode compiled, as
`pip install` compiles a package and Python caches it on a first run (the verdict's row), and
from source at every start, as where PYTHONDONTWRITEBYTECODE=1 is set and nothing was cached.

    python benchmarks/render.py [--agents N]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import voiceop
from voiceop.api import parse_object
from voiceop.api.inventory import Inventory
from voiceop.inputs.loading import load_inventory
from voiceop.inputs.yamlio import dump_all
from voiceop.render import render_all

EXAMPLES = "examples"
TARGET_MS_PER_AGENT = 2.0  # admission, and render, each
TARGET_CLI_SECONDS = 0.5


def wall(command: list[str], runs: int = 5, env: dict[str, str] | None = None) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli_walls() -> tuple[float, float]:
    """`voiceop render -f examples/` (median wall s) from a copy of the package with no bytecode
    (run with -B, so none is written), then after compiling that copy as pip compiles an
    installed package."""
    command = [sys.executable, "-m", "voiceop", "render", "-f", EXAMPLES]
    with tempfile.TemporaryDirectory() as copy_root:
        package = Path(copy_root) / "voiceop"
        shutil.copytree(Path(voiceop.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "PYTHONPATH": copy_root}  # ahead of the installed voiceop
        from_source_s = wall([command[0], "-B", *command[1:]], env=env)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
        compiled_s = wall(command, env=env)
    return compiled_s, from_source_s


def agent_manifests(count: int) -> list[dict[str, Any]]:
    """`count` agents made from the billing example (2 backends), each different as a fleet's
    agents are: its own image, prompt, regions and their bounds, calls per pod, scaling delay,
    backend order, and fallback number. Admission evaluates CEL once per distinct value of a
    rule's `self`, so identical copies would flatter it."""
    inventory = load_inventory([EXAMPLES]).inventory
    template = inventory.agents["contact-center"]["billing"].model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    rng = random.Random(1)
    regions = ("eu-west", "us-east", "ap-southeast")
    manifests = []
    for index in range(count):
        raw = copy.deepcopy(template)
        raw["metadata"] = {"name": f"agent-{index:05d}", "namespace": "contact-center"}
        spec = raw["spec"]
        spec["image"] = f"ghcr.io/example/voice-runtime:{rng.randint(1, 9)}.{rng.randint(0, 99)}.{index}"
        spec["settings"]["prompt"] = f"You are agent {index}; {rng.random():.6f}"
        low = rng.randint(0, 3)
        spec["regions"] = [
            {"name": name, "minReplicas": low + i, "maxReplicas": low + i + rng.randint(1, 40)}
            for i, name in enumerate(rng.sample(regions, 3))
        ]
        spec["capacity"]["callsPerPod"] = rng.randint(2, 16)
        spec["scaling"]["scaleDownDelaySeconds"] = rng.choice((60, 120, 300, 600)) + index % 7
        spec["scaling"]["targetUtilization"] = round(rng.uniform(0.5, 0.9), 2)
        if rng.random() < 0.5:
            spec["backends"].reverse()
        spec["fallback"]["humanHandoff"] = {"phoneNumber": f"+3532155{index % 10000:04d}"}
        spec["drain"]["maxCallDurationSeconds"] = rng.randint(600, 7200)
        manifests.append(raw)
    return manifests


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args()

    base = load_inventory([EXAMPLES]).inventory
    manifests = agent_manifests(args.agents)

    admit_s, agents = timed(lambda: [parse_object(m) for m in manifests])
    inventory = Inventory(regions=base.regions)
    inventory.backends["contact-center"] = base.backends["contact-center"]
    for agent in agents:
        inventory.add(agent)
    render_s, objects = timed(lambda: render_all(inventory))
    dump_s, text = timed(lambda: dump_all(objects))
    baseline_s, parsed = timed(lambda: list(yaml.load_all(text, Loader=yaml.CSafeLoader)))
    assert len(parsed) == len(objects)

    cli_s, cli_from_source_s = cli_walls()
    start_s = wall([sys.executable, "-c", "pass"])

    n = args.agents

    def per_agent(seconds: float) -> tuple[str, str]:
        verdict = "PASS" if 1000 * seconds / n <= TARGET_MS_PER_AGENT else "FAIL"
        return f"<= {TARGET_MS_PER_AGENT:g} ms", verdict

    rows = [
        ("admit + parse (schema, CEL, pydantic)", admit_s, *per_agent(admit_s)),
        ("render (jinja2 -> objects)", render_s, *per_agent(render_s)),
        ("serialize (YAML)", dump_s, "-", "-"),
        ("total", admit_s + render_s + dump_s, "-", "-"),
        ("baseline: parse the output back (C YAML)", baseline_s, "-", "-"),
    ]
    print(f"{n} agents x 3 regions -> {len(objects)} objects ({len(text) / 1e6:.1f} MB of YAML)")
    print(f"{'stage':<44} {'total s':>9} {'ms/agent':>9} {'x baseline':>11} {'target':>9} {'verdict':>8}")
    for label, seconds, target, verdict in rows:
        print(
            f"{label:<44} {seconds:>9.2f} {1000 * seconds / n:>9.3f} {seconds / baseline_s:>11.2f} "
            f"{target:>9} {verdict:>8}"
        )
    cli_verdict = "PASS" if cli_s <= TARGET_CLI_SECONDS else "FAIL"
    print(
        f"{'voiceop render -f examples/ (wall, median)':<44} {cli_s:>9.2f} {'-':>9} "
        f"{cli_s / start_s:>11.2f} {'<= 0.5 s':>9} {cli_verdict:>8}"
    )
    print(
        f"{'  the same, compiling its source every start':<44} {cli_from_source_s:>9.2f} {'-':>9} "
        f"{cli_from_source_s / start_s:>11.2f} {'-':>9} {'-':>8}"
    )
    print(f"  (its baseline: the same interpreter started with nothing to do, {start_s:.2f} s)")


if __name__ == "__main__":
    main()
