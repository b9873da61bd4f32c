"""From manifest files to a checked Inventory, collecting every problem on the way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from voiceop.api import InvalidObject, is_voiceop_object, parse_object
from voiceop.api.inventory import Inventory
from voiceop.inputs.yamlio import read_manifests


@dataclass
class Loaded:
    inventory: Inventory
    # One line per problem: `<file>: <Kind namespace/name>: <field>: <message>`.
    errors: list[str] = field(default_factory=list)
    ignored: int = 0  # documents of other kinds (Secrets, Namespaces, ...)
    sources: dict[int, str] = field(default_factory=dict)  # id(resource) -> the file it came from

    def where(self, resource: object) -> str:
        return self.sources.get(id(resource), "-")


def load_inventory(paths: Sequence[str]) -> Loaded:
    """Read, admit and cross-check every voiceop object under `paths`."""
    documents, manifest_errors = read_manifests(paths)
    loaded = Loaded(Inventory(), [str(error) for error in manifest_errors])
    source = loaded.sources
    for document in documents:
        if not is_voiceop_object(document.obj):
            loaded.ignored += 1
            continue
        try:
            resource = parse_object(document.obj)
        except InvalidObject as invalid:
            loaded.errors.extend(f"{document.path}: {invalid.ref}: {error}" for error in invalid.errors)
            continue
        previous = loaded.inventory.add(resource)
        if previous is not None:
            loaded.errors.append(
                f"{document.path}: {resource.ref}: defined more than once (also in {source[id(previous)]})"
            )
        source[id(resource)] = document.path
    for resource, errors in loaded.inventory.reference_errors():
        loaded.errors.extend(f"{source[id(resource)]}: {resource.ref}: {error}" for error in errors)
    return loaded
