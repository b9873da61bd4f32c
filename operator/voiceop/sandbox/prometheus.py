"""A real Prometheus server on 127.0.0.1 scraping the sandbox's media pods every second."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol


class TargetSource(Protocol):
    """What to scrape, as Prometheus file_sd target groups (the PodSimulator is one)."""

    def targets(self) -> list[dict[str, Any]]: ...


CONFIG = """global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: media
  file_sd_configs:
  - files: [{targets}]
    refresh_interval: 1s
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrometheusServer:
    def __init__(self, pods: TargetSource, binary: str | None = None) -> None:
        found = binary or shutil.which("prometheus")
        if found is None:
            raise FileNotFoundError("no prometheus binary (Debian: apt-get install prometheus)")
        self.binary = found
        self.pods = pods
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="voiceop-prometheus-"))
        self._targets = self._dir / "targets.json"
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="prometheus-targets", daemon=True)

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self._targets.write_text("[]")
        (self._dir / "prometheus.yml").write_text(CONFIG.format(targets=json.dumps(str(self._targets))))
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self._dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("Prometheus did not become ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.loads(response.read())["data"]["result"])

    def scraping(self, pods: int) -> bool:
        """Whether at least `pods` targets have been scraped (discovery takes a few seconds: a
        counter first seen already grown shows Prometheus no increase)."""
        return len(self.query("up == 1")) >= pods

    def _refresh(self) -> None:
        while not self._stop.is_set():
            text = json.dumps(self.pods.targets())
            if text != self._targets.read_text():
                temporary = self._targets.with_suffix(".tmp")
                temporary.write_text(text)
                temporary.replace(self._targets)
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
