"""Concurrent call limits: admission of new calls (total, caller's own) and which phones
of a ring attempt are busy, counted from the B2BUA's live calls."""

from __future__ import annotations

import timeit
from datetime import UTC, datetime, timedelta

import pytest

from pypbx.pbx.call import Call, Leg, LegKind
from pypbx.pbx.call_limits import CALLER_BUSY, PBX_FULL, CallLimits, Refusal, usage
from pypbx.pbx.registrar import Binding
from pypbx.pbx.states import CallState
from pypbx.sip.message import Request, SipURI
from pypbx.store.records import ExtensionRecord

_EXPIRES = datetime.now(UTC) + timedelta(hours=1)
_INVITE = Request("INVITE", SipURI.parse("sip:x@192.0.2.1"))


def leg(call: Call, kind: LegKind, extension: str | None, *, terminated: bool = False) -> Leg:
    return Leg(
        kind=kind,
        call=call,
        peer=("192.0.2.9", 5060),
        transport="udp",
        local_tag="t",
        invite=_INVITE,
        extension_id=extension,
        terminated=terminated,
    )


def call(
    caller: str | None,
    *ringing: str,
    callee: str | None = None,
    state: CallState = CallState.RINGING,
    inbound: bool = False,
) -> Call:
    """A live call from `caller`, ringing `ringing` phones or answered by `callee`."""
    c = Call(id=f"c{caller}{''.join(ringing)}{callee}", state=state)
    c.caller = leg(c, LegKind.CALLER, caller)
    c.forks = [leg(c, LegKind.CALLEE, ext) for ext in ringing]
    if callee is not None:
        c.callee = leg(c, LegKind.CALLEE, callee)
        c.forks.append(c.callee)
    if inbound:
        c.direction = "Inbound"
    return c


def binding(extension: str, port: int = 5060) -> Binding:
    return Binding(
        extension_id=extension,
        contact=f"sip:{extension}@192.0.2.{port % 250}:{port}",
        source=("192.0.2.5", port),
        transport="udp",
        expires_at=_EXPIRES,
        call_id="x",
        cseq=1,
    )


def sip(ext: str) -> ExtensionRecord:
    return ExtensionRecord(ext, "SIP")


# ---- counting ------------------------------------------------------------------------------


def test_usage_counts_each_call_once_per_extension() -> None:
    calls = [
        call("100", "200", "200"),  # two phones of 200 ring: one call for 200
        call("101", callee="200", state=CallState.IN_CALL),
        call("200", "300"),  # 200 calling out counts too
    ]
    assert usage(calls) == {"100": 1, "101": 1, "200": 3, "300": 1}


def test_usage_skips_ended_calls_failed_forks_and_outside_callers() -> None:
    finished = call("100", "200", state=CallState.COMPLETED)
    failed_fork = call("101")
    failed_fork.forks = [leg(failed_fork, LegKind.CALLEE, "200", terminated=True)]
    from_line = call("100", "201", inbound=True)  # "100" is a number out there, not ours
    assert usage([finished, failed_fork, from_line]) == {"101": 1, "201": 1}
    assert usage([from_line], exclude=from_line) == {}


# ---- admission -----------------------------------------------------------------------------


def test_unlimited_by_default() -> None:
    limits = CallLimits()
    calls = [call("100", "200") for _ in range(500)]
    assert limits.admit(sip("100"), calls) is None
    assert limits.free(calls[0], [binding("200")], calls, lambda ext: True) == [binding("200")]


def test_max_calls_refuses_a_new_call_with_503() -> None:
    limits = CallLimits(max_calls=2)
    calls = [call("100", "200")]
    assert limits.admit(sip("101"), calls) is None
    calls.append(call("101", "201"))
    assert limits.admit(sip("102"), calls) == PBX_FULL == Refusal(503, "Service Unavailable")
    assert limits.admit(ExtensionRecord("0301234567", "Line"), calls) == PBX_FULL
    calls.pop()
    assert limits.admit(sip("102"), calls) is None


def test_a_caller_at_its_own_limit_is_busy() -> None:
    limits = CallLimits(per_extension=2)
    calls = [call("100", "200"), call("300", callee="100", state=CallState.IN_CALL)]
    assert limits.admit(sip("100"), calls) == CALLER_BUSY == Refusal(486, "Busy Here")
    assert limits.admit(sip("101"), calls) is None
    # only SIP extensions have the limit: API extensions and lines have their own
    assert limits.admit(ExtensionRecord("100", "API"), calls) is None
    assert limits.admit(ExtensionRecord("100", "Line"), calls) is None


def test_the_total_limit_comes_first() -> None:
    limits = CallLimits(max_calls=2, per_extension=1)
    calls = [call("100", "200"), call("101", "201")]
    assert limits.admit(sip("100"), calls) == PBX_FULL


# ---- ringing -------------------------------------------------------------------------------


def test_phones_of_a_callee_at_its_limit_are_not_rung() -> None:
    limits = CallLimits(per_extension=2)
    new = call("102")
    calls = [call("100", "200"), call("101", callee="200", state=CallState.IN_CALL), new]
    group = [binding("200", 1), binding("200", 2), binding("201", 3)]  # a ring group
    assert limits.free(new, group, calls, lambda ext: True) == [binding("201", 3)]
    assert limits.free(new, group[:2], calls, lambda ext: True) == []


def test_the_call_being_rung_does_not_count_against_its_callee() -> None:
    limits = CallLimits(per_extension=1)
    new = call("102", "200")  # already ringing 200 (a retry after a 422, a recall)
    assert limits.free(new, [binding("200")], [new], lambda ext: True) == [binding("200")]


def test_only_limited_extensions_are_checked() -> None:
    """API extensions and outside lines take many calls; `limited` leaves them alone."""
    limits = CallLimits(per_extension=1)
    new = call("102")
    calls = [call("100", "9000"), call("101", "provider"), new]
    targets = [binding("9000"), binding("provider")]
    assert limits.free(new, targets, calls, lambda ext: ext == "200") == targets


def test_counting_a_hundred_calls_is_cheap() -> None:
    calls = [call(str(100 + i), str(300 + i), callee=None) for i in range(100)]
    limits = CallLimits(max_calls=1000, per_extension=4)
    seconds = min(timeit.repeat(lambda: limits.admit(sip("100"), calls), number=200, repeat=3))
    assert seconds / 200 < 0.005  # generous: shared CI machines; typically ~200 us


@pytest.mark.parametrize("per_extension", [0, 3])
def test_free_keeps_order_and_duplicates(per_extension: int) -> None:
    limits = CallLimits(per_extension=per_extension)
    new = call("102")
    group = [binding("201", 1), binding("200", 2), binding("201", 3)]
    assert limits.free(new, group, [new], lambda ext: True) == group
