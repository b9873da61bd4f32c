"""The one jinja2 loader: a template in, a parsed Kubernetes object out.

Templates hold the shape of each object; every decision is made in Python and passed in. They
write JSON (every value through `tojson`, so no value can break the text around it), which the
C parser of the standard library reads back at a fraction of what a YAML parser costs: rendering
is most of what the operator does on a change, and the tests and `voiceop render` do it by the
thousand.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2


def template_environment(package: str) -> jinja2.Environment:
    """jinja2 over `<package>/templates`: undefined names fail, blocks leave no blank lines."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def to_json(value: Any) -> str:
    """A value as JSON (ASCII-only, keys in the order the code built them)."""
    return json.dumps(value, ensure_ascii=True)


_ENV = template_environment("voiceop.render")
_ENV.filters["tojson"] = to_json


def load(template: str, **params: Any) -> dict[str, Any]:
    """Render `templates/<template>.json.j2` with `params` and parse the JSON it produces."""
    text = _ENV.get_template(f"{template}.json.j2").render(**params)
    try:
        obj = json.loads(text)
    except ValueError as error:  # a template's own mistake: say where
        raise ValueError(f"{template}.json.j2 rendered no valid JSON: {error}") from None
    assert isinstance(obj, dict), f"{template} rendered no object"
    return obj
