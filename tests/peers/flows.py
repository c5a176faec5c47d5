"""Call flows through pypbx built from SIPp runs: register a phone, ring it, call it.

The callee registers with register.xml from the port its UAS scenario then listens on, so
pypbx's binding points at the UAS whether it routes by Contact or by source address. Every
helper takes the `sipp` fixture's factory, so each run gets its own ports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from peers.baresip import BaresipPhone
from peers.pbx import PbxProcess
from peers.ports import port_is_free
from peers.sipp import Sipp, SippResult

# what the conftest fixtures of the same names hand out, for annotating tests
SippFactory = Callable[..., Sipp]
PbxFactory = Callable[..., PbxProcess]
PhoneFactory = Callable[..., BaresipPhone]


def register(pbx: PbxProcess, sipp: SippFactory, ext: str, password: str, **kwargs: Any) -> Sipp:
    """REGISTER `ext` with digest auth (must succeed); the run's port is now its contact."""
    run = sipp("register", remote=pbx.sip_address, service=ext, auth=(ext, password), **kwargs)
    result = run.run()
    assert result.ok, result.describe()
    return run


def start_callee(
    pbx: PbxProcess,
    sipp: SippFactory,
    scenario: str,
    ext: str,
    password: str,
    *,
    pause_ms: int = 1000,
    transport: str = "u1",
    timeout: float = 40,
) -> Sipp:
    """Register `ext` from a fresh port, then run the callee scenario on that same port."""
    reg = register(pbx, sipp, ext, password, transport=transport)
    return listen(
        sipp, scenario, reg.local_port, pause_ms=pause_ms, transport=transport, timeout=timeout
    )


def listen(
    sipp: SippFactory,
    scenario: str,
    port: int,
    *,
    pause_ms: int = 1000,
    transport: str = "u1",
    timeout: float = 40,
) -> Sipp:
    """Start a callee scenario on `port` (an address already registered) and wait for it."""
    uas = sipp(
        scenario,
        local_port=port,
        rtp_echo=True,
        pause_ms=pause_ms,
        transport=transport,
        timeout=timeout,
    )
    uas.start().wait_until_listening()
    return uas


def caller(
    pbx: PbxProcess,
    sipp: SippFactory,
    scenario: str,
    number: str,
    ext: str,
    password: str,
    **kwargs: Any,
) -> Sipp:
    """A caller run as extension `ext` dialling `number` (not started)."""
    kwargs.setdefault("timeout", 40)
    return sipp(
        scenario,
        remote=pbx.sip_address,
        service=number,
        auth=(ext, password),
        keys={"caller": ext},
        **kwargs,
    )


def finish(*runs: Sipp) -> list[SippResult]:
    """Wait for every SIPp run (callers first), then assert each one followed its script."""
    results = [run.wait() for run in runs]
    for result in results:
        assert result.ok, result.describe()
    return results


def final_status(result: SippResult) -> int:
    """The last final (>= 200) INVITE response a caller run received."""
    finals = [
        m.status
        for m in result.received(method="INVITE")
        if m.status is not None and m.status >= 200
    ]
    assert finals, f"no final INVITE response\n{result.describe()}"
    return finals[-1]


def no_calls_left(pbx: PbxProcess, timeout: float = 10) -> None:
    """No active call is listed, and pypbx holds none of its RTP ports any more: every leg of
    every call (transferred ones included) has been released."""
    pbx.wait_for_calls(lambda calls: calls == [], timeout=timeout)
    deadline = time.monotonic() + 5.0
    while True:
        held = rtp_ports_held(pbx)
        if not held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pypbx still holds RTP ports {held} with no call active")
        time.sleep(0.1)


def rtp_ports_held(pbx: PbxProcess) -> list[int]:
    """The ports of pypbx's RTP range that something (pypbx) still has bound."""
    low, high = pbx.rtp_ports
    return [port for port in range(low, high + 1) if not port_is_free(port)]


def wait_for_state(pbx: PbxProcess, state: str, timeout: float = 15) -> dict[str, str]:
    """Wait until the one active call is in `state`; return it."""
    (call,) = pbx.wait_for_calls(
        lambda calls: len(calls) == 1 and calls[0].get("CallState") == state,
        timeout=timeout,
        interval=0.1,
    )
    return call
