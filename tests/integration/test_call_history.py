"""One call-history row per call, with the right result for every way a call can end.

Every way of ending runs as its own call, all at once through one pypbx (ring timeout 3 s).
Extension 1000 places each call to a number used by that call alone (a SIPp callee
registered as that extension, an unknown number, or a configured but unregistered
extension), so each call's history row is told apart by its destination. Running them
together also shows that concurrent calls do not mix up their rows.
After the calls, pypbx is stopped (SIGTERM) and the
call_history table read from the SQLite file in its data dir: exactly one row per call,
with the expected `state`, plausible ring and talk durations and ordered times. The first
INVITE of every call is challenged, so a row per INVITE would show up as two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from peers.flows import PbxFactory, SippFactory, caller, final_status, listen, no_calls_left
from peers.pbx import HistoryRow, PbxProcess
from peers.sipp import Sipp

CALLER = ("1000", "pw-1000")
RING_TIMEOUT = 3


@dataclass(frozen=True)
class Ending:
    """One way a call ends: the peers' scenarios, what the caller sees, what history says."""

    number: str  # what 1000 dials; a callee extension is configured under this number
    caller: str
    state: str
    status: int  # the caller's final INVITE response
    ring: tuple[float, float]  # plausible ring_duration range, seconds
    talk: tuple[float, float]  # plausible talk_duration range ((0, 0): never answered)
    callee: str | None = None  # UAS scenario of the callee; None: nobody to ring
    configured: bool = True  # False: the number is no extension at all
    caller_pause_ms: int = 1000
    callee_pause_ms: int = 1000
    api_hangup_in: str | None = None  # HTTP Hangup 1 s after the call is in this CallState


ENDINGS = {
    "caller hangs up": Ending(
        "2001", "uac_call", "CallerHungUp", 200, (0, 1.0), (1.5, 3.5), "uas_answer",
        caller_pause_ms=2000,
    ),
    "callee hangs up": Ending(
        "2002", "uac_far_bye", "CalleeHungUp", 200, (0, 1.0), (1.5, 3.5), "uas_answer_bye",
        callee_pause_ms=2000,
    ),
    "caller cancels": Ending(
        "2003", "uac_cancel", "Cancelled", 487, (0.8, 2.5), (0, 0), "uas_ring",
        caller_pause_ms=1000,
    ),
    "callee busy": Ending("2004", "uac_busy", "Busy", 486, (0, 1.0), (0, 0), "uas_busy"),
    "unknown number": Ending(
        "9999", "uac_not_found", "NotFound", 404, (0, 1.0), (0, 0), configured=False
    ),
    "extension not registered": Ending(
        "3000", "uac_unavailable", "NotFound", 480, (0, 1.0), (0, 0)
    ),
    "ring timeout": Ending(
        "2007", "uac_unavailable", "NotAnswered", 480,
        (RING_TIMEOUT - 0.1, RING_TIMEOUT + 1.0), (0, 0), "uas_ring",
    ),
    "HTTP Hangup while talking": Ending(
        "2008", "uac_far_bye", "CallerHungUp", 200, (0, 1.0), (0.9, 2.5), "uas_answer",
        api_hangup_in="InCall",
    ),
    "HTTP Hangup while ringing": Ending(
        "2009", "uac_refused", "Cancelled", 487, (0.9, 2.5), (0, 0), "uas_ring",
        api_hangup_in="Ringing",
    ),
}  # fmt: skip


def test_every_ending_leaves_one_history_row_with_its_result(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx(config={"sip": {"ring_timeout": RING_TIMEOUT}})
    pbx.add_sip_extension(*CALLER)
    for ending in ENDINGS.values():
        if ending.configured:
            pbx.add_sip_extension(ending.number, f"pw-{ending.number}")
    callees = start_callees(pbx, sipp)
    callers = {
        name: caller(
            pbx, sipp, ending.caller, ending.number, *CALLER, pause_ms=ending.caller_pause_ms
        ).start()
        for name, ending in ENDINGS.items()
    }
    hung_up = hang_up_over_http(pbx)

    problems: list[str] = []
    for name, run in [*callers.items(), *callees.items()]:
        result = run.wait()
        if not result.ok:
            problems.append(f"{name}: {result.describe(tail=3000)}")
        elif run in callers.values() and final_status(result) != ENDINGS[name].status:
            problems.append(f"{name}: caller got {final_status(result)}")
    assert not problems, "\n\n".join(problems)
    no_calls_left(pbx)
    assert pbx.stop() == 0, pbx.log_tail()

    rows = pbx.history()
    by_number: dict[str, list[HistoryRow]] = {}
    for row in rows:
        by_number.setdefault(row.destination, []).append(row)
    assert sorted(by_number) == sorted(e.number for e in ENDINGS.values()), rows
    assert len({row.call_id for row in rows}) == len(rows), "call ids repeat"
    for name, ending in ENDINGS.items():
        found = by_number[ending.number]
        assert len(found) == 1, f"{name}: {len(found)} history rows: {found}"
        problems += [f"{name}: {p}" for p in check_row(found[0], ending, hung_up.get(name))]
    assert not problems, "\n".join(problems) + "\nrows:\n" + "\n".join(map(str, rows))


def start_callees(pbx: PbxProcess, sipp: SippFactory) -> dict[str, Sipp]:
    """Register every callee (all at once), then start its scenario on the registered port."""
    registering = {
        name: sipp(
            "register",
            remote=pbx.sip_address,
            service=ending.number,
            auth=(ending.number, f"pw-{ending.number}"),
        ).start()
        for name, ending in ENDINGS.items()
        if ending.callee is not None
    }
    callees = {}
    for name, reg in registering.items():
        result = reg.wait()
        assert result.ok, result.describe()
        ending = ENDINGS[name]
        assert ending.callee is not None
        callees[name] = listen(sipp, ending.callee, reg.local_port, pause_ms=ending.callee_pause_ms)
    return callees


def hang_up_over_http(pbx: PbxProcess) -> dict[str, str]:
    """Hang up the calls ended over the HTTP API, each 1 s after it reached its state.

    Returns name -> CallId of the calls hung up.
    """
    wanted = {e.number: (name, e.api_hangup_in) for name, e in ENDINGS.items() if e.api_hangup_in}
    reached: dict[str, tuple[str, float]] = {}
    done: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while len(done) < len(wanted):
        assert time.monotonic() < deadline, f"calls never reached their states: {reached}"
        for call in pbx.active_calls():
            name, state = wanted.get(call["Destination"], ("", None))
            if state is not None and call["CallState"] == state:
                reached.setdefault(name, (call["CallId"], time.monotonic()))
        for name, (call_id, since) in reached.items():
            if name not in done and time.monotonic() - since >= 1.0:
                result = pbx.api("Hangup", CallId=call_id)
                assert result.code == 200, f"{name}: {result.text}"
                done[name] = call_id
        time.sleep(0.05)
    return done


def check_row(row: HistoryRow, ending: Ending, active_id: str | None) -> list[str]:
    """What is wrong with a call's history row (empty: nothing)."""
    problems = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    expect(row.state == ending.state, f"state {row.state!r}, expected {ending.state!r}")
    expect(active_id in (None, row.call_id), f"call id {row.call_id}, API showed {active_id}")
    expect(len(row.call_id) == 6 and row.call_id.isalnum(), f"call id {row.call_id!r}")
    expect(
        (row.source, row.caller_id, row.dialed, row.direction)
        == ("1000", "1000", ending.number, "Internal"),
        f"source/caller id/dialed/direction {row}",
    )
    lo, hi = ending.ring
    expect(lo <= row.ring_duration <= hi, f"ring_duration {row.ring_duration} not in {ending.ring}")
    lo, hi = ending.talk
    expect(lo <= row.talk_duration <= hi, f"talk_duration {row.talk_duration} not in {ending.talk}")
    if row.end_time is None:
        return [*problems, "no end_time"]
    expect(row.start_time <= row.end_time, "ended before it started")
    if ending.status == 200:
        if row.answer_time is None:
            return [*problems, "answered call without answer_time"]
        expect(row.start_time <= row.answer_time <= row.end_time, "answer_time out of order")
        ringing = (row.answer_time - row.start_time).total_seconds()
        expect(
            ringing == pytest.approx(row.ring_duration, abs=0.05),
            f"answer_time - start_time = {ringing} s but ring_duration {row.ring_duration}",
        )
    else:
        expect(row.answer_time is None, f"unanswered call with answer_time {row.answer_time}")
    total = row.end_time - row.start_time
    expected = timedelta(seconds=row.ring_duration + row.talk_duration)
    expect(
        abs(total - expected) < timedelta(milliseconds=50),
        f"end - start = {total}, ring + talk = {expected}",
    )
    return problems
