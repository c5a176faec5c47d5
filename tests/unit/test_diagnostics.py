"""The SIGUSR1 memory report names what grew and which reference cycles hold garbage."""

from __future__ import annotations

import gc
import re
import tracemalloc
from collections.abc import Iterator

import pytest

from pypbx.diagnostics import GcPauses, MemoryReport
from pypbx.pbx.call import Call, Leg, LegKind


@pytest.fixture
def frozen() -> Iterator[None]:
    """The state pypbx runs in: start-up objects frozen out of collection."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _abandoned_call(call_id: str) -> None:
    """A call and its leg pointing at each other, then dropped: only the collector frees it."""
    call = Call(id=call_id)
    call.caller = Leg(
        kind=LegKind.CALLER,
        call=call,
        peer=("127.0.0.1", 5060),
        transport="udp",
        local_tag="t",
        invite=None,  # type: ignore[arg-type]
    )


def test_report_names_the_cycle_holding_abandoned_calls(frozen: None) -> None:
    report = MemoryReport()
    report.dump()
    for n in range(3):
        _abandoned_call(f"c{n}")
    text = report.dump()
    assert "cycle: Call -> .caller:Leg -> .call:Call" in text
    unreachable = text.split("unreachable objects by type (in reference cycles)\n")[1]
    counts = [line.split() for line in unreachable.splitlines()]
    assert ["3", "Call"] in counts
    assert ["3", "Leg"] in counts


def test_report_shows_growth_since_the_last(frozen: None) -> None:
    report = MemoryReport()
    first = report.dump()
    assert "object types\n" in first
    kept = [Call(id=f"k{n}") for n in range(700)]
    second = report.dump()
    assert "object types that grew" in second
    assert any(line.split()[:2] == ["+700", "Call"] for line in second.splitlines())
    holder = {n: call for n, call in enumerate(kept)}
    third = report.dump()
    assert any(" 700 (new) dict [0 -> Call]" in line for line in third.splitlines())
    holder.update({n + 700: Call(id="x") for n in range(50)})
    assert any(" 750 (+50) dict [0 -> Call]" in line for line in report.dump().splitlines())


def test_report_keeps_start_up_objects_frozen(frozen: None) -> None:
    before = gc.get_freeze_count()
    MemoryReport().dump()
    assert gc.get_freeze_count() >= before > 0


def test_report_lists_allocation_sites_when_tracing() -> None:
    tracemalloc.start(4)
    try:
        report = MemoryReport()
        report.dump()
        grown = [bytearray(1000) for _ in range(100)]
        text = report.dump()
    finally:
        tracemalloc.stop()
    assert "allocation sites that grew" in text
    assert "test_diagnostics.py" in text
    assert len(grown) == 100


def test_pauses_are_counted_per_generation_and_reset_by_a_report() -> None:
    pauses = GcPauses()
    pauses.install()
    try:
        gc.collect(0)
        gc.collect(2)
        first = pauses.report()
        second = pauses.report()
    finally:
        pauses.uninstall()
    counts = {int(gen): int(n) for gen, n in re.findall(r"gen(\d) (\d+) \(", first)}
    assert counts[0] >= 1 and counts[2] >= 1
    assert "gen0 0 (0, 0.0), gen1 0 (0, 0.0), gen2 0 (0, 0.0)" in second
    assert "gc pauses since the last report" in MemoryReport(GcPauses()).dump()


def test_report_leaves_others_garbage_and_debug_flags_alone(frozen: None) -> None:
    sentinel = object()
    gc.garbage.append(sentinel)
    try:
        _abandoned_call("g")
        MemoryReport().dump()
        assert gc.garbage == [sentinel]  # the report's own finds are gone, not this
        assert gc.get_debug() == 0
    finally:
        gc.garbage.remove(sentinel)


def test_report_lists_what_debug_saveall_kept_and_pypbx_types_beyond_the_top(
    frozen: None,
) -> None:
    """Under gc.DEBUG_SAVEALL (set by tests that hunt cycles) automatic collections leave
    their finds in gc.garbage, where the report's own collection would not see them; one
    Call among many commoner objects is still named."""
    flags = gc.get_debug()
    already = len(gc.garbage)
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        for _ in range(30):  # TOP commoner kinds of garbage, 30 of each
            for kind in range(25):
                holder: list[object] = [type(f"K{kind}", (), {})()]
                holder.append(holder)
        _abandoned_call("kept")
        gc.collect()
        text = MemoryReport().dump()
    finally:
        gc.set_debug(flags)
        del gc.garbage[already:]
    kept = text.split("kept in gc.garbage by type (")[1]
    counts = [line.split() for line in kept.splitlines()[1:]]
    assert ["1", "Call"] in counts
    assert ["1", "Leg"] in counts
    assert "cycle: Call -> .caller:Leg -> .call:Call" in kept
