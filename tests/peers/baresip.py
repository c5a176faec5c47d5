"""Drive a real baresip softphone from tests: register, dial, answer, hang up, record.

Every phone gets a private config directory written from scratch (baresip's defaults bind
every interface and load NAT helpers), listens on 127.0.0.1 only, plays a WAV file as its
microphone and records what it hears through the sndfile module. The speaker is an aubridge
device nobody reads: unlike ALSA's null device it does not spin a CPU core. Control goes over the
ctrl_tcp module: netstring-framed JSON commands, with events pushed on the same socket.
A reader thread collects events so tests can wait for them synchronously.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

MODULE_PATH = Path("/usr/lib/baresip/modules")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BaresipError(RuntimeError):
    """A phone did not do what the test asked in time; the message includes its log tail."""


@dataclass
class BaresipAccount:
    """One SIP account line.

    `domain` is `host:port` of the registrar, or of the phone itself for registrar-less
    peer-to-peer calls (then use `regint=0`).
    """

    user: str
    domain: str
    password: str | None = None
    regint: int = 600
    answermode: str = "auto"
    transport: str = "udp"
    codecs: str = "PCMU,PCMA"
    display_name: str | None = None

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def line(self) -> str:
        uri = f"sip:{self.user}@{self.domain}"
        if self.transport != "udp":
            uri += f";transport={self.transport}"
        name = f'"{self.display_name}" ' if self.display_name else ""
        params = [f"regint={self.regint}", f"answermode={self.answermode}"]
        if self.password is not None:
            params.insert(0, f"auth_pass={self.password}")
        params.append(f"audio_codecs={self.codecs}")
        return f"{name}<{uri}>;" + ";".join(params)


def encode_netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


class NetstringReader:
    """Incremental netstring decoder: feed bytes, get complete payloads out."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                return out
            length = int(self._buf[:colon])
            end = colon + 1 + length
            if len(self._buf) < end + 1:
                return out
            if self._buf[end : end + 1] != b",":
                raise ValueError(f"bad netstring terminator in {self._buf[: end + 1]!r}")
            out.append(self._buf[colon + 1 : end])
            self._buf = self._buf[end + 1 :]


@dataclass
class _Inbox:
    """Events and responses from the reader thread, guarded by one condition variable."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    events: list[dict[str, Any]] = field(default_factory=list)
    claimed: set[int] = field(default_factory=set)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed: bool = False


class BaresipPhone:
    """One baresip process with one account; use as a context manager or call stop()."""

    def __init__(
        self,
        workdir: Path,
        *,
        account: BaresipAccount,
        sip_port: int,
        ctrl_port: int,
        cons_port: int,
        rtp_ports: tuple[int, int],
        tone_wav: Path,
        lifetime: int = 300,
    ) -> None:
        self.workdir = workdir
        self.account = account
        self.sip_port = sip_port
        self.ctrl_port = ctrl_port
        self.cons_port = cons_port
        self.rtp_ports = rtp_ports
        self.tone_wav = tone_wav
        self.lifetime = lifetime
        self.rec_dir = workdir / "rec"
        self.log_path = workdir / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._inbox = _Inbox()
        self._token = 0

    # -- lifecycle -------------------------------------------------------------------------

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(exist_ok=True)
        lo, hi = self.rtp_ports
        config = f"""\
sip_listen\t\t127.0.0.1:{self.sip_port}
net_interface\t\t127.0.0.1
audio_player\t\taubridge,sink
audio_alert\t\taubridge,alert
audio_source\t\taufile,{self.tone_wav}
rtp_ports\t\t{lo}-{hi}
module_path\t\t{MODULE_PATH}
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module\t\t\tsndfile.so
snd_path\t\t{self.rec_dir}
module_app\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
module_app\t\tcons.so
ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}
cons_listen\t\t127.0.0.1:{self.cons_port}
dns_server\t\t127.0.0.1:53
"""
        (self.workdir / "config").write_text(config)
        (self.workdir / "accounts").write_text(self.account.line() + "\n")

    def start(self, *, wait_registered: bool | None = None, timeout: float = 10.0) -> None:
        """Write config, spawn baresip, connect ctrl_tcp; wait until registered if registering."""
        if shutil.which("baresip") is None:
            raise BaresipError("baresip is not installed (Debian package baresip-core)")
        self.write_config()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            ["baresip", "-f", str(self.workdir), "-t", str(self.lifetime)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._connect(timeout)
        if wait_registered is None:
            wait_registered = self.account.regint > 0
        if wait_registered:
            self.wait_registered(timeout)

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"ctrl_tcp never opened\n{self.log_tail()}") from None
                time.sleep(0.05)
        sock.settimeout(None)
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read_loop, args=(sock,), name=f"baresip-{self.account.user}", daemon=True
        )
        self._reader.start()

    def _read_loop(self, sock: socket.socket) -> None:
        decoder = NetstringReader()
        inbox = self._inbox
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for raw in decoder.feed(data):
                    msg = json.loads(raw)
                    with inbox.cond:
                        if msg.get("event"):
                            logger.debug("%s event %s", self.account.user, msg)
                            inbox.events.append(msg)
                        elif msg.get("response"):
                            inbox.responses[str(msg.get("token"))] = msg
                        inbox.cond.notify_all()
        except (OSError, ValueError) as exc:
            logger.debug("%s ctrl reader stopped: %s", self.account.user, exc)
        finally:
            with inbox.cond:
                inbox.closed = True
                inbox.cond.notify_all()

    def stop(self, grace: float = 3.0) -> int | None:
        """SIGTERM, a second SIGTERM, then SIGKILL; always reaps. Returns the exit status."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        proc = self.proc
        if proc is None:
            return None
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        if self._reader is not None:
            self._reader.join(2.0)
        return proc.poll()

    def __enter__(self) -> BaresipPhone:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a ctrl_tcp command and return its response object (raises unless ok)."""
        if self._sock is None:
            raise BaresipError("phone not started")
        self._token += 1
        token = str(self._token)
        payload: dict[str, Any] = {"command": command, "token": token}
        if params:
            payload["params"] = params
        self._sock.sendall(encode_netstring(payload))
        inbox = self._inbox
        with inbox.cond:
            ok = inbox.cond.wait_for(
                lambda: token in inbox.responses or inbox.closed, timeout=timeout
            )
            response = inbox.responses.pop(token, None)
        if not ok or response is None:
            raise BaresipError(f"no response to {command!r}\n{self.log_tail()}")
        if not response.get("ok"):
            raise BaresipError(f"{command!r} failed: {response}")
        return response

    def registration_state(self) -> str:
        """'OK', 'ERR' (last attempt failed) or 'zzz' (not yet / not registering)."""
        text = _ANSI.sub("", self.reginfo())
        for state in ("OK", "ERR"):
            if f" {state} " in text:
                return state
        return "zzz"

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Wait until registered; fail fast once an attempt has failed.

        Polls `reginfo` rather than waiting for REGISTER_OK, because baresip registers as
        soon as it starts, often before our ctrl_tcp connection exists to receive the event.
        The reason for a failure is in baresip's log ("reg: ...: Register: ..."), which the
        error includes.
        """
        deadline = time.monotonic() + timeout
        while (state := self.registration_state()) != "OK":
            if state == "ERR" or self.events("REGISTER_FAIL"):
                raise BaresipError(f"{self.account.user}: registration failed\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BaresipError(
                    f"{self.account.user}: not registered after {timeout} s\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def hangup(self) -> None:
        self.command("hangup")

    def reginfo(self) -> str:
        return str(self.command("reginfo").get("data", ""))

    def set_answermode(self, mode: str) -> None:
        self.command("answermode", mode)

    def send_dtmf(self, digits: str) -> None:
        """Type digits on the cons module, which sends them as RFC 4733 events in a call."""
        with socket.create_connection(("127.0.0.1", self.cons_port), timeout=2.0) as sock:
            for digit in digits:
                sock.sendall(digit.encode())
                time.sleep(0.25)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """All events received so far (optionally only one type), claimed or not."""
        with self._inbox.cond:
            return [e for e in self._inbox.events if event_type in (None, e.get("type"))]

    def wait_for_event(self, event_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """Return the oldest not-yet-returned event of this type, waiting up to `timeout`.

        Events that arrived before the call are found too, so there is no race between an
        action and the wait for its consequence.
        """
        inbox = self._inbox
        found: list[int] = []

        def ready() -> bool:
            for i, event in enumerate(inbox.events):
                if i not in inbox.claimed and event.get("type") == event_type:
                    found.append(i)
                    return True
            return inbox.closed

        with inbox.cond:
            inbox.cond.wait_for(ready, timeout=timeout)
            if found:
                inbox.claimed.add(found[0])
                return inbox.events[found[0]]
            seen = [e.get("type") for e in inbox.events]
        raise BaresipError(
            f"{self.account.user}: no {event_type} within {timeout} s; events seen: {seen}\n"
            f"{self.log_tail()}"
        )

    # -- results ---------------------------------------------------------------------------

    def recordings(self, kind: str = "dec") -> list[Path]:
        """sndfile dumps, oldest first: 'dec' is what the phone heard, 'enc' what it sent."""
        return sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)

    def received_recording(self) -> Path:
        """The newest recording of what this phone heard (final once the call has closed)."""
        found = self.recordings("dec")
        if not found:
            raise BaresipError(f"{self.account.user}: no recording in {self.rec_dir}")
        return found[-1]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        # baresip redraws a status line with \r; keep the log readable in assertion output
        text = "\n".join(line.split("\r")[-1] for line in text.splitlines())
        return "\n".join(text.splitlines()[-lines:])
