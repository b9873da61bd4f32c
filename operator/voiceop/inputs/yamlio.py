"""Reading manifests from files and folders, writing objects as YAML."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """Multi-line strings (runtime.json in a ConfigMap) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def dump_all(objects: Iterable[Any]) -> str:
    return "".join(f"---\n{dump(obj)}" for obj in objects)


@dataclass(frozen=True)
class Document:
    """One YAML document of a manifest file, and where it came from."""

    path: str
    obj: dict[str, Any]


class ManifestError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def _manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    if path.is_file():
        return [path]
    raise ManifestError(str(path), "no such file or directory")


def _documents(text: str, path: str) -> list[Document]:
    try:
        loaded = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ManifestError(where, f"not valid YAML: {getattr(error, 'problem', error)}") from None
    documents: list[Document] = []
    for index, obj in enumerate(loaded):
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise ManifestError(path, f"document {index + 1} is a {type(obj).__name__}, not an object")
        if obj.get("kind") == "List" and isinstance(obj.get("items"), list):  # kubectl get -o yaml
            documents.extend(Document(path, item) for item in obj["items"] if isinstance(item, dict))
        else:
            documents.append(Document(path, obj))
    return documents


def read_manifests(paths: Sequence[str]) -> tuple[list[Document], list[ManifestError]]:
    """Every document of the given files and folders (recursively; `-` is stdin), in order,
    and every file that could not be read or parsed."""
    documents: list[Document] = []
    errors: list[ManifestError] = []
    for raw in paths:
        try:
            if raw == "-":
                documents.extend(_documents(sys.stdin.read(), "<stdin>"))
                continue
            files = _manifest_files(Path(raw))
        except ManifestError as error:
            errors.append(error)
            continue
        for file in files:
            try:
                documents.extend(_documents(file.read_text(encoding="utf-8"), str(file)))
            except (OSError, UnicodeDecodeError) as error:
                errors.append(ManifestError(str(file), f"cannot read: {error}"))
            except ManifestError as error:
                errors.append(error)
    return documents, errors
