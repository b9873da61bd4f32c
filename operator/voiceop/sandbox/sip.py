"""Real SIP for the sandbox and the tests: Kamailio as the edge, sipp as callers.

`KamailioEdge` runs `kamailio -DD -E` on a config folder written by `voiceop edge render`
or `voiceop edge sync` and stops it; `Callers` runs sipp with voiceop's caller scenario
(caller numbers from a CSV, ACK and BYE along the edge's Record-Route, a REFER followed as a
blind transfer) and reads its statistics file; `HumanQueue` runs sipp as the human agents who
take handed-off calls, and lists the Call-IDs they received. All only ever bind or target
127.0.0.0/8 addresses.
"""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from voiceop.render.edge.config import EdgeSettings

# sipp takes integer rates: calls per RATE_PERIOD_S seconds, so 0.5 calls/s is -r 5 -rp 10s.
RATE_PERIOD_S = 10
INSTALL_HINT = "apt-get install -y kamailio sip-tester"
_REJECTION = re.compile(r"received 'SIP/2\.0 (\d{3})")


class SipToolMissing(RuntimeError):
    pass


def find_program(name: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None
    )
    if found is None:
        raise SipToolMissing(f"{name} is not installed (Debian: {INSTALL_HINT})")
    return found


def sip_tools_available() -> str | None:
    """None when kamailio, kamcmd and sipp are all there; else what to install."""
    try:
        for name in ("kamailio", "kamcmd", "sipp"):
            find_program(name, "/usr/sbin")
    except SipToolMissing as missing:
        return str(missing)
    return None


def _loopback(address: str) -> str:
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address} is not a loopback address: the sandbox only targets 127.0.0.0/8")
    return address


class KamailioEdge:
    """One Kamailio process on a config folder; `address` is where callers send INVITEs."""

    def __init__(self, settings: EdgeSettings, address: str = "127.0.0.1", port: int = 5060) -> None:
        self.settings = settings
        self.address = _loopback(address)
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(settings.config_dir) / "kamailio.log"

    @staticmethod
    def settings_for(config_dir: Path, address: str = "127.0.0.1", port: int = 5060) -> EdgeSettings:
        return EdgeSettings(
            config_dir=str(config_dir),
            listens=(f"udp:{_loopback(address)}:{port}",),
            children=2,
            ping_interval_s=2,
        )

    def kamcmd(self, *command: str) -> str:
        result = subprocess.run(
            [find_program("kamcmd", "/usr/sbin"), "-s", f"unix:{self.settings.control_socket}", *command],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout + result.stderr

    def start(self, timeout: float = 15.0) -> KamailioEdge:
        kamailio = find_program("kamailio", "/usr/sbin")
        config = Path(self.settings.config_dir) / "kamailio.cfg"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [kamailio, "-DD", "-E", "-f", str(config), "-w", self.settings.config_dir],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kamailio exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            if Path(self.settings.control_socket).exists() and "uptime" in self.kamcmd("core.uptime"):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio did not answer on {self.settings.control_socket} in {timeout:g} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> KamailioEdge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CallerResult:
    exit_code: int
    successful: int
    failed: int
    response_ms: float  # INVITE -> 200, sipp's mean (rtd)
    rejections: dict[int, int] = field(default_factory=dict)  # final SIP code of failed calls
    output: str = ""
    errors: str = ""  # sipp's error log: the unexpected messages, for a failure report
    setup_ms: list[float] = field(default_factory=list)  # INVITE sent -> 200 received, per call


_MESSAGE = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})\n(?P<way>UDP message (?:sent|received))[^\n]*\n+(?P<first>[^\r\n]*)",
    re.MULTILINE,
)
_CALL_ID = re.compile(r"^Call-ID: *(\S+)", re.MULTILINE | re.IGNORECASE)


def _setup_times(messages: Path) -> list[float]:
    """Per call, ms from its first INVITE sent to its 200 received, from sipp's message log."""
    import datetime

    if not messages.exists():
        return []
    text = messages.read_text(errors="replace")
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    for block in text.split("----------------------------------------------- ")[1:]:
        match = _MESSAGE.match(block)
        call = _CALL_ID.search(block)
        if match is None or call is None:
            continue
        at = datetime.datetime.strptime(match["date"], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        first = match["first"]
        if match["way"].endswith("sent") and first.startswith("INVITE "):
            sent.setdefault(call.group(1), at)
        elif first.startswith("SIP/2.0 200") and "INVITE" in block.split("CSeq:", 1)[-1].split("\n", 1)[0]:
            answered.setdefault(call.group(1), at)
    return [1000 * (answered[c] - sent[c]) for c in sent if c in answered]


def _duration_ms(text: str) -> float:
    """sipp's 'HH:MM:SS:uuuuuu' (or seconds with decimals) as milliseconds."""
    parts = text.strip().split(":")
    if len(parts) == 4:
        hours, minutes, seconds, micros = (float(p) for p in parts)
        return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micros / 1000
    return float(text) * 1000 if text.strip() else 0.0


# Callers started and not yet waited for: a test that fails while its callers hold calls must
# not leave sipp holding its port for the next test (stop_running_callers).
_RUNNING: weakref.WeakSet[Callers] = weakref.WeakSet()


def stop_running_callers() -> int:
    """Kill every sipp caller still running; how many there were."""
    stopped = 0
    for callers in list(_RUNNING):
        process = callers.process
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
            stopped += 1
        _RUNNING.discard(callers)
    return stopped


class Callers:
    """sipp as callers, placing `calls` calls to `called` through an edge."""

    def __init__(
        self,
        edge: tuple[str, int],
        called: str,
        callers: list[str],
        *,
        calls: int,
        rate: float,
        hold_ms: int,
        max_concurrent: int = 100,
        local_address: str = "127.0.0.90",
        local_port: int = 5090,
        timeout_s: float = 120.0,
        rate_increase: tuple[float, float, int] | None = None,
        measure_setup: bool = False,
        ask_human_after_ms: int | None = None,
        digit: str = "0",
    ) -> None:
        """`rate_increase`: (step, max, every_s): the rate grows by step every every_s seconds.
        `ask_human_after_ms`: each caller asks for a human (DTMF `digit` in a SIP INFO) then."""
        self.ask_human_after_ms = ask_human_after_ms
        self.digit = digit
        self.rate_increase = rate_increase
        # VOICEOP_SIPP_TRACE=1: keep every message sipp saw, and its work folder (printed).
        self.trace = os.environ.get("VOICEOP_SIPP_TRACE") == "1"
        # sipp's own response times have 1 ms resolution; its message log has microseconds.
        self.measure_setup = measure_setup
        self.edge = (_loopback(edge[0]), edge[1])
        self.called = called
        self.callers = callers
        self.calls = calls
        self.rate = rate
        self.hold_ms = hold_ms
        self.max_concurrent = max_concurrent
        self.local = (_loopback(local_address), local_port)
        self.timeout_s = timeout_s
        self.workdir = Path(tempfile.mkdtemp(prefix="voiceop-sipp-"))
        self.process: subprocess.Popen[str] | None = None

    def scenario(self) -> str:
        """The caller scenario with this run's hold time, and the ASK block only if asked."""
        text = resources.files("voiceop.sandbox").joinpath("sipp/caller.xml").read_text(encoding="iso-8859-1")
        if self.ask_human_after_ms is None:
            text = re.sub(r"<!--ASK-->.*?<!--/ASK-->", "", text, flags=re.DOTALL)
        return (
            text.replace("@HOLD_MS@", str(self.hold_ms))
            .replace("@ASK_AFTER_MS@", str(self.ask_human_after_ms or 0))
            .replace("@DIGIT@", self.digit)
        )

    def command(self) -> list[str]:
        scenario = self.workdir / "caller.xml"
        scenario.write_text(self.scenario(), encoding="iso-8859-1")
        with (self.workdir / "callers.csv").open("w", newline="") as stream:
            stream.write("SEQUENTIAL\n")
            csv.writer(stream, delimiter=";").writerows([number, ""] for number in self.callers)
        return [
            find_program("sipp"),
            "-sf", str(scenario),
            "-inf", str(self.workdir / "callers.csv"),
            "-s", self.called,
            "-i", self.local[0],
            "-p", str(self.local[1]),
            f"{self.edge[0]}:{self.edge[1]}",
            "-m", str(self.calls),
            "-r", str(round(self.rate * RATE_PERIOD_S)),
            "-rp", f"{RATE_PERIOD_S}s",
            "-l", str(self.max_concurrent),
            "-d", str(self.hold_ms),
            "-timeout", f"{self.timeout_s:g}s",
            "-timeout_error",
            "-nostdin",
            "-trace_stat", "-stf", str(self.workdir / "stat.csv"),
            "-trace_err", "-error_file", str(self.workdir / "errors.log"),
            *self._rate_options(),
            *(["-trace_msg", "-message_file", str(self.workdir / "messages.log")] if self.trace or self.measure_setup else []),
        ]  # fmt: skip

    def _rate_options(self) -> list[str]:
        if self.rate_increase is None:
            return ["-fd", "1"]
        step, top, every = self.rate_increase
        return [
            "-fd", "1",
            "-rate_increase", str(round(step * RATE_PERIOD_S)),
            "-rate_max", str(round(top * RATE_PERIOD_S)),
            "-rate_interval", f"{every}s",
            "-no_rate_quit",
        ]  # fmt: skip

    def start(self) -> Callers:
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        _RUNNING.add(self)
        return self

    def wait(self) -> CallerResult:
        assert self.process is not None
        try:
            output, _ = self.process.communicate(timeout=self.timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        finally:
            _RUNNING.discard(self)
        return self._result(self.process.returncode, output)

    def run(self) -> CallerResult:
        return self.start().wait()

    def _result(self, code: int, output: str) -> CallerResult:
        successful = failed = 0
        response_ms = 0.0
        stat = self.workdir / "stat.csv"
        if stat.exists():
            rows = list(csv.DictReader(stat.open(), delimiter=";"))
            if rows:
                last = rows[-1]
                successful = int(last.get("SuccessfulCall(C)") or 0)
                failed = int(last.get("FailedCall(C)") or 0)
                response_ms = _duration_ms(last.get("ResponseTime1(C)") or "0")
        rejections: dict[int, int] = {}
        errors = self.workdir / "errors.log"
        error_text = errors.read_text(errors="replace") if errors.exists() else ""
        if error_text:
            for match in _REJECTION.finditer(error_text):
                status = int(match.group(1))
                rejections[status] = rejections.get(status, 0) + 1
        setup_ms = _setup_times(self.workdir / "messages.log") if self.measure_setup else []
        if self.trace:
            error_text = f"(sipp's files kept in {self.workdir})\n" + error_text
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return CallerResult(
            code, successful, failed, response_ms, rejections, output[-3000:], error_text[:6000], setup_ms
        )


class HumanQueue:
    """sipp as the human agents' queue on a loopback address: answers every call handed to it
    and logs its Call-ID; `received()` lists them."""

    def __init__(self, address: str = "127.0.0.9", port: int = 5099, user: str = "humans") -> None:
        self.address = _loopback(address)
        self.port = port
        self.user = user
        self.workdir = Path(tempfile.mkdtemp(prefix="voiceop-humans-"))
        self.log = self.workdir / "handoffs.log"
        self.process: subprocess.Popen[str] | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.address}:{self.port}"

    def start(self) -> HumanQueue:
        scenario = self.workdir / "human.xml"
        scenario.write_bytes(resources.files("voiceop.sandbox").joinpath("sipp/human.xml").read_bytes())
        command = [
            find_program("sipp"),
            "-sf", str(scenario),
            "-i", self.address,
            "-p", str(self.port),
            "-trace_logs", "-log_file", str(self.log),
            "-trace_err", "-error_file", str(self.workdir / "errors.log"),
            "-nostdin",
        ]  # fmt: skip
        with (self.workdir / "sipp.out").open("w") as out:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        time.sleep(0.3)
        if self.process.poll() is not None:
            raise RuntimeError(
                f"sipp (human queue) exited: {(self.workdir / 'sipp.out').read_text()[-1000:]}"
            )
        return self

    def received(self) -> list[str]:
        """Call-IDs of the calls the humans answered, in order."""
        if not self.log.exists():
            return []
        return [
            line.split()[1]
            for line in self.log.read_text(errors="replace").splitlines()
            if line.startswith("handoff ") and len(line.split()) >= 2
        ]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> HumanQueue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyncedEdge:
    """The edge pod: `voiceop edge sync` writing the tables, Kamailio serving from them."""

    def __init__(
        self,
        kubeconfig: Path,
        config_dir: Path,
        *,
        address: str = "127.0.0.1",
        port: int = 5060,
        namespaces: tuple[str, ...] = (),
        endpoints_from: str = "pods",
        handoff_gateway: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.handoff_gateway = handoff_gateway
        self.config_dir = config_dir
        self.namespaces = namespaces
        self.endpoints_from = endpoints_from
        self.kamailio = KamailioEdge(KamailioEdge.settings_for(config_dir, address, port), address, port)
        self.sync: subprocess.Popen[str] | None = None
        self.sync_log = config_dir / "sync.log"

    @property
    def address(self) -> str:
        return self.kamailio.address

    @property
    def port(self) -> int:
        return self.kamailio.port

    def start(self, timeout: float = 30.0) -> SyncedEdge:
        import sys

        self.config_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "voiceop", "edge", "sync", "--config-dir", str(self.config_dir)]
        command += ["--endpoints-from", self.endpoints_from, "--kamcmd", find_program("kamcmd", "/usr/sbin")]
        command += [f"--listen={listen}" for listen in self.kamailio.settings.listens]
        command += [f"--handoff-gateway={self.handoff_gateway}"] if self.handoff_gateway else []
        for namespace in self.namespaces:
            command += ["-n", namespace]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.sync_log.open("w") as log:
            self.sync = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while "synced" not in self.sync_log.read_text():
            if self.sync.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"edge sync did not sync: {self.sync_log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.kamailio.start()
        return self

    def stop(self) -> None:
        self.kamailio.stop()
        if self.sync is not None and self.sync.poll() is None:
            self.sync.terminate()
            try:
                self.sync.wait(10)
            except subprocess.TimeoutExpired:
                self.sync.kill()
                self.sync.wait(5)

    def __enter__(self) -> SyncedEdge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
