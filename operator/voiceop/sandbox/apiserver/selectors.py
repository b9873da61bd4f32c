"""Label selectors as the API server parses them: `a=b,c!=d,e in (f,g),h notin (i),j,!k`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Requirement = Callable[[Mapping[str, str]], bool]
_SET = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


class SelectorError(ValueError):
    pass


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _requirement(text: str) -> Requirement:
    match = _SET.match(text)
    if match:
        key, operator, raw_values = match.groups()
        values = {v.strip() for v in raw_values.split(",") if v.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in text:
        key, value = (s.strip() for s in text.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in text:
        key, value = (s.strip() for s in text.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if text.startswith("!"):
        key = text[1:].strip()
        return lambda labels: key not in labels
    if re.match(r"^[^\s()]+$", text):
        return lambda labels: text in labels
    raise SelectorError(f"unable to parse requirement: {text!r}")


def parse_selector(selector: str | None) -> Requirement:
    """A predicate over labels; an empty selector matches everything."""
    requirements = [_requirement(part) for part in _split(selector or "")]
    return lambda labels: all(req(labels) for req in requirements)


def parse_field_selector(selector: str | None) -> Callable[[dict], bool]:
    """`metadata.name=x,metadata.namespace!=y`: the field selectors kopf and kubectl use."""

    def getter(path: str) -> Callable[[dict], str | None]:
        def get(obj: dict) -> str | None:
            node = obj
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None  # type: ignore[assignment]
            return None if node is None else str(node)

        return get

    checks = []
    for part in _split(selector or ""):
        negate = "!=" in part
        path, value = (s.strip() for s in re.split(r"!=|==|=", part, maxsplit=1))
        get = getter(path)
        checks.append(lambda o, g=get, v=value, n=negate: (g(o) != v) if n else (g(o) == v))
    return lambda obj: all(check(obj) for check in checks)
