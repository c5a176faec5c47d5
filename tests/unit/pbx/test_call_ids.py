"""CallIdPool: call ids checked against the history in bulk, never handed out twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

import pytest

from pypbx.pbx.call import new_call_id
from pypbx.pbx.call_ids import CallIdPool


class FakeHistory:
    """The `taken` lookup: which candidates the history already has; counts the queries."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken = taken or set()
        self.queries: list[set[str]] = []
        self.fail = False

    async def lookup(self, ids: Iterable[str]) -> set[str]:
        asked = set(ids)
        self.queries.append(asked)
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("database is locked")
        return asked & self.taken


def scripted(ids: list[str]) -> Iterator[str]:
    yield from ids
    raise AssertionError("the pool asked for more candidates than the test scripted")


async def test_ids_come_from_one_query_per_refill() -> None:
    history = FakeHistory()
    pool = CallIdPool(new_call_id, history.lookup, refill_size=100, low_water=10)
    seen = [await pool.take({}) for _ in range(50)]
    assert len(set(seen)) == 50
    assert all(len(i) == 6 and i.isalnum() for i in seen)
    assert len(history.queries) == 1
    assert len(history.queries[0]) == 100


async def test_ids_the_history_has_are_never_handed_out() -> None:
    history = FakeHistory({"AAAAAA", "BBBBBB"})
    script = scripted(["AAAAAA", "BBBBBB", "CCCCCC"])
    pool = CallIdPool(lambda: next(script), history.lookup, refill_size=3, low_water=0)
    assert await pool.take({}) == "CCCCCC"


async def test_live_call_ids_are_skipped() -> None:
    history = FakeHistory()
    script = scripted(["LIVE01", "FREE01"])
    pool = CallIdPool(lambda: next(script), history.lookup, refill_size=2, low_water=0)
    assert await pool.take({"LIVE01": object()}) == "FREE01"


async def test_duplicate_candidates_count_once() -> None:
    history = FakeHistory()
    script = scripted(["SAME01", "SAME01", "OTHER1"])
    pool = CallIdPool(lambda: next(script), history.lookup, refill_size=2, low_water=0)
    assert {await pool.take({}), await pool.take({})} == {"SAME01", "OTHER1"}


async def test_a_refill_starts_in_the_background_at_low_water() -> None:
    history = FakeHistory()
    pool = CallIdPool(new_call_id, history.lookup, refill_size=20, low_water=5)
    for _ in range(16):  # 20 ready, 4 left after the 16th: below the low-water mark
        await pool.take({})
    assert len(history.queries) == 1
    await asyncio.sleep(0.01)
    assert len(history.queries) == 2
    ids = {await pool.take({}) for _ in range(20)}
    assert len(ids) == 20
    assert len(history.queries) == 2


async def test_ids_handed_out_recently_are_not_offered_again() -> None:
    """Their history rows may still be queued: the store does not know them yet."""
    history = FakeHistory()
    script = scripted(["ID0001", "ID0002", "ID0001", "ID0003"])
    pool = CallIdPool(lambda: next(script), history.lookup, refill_size=2, low_water=0)
    assert {await pool.take({}), await pool.take({})} == {"ID0001", "ID0002"}
    # the refill draws ID0001 again; the history does not have it (row not written yet)
    assert await pool.take({}) == "ID0003"


async def test_concurrent_takers_share_one_refill() -> None:
    history = FakeHistory()
    pool = CallIdPool(new_call_id, history.lookup, refill_size=50, low_water=0)
    ids = await asyncio.gather(*(pool.take({}) for _ in range(10)))
    assert len(set(ids)) == 10
    assert len(history.queries) == 1


async def test_a_failed_lookup_falls_back_to_unchecked_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    history = FakeHistory()
    history.fail = True
    pool = CallIdPool(new_call_id, history.lookup, refill_size=10, low_water=0)
    with caplog.at_level(logging.ERROR, logger="pypbx.pbx.call_ids"):
        first = await pool.take({})
    assert len(first) == 6
    assert [r.getMessage() for r in caplog.records] == ["call id lookup failed"]
    history.fail = False
    second = await pool.take({})
    assert second != first
    assert len(history.queries) == 2
