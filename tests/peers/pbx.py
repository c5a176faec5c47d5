"""Run pypbx as a real subprocess (`python -m pypbx serve`) and talk to its HTTP API.

Integration tests exercise the product as shipped: the CLI, the config layers, real
sockets, real shutdown. Each instance gets a temporary data dir, its own loopback ports and
a TOML file; readiness is "the HTTP API answers" (the app binds SIP before HTTP).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peers.ports import PortAllocator

ADMIN_USER = "admin"
_SAVE_ALL_LAUNCHER = (
    "import gc, runpy; gc.set_debug(gc.DEBUG_SAVEALL); "
    "runpy.run_module('pypbx', run_name='__main__', alter_sys=True)"
)


class PbxError(RuntimeError):
    """pypbx did not start, answer or stop as expected; the message has its log tail."""


@dataclass
class ApiResult:
    """A parsed API response: <Code>, <Message> and the whole <Response> element."""

    code: int
    message: str
    root: ET.Element
    text: str

    def rows(self, container: str, item: str) -> list[dict[str, str]]:
        """Children of e.g. ActiveCalls/CallInfo as {tag: text} dicts."""
        box = self.root.find(container)
        if box is None:
            raise AssertionError(f"no <{container}> in response:\n{self.text}")
        return [{child.tag: child.text or "" for child in row} for row in box.findall(item)]


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    """Serialise {section: {key: value}} to TOML (strings, numbers, bools, lists, tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(item) for item in v) + "]"
        if isinstance(v, dict):  # an inline table
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {v!r} as TOML")

    lines: list[str] = []
    for section, entries in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(v)}" for key, v in entries.items()]
        lines.append("")
    return "\n".join(lines)


@dataclass
class HistoryRow:
    """One row of the call_history table, read straight from the SQLite file."""

    call_id: str
    start_time: datetime
    answer_time: datetime | None
    end_time: datetime | None
    direction: str
    source: str
    destination: str
    dialed: str
    caller_id: str
    state: str | None
    type: str
    ring_duration: float
    talk_duration: float

    def __str__(self) -> str:
        times = " ".join(
            f"{name}={value:%H:%M:%S.%f}" if value else f"{name}=-"
            for name, value in (
                ("start", self.start_time),
                ("answer", self.answer_time),
                ("end", self.end_time),
            )
        )
        return (
            f"{self.call_id} {self.source}->{self.destination} (dialed {self.dialed}) "
            f"{self.state} ring={self.ring_duration} talk={self.talk_duration} {times}"
        )


def _utc(value: str | None) -> datetime | None:
    """The store writes naive UTC timestamps; give them back aware."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


class PbxProcess:
    """One pypbx server process; start() waits until its HTTP API answers.

    stop() then start() restarts it on the same data dir and ports, which is how tests
    check that nothing is lost across a restart.
    """

    def __init__(
        self,
        workdir: Path,
        ports: PortAllocator,
        *,
        admin_password: str = "admin-secret-1",
        config: dict[str, dict[str, Any]] | None = None,
        log_level: str = "DEBUG",
        rtp_port_count: int = 40,
        db_url: str | None = None,
        keep_cyclic_garbage: bool = False,
    ) -> None:
        self.workdir = workdir
        # gc.DEBUG_SAVEALL from the first line on: whatever only the garbage collector could
        # free stays in gc.garbage, and memory_report() lists it by type.
        self.keep_cyclic_garbage = keep_cyclic_garbage
        self.db_url = db_url  # None: pypbx's default SQLite file in the data dir
        self.data_dir = workdir / "data"
        self.admin_password = admin_password
        self.sip_port = ports.port()
        self.http_port = ports.port()
        rtp = ports.block(rtp_port_count)
        self.rtp_ports = (rtp, rtp + rtp_port_count - 1)
        self.log_path = workdir / "pypbx.log"
        self.config_path = workdir / "pypbx.toml"
        tables: dict[str, dict[str, Any]] = {
            "sip": {"advertised_address": "127.0.0.1"},
            "media": {"advertised_address": "127.0.0.1"},
        }
        for section, entries in (config or {}).items():
            tables.setdefault(section, {}).update(entries)
        self.config = tables
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        # set by stop(): the fixture then checks this status instead of stopping it again
        self.stopped_by_test = False
        self.exit_status: int | None = None

    @property
    def sip_address(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"

    def command(self) -> list[str]:
        launch = ["-m", "pypbx"]
        if self.keep_cyclic_garbage:
            launch = ["-c", _SAVE_ALL_LAUNCHER]
        return [
            sys.executable,
            *launch,
            "serve",
            "--config",
            str(self.config_path),
            "--data-dir",
            str(self.data_dir),
            "--sip-listen",
            self.sip_address,
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--rtp-ports",
            f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "--admin-password",
            self.admin_password,
            "--log-level",
            self.log_level,
            *(["--db", self.db_url] if self.db_url is not None else []),
        ]

    @property
    def db_path(self) -> Path:
        """The SQLite file pypbx keeps in its data dir by default."""
        return self.data_dir / "pypbx.sqlite3"

    def start(self, timeout: float = 20.0) -> PbxProcess:
        if self.alive():
            raise PbxError("pypbx is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(self.config))
        # No settings from the caller's environment (the config file is the test's), but
        # the choice of compiled or interpreted core (pypbx.core_build) passes through.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PYPBX_") or k == "PYPBX_PURE_PYTHON"
        }
        env["PYTHONUNBUFFERED"] = "1"
        self.stopped_by_test = False
        self.exit_status = None
        # append: after a restart the log still holds what happened before it
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PbxError(f"pypbx exited with {self.proc.returncode}\n{self.log_tail()}")
            if self._http_answers():
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise PbxError(f"pypbx HTTP API not up after {timeout} s\n{self.log_tail()}")
            time.sleep(0.1)

    def _http_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url, timeout=1.0) as resp:
                resp.read()
            return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except (OSError, TimeoutError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit status, or None if it had to be killed.

        Stopping an already stopped process returns the status of the first stop.
        """
        proc = self.proc
        if proc is None:
            return None
        if self.stopped_by_test and proc.poll() is not None:
            return self.exit_status
        if proc.poll() is None:
            self.stopped_by_test = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.exit_status = None
                return None
        self.exit_status = proc.returncode
        return proc.returncode

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def history(self) -> list[HistoryRow]:
        """Every call_history row, oldest first, read directly from the SQLite file.

        Meant for after stop(): the process has then flushed every row and closed the file.
        """
        if self.alive():
            raise PbxError("read the call history after stop(), not while pypbx runs")
        if self.db_url is not None:
            raise PbxError(f"history() reads the SQLite file; this pypbx uses {self.db_url}")
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM call_history ORDER BY id").fetchall()
        return [
            HistoryRow(
                call_id=row["call_id"],
                start_time=_utc(row["start_time"]) or datetime.min.replace(tzinfo=UTC),
                answer_time=_utc(row["answer_time"]),
                end_time=_utc(row["end_time"]),
                direction=row["direction"],
                source=row["source"],
                destination=row["destination"],
                dialed=row["dialed"],
                caller_id=row["caller_id"],
                state=row["state"],
                type=row["type"],
                ring_duration=float(row["ring_duration"]),
                talk_duration=float(row["talk_duration"]),
            )
            for row in rows
        ]

    def memory_report(self, timeout: float = 30.0) -> str:
        """Have pypbx log its memory report (SIGUSR1, pypbx/diagnostics.py) and return it."""
        assert self.proc is not None and self.alive()
        marker = "memory report (SIGUSR1)"
        before = self.log_path.read_text(errors="replace").count(marker)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            if self.log_path.read_text(errors="replace").count(marker) > before:
                time.sleep(0.5)  # the rest of the record may be on its way to the file
                report = self.log_path.read_text(errors="replace").rsplit(marker, 1)[1]
                # the report is one log record: it ends where the next record starts
                ends = re.search(r"^\d{4}-\d\d-\d\d \d\d:", report, re.MULTILINE)
                return report[: ends.start()] if ends else report
            if time.monotonic() > deadline:
                raise PbxError(f"no memory report after {timeout} s\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- HTTP API ----------------------------------------------------------------------------

    def api(self, command: str, *, auth: bool = True, **params: str) -> ApiResult:
        """POST one command (form-encoded) as user admin and parse the XML response."""
        fields = {"command": command, **params}
        if auth:
            fields = {"Username": ADMIN_USER, "Password": self.admin_password, **fields}
        body = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.base_url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10.0) as resp:
                text = resp.read().decode()
        except OSError as exc:
            raise PbxError(f"API {command} failed: {exc}\n{self.log_tail()}") from exc
        try:
            root = ET.fromstring(text)  # our own server on loopback: trusted input
        except ET.ParseError as exc:
            raise PbxError(f"API {command} returned non-XML: {exc}\n{text}") from exc
        code = root.findtext("Code")
        if code is None:
            raise PbxError(f"API {command} response without <Code>:\n{text}")
        return ApiResult(int(code), root.findtext("Message") or "", root, text)

    def add_sip_extension(self, ext: str, password: str) -> None:
        """AddConfig a SIP extension whose user and auth names are the number itself."""
        config = ET.Element("Config", knownType="SIPExtensionInfo")
        for tag, text in (
            ("AuthorizationName", ext),
            ("Password", password),
            ("Username", ext),
            ("Enabled", "true"),
            ("ID", ext),
            ("UserID", f"user{ext}"),
        ):
            ET.SubElement(config, tag).text = text
        xml = ET.tostring(config, encoding="unicode")
        result = self.api("AddConfig", ExtensionType="SIP", ConfigXML=xml)
        if result.code != 200:
            raise PbxError(f"AddConfig {ext} failed: {result.code} {result.message}")

    def add_api_extension(self, ext: str, incoming_call_url: str = "") -> None:
        """AddConfig an API extension (its calls are driven by OzML from the URL)."""
        config = ET.Element("Config", knownType="APIExtensionInfo")
        for tag, text in (("ID", ext), ("Enabled", "true"), ("IncomingCallUrl", incoming_call_url)):
            ET.SubElement(config, tag).text = text
        xml = ET.tostring(config, encoding="unicode")
        result = self.api("AddConfig", ExtensionType="API", ConfigXML=xml)
        if result.code != 200:
            raise PbxError(f"AddConfig {ext} failed: {result.code} {result.message}")

    def add_config(self, extension_type: str, known_type: str, **fields: str) -> None:
        """AddConfig any type from its fields (ConfigXML element name -> text)."""
        config = ET.Element("Config", knownType=known_type)
        for tag, text in fields.items():
            ET.SubElement(config, tag).text = text
        xml = ET.tostring(config, encoding="unicode")
        result = self.api("AddConfig", ExtensionType=extension_type, ConfigXML=xml)
        if result.code != 200:
            raise PbxError(f"AddConfig {extension_type} failed: {result.code} {result.message}")

    def modify_sip_extension(self, ext: str, **fields: str) -> ApiResult:
        """ModifyConfig with only the given elements (e.g. Password="x", Enabled="false")."""
        config = ET.Element("Config", knownType="SIPExtensionInfo")
        ET.SubElement(config, "ID").text = ext
        for tag, text in fields.items():
            ET.SubElement(config, tag).text = text
        xml = ET.tostring(config, encoding="unicode")
        return self.api("ModifyConfig", ExtensionType="SIP", ConfigXML=xml)

    def remove_extension(self, ext: str) -> ApiResult:
        return self.api("RemoveConfig", ExtensionId=ext)

    def extensions(self) -> dict[str, str]:
        """ListExtensions as {phone number: State}."""
        result = self.api("ListExtensions")
        if result.code != 200:
            raise PbxError(f"ListExtensions failed: {result.code} {result.message}")
        return {
            row["PhoneNumber"]: row["State"]
            for row in result.rows("Extensions", "ExtensionSummary")
        }

    def active_calls(self) -> list[dict[str, str]]:
        result = self.api("ListActiveCalls")
        if result.code != 200:
            raise PbxError(f"ListActiveCalls failed: {result.code} {result.message}")
        return result.rows("ActiveCalls", "CallInfo")

    def wait_for_calls(
        self,
        predicate: Callable[[list[dict[str, str]]], bool],
        timeout: float = 10.0,
        interval: float = 0.2,
    ) -> list[dict[str, str]]:
        """Poll ListActiveCalls until predicate(calls) is true; return those calls."""
        deadline = time.monotonic() + timeout
        calls = self.active_calls()
        while not predicate(calls):
            if time.monotonic() > deadline:
                raise AssertionError(f"ListActiveCalls never matched; last: {calls}")
            time.sleep(interval)
            calls = self.active_calls()
        return calls

    def send_udp(self, payloads: list[bytes], source_port: int | None = None) -> None:
        """Fire raw datagrams at the SIP port (for robustness tests)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", source_port or 0))
            for payload in payloads:
                sock.sendto(payload, ("127.0.0.1", self.sip_port))
