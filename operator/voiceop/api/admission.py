"""Admission of voiceop objects the way the API server does it, from the generated CRD schemas.

Same order as kube-apiserver: structural defaulting, then OpenAPI schema validation (with
unknown fields refused, as `kubectl apply --validate=strict` does), then list-type uniqueness,
then the CEL rules (`x-kubernetes-validations`). `voiceop render` and the operator run every
object through here before trusting it, so an object that a cluster would reject never
reaches a template, and the error names the same field the API server would.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import celpy

from voiceop.api.crd import JsonSchema

if TYPE_CHECKING:
    import jsonschema


def _cel_environment() -> celpy.Environment:
    """celpy's environment, its LALR parser built once per machine rather than once per process.

    celpy builds the parser from its grammar at every start (a quarter of a second, half the
    time of `voiceop render`). lark caches that analysis in a file keyed by the grammar, every
    option and lark's own version, so a cached parser cannot go stale; celpy's own options are
    kept by handing it a Lark that caches.
    """
    from celpy import celparser

    if celparser.CELParser.CEL_PARSER is None:
        names, build = vars(celparser), celparser.Lark
        names["Lark"] = functools.partial(build, cache=True)
        try:
            celparser.CELParser()
        except OSError:  # a read-only temp dir: build without the cache
            names["Lark"] = build
            celparser.CELParser()
        finally:
            names["Lark"] = build
    return celpy.Environment()


_CEL = _cel_environment()


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, e.g. `spec.regions[1].minReplicas: ... greater than ...`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def field_path(parts: Iterator[str | int] | list[str | int] | tuple[str | int, ...]) -> str:
    """`("spec", "regions", 1, "name")` -> `spec.regions[1].name`."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def apply_defaults(value: Any, schema: JsonSchema) -> Any:
    """Fill in schema defaults where a field is absent, recursively (structural defaulting)."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, item in value.items():
            if name in properties:
                apply_defaults(item, properties[name])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def _strict(schema: JsonSchema, *, root: bool = True) -> JsonSchema:
    """A copy of the schema that refuses fields it does not declare."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {
            name: (
                {**sub, "x-kubernetes-preserve-unknown-fields": True}
                if root and name == "metadata"
                else _strict(sub, root=False)
            )
            for name, sub in out["properties"].items()
        }
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"], root=False)
    if "items" in out:
        out["items"] = _strict(out["items"], root=False)
    closed = not out.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "additionalProperties" not in out and closed:
        out["additionalProperties"] = False
    return out


def _schema_error(error: jsonschema.ValidationError) -> FieldError:
    path = list(error.absolute_path)
    value = json.dumps(error.instance)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return FieldError(field_path([*path, missing]), "Required value")
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return FieldError(field_path([*path, extra[0]]), "unknown field")
    if error.validator == "enum":
        supported = ", ".join(json.dumps(option) for option in error.validator_value)
        return FieldError(field_path(path), f"Unsupported value: {value}: supported values: {supported}")
    if error.validator == "pattern":
        return FieldError(field_path(path), f"Invalid value: {value}: should match '{error.validator_value}'")
    return FieldError(field_path(path), f"Invalid value: {value}: {error.message}")


def _coerce_numbers(value: Any, schema: JsonSchema) -> Any:
    """JSON 1 in a `number` field is a double to CEL, as in the API server."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            key: _coerce_numbers(item, properties.get(key, extra if isinstance(extra, dict) else {}))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_coerce_numbers(item, schema.get("items", {})) for item in value]
    return value


@functools.cache
def _program(expression: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(expression))


@functools.lru_cache(maxsize=65536)
def _evaluate_on(expression: str, value_json: str) -> Any:
    """A rule's result for one value of `self`. CEL is pure (no clock, no randomness, no
    state), so the same expression on the same value always gives the same result: objects
    that share a part (a scaling block, a port range) and an object admitted again on every
    watch event are evaluated once. Errors are results too."""
    activation = {"self": celpy.json_to_cel(json.loads(value_json))}
    try:
        return _program(expression).evaluate(activation)
    except celpy.CELEvalError as error:
        return error


def _evaluate(expression: str, value_json: str) -> Any:
    result = _evaluate_on(expression, value_json)
    if isinstance(result, celpy.CELEvalError):
        raise result
    return result


_SELF_CHAIN = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_HAS_OPEN = re.compile(r"\bhas\(\s*$")
_VALUE, _PRESENCE = "value", "presence"
Reads = dict[str, "Reads | str"]


@functools.cache
def _reads(expression: str) -> Reads | None:
    """What an expression reads of `self`: a tree of field names whose leaves say whether the
    value is read or only its presence is asked (`has(self.a.b)`); None when it reads `self`
    whole or calls a method or macro on `self` itself (`size(self)`, `self.exists(...)`).

    A rule then sees only what it reads, and its cached result is shared by objects that differ
    elsewhere: `has(self.sipUri) != has(self.phoneNumber)` is evaluated once for every number.
    Reading more than this says only costs sharing; the regex can only over-read (a `self.x`
    inside a string literal), never miss a read, since every `self` is matched.
    """
    tree: Reads = {}
    for match in _SELF_CHAIN.finditer(expression):
        path = match.group(1).split(".")[1:]
        after = expression[match.end() :].lstrip()
        if after.startswith("("):  # self.name.startsWith(...) reads self.name
            path = path[:-1]
        if not path:
            return None
        presence = after.startswith(")") and _HAS_OPEN.search(expression, 0, match.start()) is not None
        node = tree
        for depth, name in enumerate(path):
            held = node.get(name)
            if held == _VALUE:
                break  # read whole already
            if depth == len(path) - 1:
                if not presence:
                    node[name] = _VALUE
                elif held is None:
                    node[name] = _PRESENCE
                break  # presence of a field whose fields are read: they carry it
            if not isinstance(held, dict):
                held = node[name] = {}
            node = held
    return tree


def _seen(value: Any, reads: Reads | str) -> Any:
    """The part of `value` an expression reading `reads` can tell apart from any other."""
    if reads == _VALUE or value is None:
        return value
    if reads == _PRESENCE:
        return True  # has() asks only that it is there
    if not isinstance(reads, dict) or not isinstance(value, dict):
        return value  # not the shape the schema promises: hand it over whole
    return {name: _seen(value[name], sub) for name, sub in reads.items() if name in value}


def _self_json(value: Any, expression: str) -> str:
    """`self` for one expression, as the key of its cached result: what it can read of `value`."""
    reads = _reads(expression)
    if reads is not None and isinstance(value, dict):
        value = _seen(value, reads)
    return json.dumps(value, sort_keys=True)


def _rule_errors(value: Any, schema: JsonSchema, path: list[str | int]) -> Iterator[FieldError]:
    rules = schema.get("x-kubernetes-validations", [])
    if not rules:
        return
    value = _coerce_numbers(value, schema)
    for rule in rules:
        try:
            holds = bool(_evaluate(rule["rule"], _self_json(value, rule["rule"])))
        except celpy.CELEvalError as error:
            yield FieldError(field_path(path), f"rule {rule['rule']!r} failed to evaluate: {error}")
            continue
        if holds:
            continue
        message = rule.get("message", f"failed rule: {rule['rule']}")
        if "messageExpression" in rule:
            expression = rule["messageExpression"]
            try:
                message = str(_evaluate(expression, _self_json(value, expression)))
            except celpy.CELEvalError:
                pass  # the API server falls back to `message` too
        where = field_path(path) + rule.get("fieldPath", "")
        yield FieldError(where, f"Invalid value: {message}")


def _list_errors(value: list[Any], schema: JsonSchema, path: list[str | int]) -> Iterator[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                yield FieldError(field_path([*path, index]), f"Duplicate value: {json.dumps(item)}")
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys: set[tuple[Any, ...]] = set()
        for index, item in enumerate(value):
            key = tuple(item.get(name) for name in keys) if isinstance(item, dict) else (item,)
            if key in seen_keys:
                shown = ", ".join(f"{name}={json.dumps(part)}" for name, part in zip(keys, key, strict=False))
                yield FieldError(field_path([*path, index]), f"Duplicate value: {{{shown}}}")
            seen_keys.add(key)


def semantic_errors(value: Any, schema: JsonSchema, path: list[str | int]) -> Iterator[FieldError]:
    """List-type uniqueness and CEL rules, depth first, over a schema-valid value."""
    if isinstance(value, list):
        yield from _list_errors(value, schema, path)
        for index, item in enumerate(value):
            yield from semantic_errors(item, schema.get("items", {}), [*path, index])
    elif isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                yield from semantic_errors(item, properties[key], [*path, key])
            elif isinstance(extra, dict):
                yield from semantic_errors(item, extra, [*path, key])
    yield from _rule_errors(value, schema, path)


def prune_unknown(value: Any, schema: JsonSchema) -> Any:
    """Drop fields the schema does not declare, as the API server prunes them."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties is None and isinstance(extra, dict):
            return {k: prune_unknown(v, extra) for k, v in value.items()}
        properties = properties or {}
        return {k: prune_unknown(v, properties[k]) for k, v in value.items() if k in properties}
    if isinstance(value, list) and "items" in schema:
        return [prune_unknown(item, schema["items"]) for item in value]
    return value


_ROOT_FIELDS: JsonSchema = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}


COMPILE_AFTER = 32  # objects of one kind admitted before its schema is compiled


@functools.cache
def _compiled(schema_json: str) -> Callable[[Any], Any]:
    """fastjsonschema's validator of a (draft 4) schema, compiled once per schema."""
    import fastjsonschema  # ~25 ms to import: only where a schema is compiled at run time

    return fastjsonschema.compile(json.loads(schema_json))


class Admission:
    """Admission for one kind, built once from its CRD schema.

    strict: refuse unknown fields (kubectl's default `--validate=strict`, and `voiceop render`);
    otherwise prune them, as the API server does for a request without field validation.
    check: the validated schema compiled to Python ahead of time (`voiceop.api.generated`, the
    four kinds' strict schemas), raising ValueError for any value it refuses.
    """

    def __init__(
        self, schema: JsonSchema, *, strict: bool = True, check: Callable[[Any], Any] | None = None
    ) -> None:
        properties = {**_ROOT_FIELDS, **schema.get("properties", {})}
        # metadata is the API server's: the schema may constrain the name, never drop a field.
        properties["metadata"] = {**properties["metadata"], "x-kubernetes-preserve-unknown-fields": True}
        self.schema = {**schema, "properties": properties}
        self.strict = strict
        # The schema compiled to Python: a valid object (the common case) is told so at a
        # fraction of jsonschema's cost; an invalid one is then explained by jsonschema, which
        # reports every error with its path, as the API server does. Compiling at run time
        # costs about 30 ms a schema, so without a check made ahead of time it pays only from
        # a few dozen objects on: until then jsonschema.
        self._check = check
        self._admitted = 0

    @functools.cached_property
    def strict_schema(self) -> JsonSchema:
        """The schema objects are validated against (refusing undeclared fields when strict)."""
        return _strict(self.schema) if self.strict else self.schema

    @functools.cached_property
    def _explainer(self) -> jsonschema.Draft4Validator:
        import jsonschema  # ~55 ms to import: only to say why an object is refused

        return jsonschema.Draft4Validator(self.strict_schema)

    def _schema_errors(self, value: dict[str, Any]) -> list[FieldError]:
        if self._check is None and self._admitted > COMPILE_AFTER:
            self._check = _compiled(json.dumps(self.strict_schema, sort_keys=True))
        if self._check is not None:
            try:
                self._check(value)
                return []
            except ValueError:
                pass  # refused: jsonschema names every error
        return sorted((_schema_error(e) for e in self._explainer.iter_errors(value)), key=lambda e: e.path)

    def admit(self, obj: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
        """The object with defaults applied, and every reason the API server would refuse it."""
        defaulted = apply_defaults(copy.deepcopy(obj), self.schema)
        if not self.strict:
            defaulted = prune_unknown(defaulted, self.schema)
        self._admitted += 1
        errors = self._schema_errors(defaulted)
        if errors:
            # Rules may assume what the schema guarantees; the API server skips them too.
            return defaulted, errors
        return defaulted, list(semantic_errors(defaulted, self.schema, []))
