"""`voiceop handoffs`: hand-offs to humans, reported per agent, backend, model and reason, and
exported for a team's evaluation set.

Counts come from Prometheus (`--prometheus-url`: the media pods' counters, labelled with agent as
the chart's PodMonitor does) or from the media pods themselves (`-n`: each pod serves its
records and per-minute call counts at /handoffs). The export always comes from the pods: one
record per hand-off (call id, time, reason, backend, model, latency), as JSON lines. A pod keeps
its records while it runs, so collect them before pods go (or ship them from your runtime).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from voiceop.api.kinds import KINDS
from voiceop.api.wire import COMPONENT_LABEL, MANAGED_BY
from voiceop.handoffs import Tally, format_report, report_rows, tally_pods
from voiceop.kube import ApiError, KubeClient, LoginError, connection_from_environment

METRICS_PORT = 9090
_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """`24h`, `90m`, `7d` as seconds; ValueError names the flag."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"--since {text!r}: a duration such as 30m, 24h or 7d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class Options:
    prometheus_url: str | None
    namespaces: tuple[str, ...]
    since: str
    as_json: bool
    export: Path | None
    via: str  # auto, direct or proxy


# --- from the pods ----------------------------------------------------------------------------


def _dial_directly(ip: str, via: str) -> bool:
    if via != "auto":
        return via == "direct"
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    try:
        return in_cluster or ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


async def pod_payloads(
    client: KubeClient, namespaces: Sequence[str], since: float, via: str
) -> list[dict[str, Any]]:
    """What every media pod serves at /handoffs since `since`: directly at its IP (in the
    cluster, or the sandbox's loopback pods) or through the API server's pod proxy."""
    selector = f"{MANAGED_BY}=voiceop,{COMPONENT_LABEL}=media"
    scopes: Sequence[str | None] = namespaces or (None,)
    pods = [pod for ns in scopes for pod in await client.list(KINDS["Pod"], ns, selector)]
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(pod: dict[str, Any]) -> dict[str, Any] | None:
            meta = pod["metadata"]
            ip = (pod.get("status") or {}).get("podIP")
            try:
                if ip and _dial_directly(ip, via):
                    async with session.get(
                        f"http://{ip}:{METRICS_PORT}/handoffs", params={"since": str(since)}
                    ) as r:
                        return dict(await r.json()) if r.status == 200 else None
                path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}:{METRICS_PORT}/proxy/handoffs"
                answer = await client.request(
                    "GET", path, verb="proxy", params={"since": str(since)}, retry=False
                )
                return dict(answer) if isinstance(answer, dict) else None
            except (aiohttp.ClientError, TimeoutError, ApiError, ValueError):
                print(
                    f"warning: pod {meta['namespace']}/{meta['name']} did not answer /handoffs",
                    file=sys.stderr,
                )
                return None

        answers = await asyncio.gather(*(fetch(pod) for pod in pods))
    payloads = []
    for pod, answer in zip(pods, answers, strict=True):
        if answer is None:
            continue
        labels = pod["metadata"].get("labels") or {}
        answer.setdefault("namespace", pod["metadata"]["namespace"])
        answer["agent"] = answer.get("agent") or labels.get("voiceop.dev/agent", "")
        answer["region"] = answer.get("region") or labels.get("voiceop.dev/region", "")
        answer["pod"] = answer.get("pod") or pod["metadata"]["name"]
        payloads.append(answer)
    return payloads


def export_records(payloads: Sequence[dict[str, Any]], start: float, path: Path) -> int:
    """The records since `start`, one JSON object a line, each with its pod's identity."""
    from voiceop.status import parse_time

    lines = []
    for payload in payloads:
        for record in payload.get("records") or []:
            if parse_time(record["time"]) >= start:
                where = {key: payload.get(key, "") for key in ("namespace", "agent", "region", "pod")}
                lines.append(json.dumps({**where, **record}, sort_keys=True))
    path.write_text("".join(line + "\n" for line in sorted(lines)))
    return len(lines)


# --- from Prometheus ------------------------------------------------------------------------


async def prometheus_tallies(url: str, window_s: int, namespaces: Sequence[str]) -> tuple[Tally, Tally]:
    """This window's and the previous one's hand-offs and calls, from the media pods' counters."""
    selector = f'namespace=~"{"|".join(namespaces)}"' if namespaces else ""
    by_reason = "namespace, agent, backend, model, reason"
    by_calls = "namespace, agent, backend, model"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def query(promql: str) -> list[dict[str, Any]]:
            async with session.get(f"{url.rstrip('/')}/api/v1/query", params={"query": promql}) as response:
                body = await response.json()
            if body.get("status") != "success":
                raise RuntimeError(f"Prometheus at {url}: {body.get('error', body)}")
            return list(body["data"]["result"])

        tallies = []
        for offset in ("", f" offset {window_s}s"):
            tally = Tally()
            for row in await query(
                f"sum by ({by_reason}) (increase(voice_handoffs_total{{{selector}}}[{window_s}s]{offset}))"
            ):
                m = row["metric"]
                key = (
                    m.get("namespace", ""),
                    m.get("agent", ""),
                    m.get("backend", ""),
                    m.get("model", ""),
                    m.get("reason", ""),
                )
                tally.add_handoffs(key, float(row["value"][1]))
            for row in await query(
                f"sum by ({by_calls}) (increase(voice_calls_total{{{selector}}}[{window_s}s]{offset}))"
            ):
                m = row["metric"]
                tally.add_calls(
                    (m.get("namespace", ""), m.get("agent", ""), m.get("backend", ""), m.get("model", "")),
                    float(row["value"][1]),
                )
            tallies.append(tally)
    return tallies[0], tallies[1]


# --- the command ----------------------------------------------------------------------------


async def _report(options: Options) -> int:
    window_s = duration_seconds(options.since)
    now = time.time()
    payloads: list[dict[str, Any]] = []
    if options.namespaces or options.export or not options.prometheus_url:
        client = KubeClient.connect(connection_from_environment())
        try:
            payloads = await pod_payloads(client, options.namespaces, now - 2 * window_s, options.via)
        finally:
            await client.close()
    if options.prometheus_url:
        current, previous = await prometheus_tallies(options.prometheus_url, window_s, options.namespaces)
    else:
        current = tally_pods(payloads, now - window_s, now + 1)
        previous = tally_pods(payloads, now - 2 * window_s, now - window_s)
    rows = report_rows(current, previous)
    if options.as_json:
        print(json.dumps({"window": options.since, "rows": [r.to_json() for r in rows]}, indent=2))
    else:
        source = (
            f"Prometheus at {options.prometheus_url}"
            if options.prometheus_url
            else f"{len(payloads)} media pods"
        )
        print(
            f"hand-offs to humans over the last {options.since} (change against the {options.since} before; from {source})"
        )
        print(format_report(rows, options.since) if rows else "no calls in the window")
    if options.export is not None:
        count = export_records(payloads, now - window_s, options.export)
        print(f"exported {count} hand-off records to {options.export}", file=sys.stderr)
    return 0


def main(options: Options) -> int:
    try:
        return asyncio.run(_report(options))
    except (ValueError, LoginError, RuntimeError, ApiError, aiohttp.ClientError) as error:
        print(f"voiceop handoffs: {error}", file=sys.stderr)
        return 2
