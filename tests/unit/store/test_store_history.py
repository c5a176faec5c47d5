"""Call history: lifecycle, GetCallHistory filters, paging; on every backend under test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pypbx.store import AlreadyExistsError, CallHistoryRecord, HistoryQuery, Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def call(
    call_id: str,
    offset_s: float,
    direction: str = "Internal",
    source: str = "1001",
    destination: str = "1002",
    dialed: str = "1002",
    caller_id: str = "1001",
    state: str | None = "CalleeHungUp",
    **kwargs: object,
) -> CallHistoryRecord:
    start = T0 + timedelta(seconds=offset_s)
    fields: dict[str, object] = {
        "answer_time": start + timedelta(seconds=2) if state else None,
        "end_time": start + timedelta(seconds=30) if state else None,
        **kwargs,
    }
    return CallHistoryRecord(
        call_id,
        start,
        direction=direction,
        source=source,
        destination=destination,
        dialed=dialed,
        caller_id=caller_id,
        state=state,
        **fields,  # type: ignore[arg-type]
    )


CALLS = [
    call("Abc1", 0, caller_id="Alice"),
    call(
        "Abc2",
        10,
        "External",
        "1002",
        "5551234",
        "95551234",
        "Bob",
        "CallerHungUp",
        ring_duration=1.25,
        talk_duration=60.5,
    ),
    call("xyz3", 20, "Inbound", "+3612345", "1001", "1001", "Carol 50%_off", "Busy"),
    call(
        "xyz4", 30, "Internal", "1001", "1003", "1003", "Alice", "TransferCompleted", type="Video"
    ),
    call("open5", 40, "Internal", "1003", "1001", "1001", "1003", None),
]


@pytest.fixture
async def history(store: Store) -> Store:
    # Inserted out of order: results must still come back by start time.
    for index in (3, 0, 4, 2, 1):
        await store.start_history(CALLS[index])
    return store


async def ids(store: Store, **filters: object) -> list[str]:
    q = HistoryQuery(rows_per_page=100, **filters)  # type: ignore[arg-type]
    total, page = await store.query_history(q)
    assert total == len(page)
    return [rec.call_id for rec in page]


async def test_round_trip_and_ascending_order(history: Store) -> None:
    total, page = await history.query_history(HistoryQuery())
    assert total == 5
    assert page == CALLS
    assert all(r.start_time.tzinfo is UTC for r in page)
    assert page[1].answer_time is not None and page[1].answer_time.tzinfo is UTC
    assert (page[1].ring_duration, page[1].talk_duration) == (1.25, 60.5)


async def test_duplicate_call_id_refused(history: Store) -> None:
    with pytest.raises(AlreadyExistsError, match=r"^call 'Abc1' already in history$"):
        await history.start_history(call("Abc1", 99))
    assert await ids(history, call_id="Abc1") == ["Abc1"]


async def test_call_id_exists(history: Store) -> None:
    assert await history.call_id_exists("Abc1")
    assert not await history.call_id_exists("abc1")
    assert not await history.call_id_exists("never")


async def test_finish_updates_the_started_row(store: Store) -> None:
    started = call("c1", 0, state=None)
    await store.start_history(started)
    assert (await store.query_history(HistoryQuery()))[1] == [started]
    finished = call("c1", 0, state="CallerHungUp", ring_duration=3.0, talk_duration=12.5)
    await store.finish_history(finished)
    total, page = await store.query_history(HistoryQuery())
    assert (total, page) == (1, [finished])


async def test_finish_without_start_inserts(store: Store) -> None:
    rec = call("lonely", 5, state="NotFound")
    await store.finish_history(rec)
    await store.finish_history(rec)  # repeated: still one row
    assert await store.query_history(HistoryQuery()) == (1, [rec])
    assert await store.call_id_exists("lonely")


async def test_close_unfinished(store: Store) -> None:
    await store.start_history(call("done", 0, state="Busy"))
    await store.start_history(call("open1", 1, state=None))
    await store.start_history(call("open2", 2, state=None, end_time=T0 + timedelta(seconds=9)))
    restart = T0 + timedelta(hours=1)
    assert await store.close_unfinished_history("Error", restart) == 2
    _, page = await store.query_history(HistoryQuery())
    assert [(r.call_id, r.state, r.end_time) for r in page] == [
        ("done", "Busy", T0 + timedelta(seconds=30)),
        ("open1", "Error", restart),
        ("open2", "Error", T0 + timedelta(seconds=9)),  # a recorded end time is kept
    ]
    assert await store.close_unfinished_history("Error", restart) == 0


async def test_time_bounds(history: Store) -> None:
    at = T0 + timedelta(seconds=10)
    assert await ids(history, from_time=at) == ["Abc2", "xyz3", "xyz4", "open5"]
    to = T0 + timedelta(seconds=20)
    assert await ids(history, to_time=to) == ["Abc1", "Abc2"]
    assert await ids(history, from_time=at, to_time=to) == ["Abc2"]
    plus2 = timezone(timedelta(hours=2))
    assert await ids(history, from_time=datetime(2024, 5, 1, 14, 0, 30, tzinfo=plus2)) == [
        "xyz4",
        "open5",
    ]


async def test_naive_bound_refused(history: Store) -> None:
    with pytest.raises(ValueError, match=r"^from_time must be a timezone-aware datetime$"):
        await history.query_history(HistoryQuery(from_time=datetime(2024, 5, 1)))
    with pytest.raises(ValueError, match=r"^to_time must be a timezone-aware datetime$"):
        await history.query_history(HistoryQuery(to_time=datetime(2024, 5, 1)))


@pytest.mark.parametrize(
    ("general", "expected"),
    [
        ("alice", ["Abc1", "xyz4"]),  # caller_id, any case
        ("ABC", ["Abc1", "Abc2"]),  # call_id, any case
        ("555", ["Abc2"]),  # destination and dialed
        ("+36", ["xyz3"]),  # source
        ("1003", ["xyz4", "open5"]),  # destination / dialed / source / caller_id
        ("%", ["xyz3"]),  # LIKE wildcards are literal
        ("_", ["xyz3"]),
        ("50%_o", ["xyz3"]),
        ("/", []),  # the escape character itself
        ("zzz", []),
        ("Internal", []),  # direction is not searched
    ],
)
async def test_general(history: Store, general: str, expected: list[str]) -> None:
    assert await ids(history, general=general) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("CalleeHungUp", ["Abc1"]),
        ("calleehungup", ["Abc1"]),
        ("CalleeHangUp", ["Abc1"]),  # Ozeki's alias
        ("CALLEEHANGUP", ["Abc1"]),
        ("CallerHangUp", ["Abc2"]),
        ("callerhungup", ["Abc2"]),
        ("busy", ["xyz3"]),
        ("transfercompleted", ["xyz4"]),
        ("Error", []),
        ("Hung", []),  # exact, not substring
    ],
)
async def test_state(history: Store, state: str, expected: list[str]) -> None:
    assert await ids(history, state=state) == expected


async def test_enumerated_filters_ignore_case(history: Store) -> None:
    assert await ids(history, direction="internal") == ["Abc1", "xyz4", "open5"]
    assert await ids(history, direction="EXTERNAL") == ["Abc2"]
    assert await ids(history, direction="Intern") == []
    assert await ids(history, type="video") == ["xyz4"]
    assert await ids(history, type="AUDIO") == ["Abc1", "Abc2", "xyz3", "open5"]


async def test_exact_filters(history: Store) -> None:
    assert await ids(history, source="1001") == ["Abc1", "xyz4"]
    assert await ids(history, source="100") == []
    assert await ids(history, destination="1001") == ["xyz3", "open5"]
    assert await ids(history, dialed="95551234") == ["Abc2"]
    assert await ids(history, dialed="5551234") == []
    assert await ids(history, caller_id="Alice") == ["Abc1", "xyz4"]
    assert await ids(history, caller_id="alice") == []
    assert await ids(history, call_id="Abc1") == ["Abc1"]
    assert await ids(history, call_id="abc1") == []  # call ids are case-sensitive


async def test_filters_combine_with_and(history: Store) -> None:
    assert await ids(history, source="1001", caller_id="Alice", state="TransferCompleted") == [
        "xyz4"
    ]
    assert await ids(history, general="alice", direction="internal", type="audio") == ["Abc1"]
    assert await ids(history, source="1001", destination="1001") == []


async def test_paging_and_total(history: Store) -> None:
    pages = []
    for number in range(4):
        total, page = await history.query_history(HistoryQuery(page=number, rows_per_page=2))
        assert total == 5
        pages.append([r.call_id for r in page])
    assert pages == [["Abc1", "Abc2"], ["xyz3", "xyz4"], ["open5"], []]
    total, page = await history.query_history(HistoryQuery(general="1003", page=1, rows_per_page=1))
    assert (total, [r.call_id for r in page]) == (2, ["open5"])


async def test_equal_start_times_keep_insertion_order(store: Store) -> None:
    for call_id in ("b", "a", "c"):
        await store.start_history(call(call_id, 0))
    assert await ids(store) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (HistoryQuery(page=-1), "page must be >= 0"),
        (HistoryQuery(rows_per_page=0), "rows_per_page must be >= 1"),
    ],
)
async def test_bad_paging_refused(store: Store, query: HistoryQuery, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        await store.query_history(query)


async def test_concurrent_calls_each_leave_one_row(store: Store) -> None:
    records = [call(f"c{i:03d}", i, state=None) for i in range(40)]
    await asyncio.gather(*(store.start_history(r) for r in records))
    await asyncio.gather(
        *(
            store.finish_history(call(r.call_id, i, state="CallerHungUp"))
            for i, r in enumerate(records)
        )
    )
    total, page = await store.query_history(HistoryQuery(rows_per_page=1000))
    assert total == 40
    assert {r.state for r in page} == {"CallerHungUp"}
