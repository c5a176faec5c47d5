"""A finished call is freed by reference counting alone: no reference cycles left behind.

A call's objects that form reference cycles outlive the call until the garbage collector
collects their generation; under load that means 100-200 ms pauses of the event loop (which
relays RTP) and memory that depends on collector tuning. pypbx runs here with
gc.DEBUG_SAVEALL from its first line, so everything only the collector could free stays in
gc.garbage, and its memory report (SIGUSR1) lists it by type. Calls of several shapes go
through it (answered and hung up by either side, relayed long enough to move to the relay
worker, held by a phone and by the API, sent DTMF, cancelled, refused, unroutable; played
to, recorded, transferred blind and attended between baresip phones; placed by the Call
command and run by OzML), then the report must show none of a call's objects once the
transactions that outlive a call are gone.
"""

from __future__ import annotations

import re
import time

import numpy as np
import soundfile

from peers.baresip import BaresipPhone
from peers.flows import (
    PbxFactory,
    PhoneFactory,
    SippFactory,
    caller,
    finish,
    no_calls_left,
    start_callee,
    wait_for_state,
)
from peers.pbx import PbxProcess
from peers.webhook import WebServer

CALLER = ("1000", "pw-1000")
TRANSACTIONS_LINGER = 64 * 0.5 + 2

# What one call is made of; any of them in gc.garbage is a cycle to break.
CALL_TYPES = {
    "Call",
    "Leg",
    "Dialog",
    "RtpEndpoint",
    "RtpOutputStream",
    "RelayDirection",
    "Bridge",
    "OffloadedBridge",
    "InboundAudio",
    "LegOutput",
    "Player",
    "ClientTransaction",
    "ServerTransaction",
    "InviteServerTransaction",
    "InviteClientTransaction",
    "Request",
    "Response",
    "SessionDescription",
}


def new_callee(pbx: PbxProcess) -> tuple[str, str]:
    """An extension of its own for each call: a SIPp UAS that has finished leaves its
    registration behind, which later calls to the same number would ring too."""
    number = str(2000 + len(pbx.extensions()))
    pbx.add_sip_extension(number, f"pw-{number}")
    return number, f"pw-{number}"


def call_once(
    pbx: PbxProcess, sipp: SippFactory, uac: str, uas: str, *, pause_ms: int = 1000
) -> None:
    number, password = new_callee(pbx)
    callee = start_callee(pbx, sipp, uas, number, password, pause_ms=pause_ms)
    finish(caller(pbx, sipp, uac, number, *CALLER, pause_ms=pause_ms).start(), callee)
    no_calls_left(pbx)


def garbage_by_type(report: str) -> dict[str, int]:
    """The types the report lists as unreachable or kept in gc.garbage, with counts."""
    found: dict[str, int] = {}
    listing = False
    for line in report.splitlines():
        if line.startswith(("unreachable objects by type", "kept in gc.garbage by type")):
            listing = True
            continue
        entry = re.fullmatch(r"\s+(\d+) (\S+)", line)
        if listing and entry:
            found[entry[2]] = found.get(entry[2], 0) + int(entry[1])
        elif not line.startswith("  cycle:"):
            listing = False
    return found


def sipp_calls(pbx: PbxProcess, sipp: SippFactory) -> None:
    """Calls of every shape SIPp can play, one after the other."""
    pbx.add_sip_extension(*CALLER)
    call_once(pbx, sipp, "uac_call", "uas_answer", pause_ms=3500)  # on the relay worker
    call_once(pbx, sipp, "uac_far_bye", "uas_answer_bye")
    call_once(pbx, sipp, "uac_hold", "uas_answer")
    call_once(pbx, sipp, "uac_cancel", "uas_ring", pause_ms=1500)
    call_once(pbx, sipp, "uac_busy", "uas_busy")
    finish(caller(pbx, sipp, "uac_not_found", "9999", *CALLER).start())
    pbx.add_sip_extension("3999", "pw-3999")  # configured, never registered: 480
    finish(caller(pbx, sipp, "uac_unavailable", "3999", *CALLER).start())

    number, password = new_callee(pbx)
    callee = start_callee(pbx, sipp, "uas_info_dtmf", number, password, pause_ms=6000)
    run = caller(pbx, sipp, "uac_call", number, *CALLER, pause_ms=6000).start()
    call_id = wait_for_state(pbx, "InCall")["CallId"]
    for command in ("Hold", "Unhold"):
        assert pbx.api(command, CallId=call_id).code == 200
    assert pbx.api("SendDTMF", CallId=call_id, Party="callee", Keys="4*").code == 200
    finish(run, callee)
    no_calls_left(pbx)


def phone(pbx: PbxProcess, make_phone: PhoneFactory, ext: str, tone: float) -> BaresipPhone:
    pbx.add_sip_extension(ext, f"pw-{ext}")
    return make_phone(ext, tone=tone, registrar=pbx.sip_address, password=f"pw-{ext}")


def dial(pbx: PbxProcess, a: BaresipPhone, b: BaresipPhone) -> str:
    """A dials B (auto-answer); the CallId of the call A -> B once it is InCall."""
    a.dial(f"sip:{b.account.user}@{pbx.sip_address}")
    a.wait_for_event("CALL_ESTABLISHED", 15)
    found = pbx.wait_for_calls(
        lambda now: any(
            (c["Source"], c["Destination"], c["CallState"])
            == (a.account.user, b.account.user, "InCall")
            for c in now
        ),
        timeout=10,
    )
    return next(c["CallId"] for c in found if c["Source"] == a.account.user)


def phone_calls(pbx: PbxProcess, make_phone: PhoneFactory) -> BaresipPhone:
    """Calls between baresip phones: played to, recorded, transferred blind and attended.
    Returns one of the phones, still registered."""
    prompt = pbx.data_dir / "media" / "beep.wav"
    prompt.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(prompt, 0.3 * np.sin(np.arange(8000) * 2 * np.pi * 700 / 8000), 8000)
    a, b, c = (
        phone(pbx, make_phone, ext, tone)
        for ext, tone in (("4001", 1500.0), ("4002", 2000.0), ("4003", 2500.0))
    )

    # played to and recorded, then transferred blind to C, who hangs up
    call_id = dial(pbx, a, b)
    assert pbx.api("Play", CallId=call_id, Party="caller", AudioFile="beep.wav").code == 200
    assert pbx.api("Record", CallId=call_id, Format="wav").code == 200
    time.sleep(1.5)
    result = pbx.api("BlindTransfer", CallId=call_id, TransferorParty="callee", Target="4003")
    assert result.code == 200, result.text
    c.wait_for_event("CALL_ESTABLISHED", 15)
    time.sleep(1.0)
    c.hangup()
    a.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)

    # A -> B held, B consults C, then B joins A and C; A hangs up
    held_id = dial(pbx, a, b)
    assert pbx.api("Hold", CallId=held_id).code == 200
    target_id = dial(pbx, b, c)
    result = pbx.api("AttendedTransfer", TransferredCallId=held_id, TargetCallId=target_id)
    assert result.code == 200, result.text
    time.sleep(1.0)
    a.hangup()
    c.wait_for_event("CALL_CLOSED", 10)
    no_calls_left(pbx)
    return b


def ozml_call(pbx: PbxProcess, web: WebServer, callee: BaresipPhone) -> None:
    """The Call command from an API extension, its call run by OzML until the script ends."""
    pbx.add_api_extension("9994")
    web.replies["/connected"] = b"<Response><Play>beep.wav</Play></Response>"
    result = pbx.api(
        "Call", Dialed=callee.account.user, ApiExtension="9994", Url=web.url("/connected")
    )
    assert result.code == 200, result.text
    web.wait_for("CallConnected")
    callee.wait_for_event("CALL_CLOSED", 20)
    no_calls_left(pbx)


def test_finished_calls_leave_no_reference_cycles(
    start_pbx: PbxFactory, sipp: SippFactory, make_phone: PhoneFactory, web: WebServer
) -> None:
    pbx = start_pbx(keep_cyclic_garbage=True)
    assert garbage_by_type(pbx.memory_report()), "no garbage listed at all: no DEBUG_SAVEALL?"
    sipp_calls(pbx, sipp)
    callee = phone_calls(pbx, make_phone)
    ozml_call(pbx, web, callee)

    # The transaction layer keeps a finished call's last transactions (and the callbacks
    # into its legs) for 64*T1 = 32 s, to absorb retransmissions: only then is it garbage.
    time.sleep(TRANSACTIONS_LINGER)
    report = pbx.memory_report()
    left = {name: n for name, n in garbage_by_type(report).items() if name in CALL_TYPES}
    assert not left, f"call objects freed only by the garbage collector: {left}\n{report}"
