"""The pure core never imports kopf, a Kubernetes client or the handlers (DESIGN.md, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "operator" / "voiceop"
PURE = [
    "api",
    "render",
    "routing",
    "scaling",
    "status.py",
    "references.py",
    "inventory.py",
    "loading.py",
    "yamlio.py",
]
FORBIDDEN = ("kopf", "kubernetes", "kubernetes_asyncio", "aiohttp", "voiceop.handlers", "voiceop.runtime")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("part", PURE)
def test_pure_core_imports_no_io_layer(part: str) -> None:
    target = PACKAGE / part
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    offending = {
        f"{f.relative_to(PACKAGE)}: {m}"
        for f in files
        for m in imported_modules(f)
        if any(m == bad or m.startswith(bad + ".") for bad in FORBIDDEN)
    }
    assert offending == set()
