"""Admission: the examples pass the CRD schemas and CEL rules; every rule and pattern refuses
bad input and names the field."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conftest import example_object
from test_crds import schema_of, walk
from voiceop.api import MODELS, InvalidObject, admission_for, crd, parse_object
from voiceop.api.admission import apply_defaults

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def set_field(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`set_field(o, "spec.regions[0].minReplicas", 9)`; value None deletes the field."""
    parts: list[str | int] = [name if name else int(index) for name, index in _PART.findall(path)]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    if value is None:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return obj


# (example kind, example name, field to set, value, field the error names, text in the error)
CEL_CASES = [
    (
        "VoiceAgent",
        "billing",
        "spec.regions[0].minReplicas",
        21,
        "spec.regions[0].minReplicas",
        "minReplicas must not be greater than maxReplicas",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.transport.rtp.portRange.end",
        20000,
        "spec.transport.rtp.portRange.start",
        "start must be lower than end",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.capacity.callsPerPod",
        0,
        "spec.capacity.callsPerPod",
        "callsPerPod must be at least 1",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.scaling.targetUtilization",
        1.2,
        "spec.scaling.targetUtilization",
        "targetUtilization must be in (0, 1]",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.scaling.targetUtilization",
        0,
        "spec.scaling.targetUtilization",
        "targetUtilization must be in (0, 1]",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.fallback.humanHandoff",
        {"phoneNumber": "+353215551234", "sipUri": "sip:q@x"},
        "spec.fallback.humanHandoff.sipUri",
        "set exactly one of sipUri and phoneNumber",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.fallback.humanHandoff",
        {},
        "spec.fallback.humanHandoff.sipUri",
        "set exactly one of sipUri and phoneNumber",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.env[0].valueFrom",
        {"fieldRef": {"fieldPath": "metadata.name"}},
        "spec.env[0].valueFrom",
        "set value or valueFrom, not both",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.env[0].name",
        "VOICEOP_REGION",
        "spec.env[0].name",
        "names starting with VOICEOP_ are reserved",
    ),
    (
        "VoiceAgent",
        "support",
        "spec.settings",
        {"prompt": "hi"},
        "spec.settingsFrom",
        "set settings or settingsFrom, not both",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.fallback.humanHandoff",
        None,
        "spec.fallback.humanHandoff",
        "fallback.when needs fallback.humanHandoff",
    ),
    (
        "AIBackend",
        "openai-realtime",
        "spec.endpoint",
        "https://api.openai.com/v1/realtime",
        "spec.endpoint",
        "a websocket backend needs a ws:// or wss:// endpoint",
    ),
    (
        "AIBackend",
        "self-hosted-pipeline",
        "spec.protocol",
        "http",
        "spec.endpoint",
        "an http backend needs an http:// or https:// endpoint",
    ),
    (
        "AIBackend",
        "openai-realtime",
        "spec.healthCheck.timeoutMs",
        15000,
        "spec.healthCheck.timeoutMs",
        "timeoutMs must be shorter than intervalSeconds",
    ),
    (
        "VoiceEndpoint",
        "billing-lines",
        "spec.routing.policy",
        "pinned",
        "spec.routing.regions",
        "policy pinned and weighted need regions",
    ),
    (
        "VoiceEndpoint",
        "support-web",
        "spec.routing.regions",
        [{"name": "us-east", "weight": 0}],
        "spec.routing.regions",
        "policy weighted needs at least one region with a weight above 0",
    ),
    (
        "VoiceEndpoint",
        "support-web",
        "spec.webrtc",
        None,
        "spec.phoneNumbers",
        "set at least one of phoneNumbers, sipUris and webrtc",
    ),
]

PATTERN_CASES = [
    ("Region", "eu-west", "spec.countries[0]", "ie", "spec.countries[0]", "should match"),
    (
        "VoiceAgent",
        "billing",
        "spec.fallback.handoffDigit",
        "00",
        "spec.fallback.handoffDigit",
        "should match",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.fallback.humanHandoff.phoneNumber",
        "0215551234",
        "spec.fallback.humanHandoff.phoneNumber",
        "should match",
    ),
    (
        "VoiceEndpoint",
        "billing-lines",
        "spec.phoneNumbers[0]",
        "+0-1555",
        "spec.phoneNumbers[0]",
        "should match",
    ),
    (
        "VoiceEndpoint",
        "billing-lines",
        "spec.sipUris[0]",
        "billing@voice.example.com",
        "spec.sipUris[0]",
        "should match",
    ),
    (
        "VoiceAgent",
        "support",
        "spec.fallback.humanHandoff.sipUri",
        "support-queue",
        "spec.fallback.humanHandoff.sipUri",
        "should match",
    ),
    ("AIBackend", "openai-realtime", "spec.endpoint", "api.openai.com", "spec.endpoint", "should match"),
    (
        "AIBackend",
        "openai-realtime",
        "spec.regionalEndpoints.eu-west",
        "eu.api.openai.com",
        "spec.regionalEndpoints.eu-west",
        "should match",
    ),
    (
        "AIBackend",
        "openai-realtime",
        "spec.healthCheck.url",
        "wss://status.openai.com",
        "spec.healthCheck.url",
        "should match",
    ),
    (
        "AIBackend",
        "openai-realtime",
        "spec.credentialsSecretRef.name",
        "Openai_Credentials",
        "spec.credentialsSecretRef.name",
        "should match",
    ),
    (
        "AIBackend",
        "openai-realtime",
        "spec.credentialsSecretRef.key",
        "api key",
        "spec.credentialsSecretRef.key",
        "should match",
    ),
    ("VoiceAgent", "billing", "spec.backends[0].name", "OpenAI", "spec.backends[0].name", "should match"),
    ("VoiceAgent", "billing", "spec.env[0].name", "1LOG", "spec.env[0].name", "should match"),
    (
        "VoiceAgent",
        "billing",
        "spec.resources.requests.cpu",
        "half",
        "spec.resources.requests.cpu",
        "should match",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.resources.limits.memory",
        "1 GB",
        "spec.resources.limits.memory",
        "should match",
    ),
    (
        "VoiceAgent",
        "support",
        "spec.settingsFrom.configMapRef.name",
        "Settings!",
        "spec.settingsFrom.configMapRef.name",
        "should match",
    ),
    (
        "VoiceAgent",
        "billing",
        "spec.scaling.metrics",
        {"source": "prometheus", "prometheusUrl": "prometheus:9090"},
        "spec.scaling.metrics.prometheusUrl",
        "should match",
    ),
    ("VoiceEndpoint", "billing-lines", "spec.agentRef.name", "Billing", "spec.agentRef.name", "should match"),
    ("VoiceEndpoint", "support-web", "spec.webrtc.path", "support", "spec.webrtc.path", "should match"),
]

# Beyond the schema: checks a well-kept library does better than a regular expression.
LIBRARY_CASES = [
    ("Region", "eu-west", "spec.countries[0]", "XX", "spec.countries[0]", "not an ISO 3166-1 alpha-2"),
    (
        "VoiceEndpoint",
        "billing-lines",
        "spec.phoneNumbers[0]",
        "+1202555014399",
        "spec.phoneNumbers[0]",
        "not a possible phone number",
    ),
]

OTHER_CASES = [
    ("VoiceAgent", "billing", "spec.imagePullPolicy", "Always", "spec.imagePullPolicy", "unknown field"),
    ("VoiceAgent", "billing", "spec.image", None, "spec.image", "Required value"),
    ("VoiceAgent", "billing", "spec.scaling.mode", "fast", "spec.scaling.mode", 'Unsupported value: "fast"'),
    ("VoiceAgent", "billing", "spec.regions[1].name", "eu-west", "spec.regions[1]", "Duplicate value"),
    ("Region", "eu-west", "spec.countries[1]", "IE", "spec.countries[1]", "Duplicate value"),
    ("VoiceAgent", "billing", "metadata.name", "b" * 64, "metadata.name", "too long"),
]


def refusal(kind: str, name: str, path: str, value: Any) -> InvalidObject:
    obj = set_field(example_object(kind, name), path, value)
    with pytest.raises(InvalidObject) as caught:
        parse_object(obj)
    return caught.value


@pytest.mark.parametrize(
    "kind,name,path,value,field,text",
    CEL_CASES + PATTERN_CASES + LIBRARY_CASES + OTHER_CASES,
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_invalid_object_is_refused_naming_the_field(
    kind: str, name: str, path: str, value: Any, field: str, text: str
) -> None:
    invalid = refusal(kind, name, path, value)
    assert invalid.ref.startswith(kind)
    assert [e for e in invalid.errors if e.path == field and text in e.message], invalid.errors


@pytest.mark.parametrize(
    "kind,name,path,value,field,text",
    CEL_CASES + PATTERN_CASES + OTHER_CASES,
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_the_schema_compiled_at_run_time_refuses_what_jsonschema_refuses(
    kind: str, name: str, path: str, value: Any, field: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admission with no check compiled ahead of time (the loopback API server's, from the CRDs
    applied to it) compiles the schema once a kind has seen a few dozen objects: it must never
    call an invalid object valid. (The four kinds' generated checks answer every other test.)"""
    from voiceop.api import admission
    from voiceop.api.generated import module_for

    monkeypatch.setattr(admission, "COMPILE_AFTER", 0)
    at_run_time = admission.Admission(module_for(kind).SCHEMA)
    _, errors = at_run_time.admit(set_field(example_object(kind, name), path, value))
    assert [e for e in errors if e.path == field and text in e.message], errors
    assert at_run_time._check is not None, "the compiled path answered"


def _crd_schemas() -> dict[str, dict[str, Any]]:
    return {kind.info.kind: schema_of(crd(kind)) for kind in MODELS}


def test_every_cel_rule_has_a_refusal_case() -> None:
    rules = {
        (kind, re.sub(r"\[\]", "", path.lstrip(".")) + rule.get("fieldPath", ""), rule["message"])
        for kind, schema in _crd_schemas().items()
        for path, node in walk(schema)
        for rule in node.get("x-kubernetes-validations", [])
    }
    covered = {
        (kind, field_, message)
        for kind, field_, message in rules
        for case_kind, _, _, _, field, text in CEL_CASES
        if case_kind == kind
        and re.sub(r"\[\d+\]", "", field) == field_
        and (text in message or message in text or _by_expression(text, message))
    }
    assert rules - covered == set()


def _by_expression(text: str, message: str) -> bool:
    """A messageExpression's output names the same fields as the rule's static message."""
    return message.split()[0] in text


def test_every_pattern_has_a_refusal_case() -> None:
    def generic(path: str) -> str:
        return re.sub(r"\[\d+\]", "[]", path)

    patterns = {
        (kind, generic(path.lstrip(".")).replace(".*", ""))
        for kind, schema in _crd_schemas().items()
        for path, node in walk(schema)
        if "pattern" in node and path.startswith(".spec")
    }
    map_entry = re.compile(r"\.(regionalEndpoints|requests|limits)\.[\w-]+$")
    covered = {(kind, generic(map_entry.sub(r".\1", field))) for kind, _, _, _, field, _ in PATTERN_CASES}
    assert patterns - covered == set()


@pytest.mark.parametrize("kind", ["Region", "AIBackend", "VoiceAgent", "VoiceEndpoint"])
def test_examples_pass_the_crd_schema_and_rules(examples: Any, kind: str) -> None:
    model = {k.info.kind: k for k in MODELS}[kind]
    from conftest import EXAMPLES
    from voiceop.inputs.yamlio import read_manifests

    documents, _ = read_manifests([str(EXAMPLES)])
    objects = [d.obj for d in documents if d.obj.get("kind") == kind]
    assert objects
    for obj in objects:
        _, errors = admission_for(model).admit(obj)
        assert errors == []


def test_defaults_come_from_the_schema() -> None:
    obj = example_object("VoiceAgent", "support")
    schema = schema_of(crd(MODELS[2]))
    defaulted = apply_defaults(obj, schema)
    assert defaulted["spec"]["scaling"]["targetUtilization"] == 0.7
    assert defaulted["spec"]["scaling"]["latencySLO"] == {"p95Ms": 800}
    assert defaulted["spec"]["transport"]["sip"] == {"port": 5060, "protocol": "UDP"}
    assert defaulted["spec"]["drain"] == {"maxCallDurationSeconds": 3600}
    agent = parse_object(example_object("VoiceAgent", "support"))
    assert agent.spec.scaling.scale_down_delay_seconds == 300


def test_all_errors_of_an_object_are_reported_together() -> None:
    obj = example_object("VoiceAgent", "billing")
    set_field(obj, "spec.regions[0].minReplicas", 99)
    set_field(obj, "spec.capacity.callsPerPod", 0)
    with pytest.raises(InvalidObject) as caught:
        parse_object(obj)
    assert {e.path for e in caught.value.errors} >= {
        "spec.regions[0].minReplicas",
        "spec.capacity.callsPerPod",
    }
    assert str(caught.value).startswith("VoiceAgent contact-center/billing: ")


def test_status_is_not_admitted_and_a_bad_one_is_dropped() -> None:
    obj = example_object("VoiceAgent", "billing")
    obj["status"] = {"replicas": "many"}
    assert parse_object(obj).status is None
    obj["status"] = {"replicas": 3, "activeBackend": "openai-realtime"}
    assert parse_object(obj).status.replicas == 3


def test_the_cached_cel_parser_reads_every_crd_rule_as_celpy_builds_it() -> None:
    """Admission hands celpy a Lark that caches its LALR analysis; the trees must be celpy's own."""
    from celpy import celparser

    from voiceop.api import all_crds

    rules = [
        rule["rule"]
        for definition in all_crds()
        for version in definition["spec"]["versions"]
        for node in _schemas(version["schema"]["openAPIV3Schema"])
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 5
    cached = celparser.CELParser.CEL_PARSER
    assert cached is not None and cached.options.cache, "admission did not build the cached parser"
    try:
        celparser.CELParser.CEL_PARSER = None
        celparser.CELParser()  # celpy's own, built from the grammar now
        built = celparser.CELParser.CEL_PARSER
    finally:
        celparser.CELParser.CEL_PARSER = cached
    for rule in rules:
        assert cached.parse(rule) == built.parse(rule), rule


def _schemas(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def test_a_rule_sees_only_what_it_reads_of_self_and_self_whole_otherwise() -> None:
    """Admission hands a rule only what it reads of `self`: the fields it names, and of a field
    it asks only `has()` of, that it is there (its cached result is then shared by objects that
    differ elsewhere); a rule that reads `self` whole or calls a method or macro on it gets all."""
    from voiceop.api.admission import _reads, _self_json

    assert _reads("self.minReplicas <= self.maxReplicas") == {"minReplicas": "value", "maxReplicas": "value"}
    assert _reads("!has(self.fallback) || has(self.fallback.humanHandoff)") == {
        "fallback": {"humanHandoff": "presence"}
    }
    assert _reads("has(self.a) && size(self.a.b) > 0 && has(self.a)") == {"a": {"b": "value"}}
    assert _reads("has(self.a.b) && self.a == 1") == {"a": "value"}
    assert _reads("!self.name.startsWith('VOICEOP_')") == {"name": "value"}
    assert _reads("self.items.all(x, x.size() < 3)") == {"items": "value"}
    for whole in (
        "size(self) > 0",
        "self.exists(k, k == 'a')",
        "self.all(k, k != '')",
        "self == oldSelf",
        "self['a']",
    ):
        assert _reads(whole) is None, whole
    value = {"minReplicas": 2, "maxReplicas": 9, "image": "x"}
    assert json.loads(_self_json(value, "self.minReplicas <= self.maxReplicas")) == {
        "minReplicas": 2,
        "maxReplicas": 9,
    }
    handoff = "has(self.sipUri) != has(self.phoneNumber)"
    assert _self_json({"phoneNumber": "+35315551234"}, handoff) == _self_json(
        {"phoneNumber": "+12025550143"}, handoff
    )
    assert _self_json({"phoneNumber": "+35315551234"}, handoff) != _self_json({"sipUri": "sip:a@b"}, handoff)
    assert json.loads(_self_json(value, "size(self) == 3")) == value
    # Presence stands in for the value because has() asks nothing else of it, empty or zero.
    from voiceop.api.admission import _evaluate

    for present in ([], {}, "", 0, False, "x"):
        assert bool(_evaluate("has(self.a)", json.dumps({"a": present}))), present
    assert not bool(_evaluate("has(self.a)", json.dumps({})))


@pytest.mark.parametrize("kind", ["Region", "AIBackend", "VoiceAgent", "VoiceEndpoint"])
def test_rules_judge_what_they_read_of_self_as_they_judge_self_whole(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every refusal case and example of a kind gets the same errors when each rule is handed
    only what it reads of `self` as when it is handed `self` whole."""
    from voiceop.api import admission
    from voiceop.api.generated import module_for

    cases = CEL_CASES + PATTERN_CASES + LIBRARY_CASES + OTHER_CASES
    objects = [
        set_field(example_object(k, name), path, value) for k, name, path, value, *_ in cases if k == kind
    ]
    objects += [example_object(kind, name) for k, name, *_ in cases if k == kind]
    assert len(objects) > 4

    def judged() -> list[list[Any]]:
        admission._evaluate_on.cache_clear()
        fresh = admission.Admission(module_for(kind).SCHEMA)
        return [fresh.admit({k: v for k, v in obj.items() if k != "status"})[1] for obj in objects]

    pruned = judged()
    monkeypatch.setattr(admission, "_reads", lambda expression: None)
    whole = judged()
    admission._evaluate_on.cache_clear()
    assert pruned == whole
    assert any(errors for errors in whole)
