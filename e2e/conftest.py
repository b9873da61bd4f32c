"""e2e: a real cluster. kind when `kind` and Docker are here, or whatever KUBECONFIG points at.

Skipped, with the reason, where no cluster can be reached (as on machines without Docker or
network access to pull images).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "voiceop-e2e"


def run(*command: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check)


def reachable() -> str | None:
    """None when kubectl reaches a cluster, else why not."""
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    try:
        result = run("kubectl", "version", "--request-timeout=5s", timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "the cluster in KUBECONFIG did not answer"
    return None if result.returncode == 0 else f"no cluster reachable: {result.stderr.strip()[:200]}"


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    created = False
    why_not = reachable()
    if (
        why_not
        and shutil.which("kind")
        and shutil.which("docker")
        and os.environ.get("VOICEOP_E2E_KIND", "1") == "1"
    ) and run("docker", "info", check=False, timeout=30).returncode == 0:
        run("kind", "create", "cluster", "--name", CLUSTER, "--wait", "120s", timeout=600)
        created = True
        why_not = reachable()
    if why_not:
        pytest.skip(f"e2e needs a Kubernetes cluster: {why_not} (and kind + Docker could not make one)")
    try:
        yield CLUSTER
    finally:
        if os.environ.get("VOICEOP_E2E_KEEP") != "1" and created:
            run("kind", "delete", "cluster", "--name", CLUSTER, check=False)
        else:
            dump = run("kubectl", "get", "events", "-A", "--sort-by=.lastTimestamp", check=False)
            print(dump.stdout[-5000:])


@pytest.fixture(scope="session")
def installed(cluster: str) -> str:
    """Build and load the image, `helm install` the chart; returns the release namespace."""
    if shutil.which("helm") is None:
        pytest.skip("helm is not installed")
    image = "voiceop:e2e"
    if shutil.which("docker") and shutil.which("kind"):
        run(
            "docker",
            "build",
            "-f",
            str(ROOT / "operator" / "Dockerfile"),
            "-t",
            image,
            str(ROOT),
            timeout=900,
        )
        run("kind", "load", "docker-image", image, "--name", cluster, timeout=300)
    run(
        "helm",
        "upgrade",
        "--install",
        "voiceop",
        str(ROOT / "charts" / "voiceop"),
        "--namespace",
        "voiceop-system",
        "--create-namespace",
        "--set",
        "image.repository=voiceop",
        "--set",
        "image.tag=e2e",
        "--set",
        "image.pullPolicy=Never",
        "--wait",
        "--timeout",
        "5m",
        timeout=600,
    )
    return "voiceop-system"
