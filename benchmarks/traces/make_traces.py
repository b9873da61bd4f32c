"""Writes the bundled call traces (deterministic: a fixed seed per trace).

    python benchmarks/traces/make_traces.py

Arrivals are a non-homogeneous Poisson process (thinning); durations are log-normal with a
median of 90 s (mean about 2 minutes), capped at 30 minutes, as contact-center calls go.
- diurnal.csv: 6 hours, one region, a day's curve compressed: 0.3 -> 4 calls/s -> 0.3.
- burst.csv: 1 hour, 1.5 calls/s, then 8x (12 calls/s) reached in 20 s at minute 20 (a TV
  spot), held 10 minutes, back down over 2 minutes.
- two_regions.csv: 4 hours, eu-west and us-east, each 0.3 -> 3 calls/s, peaks 2 hours apart.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEDIAN_DURATION = 90.0
SIGMA = 0.8
MAX_DURATION = 1800.0


def arrivals(rate: Callable[[float], float], peak: float, length: float, rng: random.Random) -> list[float]:
    times, t = [], 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= length:
            return times
        if rng.random() < rate(t) / peak:
            times.append(t)


def duration(rng: random.Random) -> float:
    return min(MAX_DURATION, rng.lognormvariate(math.log(MEDIAN_DURATION), SIGMA))


def write(name: str, rows: list[tuple[float, float, str]]) -> None:
    with open(HERE / name, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["start", "duration", "region"])
        for start, length, region in sorted(rows):
            writer.writerow([f"{start:.3f}", f"{length:.1f}", region])


def diurnal() -> None:
    rng = random.Random(1)
    length = 6 * 3600

    def rate(t: float) -> float:
        return 0.3 + 3.7 * math.sin(math.pi * t / length) ** 2

    write("diurnal.csv", [(t, duration(rng), "") for t in arrivals(rate, 4.0, length, rng)])


def burst() -> None:
    rng = random.Random(2)
    base, peak, start, ramp, hold, decay = 1.5, 12.0, 1200.0, 20.0, 600.0, 120.0

    def rate(t: float) -> float:
        if t < start:
            return base
        if t < start + ramp:
            return base + (peak - base) * (t - start) / ramp
        if t < start + ramp + hold:
            return peak
        if t < start + ramp + hold + decay:
            return peak - (peak - base) * (t - start - ramp - hold) / decay
        return base

    write("burst.csv", [(t, duration(rng), "") for t in arrivals(rate, peak, 3600.0, rng)])


def two_regions() -> None:
    rng = random.Random(3)
    length = 4 * 3600
    rows = []
    for region, peak_at in (("eu-west", 3600.0), ("us-east", 3 * 3600.0)):

        def rate(t: float, peak_at: float = peak_at) -> float:
            return 0.3 + 2.7 * math.exp(-(((t - peak_at) / 2400.0) ** 2))

        rows += [(t, duration(rng), region) for t in arrivals(rate, 3.0, length, rng)]
    write("two_regions.csv", rows)


if __name__ == "__main__":
    diurnal()
    burst()
    two_regions()
