"""Presenting simulation results: a text table and a plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voiceop.scaling.simulator import RegionResult


def table(rows: Sequence[Mapping[str, Any]], oracle_pod_seconds: float | None = None) -> str:
    header = f"{'policy':<10} {'calls':>8} {'rejected %':>11} {'dropped':>8} {'pod-s':>11} {'/oracle':>8} {'scale ev':>9} {'to capacity s':>14}"
    lines = [header]
    for row in rows:
        ratio = f"{row['pod_seconds'] / oracle_pod_seconds:>8.2f}" if oracle_pod_seconds else f"{'-':>8}"
        lines.append(
            f"{row['policy']:<10} {row['calls']:>8} {row['rejected_pct']:>11.3f} {row['dropped']:>8} "
            f"{row['pod_seconds']:>11.0f} {ratio} {row['scale_events']:>9} {row['time_to_capacity_s']:>14.1f}"
        )
    return "\n".join(lines)


def plot(results: Mapping[str, Mapping[str, RegionResult]], path: Path | str, title: str) -> None:
    """Calls, pods and rejections over time, one column per policy, one line per region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(results)
    figure, axes = plt.subplots(3, len(policies), figsize=(4 * len(policies), 8), sharex=True, squeeze=False)
    for column, policy in enumerate(policies):
        for region, result in sorted(results[policy].items()):
            minutes = [t / 60 for t, *_ in result.timeline]
            axes[0][column].plot(minutes, [c for _, c, _, _ in result.timeline], label=region)
            axes[1][column].plot(minutes, [p for _, _, p, _ in result.timeline], label=region)
            axes[2][column].plot(minutes, [r for _, _, _, r in result.timeline], label=region)
        axes[0][column].set_title(policy)
        axes[2][column].set_xlabel("minutes")
    for row, label in enumerate(("live calls", "pods", "rejected (cumulative)")):
        axes[row][0].set_ylabel(label)
    axes[0][0].legend(loc="upper left", fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
