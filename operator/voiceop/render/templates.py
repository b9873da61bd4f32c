"""The one jinja2 loader: a template in, a parsed Kubernetes object out.

Templates hold the shape of each object; every decision is made in Python and passed in. Values
go into templates through `tojson` (JSON is YAML), so no value can break the YAML around it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2
import yaml


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


_ENV = template_environment("voiceop.render")
# JSON's surrogate-pair escapes (\ud83d\ude00) are not YAML; YAML spells them \U0001f600.
# Escaped backslashes are matched first so that `\\ud83d` stays literal text.
_ESCAPE = re.compile(r"\\(?:\\|u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2}))")


def _yaml_escape(match: re.Match[str]) -> str:
    high, low = match.group(1), match.group(2)
    if high is None:
        return match.group(0)
    code_point = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
    return f"\\U{code_point:08x}"


def to_flow_yaml(value: Any) -> str:
    """A value as one line of YAML: JSON (ASCII-only, keys in the order the code built them)."""
    return _ESCAPE.sub(_yaml_escape, json.dumps(value, ensure_ascii=True))


_ENV.filters["tojson"] = to_flow_yaml
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(template: str, **params: Any) -> dict[str, Any]:
    """Render `templates/<template>` with `params` and parse the YAML it produces."""
    text = _ENV.get_template(template).render(**params)
    obj = yaml.load(text, Loader=_LOADER)
    assert isinstance(obj, dict), f"{template} rendered no object"
    return obj
