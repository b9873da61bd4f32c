"""Scaling signals: the quantile math, prometheus-client's exposition parsed back, and the
direct scraper reading real media-sim HTTP servers on loopback addresses."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.exposition import generate_latest

from voiceop.controller.signals import (
    DirectScraper,
    PodSample,
    PrometheusReader,
    Reading,
    histogram_quantile,
    parse_pod_metrics,
)
from voiceop.sandbox.mediasim import MediaPod, build_app, media_sim_command
from voiceop.sandbox.prometheus import PrometheusServer, free_port


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.5, 50.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == 0.5
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.95)
    assert histogram_quantile(0.95, []) is None
    assert histogram_quantile(0.95, [(1.0, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 90.0), (float("inf"), 100.0)]) == 1.0  # +Inf: the last bound


async def _pod_metrics() -> PodSample:
    pod = MediaPod(slots=4)
    for seconds in (0.45, 0.55, 1.1):
        pod.latency.observe(seconds)
    pod.active.set(3)
    pod.total.labels("model", "m-1").inc(4)
    pod.total.labels("backup", "m-2").inc(3)  # summed over backends and models
    return parse_pod_metrics(generate_latest(pod.registry).decode())


def test_pod_metrics_are_parsed_with_prometheus_clients_parser() -> None:
    sample = asyncio.run(_pod_metrics())
    assert sample.calls == 3 and sample.taken == 7
    buckets = dict(sample.buckets)
    assert buckets[0.5] == 1 and buckets[0.6] == 2 and buckets[float("inf")] == 3


async def _scrape_two_regions() -> list[float | None]:
    port = free_port()
    pods = {"eu-pod": ("127.0.0.2", MediaPod(slots=10)), "us-pod": ("127.0.0.3", MediaPod(slots=10))}
    runners = []
    for ip, pod in pods.values():
        runner = web.AppRunner(build_app(pod))
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        runners.append(runner)
    clock = [0.0]
    scraper = DirectScraper(port=port, clock=lambda: clock[0])

    def observe(name: str, seconds: float, times: int = 40) -> None:
        for _ in range(times):
            pods[name][1].latency.observe(seconds)

    def read(name: str, *, after: float = 2.0) -> asyncio.Future[float | None]:
        async def go() -> float | None:
            clock[0] += after
            return (await scraper.read({name: pods[name][0]})).p95_ms

        return asyncio.ensure_future(go())

    try:
        observe("eu-pod", 1.2)  # hot before the scaler first looks: not part of any window
        observe("us-pod", 1.2)
        seen = [await read("eu-pod"), await read("us-pod")]  # first sight: no window yet
        observe("eu-pod", 0.45)
        observe("us-pod", 1.2)
        # Each region is read in turn, as the scaler does: one must not forget the other's pods.
        seen += [await read("eu-pod"), await read("us-pod")]
        observe("eu-pod", 0.45)
        seen += [await read("eu-pod")]
        return seen
    finally:
        await scraper.close()
        for runner in runners:
            await runner.cleanup()


def test_direct_scraper_measures_each_region_over_its_own_window() -> None:
    first_eu, first_us, eu, us, eu_again = asyncio.run(_scrape_two_regions())
    assert first_eu is None and first_us is None, "counts since a pod started are not a window"
    assert eu is not None and 400 <= eu <= 500
    assert us is not None and 1000 <= us <= 1250
    assert eu_again is not None and 400 <= eu_again <= 500


async def _arrivals() -> list[float | None]:
    port = free_port()
    pod = MediaPod(slots=10)
    runner = web.AppRunner(build_app(pod))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.4", port).start()
    clock = [100.0]
    scraper = DirectScraper(port=port, clock=lambda: clock[0])
    seen = []
    try:
        for taken in (0, 4, 4, 12, 24, 36):  # calls taken during each 2 s tick
            pod.total.labels("model", "m-1").inc(taken)
            seen.append((await scraper.read({"pod": "127.0.0.4"})).arrivals_per_second)
            clock[0] += 2.0
        pod.total.labels("model", "m-1")._value.set(3)  # the container restarted: its counter starts again
        seen.append((await scraper.read({"pod": "127.0.0.4"})).arrivals_per_second)
        return seen
    finally:
        await scraper.close()
        await runner.cleanup()


def test_direct_scraper_reads_calls_taken_per_second_over_six_seconds() -> None:
    first, *rates, restarted = asyncio.run(_arrivals())
    assert first is None, "one sample is not a rate"
    # Each read looks back to the newest sample at least 6 s old (or the oldest it has).
    assert rates == [
        pytest.approx(4 / 2),
        pytest.approx(8 / 4),
        pytest.approx(20 / 6),
        pytest.approx(40 / 6),
        pytest.approx(72 / 6),
    ]
    assert restarted == pytest.approx(3 / 6)


class OnePod:
    def __init__(self, address: str) -> None:
        self.address = address

    def targets(self) -> list[dict[str, Any]]:
        return [{"targets": [self.address], "labels": {"namespace": "ns", "pod": "pod-a"}}]


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Debian's prometheus (.ci/run installs it)"
)
def test_prometheus_reader_queries_a_real_prometheus() -> None:
    """The three instant queries run on Prometheus 2.x itself (a bad one would raise here,
    where the scaler would quietly fall back to scraping)."""
    port = free_port()
    media = subprocess.Popen(
        media_sim_command("127.0.0.1", port, 10),
        stdout=subprocess.DEVNULL,
    )
    prometheus = PrometheusServer(OnePod(f"127.0.0.1:{port}"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "media-sim did not start"
                time.sleep(0.2)
        prometheus.start()
        for _ in range(5):
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}/calls?duration=30", data=b"", method="POST")
            )
            time.sleep(0.5)

        async def settled() -> Reading:
            reader = PrometheusReader(prometheus.url)
            try:
                deadline = time.monotonic() + 30
                while True:
                    reading = await reader.read("ns", ["pod-a"])
                    if reading.calls == {"pod-a": 5} and reading.p95_ms is not None:
                        return reading
                    assert time.monotonic() < deadline, f"Prometheus never showed the calls: {reading}"
                    await asyncio.sleep(0.5)
            finally:
                await reader.close()

        reading = asyncio.run(settled())
        assert reading.p95_ms is not None and 350 <= reading.p95_ms <= 800  # 5 of 10 slots: ~0.5 s
        assert reading.arrivals_per_second is not None and reading.arrivals_per_second >= 0
    finally:
        prometheus.stop()
        media.kill()  # SIGTERM would wait for its calls to end, as a media pod should
        media.wait(10)


async def _handoffs_after_a_scale_in() -> list[object]:
    port = free_port()
    pods = {"a": ("127.0.0.5", MediaPod(slots=10)), "b": ("127.0.0.6", MediaPod(slots=10))}
    runners = []
    for ip, pod in pods.values():
        pod.total.labels("model", "m-1")  # declared, as media-sim does for its backends
        runner = web.AppRunner(build_app(pod))
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        runners.append(runner)
    clock = [0.0]
    scraper = DirectScraper(port=port, clock=lambda: clock[0], handoff_window_seconds=60)
    both = {name: ip for name, (ip, _) in pods.items()}
    try:
        first = (await scraper.read(both, "eu-west")).handoffs
        for name, count in (("a", 3), ("b", 1)):
            pods[name][1].total.labels("model", "m-1").inc(10)
            pods[name][1].handoffs.labels("backendUnavailable", "model", "m-1").inc(count)
        clock[0] += 2
        seen = (await scraper.read(both, "eu-west")).handoffs
        clock[0] += 2
        after_scale_in = (await scraper.read({"b": both["b"]}, "eu-west")).handoffs  # `a` is gone
        other_region = (await scraper.read({"b": both["b"]}, "us-east")).handoffs
        clock[0] += 70
        rolled_off = (await scraper.read({"b": both["b"]}, "eu-west")).handoffs
        return [first, seen, after_scale_in, other_region, rolled_off]
    finally:
        await scraper.close()
        for runner in runners:
            await runner.cleanup()


def test_a_pod_removed_by_a_scale_in_still_counts_its_hand_offs_until_they_leave_the_window() -> None:
    from voiceop.handoffs import HandoffWindow

    first, seen, after_scale_in, other_region, rolled_off = asyncio.run(_handoffs_after_a_scale_in())
    assert first == HandoffWindow(0, ())
    assert seen == after_scale_in == HandoffWindow(20, (("backendUnavailable", 4),))
    assert other_region == HandoffWindow(10, (("backendUnavailable", 1),)), "groups keep their own pods"
    assert rolled_off == HandoffWindow(0, ())
