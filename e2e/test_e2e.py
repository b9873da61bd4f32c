"""On a real cluster: install with Helm, apply the examples, see agents Ready and routes made."""

from __future__ import annotations

import json

from conftest import ROOT, run


def wait_billing_ready() -> None:
    run(
        "kubectl",
        "wait",
        "--for=condition=Ready",
        "voiceagent/billing",
        "-n",
        "contact-center",
        "--timeout=300s",
        timeout=320,
    )


def test_examples_become_ready_agents(installed: str) -> None:
    run("kubectl", "apply", "--server-side", "-f", str(ROOT / "examples"))
    # kind nodes carry no topology labels: let the example regions schedule anywhere.
    for region in ("eu-west", "us-east", "ap-southeast"):
        run(
            "kubectl",
            "patch",
            "region",
            region,
            "--type=merge",
            "-p",
            '{"spec":{"nodeSelector":{"kubernetes.io/os":"linux"},"zones":null}}',
        )
    run("kubectl", "get", "deployments", "-n", "contact-center", "-l", "app.kubernetes.io/managed-by=voiceop")
    routes = run("kubectl", "get", "configmap", "voiceop-routes", "-n", "contact-center", "-o", "json")
    table = json.loads(json.loads(routes.stdout)["data"]["routes.json"])
    assert [e["endpoint"] for e in table["endpoints"]] == ["billing-lines", "support-web"]
    services = run("kubectl", "get", "services", "-n", "contact-center", "-o", "name")
    assert "service/billing-eu-west" in services.stdout


def test_kubectl_wait_for_ready_with_media_sim_pods(installed: str) -> None:
    # The examples' image does not exist on kind: the operator image runs media-sim in media pods.
    run(
        "kubectl",
        "patch",
        "voiceagent",
        "billing",
        "-n",
        "contact-center",
        "--type=merge",
        "-p",
        '{"spec":{"image":"voiceop:e2e"}}',
    )
    wait_billing_ready()
    status = json.loads(
        run("kubectl", "get", "voiceagent", "billing", "-n", "contact-center", "-o", "json").stdout
    )["status"]
    assert status["readyReplicas"] >= 1


def test_calls_on_media_sim_pods_scale_the_region_up(installed: str) -> None:
    import socket
    import subprocess
    import time
    import urllib.request

    wait_billing_ready()
    pods = run(
        "kubectl",
        "get",
        "pods",
        "-n",
        "contact-center",
        "-l",
        "voiceop.dev/agent=billing,voiceop.dev/region=eu-west",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ).stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    forward = subprocess.Popen(
        ["kubectl", "port-forward", "-n", "contact-center", f"pod/{pods}", f"{port}:9090"]
    )
    try:
        time.sleep(3)
        for _ in range(8):  # callsPerPod of the billing example: this pod is full
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/calls?duration=120", data=b"", method="POST"
            )
            urllib.request.urlopen(request, timeout=5).close()
        deadline = time.monotonic() + 120
        replicas = 0
        while time.monotonic() < deadline:
            out = run(
                "kubectl",
                "get",
                "deployment",
                "billing-eu-west",
                "-n",
                "contact-center",
                "-o",
                "jsonpath={.spec.replicas}",
            )
            replicas = int(out.stdout or 0)
            if replicas >= 3:
                break
            time.sleep(2)
        assert replicas >= 3, "8 live calls on one pod (target 0.7 x 8) call for more pods"
    finally:
        forward.terminate()
