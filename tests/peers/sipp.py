"""Run SIPp scenarios from tests and collect what happened.

SIPp's exit status is the verdict (0: every call followed the scenario), and its message
trace and error log explain a failure. Every run binds 127.0.0.1 on ports the test chose,
including the control port (-cp), which otherwise defaults to 8888 and collides under
parallel runs. A global -timeout with -timeout_error guarantees that no run hangs a test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "integration" / "scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")

# SIPp's documented exit codes
EXIT_CODES = {
    0: "all calls were successful",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    255: "fatal error (see stderr)",
    254: "fatal error binding a socket",
}


class SippError(RuntimeError):
    """SIPp could not be run at all (not installed, bad arguments)."""


# One entry of SIPp's -trace_msg log: a dashed line with a timestamp, a line saying what
# happened ("UDP message sent (626 bytes):", "TCP message received [400] bytes :"), a blank
# line, then the message itself.
_TRACE_ENTRY = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
    r"\w+ message (sent|received)[^\n]*\n\n(.*?)(?=^-{20,} \d{4}-|\Z)",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class TracedMessage:
    """One SIP message SIPp sent or received, as its message trace recorded it."""

    time: datetime
    sent: bool
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    @property
    def status(self) -> int | None:
        """The status code of a response, None for a request."""
        parts = self.first_line.split(" ", 2)
        if parts[0] == "SIP/2.0" and len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
        return None

    @property
    def method(self) -> str | None:
        """The method of a request, None for a response."""
        return None if self.status is not None else self.first_line.split(" ", 1)[0]

    @property
    def header_lines(self) -> list[str]:
        head = self.text.split("\n\n", 1)[0]
        return head.split("\n")[1:]

    def headers(self, name: str) -> list[str]:
        """Values of every header called `name` (case-insensitive; no compact forms)."""
        wanted = name.casefold()
        values = []
        for line in self.header_lines:
            key, sep, value = line.partition(":")
            if sep and key.strip().casefold() == wanted:
                values.append(value.strip())
        return values

    def header(self, name: str) -> str | None:
        found = self.headers(name)
        return found[0] if found else None

    def require(self, name: str) -> str:
        """The first `name` header's value; an AssertionError showing the message if absent."""
        value = self.header(name)
        if value is None:
            raise AssertionError(f"no {name} header in:\n{self.text}")
        return value

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else None

    @property
    def body(self) -> str:
        parts = self.text.split("\n\n", 1)
        return parts[1].strip("\n") if len(parts) > 1 else ""


def parse_trace(log: str) -> list[TracedMessage]:
    """Split a SIPp -trace_msg log into its messages, in the order they were logged."""
    text = log.replace("\r\n", "\n")
    return [
        TracedMessage(
            time=datetime.fromisoformat(match.group(1)),
            sent=match.group(2) == "sent",
            text=match.group(3).strip("\n"),
        )
        for match in _TRACE_ENTRY.finditer(text)
    ]


@dataclass
class SippResult:
    """Outcome of one SIPp run, with its logs read back for assertion messages."""

    scenario: str
    returncode: int
    command: list[str]
    screen: str
    errors: str
    messages: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def trace(self) -> list[TracedMessage]:
        """Every message SIPp sent or received (needs the -trace_msg log every run writes)."""
        return parse_trace(self.messages)

    def received(self, status: int | None = None, method: str | None = None) -> list[TracedMessage]:
        """Messages SIPp received, in order, optionally filtered.

        `status` keeps only responses with that code; `method` keeps requests of that method
        and responses to such requests (by CSeq), so received(method="INVITE") at a caller
        lists the responses to its INVITEs.
        """
        return [
            m
            for m in self.trace()
            if not m.sent
            and (status is None or m.status == status)
            and (method is None or (m.cseq_method if m.status else m.method) == method)
        ]

    def describe(self, tail: int = 6000) -> str:
        meaning = EXIT_CODES.get(self.returncode, "unknown")
        return (
            f"sipp {self.scenario} exited {self.returncode} ({meaning})\n"
            f"command: {' '.join(self.command)}\n"
            f"--- errors ---\n{self.errors[-tail:]}\n"
            f"--- messages ---\n{self.messages[-tail:]}\n"
            f"--- screen ---\n{self.screen[-2000:]}"
        )


def scenario_path(name: str) -> Path:
    """Resolve a scenario name ('uac_call' or 'uac_call.xml') in tests/integration/scenarios."""
    path = SCENARIOS / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        raise SippError(f"no SIPp scenario {path}")
    return path


class Sipp:
    """One SIPp process running one scenario; start() then wait(), or run() for both."""

    def __init__(
        self,
        workdir: Path,
        scenario: str,
        *,
        local_port: int,
        control_port: int,
        remote: str | None = None,
        media_port: int | None = None,
        service: str | None = None,
        auth: tuple[str, str] | None = None,
        auth_uri: str | None = None,
        keys: dict[str, str] | None = None,
        variables: dict[str, str] | None = None,
        calls: int = 1,
        pause_ms: int = 1000,
        timeout: float = 30.0,
        rtp_echo: bool = False,
        transport: str = "u1",
        extra: list[str] | None = None,
    ) -> None:
        self.scenario = scenario_path(scenario)
        self.workdir = workdir
        self.timeout = timeout
        self.name = self.scenario.stem
        self.local_port = local_port
        self.transport = transport
        workdir.mkdir(parents=True, exist_ok=True)
        stem = workdir / f"{self.name}-{local_port}"
        self.error_file = stem.with_suffix(".errors.log")
        self.message_file = stem.with_suffix(".messages.log")
        self.screen_file = stem.with_suffix(".screen.log")
        self.stdout_file = stem.with_suffix(".stdout.log")
        cmd = ["sipp", "-sf", str(self.scenario)]
        if remote is not None:
            cmd.append(remote)
        cmd += ["-i", "127.0.0.1", "-p", str(local_port), "-bind_local", "-t", transport]
        cmd += ["-cp", str(control_port), "-m", str(calls), "-d", str(pause_ms)]
        cmd += ["-nostdin", "-aa", "-timeout", f"{int(timeout)}s", "-timeout_error"]
        cmd += ["-trace_err", "-error_file", str(self.error_file)]
        cmd += ["-trace_msg", "-message_file", str(self.message_file)]
        cmd += ["-trace_screen", "-screen_file", str(self.screen_file)]
        if media_port is not None:
            cmd += ["-mi", "127.0.0.1", "-mp", str(media_port)]
        if rtp_echo:
            cmd.append("-rtp_echo")
        if service is not None:
            cmd += ["-s", service]
        if auth is not None:
            cmd += ["-au", auth[0], "-ap", auth[1]]
            # SIPp's digest uri defaults to remote_ip:port; RFC 3261 wants the Request-URI,
            # which in our call scenarios is sip:SERVICE@remote
            in_call = not self.name.startswith("register")
            if auth_uri is None and remote is not None and service is not None and in_call:
                auth_uri = f"{service}@{remote}"
            if auth_uri is not None:
                cmd += ["-auth_uri", auth_uri]
        for key, value in (keys or {}).items():
            cmd += ["-key", key, value]
        for name, value in (variables or {}).items():
            cmd += ["-set", name, value]
        cmd += extra or []
        self.command = cmd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        if shutil.which("sipp") is None:
            raise SippError("sipp is not installed (Debian package sip-tester)")
        with self.stdout_file.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for exit (default: SIPp's own -timeout plus slack) and collect the logs."""
        if self.proc is None:
            raise SippError("sipp not started")
        try:
            rc = self.proc.wait(self.timeout + 10.0 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            rc = self.proc.wait()
        return self._result(rc)

    def run(self) -> SippResult:
        return self.start().wait()

    def wait_until_listening(self, timeout: float = 5.0) -> None:
        """Wait until SIPp has bound its SIP port (our own bind attempt starts failing).

        Over TCP the probe sets SO_REUSEADDR, so a connection from an earlier run on the
        same port lingering in TIME_WAIT does not pass for SIPp's listening socket.
        """
        tcp = self.transport.startswith("t")
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SippError(self._result(self.proc.returncode).describe())
            with socket.socket(socket.AF_INET, kind) as probe:
                if tcp:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", self.local_port))
                except OSError:
                    return
            time.sleep(0.05)
        raise SippError(f"sipp {self.name} did not bind port {self.local_port} in {timeout} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; always reaps."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
                return

    def _result(self, rc: int) -> SippResult:
        def read(path: Path) -> str:
            try:
                return path.read_text(errors="replace")
            except OSError:
                return ""

        screen = read(self.screen_file) or read(self.stdout_file)
        return SippResult(
            scenario=self.name,
            returncode=rc,
            command=self.command,
            screen=screen,
            errors=read(self.error_file),
            messages=read(self.message_file),
        )
