"""Stored text messages (SIP MESSAGE store-and-forward, SendSms), on every backend under test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pypbx.store import AlreadyExistsError, Store
from pypbx.store.records import MessageRecord

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
WEEK = timedelta(days=7)


def message(
    mid: str, recipient: str = "2000", created: datetime = T0, **kw: object
) -> MessageRecord:
    fields: dict[str, object] = {
        "sender": "1000",
        "recipient": recipient,
        "content_type": "text/plain;charset=UTF-8",
        "body": "héllo".encode(),
        "expires_at": created + WEEK,
        "created_at": created,
        **kw,
    }
    return MessageRecord(mid, **fields)  # type: ignore[arg-type]


async def test_add_and_get_round_trip(store: Store) -> None:
    rec = message(
        "6b5c6978-0cd6-4a58-86fc-3d1b279b9201",
        sender_name="Alice",
        dialed="2000@pbx",
        api_extension="9994",
        report_url="http://app.example/dlr?x=1",
        body=bytes(range(256)),  # binary bodies survive unchanged
    )
    await store.add_message(rec)
    got = await store.get_message(rec.id)
    assert got == rec
    assert got is not None and got.created_at.tzinfo is UTC
    assert (got.state, got.attempts, got.reason, got.finished_at) == ("pending", 0, "", None)
    assert await store.get_message("nope") is None


async def test_duplicate_id_refused(store: Store) -> None:
    await store.add_message(message("m1"))
    with pytest.raises(AlreadyExistsError, match=r"^message 'm1' already exists$"):
        await store.add_message(message("m1", recipient="3000"))


async def test_naive_times_refused(store: Store) -> None:
    with pytest.raises(ValueError, match=r"^expires_at must be a timezone-aware datetime$"):
        await store.add_message(message("m1", expires_at=datetime(2024, 5, 8)))
    with pytest.raises(ValueError, match=r"^now must be a timezone-aware datetime$"):
        await store.pending_messages("2000", datetime(2024, 5, 1))


async def test_pending_oldest_first_per_recipient_without_expired(store: Store) -> None:
    await store.add_message(message("b", created=T0 + timedelta(seconds=2)))
    await store.add_message(message("a", created=T0 + timedelta(seconds=1)))
    await store.add_message(message("c", created=T0, expires_at=T0 + timedelta(seconds=30)))
    await store.add_message(message("other", recipient="3000"))
    now = T0 + timedelta(seconds=30)  # "c" expires exactly now: no longer pending
    assert [m.id for m in await store.pending_messages("2000", now)] == ["a", "b"]
    assert [m.id for m in await store.pending_messages("2000", T0)] == ["c", "a", "b"]
    assert [m.id for m in await store.pending_messages("2000", T0, limit=1)] == ["c"]
    assert await store.pending_recipients() == ["2000", "3000"]


async def test_attempts_counted_while_pending(store: Store) -> None:
    await store.add_message(message("m1"))
    assert await store.note_message_attempt("m1", "480 Temporarily Unavailable")
    assert await store.note_message_attempt("m1", "408 Request Timeout")
    got = await store.get_message("m1")
    assert got is not None and (got.attempts, got.reason) == (2, "408 Request Timeout")
    assert not await store.note_message_attempt("missing", "x")


async def test_finish_moves_pending_once(store: Store) -> None:
    await store.add_message(message("m1"))
    await store.note_message_attempt("m1", "480 Temporarily Unavailable")
    done = T0 + timedelta(minutes=5)
    assert await store.finish_message("m1", "delivered", done, "")
    # a second final state (racing delivery, expiry sweep) changes nothing
    assert not await store.finish_message("m1", "expired", done + timedelta(days=9))
    assert not await store.note_message_attempt("m1", "late")
    got = await store.get_message("m1")
    assert got is not None
    assert (got.state, got.attempts, got.reason, got.finished_at) == ("delivered", 2, "", done)
    assert await store.pending_messages("2000", T0) == []
    assert await store.pending_recipients() == []


async def test_finish_keeps_reason_unless_given(store: Store) -> None:
    await store.add_message(message("m1"))
    await store.note_message_attempt("m1", "503 Service Unavailable")
    assert await store.finish_message("m1", "expired", T0 + WEEK)
    got = await store.get_message("m1")
    assert got is not None and (got.state, got.reason, got.attempts) == (
        "expired",
        "503 Service Unavailable",
        1,
    )


async def test_finish_refuses_non_final_state(store: Store) -> None:
    await store.add_message(message("m1"))
    with pytest.raises(ValueError, match=r"^not a final message state: 'pending'$"):
        await store.finish_message("m1", "pending", T0)


async def test_expired_messages_listed_not_changed(store: Store) -> None:
    await store.add_message(message("late", expires_at=T0 + timedelta(seconds=10)))
    await store.add_message(message("later", expires_at=T0 + timedelta(seconds=20)))
    await store.add_message(message("fresh"))
    await store.add_message(message("gone", expires_at=T0))
    await store.finish_message("gone", "delivered", T0)
    now = T0 + timedelta(seconds=20)
    assert [m.id for m in await store.expired_messages(now)] == ["late", "later"]
    assert [m.id for m in await store.expired_messages(now, limit=1)] == ["late"]
    got = await store.get_message("late")
    assert got is not None and got.state == "pending"


async def test_expiry_in_other_zone_is_same_instant(store: Store) -> None:
    plus5 = timezone(timedelta(hours=5))
    await store.add_message(message("m1", expires_at=datetime(2024, 5, 1, 17, 0, tzinfo=plus5)))
    got = await store.get_message("m1")
    assert got is not None and got.expires_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert [m.id for m in await store.expired_messages(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))]


async def test_purge_deletes_only_old_final_messages(store: Store) -> None:
    for mid in ("old-delivered", "old-failed", "new-delivered", "pending"):
        await store.add_message(message(mid))
    await store.finish_message("old-delivered", "delivered", T0)
    await store.finish_message("old-failed", "failed", T0, "415 Unsupported Media Type")
    await store.finish_message("new-delivered", "delivered", T0 + timedelta(days=40))
    assert await store.purge_messages(T0 + timedelta(days=30)) == 2
    left = [await store.get_message(mid) for mid in ("old-delivered", "new-delivered", "pending")]
    assert [m.id if m else None for m in left] == [None, "new-delivered", "pending"]


async def test_concurrent_finishes_report_one_winner(store: Store) -> None:
    await store.add_message(message("m1"))
    results = await asyncio.gather(
        *(store.finish_message("m1", state, T0) for state in ("delivered", "expired", "failed"))
    )
    assert sorted(results) == [False, False, True]
