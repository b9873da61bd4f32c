"""The one jinja2 loader: a template in, a parsed Kubernetes object out.

Templates hold the shape of each object; every decision is made in Python and passed in. They
write JSON (every value through `tojson`, so no value can break the text around it), which the
C parser of the standard library reads back at a fraction of what a YAML parser costs: rendering
is most of what the operator does on a change, and the tests and `voiceop render` do it by the
thousand.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jinja2
from jinja2.bccache import Bucket


def _compiled_by(environment: jinja2.Environment) -> str:
    """What, besides a template's source, decides the code jinja2 compiles it to: jinja2's
    release, the syntax options and how each filter and test is called (a `pass_context`
    filter is handed one more argument)."""
    syntax = [
        getattr(environment, option)
        for option in (
            "block_start_string",
            "block_end_string",
            "variable_start_string",
            "variable_end_string",
            "comment_start_string",
            "comment_end_string",
            "line_statement_prefix",
            "line_comment_prefix",
            "trim_blocks",
            "lstrip_blocks",
            "newline_sequence",
            "keep_trailing_newline",
            "optimized",
            "is_async",
            "autoescape",
        )
    ]
    callables = [
        (
            table,
            name,
            f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}",
            str(getattr(function, "jinja_pass_arg", None)),
        )
        for table, functions in (("filter", environment.filters), ("test", environment.tests))
        for name, function in sorted(functions.items())
    ]
    text = repr(
        (jinja2.__version__, syntax, callables, sorted(environment.extensions), environment.finalize is None)
    )
    return hashlib.sha256(text.encode()).hexdigest()


class CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """jinja2's compiled templates kept between processes, in its per-user temp directory.

    Compiling the templates is ~15 ms of a `voiceop render` of ~0.5 s. An entry is found by the
    template's name and everything of the environment that shapes the compiled code (jinja2's
    own key is the name alone: a process whose `tojson` filter is jinja2's would hand voiceop's
    code that calls it with an extra argument), and checked against the checksum of the
    template's source and jinja2's bytecode version, so it cannot go stale. A directory that
    cannot be read or written (a read-only file system) only costs the compile.
    """

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        key = self.get_cache_key(f"{_compiled_by(environment)}/{name}", filename)
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, TypeError):  # unreadable or truncated: compile
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def compiled_templates(directory: str | None = None) -> CompiledTemplates | None:
    try:
        return CompiledTemplates(directory)
    except (OSError, RuntimeError):  # no private temp directory to be had: compile every time
        return None


def template_environment(
    package: str, bytecode_cache: jinja2.BytecodeCache | None = None
) -> jinja2.Environment:
    """jinja2 over `<package>/templates`: undefined names fail, blocks leave no blank lines."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=bytecode_cache,
    )


def to_json(value: Any) -> str:
    """A value as JSON (ASCII-only, keys in the order the code built them)."""
    return json.dumps(value, ensure_ascii=True)


_ENV = template_environment("voiceop.render", compiled_templates())
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
