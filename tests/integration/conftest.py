"""Fixtures for integration tests: ports, a pypbx process, baresip phones, SIPp runs.

Every fixture allocates its own loopback ports and working directory, and every process it
starts is reaped in its finalizer, so tests run in parallel (pytest -n auto) and a failing
test leaves nothing behind. On failure the pypbx log tail is printed with the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peers.baresip import BaresipAccount, BaresipPhone
from peers.pbx import PbxProcess
from peers.ports import PortAllocator
from peers.sipp import Sipp
from peers.tones import write_tone
from peers.webhook import WebServer

PhoneFactory = Callable[..., BaresipPhone]
SippFactory = Callable[..., Sipp]
PbxFactory = Callable[..., PbxProcess]


@pytest.fixture(scope="session")
def ports() -> PortAllocator:
    return PortAllocator()


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def start_pbx(
    request: pytest.FixtureRequest, tmp_path: Path, ports: PortAllocator
) -> Iterator[PbxFactory]:
    """Factory: start_pbx(config={"sip": {"ring_timeout": 5}}) -> a running PbxProcess.

    Teardown sends SIGTERM and requires exit status 0 within 10 s: a clean shutdown with
    calls and registrations in place is part of what every test checks. A process the test
    stopped itself (pbx.stop()) is held to the same rule by the status that stop returned.
    """
    started: list[PbxProcess] = []

    def start(**kwargs: Any) -> PbxProcess:
        pbx = PbxProcess(tmp_path / f"pbx{len(started)}", ports, **kwargs)
        started.append(pbx)
        return pbx.start()

    yield start
    errors = []
    for pbx in started:
        alive = pbx.alive() or pbx.stopped_by_test
        status = pbx.stop(timeout=10.0)
        if _failed(request):
            print(f"--- pypbx log ({pbx.log_path}) ---\n{pbx.log_tail(200)}")
        if not alive:
            errors.append(f"pypbx died during the test (status {status})")
        elif status != 0:
            errors.append(f"pypbx did not exit 0 within 10 s of SIGTERM (status {status})")
    if errors:
        tail = started[0].log_tail(60) if started else ""
        pytest.fail("; ".join(errors) + "\n" + tail, pytrace=False)


@pytest.fixture
def pbx(start_pbx: PbxFactory) -> PbxProcess:
    """A running pypbx with default settings."""
    return start_pbx()


@pytest.fixture
def make_phone(tmp_path: Path, ports: PortAllocator) -> Iterator[PhoneFactory]:
    """Factory for baresip phones playing a sine tone; all are stopped at teardown.

    make_phone("1000", registrar="127.0.0.1:5060", password="pw", tone=440) registers to
    a PBX; without `registrar` the phone is a registrar-less peer on its own address.
    `codecs` limits what the phone offers and accepts (e.g. "PCMA").
    """
    phones: list[BaresipPhone] = []

    def make(
        user: str,
        *,
        tone: float,
        registrar: str | None = None,
        password: str | None = None,
        answermode: str = "auto",
        start: bool = True,
        tone_seconds: float = 120.0,
        codecs: str = "PCMU,PCMA",
        source_wav: Path | None = None,
    ) -> BaresipPhone:
        workdir = tmp_path / f"phone-{user}-{len(phones)}"
        workdir.mkdir(parents=True)
        sip_port = ports.port()
        rtp = ports.block(10)
        account = BaresipAccount(
            user=user,
            domain=registrar or f"127.0.0.1:{sip_port}",
            password=password,
            regint=600 if registrar else 0,
            answermode=answermode,
            codecs=codecs,
        )
        phone = BaresipPhone(
            workdir,
            account=account,
            sip_port=sip_port,
            ctrl_port=ports.port(),
            cons_port=ports.port(),
            rtp_ports=(rtp, rtp + 9),
            tone_wav=source_wav or write_tone(workdir / f"tone-{tone:g}.wav", tone, tone_seconds),
        )
        phones.append(phone)
        if start:
            phone.start()
        return phone

    yield make
    for phone in phones:
        phone.stop()


@pytest.fixture
def web() -> Iterator[WebServer]:
    """A local web server: receives notifications, serves files for Play."""
    server = WebServer()
    yield server
    server.close()


@pytest.fixture
def sipp(tmp_path: Path, ports: PortAllocator) -> Iterator[SippFactory]:
    """Factory: sipp("uac_call", remote=..., service=...) -> a Sipp (not yet started).

    Fills in a fresh SIP port, control port and media port block unless given.
    """
    runs: list[Sipp] = []

    def make(scenario: str, **kwargs: Any) -> Sipp:
        kwargs.setdefault("local_port", ports.port())
        kwargs.setdefault("control_port", ports.port())
        kwargs.setdefault("media_port", ports.block(4))
        run = Sipp(tmp_path / "sipp", scenario, **kwargs)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()
