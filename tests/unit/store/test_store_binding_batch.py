"""The batch upsert of bindings (BindingWriter's way of writing) stores what the
SQLAlchemy statement stores: on SQLite it runs SQLAlchemy's compiled text with rows made
without SQLAlchemy's per-row work, so the two are compared row for row, as stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from pypbx.store import BindingRecord, ExtensionRecord, Store
from pypbx.store.schema import bindings

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
