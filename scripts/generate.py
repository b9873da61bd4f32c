"""Regenerates every generated file: crds/, the chart's copies, manifests/ and the Argo CD
health checks. Tests fail when a committed file differs from what this writes.

    python scripts/generate.py
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "voiceop"
MANIFESTS = ROOT / "manifests"
ARGOCD = MANIFESTS / "argocd"
RELEASE, NAMESPACE = "voiceop", "voiceop-system"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def generate_crds() -> None:
    from voiceop.cli import main

    main(["crds", "-o", str(ROOT / "crds")])
    shutil.rmtree(CHART / "files" / "crds", ignore_errors=True)
    shutil.copytree(ROOT / "crds", CHART / "files" / "crds")
    from voiceop.deploy.peering import peering_crds
    from voiceop.inputs.yamlio import dump

    for crd in peering_crds():
        write(CHART / "files" / "peering" / f"{crd['metadata']['name']}.yaml", dump(crd))


def render_chart(values: dict[str, Any] | None = None) -> dict[str, str]:
    import helm_python

    chart = helm_python.Chart.load(str(CHART))
    try:
        return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        chart.close()


def kustomize_base() -> dict[str, str]:
    """manifests/: the chart's default render, one file per template, plus the namespace."""
    from voiceop.inputs.yamlio import dump

    files = {
        "namespace.yaml": dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    }
    for template, text in sorted(render_chart().items()):
        if template.endswith("NOTES.txt"):
            continue
        documents = [d for d in yaml.safe_load_all(text) if d]
        if not documents:
            continue
        files[Path(template).name] = "".join(f"---\n{dump(d)}" for d in documents)
    files["kustomization.yaml"] = dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": sorted(name for name in files if name != "kustomization.yaml"),
        }
    )
    return files


def argocd_files() -> dict[str, str]:
    from voiceop.deploy.argocd import GROUP, KIND_RULES, health_lua, test_cases
    from voiceop.inputs.yamlio import dump

    files: dict[str, str] = {}
    snippet: dict[str, str] = {}
    for kind in KIND_RULES:
        base = f"resource_customizations/{GROUP}/{kind}"
        lua = health_lua(kind)
        files[f"{base}/health.lua"] = lua
        tests = []
        for stem, status, message, obj in test_cases(kind):
            files[f"{base}/testdata/{stem}.yaml"] = dump(obj)
            tests.append(
                {"healthStatus": {"status": status, "message": message}, "inputPath": f"testdata/{stem}.yaml"}
            )
        files[f"{base}/health_test.yaml"] = dump({"tests": tests})
        snippet[f"resource.customizations.health.{GROUP}_{kind}"] = lua
    files["argocd-cm.yaml"] = dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "argocd-cm",
                "namespace": "argocd",
                "labels": {"app.kubernetes.io/part-of": "argocd"},
            },
            "data": snippet,
        }
    )
    return files


def main() -> int:
    generate_crds()
    shutil.rmtree(MANIFESTS / "base", ignore_errors=True)
    for name, text in kustomize_base().items():
        write(MANIFESTS / "base" / name, text)
    for name, text in argocd_files().items():
        write(ARGOCD / name, text)
    print("generated crds/, charts/voiceop/files/, manifests/base/, manifests/argocd/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
