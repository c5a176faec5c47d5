"""Registrations written behind (BindingWriter), and the whole-table extension cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pypbx.store import BindingRecord, ExtensionRecord, Store
from pypbx.store.schema import bindings, extensions

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def binding(ext: str, contact: str, cseq: int = 1) -> BindingRecord:
    return BindingRecord(
        ext, contact, "192.0.2.10:5060", "udp", T0 + timedelta(seconds=cseq), f"cid-{ext}", cseq
    )


@pytest.fixture
async def exts(store: Store) -> Store:
    for ext_id in ("1000", "1001"):
        await store.add_extension(ExtensionRecord(ext_id, "SIP", username=ext_id))
    return store


def count_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    reads: list[Any] = []
    original = store._read

    async def counting(statement: Any) -> Any:
        reads.append(statement)
        return await original(statement)

    monkeypatch.setattr(store, "_read", counting)
    return reads


async def test_write_registrations_is_one_batch(exts: Store) -> None:
    await exts.save_binding(binding("1001", "sip:old"))
    await exts.write_registrations(
        [binding("1000", "sip:a"), binding("1000", "sip:b", 2)],
        [("1001", "sip:old")],
        {"1000": ("192.0.2.10:5060 (Udp)", "Phone/1")},
    )
    assert await exts.list_bindings() == [binding("1000", "sip:a"), binding("1000", "sip:b", 2)]
    ext = await exts.get_extension("1000")
    assert ext is not None and (ext.last_ip, ext.user_agent) == ("192.0.2.10:5060 (Udp)", "Phone/1")


async def test_write_registrations_is_all_or_nothing(exts: Store) -> None:
    with pytest.raises(IntegrityError):
        await exts.write_registrations([binding("1000", "sip:a"), binding("9999", "sip:x")], [], {})
    assert await exts.list_bindings() == []


async def test_queued_changes_coalesce_and_survive_close(exts: Store) -> None:
    writer = exts.registrations
    writer.save(binding("1000", "sip:a", 1))
    writer.save(binding("1000", "sip:a", 2))
    writer.save(binding("1001", "sip:gone"))
    writer.delete("1001", "sip:gone")
    assert writer.pending == 2
    await writer.flush()
    assert writer.pending == 0
    assert await exts.list_bindings() == [binding("1000", "sip:a", 2)]


async def test_a_binding_of_a_removed_extension_costs_only_itself(exts: Store) -> None:
    exts.registrations.save(binding("1000", "sip:a"))
    exts.registrations.save(binding("1001", "sip:b"))
    # removed behind the writer's back
    await exts._write(sa.delete(extensions).where(extensions.c.id == "1001"))
    await exts.registrations.flush()
    assert await exts.list_bindings() == [binding("1000", "sip:a")]


async def test_removing_an_extension_forgets_what_was_queued(exts: Store) -> None:
    exts.registrations.save(binding("1001", "sip:b"))
    exts.note_extension_runtime("1001", last_ip="x", user_agent="y")
    assert await exts.remove_extension("1001")
    await exts.add_extension(ExtensionRecord("1001", "SIP", username="1001"))
    await exts.registrations.flush()
    assert await exts.list_bindings() == []
    ext = await exts.get_extension("1001")
    assert ext is not None and ext.last_ip == ""


async def test_queued_runtime_info_is_shown_everywhere(exts: Store) -> None:
    generation = exts.extensions_generation
    exts.note_extension_runtime("1000", last_ip="192.0.2.9:5060 (Udp)", user_agent="P/2")
    assert exts.extensions_generation == generation  # not a configuration change
    by_name = await exts.find_extension_by_auth_name("1000")
    by_id = await exts.get_extension("1000")
    listed = {e.id: e for e in await exts.list_extensions()}["1000"]
    for ext in (by_name, by_id, listed):
        assert ext is not None and (ext.last_ip, ext.user_agent) == ("192.0.2.9:5060 (Udp)", "P/2")
    await exts.registrations.flush()
    assert {e.id: e for e in await exts.list_extensions()}["1000"].last_ip.startswith("192.0.2.9")


async def test_lookups_after_the_first_need_no_query(
    exts: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_reads(exts, monkeypatch)
    assert (await exts.find_extension_by_auth_name("1000")) is not None
    assert len(reads) == 1  # the whole table, once
    assert (await exts.find_extension_by_auth_name("1001")) is not None
    assert await exts.find_extension_by_auth_name("made-up") is None
    assert await exts.get_extension("nope") is None
    exts.note_extension_runtime("1000", last_ip="a", user_agent="b")
    found = await exts.find_extension_by_auth_name("1000")
    assert found is not None and found.last_ip == "a"
    assert len(reads) == 1


async def test_a_change_is_seen_at_once_and_reloads_are_rate_limited(
    exts: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await exts.find_extension_by_auth_name("2000") is None  # loads the table
    reads = count_reads(exts, monkeypatch)
    await exts.add_extension(ExtensionRecord("2000", "SIP", username="2000"))
    assert await exts.find_extension_by_auth_name("2000") is not None
    assert await exts.find_extension_by_auth_name("2000") is not None
    assert len(reads) == 1  # one query by name, no reload within the interval
    exts._extensions.loaded_at -= 10
    await exts.add_extension(ExtensionRecord("2001", "SIP", username="2001"))
    assert await exts.find_extension_by_auth_name("2001") is not None
    assert await exts.find_extension_by_auth_name("x") is None
    assert len(reads) == 2  # the reload; then everything from memory


@pytest.mark.parametrize("loaded", [False, True], ids=["by-name", "whole-table"])
async def test_auth_name_precedence_is_the_same_either_way(store: Store, loaded: bool) -> None:
    await store.add_extension(ExtensionRecord("30", "SIP", username="x"))
    await store.add_extension(ExtensionRecord("20", "SIP", username="x"))
    await store.add_extension(ExtensionRecord("40", "SIP", username="y", authorization_name="x"))
    await store.add_extension(ExtensionRecord("10", "SIP", username="z"))
    if not loaded:
        store._extensions.loaded_at = float("inf")  # as if a reload had just been done
    found = await store.find_extension_by_auth_name("x")
    assert found is not None and found.id == "40"
    assert await store.find_extension_by_auth_name("y") is None  # has an authorization name
    await store.remove_extension("40")
    found = await store.find_extension_by_auth_name("x")
    assert found is not None and found.id == "20"


# -- the batch upsert: on SQLite, SQLAlchemy's compiled text with rows made without its
# per-row work, so it is compared with the SQLAlchemy statement row for row, as stored


async def raw_bindings(store: Store) -> list[tuple[Any, ...]]:
    """The bindings table as the database holds it (no result processing)."""
    async with store._engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT * FROM bindings ORDER BY extension_id, contact")
        return [tuple(row) for row in result]


@pytest.mark.parametrize(
    "expires_at",
    [
        T0,  # no microseconds: stored with ".000000" all the same
        T0 + timedelta(microseconds=7),
        datetime(2030, 5, 1, 14, 30, 1, 250000, tzinfo=timezone(timedelta(hours=2))),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),  # a three-digit year, zero-padded
    ],
)
async def test_batch_upsert_stores_what_the_sqlalchemy_statement_stores(
    exts: Store, backend: str, expires_at: datetime
) -> None:
    """The batch's SQLite text path and the SQLAlchemy upsert leave the very same row."""
    record = BindingRecord(
        "1000", "sip:a@192.0.2.1", "192.0.2.10:5060", "udp", expires_at, "cid", 3, "UA", "i1"
    )
    await exts.write_registrations([record], [], {})
    batched = await raw_bindings(exts)
    await exts._write(sa.delete(bindings))
    await exts.save_binding(record)  # the SQLAlchemy statement, bind processors and all
    assert await raw_bindings(exts) == batched
    assert await exts.list_bindings() == [record]


async def test_batch_upsert_refreshes_an_existing_binding(exts: Store) -> None:
    await exts.write_registrations([binding("1000", "sip:a", 1)], [], {})
    await exts.write_registrations([binding("1000", "sip:a", 2), binding("1001", "sip:b")], [], {})
    assert await exts.list_bindings() == [binding("1000", "sip:a", 2), binding("1001", "sip:b")]


async def test_batch_upsert_refuses_a_naive_expiry(exts: Store) -> None:
    naive = BindingRecord("1000", "sip:a", "192.0.2.10:5060", "udp", datetime(2030, 1, 1), "c", 1)
    with pytest.raises(ValueError, match="expires_at must be a timezone-aware datetime"):
        await exts.write_registrations([naive], [], {})
