"""Invalid objects generated from the CRD schemas: a valid example with one field made invalid.

For every field of a kind's `spec` the schema constrains, each constraint gives a value that
breaks it (a wrong type, one past a bound, a length or item count one too many, a string the
pattern refuses, a value outside the enum, an unknown field where none is allowed, a required
field left out), and references that resolve to nothing (a Region, an AIBackend, a
VoiceAgent) and numbers no country has are named too: those pass the schema and are the
operator's to refuse. The field's
path is kept with the object, so a refusal can be checked for naming it.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterator
from typing import Any

from voiceop.api import all_crds

Mutation = tuple[str, Any]  # (what the field becomes: "set"/"delete"/"add", value)


def _schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for crd in all_crds():
        version = crd["spec"]["versions"][0]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return out


def _violations(schema: dict[str, Any], current: Any) -> list[Mutation]:
    """Values that break one constraint of `schema` each."""
    kind = schema.get("type")
    out: list[Mutation] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    wrong_type = {
        "integer": "seven",
        "number": "fast",
        "string": 12345,
        "boolean": "yes",
        "array": "one",
        "object": "x",
    }
    if kind in wrong_type:
        out.append(("set", wrong_type[kind]))
    if "minimum" in schema:
        out.append(("set", schema["minimum"] - 1))
    if "maximum" in schema:
        out.append(("set", schema["maximum"] + 1))
    if "maxLength" in schema:
        out.append(("set", "a" * (schema["maxLength"] + 1)))
    if schema.get("minLength"):
        out.append(("set", ""))
    if "pattern" in schema:
        for candidate in ("!!not valid!!", "UPPER_and_lower!", "-"):
            if not re.search(schema["pattern"], candidate):
                out.append(("set", candidate))
                break
    if "enum" in schema:
        out.append(("set", "not-one-of-them"))
    if kind == "array" and "maxItems" in schema and isinstance(current, list) and current:
        out.append(("set", [copy.deepcopy(current[0]) for _ in range(schema["maxItems"] + 1)]))
    if kind == "object" and schema.get("additionalProperties") is False and "properties" in schema:
        out.append(("add", "unknownField"))
    return out


def _fields(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(path, schema, current value) of every field of `value` the schema describes."""
    yield path, schema, value
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                yield from _fields(sub, value[name], f"{path}.{name}")
    elif isinstance(value, list) and value and "items" in schema:
        yield from _fields(schema["items"], value[0], f"{path}[0]")


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _apply(obj: dict[str, Any], path: str, mutation: Mutation) -> None:
    parts: list[str | int] = [n if n else int(i) for n, i in _PART.findall(path)]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    action, value = mutation
    if action == "add":
        node[parts[-1]][value] = "surprise"
    elif action == "delete":
        del node[parts[-1]]
    else:
        node[parts[-1]] = value


# Schema-valid, and wrong all the same: what only the operator can refuse (Ready=False).
NO_NUMBER = "+1202555014399"  # matches the E.164 pattern; no such number exists (libphonenumber)
REFERENCES = {
    "VoiceAgent": [
        ("spec.regions[0].name", "no-such-region"),
        ("spec.backends[0].name", "no-such-backend"),
        ("spec.fallback.humanHandoff.phoneNumber", NO_NUMBER),
    ],
    "VoiceEndpoint": [("spec.agentRef.name", "no-such-agent"), ("spec.phoneNumbers[0]", NO_NUMBER)],
}


def catalogue(bases: dict[str, dict[str, Any]]) -> list[tuple[str, str, Mutation]]:
    """(kind, path, mutation): every invalid variant the schemas and references give."""
    schemas = _schemas()
    out: list[tuple[str, str, Mutation]] = []
    for kind, base in bases.items():
        schema = schemas[kind]
        for path, sub, current in _fields(schema, base["spec"], "spec"):
            for mutation in _violations(sub, current):
                shown = f"{path}.{mutation[1]}" if mutation[0] == "add" else path
                out.append((kind, shown if mutation[0] == "add" else path, mutation))
            for required in sub.get("required") or []:
                if isinstance(current, dict) and required in current:
                    out.append((kind, f"{path}.{required}", ("delete", None)))
        out += [(kind, path, ("set", value)) for path, value in REFERENCES.get(kind, [])]
    return out


def mutations(world: Any, count: int, seed: int = 0) -> Iterator[tuple[dict[str, Any], str]]:
    """`count` invalid objects, cycling through the catalogue in a seeded order."""
    bases = {
        "VoiceAgent": world.new_agent(),
        "AIBackend": world.example("AIBackend", "openai-realtime"),
        "VoiceEndpoint": world.example("VoiceEndpoint", "billing-lines"),
        "Region": world.example("Region", "eu-west"),
    }
    world.agents.clear()
    for kind, base in bases.items():
        if kind != "Region":
            base["metadata"]["namespace"] = "chaos"
        if kind == "AIBackend":
            base["spec"].pop("healthCheck", None)
            base["spec"]["credentialsSecretRef"] = {"name": "ai-credentials", "key": "api-key"}
        if kind == "VoiceEndpoint":
            base["spec"]["agentRef"] = {"name": bases["VoiceAgent"]["metadata"]["name"]}
    entries = catalogue(bases)
    random.Random(seed).shuffle(entries)
    for index in range(count):
        kind, path, mutation = entries[index % len(entries)]
        obj = copy.deepcopy(bases[kind])
        obj["metadata"]["name"] = f"invalid-{kind.lower()}-{index:04d}"
        target = path.rsplit(".", 1)[0] if mutation[0] == "add" else path
        _apply(obj, target, mutation)
        spec = obj["spec"]
        if kind == "VoiceEndpoint" and isinstance(spec, dict):  # a number of its own (unique per namespace)
            numbers = spec.get("phoneNumbers")
            if isinstance(numbers, list) and numbers == bases[kind]["spec"]["phoneNumbers"]:
                spec["phoneNumbers"] = [f"+3531777{index:04d}"]
        yield obj, path
