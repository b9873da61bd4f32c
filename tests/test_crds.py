"""The CRDs: generated from the models, kept in crds/, valid and complete for kubectl users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml

from conftest import KUBERNETES_VERSIONS, ROOT
from voiceop.api import MODELS, crd
from voiceop.cli import crd_file_name, main
from voiceop.inputs.yamlio import dump

CRDS = [crd(kind) for kind in MODELS]


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def schema_of(definition: dict[str, Any]) -> dict[str, Any]:
    return definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crds_folder_matches_generated_output(tmp_path: Path) -> None:
    assert main(["crds", "-o", str(tmp_path)]) == 0
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    committed = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert committed == generated, "crds/ is stale: run `voiceop crds -o crds/` and commit"


@pytest.mark.parametrize("kind", MODELS, ids=lambda kind: kind.info.kind)
def test_generated_admission_modules_are_current(kind: Any) -> None:
    """Admission reads each kind's schema and check from `voiceop/api/generated/`."""
    from voiceop.api import codegen

    assert codegen.stale_reason(kind) is None, "run `python -m voiceop.api.codegen` and commit"


def test_a_stale_generated_module_is_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Either input of a generated module changing makes it stale: the model's schema, or the
    strict schema admission compiles from it."""
    from voiceop.api import admission, codegen

    agent = MODELS[2]
    changed = {**codegen.openapi_schema(agent), "description": "edited"}
    with monkeypatch.context() as patch:
        patch.setattr(codegen, "openapi_schema", lambda kind: changed)
        assert "a model changed" in str(codegen.stale_reason(agent))
    strict = admission._strict
    monkeypatch.setattr(
        admission, "_strict", lambda schema, root=True: {**strict(schema), "minProperties": 1}
    )
    assert "admission changed" in str(codegen.stale_reason(agent))


@pytest.mark.parametrize("definition", CRDS, ids=lambda c: c["metadata"]["name"])
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_crd_is_a_valid_customresourcedefinition(definition: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(definition, version, strict=True)


@pytest.mark.parametrize("definition", CRDS, ids=lambda c: c["metadata"]["name"])
def test_every_field_has_a_description(definition: dict[str, Any]) -> None:
    schema = schema_of(definition)
    missing = [
        path
        for top in ("spec", "status")
        for path, node in walk(schema["properties"][top], top)
        if "description" not in node and not path.endswith(("[]", ".*"))
    ]
    assert missing == []


@pytest.mark.parametrize("definition", CRDS, ids=lambda c: c["metadata"]["name"])
def test_schema_is_structural_and_bounded_for_cel(definition: dict[str, Any]) -> None:
    problems = []
    properties = schema_of(definition)["properties"]
    for path, node in [*walk(properties["spec"], "spec"), *walk(properties["status"], "status")]:
        if "$ref" in node or "title" in node:
            problems.append(f"{path}: $ref or title left in")
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        if not typed and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        free_string = node.get("type") == "string" and "enum" not in node and "format" not in node
        if free_string and "maxLength" not in node:
            problems.append(f"{path}: string without maxLength")
        if node.get("type") == "array" and "maxItems" not in node:
            problems.append(f"{path}: array without maxItems")
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            problems.append(f"{path}: map without maxProperties")
    assert problems == []


@pytest.mark.parametrize("definition", CRDS, ids=lambda c: c["metadata"]["name"])
def test_every_cel_rule_compiles(definition: dict[str, Any]) -> None:
    environment = celpy.Environment()
    rules = [r for _, node in walk(schema_of(definition)) for r in node.get("x-kubernetes-validations", [])]
    for rule in rules:
        environment.compile(rule["rule"])
        if "messageExpression" in rule:
            environment.compile(rule["messageExpression"])


def test_kubectl_facing_metadata() -> None:
    by_kind = {c["spec"]["names"]["kind"]: c for c in CRDS}
    assert {k: c["spec"]["names"]["shortNames"] for k, c in by_kind.items()} == {
        "Region": ["rgn"],
        "AIBackend": ["aib"],
        "VoiceAgent": ["va"],
        "VoiceEndpoint": ["vep"],
    }
    assert by_kind["Region"]["spec"]["scope"] == "Cluster"
    for definition in CRDS:
        version = definition["spec"]["versions"][0]
        assert definition["spec"]["group"] == "voiceop.dev" and version["name"] == "v1alpha1"
        assert definition["spec"]["names"]["categories"] == ["voiceop"]
        assert version["subresources"]["status"] == {}
        columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
        assert "Age" in columns
        status = schema_of(definition)["properties"]["status"]["properties"]
        assert "observedGeneration" in status
        conditions = status["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert set(conditions["items"]["required"]) == {"type", "status", "reason", "lastTransitionTime"}
    scale = by_kind["VoiceAgent"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    ready = by_kind["VoiceAgent"]["spec"]["versions"][0]["additionalPrinterColumns"]
    reason = [c for c in ready if c["name"] == "Reason"][0]
    assert reason["priority"] == 1 and "Ready" in reason["jsonPath"]


def test_crd_files_are_one_per_kind_and_parse_back() -> None:
    for definition in CRDS:
        text = (ROOT / "crds" / crd_file_name(definition)).read_text()
        assert yaml.safe_load(text) == definition
        assert text == dump(definition)
