"""What Kamailio needs, from the routes table and the media pods that are Ready: pure.

Inputs are the `voiceop-routes` table of each namespace (routes.json, as the operator
writes it) and the media endpoints (from EndpointSlices or Pods, see `endpoints.py`).
Outputs are files, by name relative to the edge's config directory:

- `dispatcher.list`: one set per agent x region (a media Service), its entries the Ready
  pods' SIP addresses. Pods are tried in fill order: by pod name, highest priority first,
  so calls pack onto the first pods up to callsPerPod (a full pod answers 486 and the edge
  moves on) and the last pods stay the emptiest, which is the builtin scaler's drain order
  (fewest calls first). Least-connections would spread calls and leave no pod empty.
- `tables/numbers`: called number (E.164, with and without '+') or `user@host` -> endpoint;
- `tables/prefixes`: E.164 prefix -> caller country (callers.py);
- `tables/routes`: `endpoint|country|start|i` -> the i-th dispatcher set to try, and
  `endpoint|country|w|start` -> cumulative percentage for weighted routes;
- `tables/handoffs`: where media pods may hand callers to (the agents' `fallback.humanHandoff`):
  `user@host[:port]` of a SIP URI, or an E.164 number -> the next hop (`sip:host:port`, or the
  edge's hand-off gateway for numbers; empty: none configured). The edge relays a redirect
  (302) or a transferred call (after a REFER) only to these: it is not an open relay.
The config file itself (`kamailio.cfg`) depends only on the settings.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from voiceop.render.edge.callers import caller_prefixes
from voiceop.render.templates import template_environment

DISPATCHER_LIST = "dispatcher.list"
TABLES = "tables"
ANY_COUNTRY = "*"

_ENV = template_environment("voiceop.render.edge")
# sip:media-a-eu.ns.svc:5060;transport=udp (render/routes.py's media_targets)
_TARGET = re.compile(
    r"^(?P<scheme>sips?):(?P<service>[a-z0-9-]+)\.(?P<namespace>[a-z0-9-]+)\.svc:(?P<port>\d+)"
    r";transport=(?P<transport>udp|tcp)$"
)


class EdgeInputError(ValueError):
    """A routes table the edge cannot use; the message names the object and field."""


@dataclass(frozen=True, order=True)
class MediaEndpoint:
    """One pod behind a media Service, as the EndpointSlice controller would publish it."""

    namespace: str
    service: str
    pod: str
    address: str
    ready: bool = True


@dataclass(frozen=True)
class EdgeSettings:
    config_dir: str
    listens: tuple[str, ...] = ("udp:0.0.0.0:5060",)
    children: int = 4
    log_level: int = 2
    response_timeout_ms: int = 2000
    answer_timeout_ms: int = 30000
    ping_interval_s: int = 10
    # Next hop for hand-offs to phone numbers (a PSTN gateway or SBC), e.g. sip:gw.example.com:5060.
    handoff_gateway: str | None = None

    @property
    def control_socket(self) -> str:
        return str(PurePosixPath(self.config_dir) / "kamailio-ctl.sock")


@dataclass(frozen=True)
class MediaSet:
    set_id: int
    namespace: str
    service: str
    scheme: str
    port: int
    transport: str


@dataclass
class EdgeTables:
    """The edge's view: dispatcher sets and the three lookup tables, before serialising."""

    sets: dict[tuple[str, str], MediaSet] = field(default_factory=dict)
    members: dict[int, list[MediaEndpoint]] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    handoffs: dict[str, str] = field(default_factory=dict)


def stable_set_id(key: tuple[str, str], taken: set[int]) -> int:
    """A dispatcher set id from the Service's name alone, so that it never changes when other
    sets come or go: the dispatcher list and the routes table are reloaded one after the
    other, and an id that moved would send calls to another Service in between."""
    set_id = zlib.crc32(f"{key[0]}/{key[1]}".encode()) % 2_000_000_000 + 1
    while set_id in taken:  # a collision: the next free id (the sorted order keeps it stable)
        set_id = set_id % 2_000_000_000 + 1
    return set_id


def parse_target(target: str, where: str) -> tuple[str, str, str, int, str]:
    match = _TARGET.match(target)
    if match is None:
        raise EdgeInputError(f"{where}: target {target!r} is not a voiceop media Service URI")
    return (
        match["scheme"],
        match["namespace"],
        match["service"],
        int(match["port"]),
        match["transport"],
    )


def _routes_entries(namespace: str, table: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = table.get("endpoints")
    if not isinstance(entries, list):
        raise EdgeInputError(f"ConfigMap {namespace}/voiceop-routes: data.routes.json: no endpoints list")
    return entries


_SIP_URI = re.compile(r"^sips?:(?:(?P<user>[^@;?]+)@)?(?P<host>\[[^\]]+\]|[^:;?>]+)(?::(?P<port>\d+))?")


def handoff_rows(handoff: Mapping[str, str] | None, gateway: str | None, where: str) -> dict[str, str]:
    """The `handoffs` rows of one endpoint's hand-off target (see the module's docstring)."""
    if not handoff:
        return {}
    if handoff.get("phoneNumber"):
        number = handoff["phoneNumber"]
        return {number: gateway or "", number.lstrip("+"): gateway or ""}
    match = _SIP_URI.match(handoff.get("sipUri", ""))
    if match is None or not match["user"]:
        raise EdgeInputError(f"{where}: handoff.sipUri {handoff.get('sipUri')!r} is not sip:user@host[:port]")
    user, host, port = match["user"], match["host"], match["port"]
    hop = f"sip:{host}:{port or 5060}"
    rows = {f"{user}@{host}:{port or 5060}": hop}
    if port is None:
        rows[f"{user}@{host}"] = hop
    return rows


def build_tables(
    routes_by_namespace: Mapping[str, Mapping[str, Any]],
    endpoints: Iterable[MediaEndpoint],
    handoff_gateway: str | None = None,
) -> EdgeTables:
    """One set per media Service named by any route, with a stable id (stable_set_id)."""
    tables = EdgeTables()
    targets: dict[tuple[str, str], tuple[str, int, str]] = {}
    for namespace in sorted(routes_by_namespace):
        for i, entry in enumerate(_routes_entries(namespace, routes_by_namespace[namespace])):
            for j, route in enumerate(entry.get("routes", [])):
                for k, region in enumerate(route.get("regions", [])):
                    where = (
                        f"ConfigMap {namespace}/voiceop-routes: data.routes.json: "
                        f"endpoints[{i}].routes[{j}].regions[{k}]"
                    )
                    scheme, ns, service, port, transport = parse_target(str(region.get("target")), where)
                    targets[(ns, service)] = (scheme, port, transport)
    taken: set[int] = set()
    for key, (scheme, port, transport) in sorted(targets.items()):
        set_id = stable_set_id(key, taken)
        taken.add(set_id)
        tables.sets[key] = MediaSet(set_id, key[0], key[1], scheme, port, transport)
        tables.members[set_id] = []
    for endpoint in sorted(endpoints):
        media_set = tables.sets.get((endpoint.namespace, endpoint.service))
        if media_set is not None and endpoint.ready:
            tables.members[media_set.set_id].append(endpoint)

    for namespace in sorted(routes_by_namespace):
        for i, entry in enumerate(_routes_entries(namespace, routes_by_namespace[namespace])):
            endpoint_key = f"{namespace}/{entry['endpoint']}"
            where = f"ConfigMap {namespace}/voiceop-routes: data.routes.json: endpoints[{i}]"
            tables.handoffs.update(handoff_rows(entry.get("handoff"), handoff_gateway, where))
            for number in entry.get("phoneNumbers", []):
                tables.numbers[number] = endpoint_key
                tables.numbers[number.lstrip("+")] = endpoint_key
            for uri in entry.get("sipUris", []):
                tables.numbers[uri.split(":", 1)[1] if ":" in uri else uri] = endpoint_key
            for route in entry.get("routes", []):
                _add_route(tables, endpoint_key, route)
    return tables


def _add_route(tables: EdgeTables, endpoint_key: str, route: Mapping[str, Any]) -> None:
    country = route.get("match", {}).get("callerCountry", ANY_COUNTRY)
    regions = route.get("regions", [])
    set_ids = [tables.sets[parse_target(r["target"], endpoint_key)[1:3]].set_id for r in regions]
    weights = [int(r.get("weight", 0)) for r in regions]
    starts = [i for i, w in enumerate(weights) if w > 0] or [0]
    cumulative = 0
    for start, first in enumerate(starts):
        cumulative += weights[first]
        order = set_ids[first:] + set_ids[:first]
        for i, set_id in enumerate(order):
            tables.routes[f"{endpoint_key}|{country}|{start}|{i}"] = set_id
        tables.routes[f"{endpoint_key}|{country}|w|{start}"] = cumulative if start < len(starts) - 1 else 100


def _db_text(value: str) -> str:
    """db_text escapes: ':' separates columns and '\\' escapes."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")


def _htable(rows: Mapping[str, str | int]) -> str:
    lines = ["key_name(str) key_type(int) value_type(int) key_value(str) expires(int)"]
    for key in sorted(rows):
        value = rows[key]
        value_type = 1 if isinstance(value, int) else 0
        lines.append(f"{_db_text(key)}:0:{value_type}:{_db_text(str(value))}:0")
    return "\n".join(lines) + "\n"


def dispatcher_list(tables: EdgeTables) -> str:
    lines = ["# setid destination flags priority attrs  (voiceop: one set per agent x region)"]
    for media_set in sorted(tables.sets.values(), key=lambda s: (s.namespace, s.service)):
        members = tables.members[media_set.set_id]
        lines.append(
            f"# set {media_set.set_id}: {media_set.namespace}/{media_set.service} ({len(members)} ready)"
        )
        for rank, endpoint in enumerate(members):
            uri = f"{media_set.scheme}:{endpoint.address}:{media_set.port};transport={media_set.transport}"
            priority = len(members) - rank  # fill order: the first pod by name has the highest
            lines.append(f"{media_set.set_id} {uri} 0 {priority} duid={endpoint.pod}")
    return "\n".join(lines) + "\n"


def table_files(tables: EdgeTables) -> dict[str, str]:
    """Every file that changes with routes or pods: these are what a sync rewrites."""
    return {
        DISPATCHER_LIST: dispatcher_list(tables),
        f"{TABLES}/numbers": _htable(tables.numbers),
        f"{TABLES}/prefixes": _htable(caller_prefixes()),
        f"{TABLES}/routes": _htable(dict(tables.routes)),
        f"{TABLES}/handoffs": _htable(tables.handoffs),
        f"{TABLES}/version": (
            "table_name(str) table_version(int)\nnumbers:2\nprefixes:2\nroutes:2\nhandoffs:2\n"
        ),
    }


def kamailio_cfg(settings: EdgeSettings) -> str:
    directory = PurePosixPath(settings.config_dir)
    return _ENV.get_template("kamailio.cfg.j2").render(
        **dataclasses.asdict(settings),
        control_socket=settings.control_socket,
        tables_dir=str(directory / TABLES),
        dispatcher_list=str(directory / DISPATCHER_LIST),
    )


def edge_files(
    settings: EdgeSettings,
    routes_by_namespace: Mapping[str, Mapping[str, Any]],
    endpoints: Sequence[MediaEndpoint],
) -> dict[str, str]:
    files = table_files(build_tables(routes_by_namespace, endpoints, settings.handoff_gateway))
    files["kamailio.cfg"] = kamailio_cfg(settings)
    return files


def routes_of_configmap(configmap: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(namespace, routes.json) of a `voiceop-routes` ConfigMap; EdgeInputError when unreadable."""
    meta = configmap.get("metadata", {})
    namespace = meta.get("namespace", "default")
    text = (configmap.get("data") or {}).get("routes.json")
    where = f"ConfigMap {namespace}/{meta.get('name')}: data.routes.json"
    if not isinstance(text, str):
        raise EdgeInputError(f"{where}: missing")
    try:
        table = json.loads(text)
    except ValueError as error:
        raise EdgeInputError(f"{where}: not JSON: {error}") from None
    if not isinstance(table, dict):
        raise EdgeInputError(f"{where}: not an object")
    return namespace, table
