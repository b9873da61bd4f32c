"""The SIP edge's files, rendered offline: tables, fill order, weights, inputs and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES, example_object, require_program
from voiceop.api import parse_object
from voiceop.inputs.loading import load_inventory
from voiceop.render import render_all
from voiceop.render.edge import callers
from voiceop.render.edge.config import (
    EdgeSettings,
    MediaEndpoint,
    build_tables,
    edge_files,
    routes_of_configmap,
)
from voiceop.render.edge.endpoints import from_endpointslice, from_pod, media_endpoints

NS = "contact-center"


def endpointslice(service: str, *endpoints: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service}-abcde",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": list(endpoints),
    }


def ready(address: str, pod: str, **conditions: Any) -> dict[str, Any]:
    return {
        "addresses": [address],
        "conditions": {"ready": True, **conditions},
        "targetRef": {"kind": "Pod", "name": pod},
    }


def routes_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return dict(
        routes_of_configmap(o)
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "voiceop-routes"
    )


def rows(text: str) -> dict[str, str]:
    """db_text rows as key -> value (the header line dropped; no escapes in these keys)."""
    return {line.split(":")[0]: line.split(":")[3] for line in text.splitlines()[1:]}


@pytest.fixture
def tables(rendered_examples: list[dict[str, Any]]) -> Any:
    endpoints = [
        MediaEndpoint(NS, "billing-eu-west", "billing-eu-west-b", "127.0.1.3"),
        MediaEndpoint(NS, "billing-eu-west", "billing-eu-west-a", "127.0.1.2"),
        MediaEndpoint(NS, "billing-us-east", "billing-us-east-a", "127.0.2.2"),
        MediaEndpoint(NS, "billing-us-east", "billing-us-east-z", "127.0.2.9", ready=False),
    ]
    return build_tables(routes_of(rendered_examples), endpoints)


def set_of(tables: Any, service: str) -> int:
    return int(tables.sets[(NS, service)].set_id)


def test_one_set_per_agent_and_region_with_only_ready_pods_in_fill_order(tables: Any) -> None:
    from voiceop.render.edge.config import dispatcher_list

    assert len(tables.sets) == 5  # billing x 3 regions, support x 2
    eu, us = set_of(tables, "billing-eu-west"), set_of(tables, "billing-us-east")
    lines = [line for line in dispatcher_list(tables).splitlines() if not line.startswith("#")]
    assert lines == [
        f"{eu} sip:127.0.1.2:5060;transport=udp 0 2 duid=billing-eu-west-a",  # first by name: highest priority
        f"{eu} sip:127.0.1.3:5060;transport=udp 0 1 duid=billing-eu-west-b",
        f"{us} sip:127.0.2.2:5060;transport=udp 0 1 duid=billing-us-east-a",  # z is not Ready
    ]


def test_called_numbers_and_sip_uris_name_the_endpoint(tables: Any) -> None:
    assert tables.numbers["+35315551234"] == f"{NS}/billing-lines"
    assert tables.numbers["35315551234"] == f"{NS}/billing-lines"  # carriers that drop the '+'
    assert tables.numbers["billing@voice.example.com"] == f"{NS}/billing-lines"


def test_each_country_gets_its_regions_in_route_order(tables: Any) -> None:
    eu, us, ap = (set_of(tables, f"billing-{r}") for r in ("eu-west", "us-east", "ap-southeast"))
    key = f"{NS}/billing-lines"
    assert [tables.routes[f"{key}|GB|0|{i}"] for i in range(3)] == [eu, us, ap]
    assert [tables.routes[f"{key}|US|0|{i}"] for i in range(3)] == [us, eu, ap]
    assert tables.routes[f"{key}|GB|w|0"] == 100 and f"{key}|GB|w|1" not in tables.routes
    assert f"{key}|*|0|0" in tables.routes  # callers from anywhere else


def test_weighted_routes_start_by_share_and_fall_over_in_order(tables: Any) -> None:
    key = f"{NS}/support-web"
    us, eu = set_of(tables, "support-us-east"), set_of(tables, "support-eu-west")
    assert (tables.routes[f"{key}|*|w|0"], tables.routes[f"{key}|*|w|1"]) == (75, 100)  # weights 3:1
    assert [tables.routes[f"{key}|*|0|{i}"] for i in range(2)] == [us, eu]
    assert [tables.routes[f"{key}|*|1|{i}"] for i in range(2)] == [eu, us]


def test_a_region_in_maintenance_is_absent(examples: Any) -> None:
    region = example_object("Region", "eu-west")
    region["spec"]["maintenance"] = True
    loaded = load_inventory([str(EXAMPLES)])
    loaded.inventory.add(parse_object(region))
    tables = build_tables(routes_of(render_all(loaded.inventory)), [])
    eu = set_of(tables, "billing-eu-west") if (NS, "billing-eu-west") in tables.sets else None
    assert eu is None or eu not in tables.routes.values()
    # GB's home is closed: its callers take the catch-all route, which starts in us-east.
    assert f"{NS}/billing-lines|GB|0|0" not in tables.routes
    assert tables.routes[f"{NS}/billing-lines|*|0|0"] == set_of(tables, "billing-us-east")


def test_db_text_escapes_colons_in_keys() -> None:
    from voiceop.render.edge.config import _htable

    assert _htable({"agent@voice.example.com:5061": "ns/e"}).splitlines()[1] == (
        "agent@voice.example.com\\:5061:0:0:ns/e:0"
    )


def test_endpointslice_conditions_follow_the_api_contract() -> None:
    found = from_endpointslice(
        endpointslice(
            "billing-eu-west",
            {"addresses": ["127.0.1.2"], "targetRef": {"name": "a"}},  # ready unset: ready
            ready("127.0.1.3", "b", terminating=True),  # terminating: never ready
            {"addresses": ["127.0.1.4"], "conditions": {"ready": False}, "targetRef": {"name": "c"}},
        )
    )
    assert [(e.pod, e.ready) for e in found] == [("a", True), ("b", False), ("c", False)]


def test_pods_give_the_same_endpoints_as_their_endpointslice() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {
            "name": "billing-eu-west-a",
            "namespace": NS,
            "labels": {"voiceop.dev/agent": "billing", "voiceop.dev/region": "eu-west"},
        },
        "status": {"podIP": "127.0.1.2", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    slice_ = endpointslice("billing-eu-west", ready("127.0.1.2", "billing-eu-west-a"))
    assert from_pod(pod) == from_endpointslice(slice_) == media_endpoints([pod, slice_])


def test_caller_countries_by_longest_prefix_including_shared_calling_codes() -> None:
    country = callers.country_of_caller
    assert [country(n) for n in ("+12125550123", "+14165550123", "+18762345678")] == ["US", "CA", "JM"]
    assert [country(n) for n in ("+442071234567", "+441624234567", "+35315551234")] == ["GB", "IM", "IE"]
    assert [country(n) for n in ("+77012345678", "+74951234567", "+6565550123")] == ["KZ", "RU", "SG"]
    assert country("+999") is None


def test_the_shipped_caller_table_is_what_phonenumbers_gives_today() -> None:
    """Derived again from the installed phonenumbers: a new release that moves an area code fails here."""
    assert callers.derive_caller_prefixes() == callers.caller_prefixes()


def write(path: Path, *objects: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def edge_render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voiceop", "edge", "render", *args], capture_output=True, text=True, timeout=60
    )


def test_edge_render_writes_kamailio_files(tmp_path: Path) -> None:
    slices = write(
        tmp_path / "slices.yaml", endpointslice("billing-eu-west", ready("127.0.1.2", "billing-eu-west-a"))
    )
    result = edge_render(
        "-f", str(EXAMPLES), "-f", slices, "--listen", "udp:127.0.0.1:5060", "-o", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    written = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )
    assert written == [
        "dispatcher.list",
        "kamailio.cfg",
        "tables/handoffs",
        "tables/numbers",
        "tables/prefixes",
        "tables/routes",
        "tables/version",
    ]
    assert "listen=udp:127.0.0.1:5060" in (tmp_path / "out" / "kamailio.cfg").read_text()
    assert "sip:127.0.1.2:5060" in (tmp_path / "out" / "dispatcher.list").read_text()


def test_kamailio_accepts_the_rendered_config(
    tmp_path: Path, rendered_examples: list[dict[str, Any]]
) -> None:
    kamailio = require_program("kamailio", "apt-get install -y kamailio")
    settings = EdgeSettings(config_dir=str(tmp_path), listens=("udp:127.0.0.1:5060",))
    from voiceop.inputs.files import write_files

    write_files(tmp_path, edge_files(settings, routes_of(rendered_examples), []))
    check = subprocess.run(
        [kamailio, "-c", "-f", str(tmp_path / "kamailio.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_bad_endpointslice_names_file_object_and_field(tmp_path: Path) -> None:
    slices = write(
        tmp_path / "slices.yaml", endpointslice("billing-eu-west", ready("not-an-ip", "a"), name="bad")
    )
    result = edge_render("-f", str(EXAMPLES), "-f", slices, "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert (
        f"{slices}: EndpointSlice {NS}/bad: endpoints[0].addresses[0]: 'not-an-ip' is not an IP address"
        in result.stderr
    )
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_bad_manifest_exits_2_like_render(tmp_path: Path) -> None:
    agent = example_object("VoiceAgent", "billing")
    agent["spec"]["capacity"]["callsPerPod"] = 0
    bad = write(tmp_path / "agent.yaml", agent)
    result = edge_render("-f", bad, "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "callsPerPod" in result.stderr and bad in result.stderr


def test_hand_off_targets_become_the_edges_only_relay_destinations() -> None:
    import pytest

    from voiceop.render.edge.config import EdgeInputError, handoff_rows

    where = "ConfigMap cc/voiceop-routes: data.routes.json: endpoints[0]"
    assert handoff_rows({"sipUri": "sip:queue@pbx.example.com"}, None, where) == {
        "queue@pbx.example.com": "sip:pbx.example.com:5060",
        "queue@pbx.example.com:5060": "sip:pbx.example.com:5060",
    }
    assert handoff_rows({"sipUri": "sip:humans@127.0.0.9:5099"}, None, where) == {
        "humans@127.0.0.9:5099": "sip:127.0.0.9:5099"
    }
    assert handoff_rows({"phoneNumber": "+353215551234"}, "sip:gw:5060", where) == {
        "+353215551234": "sip:gw:5060",
        "353215551234": "sip:gw:5060",
    }
    assert (
        handoff_rows({"phoneNumber": "+353215551234"}, None, where)["+353215551234"] == ""
    )  # 503 at the edge
    assert handoff_rows(None, None, where) == {}
    with pytest.raises(EdgeInputError, match=r"endpoints\[0\]: handoff.sipUri 'sip:pbx.example.com'"):
        handoff_rows({"sipUri": "sip:pbx.example.com"}, None, where)


def test_the_routes_table_carries_each_endpoints_hand_off(rendered_examples: list[dict[str, Any]]) -> None:
    routes = routes_of(rendered_examples)["contact-center"]
    handoffs = {e["endpoint"]: e["handoff"] for e in routes["endpoints"]}
    assert handoffs == {
        "billing-lines": {"phoneNumber": "+353215551234"},
        "support-web": {"sipUri": "sip:support-queue@pbx.example.com"},
    }
