"""The one jinja2 loader: a template in, a parsed Kubernetes object out.

Templates hold the shape of each object; every decision is made in Python and passed in. Values
go into templates through `tojson` (JSON is YAML), so no value can break the YAML around it.
"""

from __future__ import annotations

from typing import Any

import jinja2
import yaml

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("voiceop.render", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
# Keys in the order the code builds them (name before labels), not alphabetical.
_ENV.policies["json.dumps_kwargs"] = {"sort_keys": False}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(template: str, **params: Any) -> dict[str, Any]:
    """Render `templates/<template>` with `params` and parse the YAML it produces."""
    text = _ENV.get_template(template).render(**params)
    obj = yaml.load(text, Loader=_LOADER)  # noqa: S506 - CSafeLoader is the safe loader
    assert isinstance(obj, dict), f"{template} rendered no object"
    return obj
