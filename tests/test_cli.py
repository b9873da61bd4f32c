"""`voiceop render` and `voiceop crds` as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import EXAMPLES


def voiceop(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voiceop", *args], capture_output=True, text=True, input=stdin, timeout=60
    )


def test_render_examples_prints_every_child() -> None:
    result = voiceop("render", "-f", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert len(objects) == 20
    assert {o["kind"] for o in objects} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_render_to_a_folder_writes_one_file_per_object(tmp_path: Path) -> None:
    result = voiceop(
        "render",
        "-f",
        str(EXAMPLES / "regions.yaml"),
        "-f",
        str(EXAMPLES / "backends.yaml"),
        "-f",
        str(EXAMPLES / "agents.yaml"),
        "-f",
        str(EXAMPLES / "endpoints.yaml"),
        "-o",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 20
    assert "contact-center.deployment.billing-eu-west.yaml" in files
    assert "contact-center.configmap.voiceop-routes.yaml" in files


def _broken_examples(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder)
    agents = folder / "agents.yaml"
    text = agents.read_text()
    assert old in text
    agents.write_text(text.replace(old, new, 1))
    return folder


def test_invalid_object_exits_2_naming_file_object_and_field_with_nothing_on_stdout(tmp_path: Path) -> None:
    folder = _broken_examples(
        tmp_path,
        "{name: eu-west, minReplicas: 2, maxReplicas: 20}",
        "{name: eu-west, minReplicas: 9, maxReplicas: 3}",
    )
    result = voiceop("render", "-f", str(folder))
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        f"{folder / 'agents.yaml'}: VoiceAgent contact-center/billing: spec.regions[0].minReplicas:"
        in result.stderr
    )
    assert "minReplicas must not be greater than maxReplicas" in result.stderr


def test_unknown_reference_exits_2(tmp_path: Path) -> None:
    folder = _broken_examples(
        tmp_path, "- name: self-hosted-pipeline\n  settings:", "- name: no-such-backend\n  settings:"
    )
    result = voiceop("render", "-f", str(folder))
    assert result.returncode == 2 and result.stdout == ""
    assert (
        "VoiceAgent contact-center/billing: spec.backends[1].name: AIBackend contact-center/no-such-backend not found"
        in result.stderr
    )


def test_an_agent_that_reads_prometheus_needs_one_of_its_own_or_the_flag(tmp_path: Path) -> None:
    folder = _broken_examples(tmp_path, "scaling:\n    mode: hpa", "scaling:\n    mode: keda")
    result = voiceop("render", "-f", str(folder))
    assert result.returncode == 2 and result.stdout == ""
    assert (
        f"{folder / 'agents.yaml'}: VoiceAgent contact-center/support: spec.scaling.metrics.prometheusUrl:"
        " mode keda needs a Prometheus" in result.stderr
    )
    assert "--prometheus-url" in result.stderr
    rendered = voiceop("render", "-f", str(folder), "--prometheus-url", "http://prometheus.monitoring:9090")
    assert rendered.returncode == 0, rendered.stderr
    assert "serverAddress: http://prometheus.monitoring:9090" in rendered.stdout


def test_bad_yaml_and_missing_files_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: VoiceAgent\nspec: [unclosed\n")
    result = voiceop("render", "-f", str(bad), "-f", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and result.stdout == ""
    assert f"{bad}:" in result.stderr and "not valid YAML" in result.stderr
    assert "missing.yaml: no such file or directory" in result.stderr


def test_object_defined_twice_exits_2(tmp_path: Path) -> None:
    copy = tmp_path / "again.yaml"
    copy.write_text((EXAMPLES / "regions.yaml").read_text())
    result = voiceop("render", "-f", str(EXAMPLES), "-f", str(copy))
    assert result.returncode == 2
    assert "Region eu-west: defined more than once" in result.stderr


def test_render_from_stdin_ignores_other_kinds() -> None:
    manifests = "".join(p.read_text() + "\n---\n" for p in sorted(EXAMPLES.glob("*.yaml")))
    result = voiceop("render", "-f", "-", stdin=manifests)
    assert result.returncode == 0, result.stderr
    assert "Secret" not in result.stdout and "kind: Namespace" not in result.stdout


def test_crds_command_prints_four_crds() -> None:
    result = voiceop("crds")
    assert result.returncode == 0
    kinds = [c["spec"]["names"]["kind"] for c in yaml.safe_load_all(result.stdout)]
    assert kinds == ["Region", "AIBackend", "VoiceAgent", "VoiceEndpoint"]
