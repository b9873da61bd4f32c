"""Shared fixtures: the examples, loaded and rendered, and helpers for building objects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from voiceop.api import is_voiceop_object
from voiceop.inputs.loading import Loaded, load_inventory
from voiceop.inputs.yamlio import read_manifests
from voiceop.render import render_all

# The cluster tier's fixtures (a real control plane), started only by the tests that use them.
pytest_plugins = ["clusterlib", "siplib"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
KUBERNETES_VERSIONS = ("1.30", "1.34")


@pytest.fixture(scope="session")
def examples() -> Loaded:
    loaded = load_inventory([str(EXAMPLES)])
    assert loaded.errors == []
    return loaded


@pytest.fixture(scope="session")
def rendered_examples(examples: Loaded) -> list[dict[str, Any]]:
    return render_all(examples.inventory)


def voiceop_examples() -> list[dict[str, Any]]:
    """The voiceop objects of examples/ (Regions, AIBackends, VoiceAgents, VoiceEndpoints), raw."""
    documents, errors = read_manifests([str(EXAMPLES)])
    assert not errors
    return [document.obj for document in documents if is_voiceop_object(document.obj)]


def example_object(kind: str, name: str) -> dict[str, Any]:
    """A deep copy of one raw example object, to mutate in a test."""
    documents, errors = read_manifests([str(EXAMPLES)])
    assert not errors
    for document in documents:
        if document.obj.get("kind") == kind and document.obj["metadata"]["name"] == name:
            return copy.deepcopy(document.obj)
    raise LookupError(f"no example {kind} {name}")


def require_program(name: str, how: str) -> str:
    """The path of a program a test needs. Missing: skip locally, fail in CI (which installs it)."""
    import os
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"needs `{name}` ({how})"
        if os.environ.get("CI"):
            pytest.fail(message + ", which .ci/run installs")
        pytest.skip(message)
    return path
