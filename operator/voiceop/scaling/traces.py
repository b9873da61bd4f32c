"""Call traces generated from a shape and a seed: the simulator's held-out test set.

A shape is a contact centre's day in one form; a seed draws one instance of it: the arrivals
(a non-homogeneous Poisson process, by thinning), the call durations (log-normal), and the
shape's own parameters (peak, timing, steepness) varied within a documented range, so that two
seeds differ in more than noise. Policy constants may be tuned on seeds 0-4 and are judged on
seeds 5-9 (`TUNING_SEEDS`, `HELD_OUT_SEEDS`). Pure: the same shape and seed give the same trace.

Every trace starts warm: its first rate runs for `WARM_UP_SECONDS` before 0 (calls with a
negative start), so that at 0 a region holds the calls and pods of a running system. The
simulator counts nothing before 0. Started cold (no call live, one pod, 2 calls/s arriving from
the first second), most of the rejections on burst, two_regions, region_outage and long_calls
had come in the first 20 s: a start no running contact centre sees.

Shapes (times in seconds):
- diurnal: 3 h, a day compressed: 0.3 -> peak (3-5 calls/s) -> 0.3;
- burst: 1 h, 1.5 calls/s, then 8x reached in 20 s (a TV spot), held 8-12 min, down in 2 min;
- two_regions: 2 h, eu-west and us-east, each 0.3 -> 3 calls/s, peaks 40-80 min apart;
- monday_ramp: 1.5 h, 0.2 calls/s, then a ramp to 4-6 calls/s over 20-40 min, held;
- tv_spike: 1 h, 0.5 calls/s, 20x reached in 10 s, decaying over 3-6 minutes;
- region_outage: 1.5 h, two regions at 1.5-2.5 calls/s each; eu-west is lost for 15-25 min
  and its callers go to us-east (the next region of their routes) meanwhile;
- long_calls: 2 h, 1 call/s with calls of a median of 8 minutes and a tail to an hour.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from voiceop.scaling.simulator import DEFAULT_REGION, Call

TUNING_SEEDS = (0, 1, 2, 3, 4)
# Long enough for the longest shape's calls (median 8 min) to be mostly live by 0, and for the
# pods started on the way to have been held past a 300 s scale-down delay.
WARM_UP_SECONDS = 1200.0
HELD_OUT_SEEDS = (5, 6, 7, 8, 9)

Rate = Callable[[float], float]


def _arrivals(rate: Rate, peak: float, length: float, rng: random.Random) -> list[float]:
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= length:
            return times
        if rng.random() < rate(t) / peak:
            times.append(t)


def _durations(
    rng: random.Random, median: float = 90.0, sigma: float = 0.8, cap: float = 1800.0
) -> Callable[[], float]:
    return lambda: min(cap, rng.lognormvariate(math.log(median), sigma))


def _calls(
    rate: Rate,
    peak: float,
    length: float,
    rng: random.Random,
    region: str = DEFAULT_REGION,
    **duration: float,
) -> list[Call]:
    lengths = _durations(rng, **duration)
    warm = _arrivals(lambda t: rate(max(0.0, t - WARM_UP_SECONDS)), peak, length + WARM_UP_SECONDS, rng)
    return [Call(t - WARM_UP_SECONDS, lengths(), region) for t in warm]


def diurnal(rng: random.Random) -> list[Call]:
    length, top = 3 * 3600.0, rng.uniform(3.0, 5.0)
    return _calls(lambda t: 0.3 + (top - 0.3) * math.sin(math.pi * t / length) ** 2, top, length, rng)


def _onset(rng: random.Random) -> float:
    """When a burst or a TV spike begins: each shape's first draw, so `onset` can tell it."""
    return rng.uniform(900, 1500)


def burst(rng: random.Random) -> list[Call]:
    base, peak, start, ramp = 1.5, 12.0, _onset(rng), 20.0
    hold, decay = rng.uniform(480, 720), 120.0

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

    return _calls(rate, peak, 3600.0, rng)


def two_regions(rng: random.Random) -> list[Call]:
    length, gap = 2 * 3600.0, rng.uniform(2400, 4800)
    calls: list[Call] = []
    for region, peak_at in (("eu-west", length / 2 - gap / 2), ("us-east", length / 2 + gap / 2)):

        def rate(t: float, peak_at: float = peak_at) -> float:
            return 0.3 + 2.7 * math.exp(-(((t - peak_at) / 1500.0) ** 2))

        calls += _calls(rate, 3.0, length, rng, region)
    return sorted(calls, key=lambda c: c.start)


def monday_ramp(rng: random.Random) -> list[Call]:
    start, ramp, top = 900.0, rng.uniform(1200, 2400), rng.uniform(4.0, 6.0)

    def rate(t: float) -> float:
        return 0.2 + (top - 0.2) * min(1.0, max(0.0, (t - start) / ramp))

    return _calls(rate, top, 5400.0, rng)


def tv_spike(rng: random.Random) -> list[Call]:
    base, start, decay = 0.5, _onset(rng), rng.uniform(180, 360)
    peak = 20 * base

    def rate(t: float) -> float:
        if t < start:
            return base
        if t < start + 10:
            return base + (peak - base) * (t - start) / 10
        return base + (peak - base) * math.exp(-(t - start - 10) / decay)

    return _calls(rate, peak, 3600.0, rng)


def region_outage(rng: random.Random) -> list[Call]:
    length = 5400.0
    eu, us = rng.uniform(1.5, 2.5), rng.uniform(1.5, 2.5)
    lost_from = rng.uniform(1500, 2100)
    lost_until = lost_from + rng.uniform(900, 1500)
    calls = _calls(lambda t: us, us, length, rng, "us-east")
    for call in _calls(lambda t: eu, eu, length, rng, "eu-west"):
        moved = lost_from <= call.start < lost_until
        calls.append(Call(call.start, call.duration, "us-east" if moved else "eu-west"))
    return sorted(calls, key=lambda c: c.start)


def long_calls(rng: random.Random) -> list[Call]:
    return _calls(lambda t: 1.0, 1.0, 7200.0, rng, median=480.0, sigma=1.0, cap=3600.0)


SHAPES: dict[str, Callable[[random.Random], list[Call]]] = {
    "diurnal": diurnal,
    "burst": burst,
    "two_regions": two_regions,
    "monday_ramp": monday_ramp,
    "tv_spike": tv_spike,
    "region_outage": region_outage,
    "long_calls": long_calls,
}


def trace(shape: str, seed: int) -> list[Call]:
    """One instance of a shape: the same shape and seed always give the same calls."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
    return SHAPES[shape](_seeded(shape, seed))


SPIKES = ("tv_spike", "burst")


def onset(shape: str, seed: int) -> float:
    """When the spike of a `burst` or `tv_spike` trace begins (seconds after 0)."""
    if shape not in SPIKES:
        raise ValueError(f"{shape!r} has no spike: one of {', '.join(SPIKES)}")
    return _onset(_seeded(shape, seed))


def _seeded(shape: str, seed: int) -> random.Random:
    return random.Random(f"{shape}:{seed}")
