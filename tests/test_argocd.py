"""Argo CD health checks: each kind's Lua runs (Lua 5.1, as gopher-lua) against its test data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

lupa = pytest.importorskip("lupa")
from lupa import lua51  # noqa: E402

from voiceop.deploy.argocd import KIND_RULES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "manifests" / "argocd" / "resource_customizations" / "voiceop.dev"


def run_health(lua_source: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run a health.lua like Argo CD: `obj` in scope, standard libraries off."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    for library in ("os", "io", "require", "dofile", "loadfile", "load", "loadstring", "debug", "package"):
        runtime.execute(f"{library} = nil")
    lua_obj = runtime.table_from(obj, recursive=True)
    function = runtime.execute(f"return function(obj)\n{lua_source}\nend")
    result = function(lua_obj)
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize("kind", sorted(KIND_RULES))
def test_health_checks_give_the_expected_status(kind: str) -> None:
    folder = CHECKS / kind
    source = (folder / "health.lua").read_text()
    cases = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
    assert len(cases) >= 5
    for case in cases:
        obj = yaml.safe_load((folder / case["inputPath"]).read_text())
        assert run_health(source, obj) == case["healthStatus"], case["inputPath"]


def test_health_checks_cover_the_gitops_cases() -> None:
    stems = {p.stem for p in (CHECKS / "VoiceAgent" / "testdata").glob("*.yaml")}
    assert {"no-status", "stale-generation", "healthy", "broken", "being-deleted"} <= stems


def test_lua_is_5_1_only() -> None:
    for kind in KIND_RULES:
        source = (CHECKS / kind / "health.lua").read_text()
        for newer in ("goto ", "//", "<const>", "<close>", "utf8."):
            assert newer not in source, f"{kind}: {newer!r} is not Lua 5.1"


def test_argocd_cm_installs_every_check() -> None:
    cm = yaml.safe_load((ROOT / "manifests" / "argocd" / "argocd-cm.yaml").read_text())
    for kind in KIND_RULES:
        assert (
            cm["data"][f"resource.customizations.health.voiceop.dev_{kind}"]
            == (CHECKS / kind / "health.lua").read_text()
        )


def test_example_applications_sync_server_side() -> None:
    for name in ("application-operator.yaml", "application-agents.yaml"):
        app = yaml.safe_load((ROOT / "manifests" / "argocd" / name).read_text())
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
        assert app["metadata"]["annotations"]["argocd.argoproj.io/compare-options"] == "ServerSideDiff=true"
