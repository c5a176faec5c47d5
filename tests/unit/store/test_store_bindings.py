"""Registrations (bindings), on every backend under test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pypbx.store import BindingRecord, ExtensionRecord, NotFoundError, Store

T0 = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)


def binding(ext: str, contact: str, expires: datetime = T0, **kwargs: object) -> BindingRecord:
    fields: dict[str, object] = {
        "source": "192.0.2.10:5060",
        "transport": "udp",
        "expires_at": expires,
        "call_id": f"cid-{ext}-{contact}",
        "cseq": 1,
        **kwargs,
    }
    return BindingRecord(ext, contact, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def exts(store: Store) -> Store:
    for ext_id in ("1000", "1001"):
        await store.add_extension(ExtensionRecord(ext_id, "SIP"))
    return store


async def test_save_and_list(exts: Store) -> None:
    b1 = binding("1001", "sip:1001@192.0.2.11:5060", user_agent="ua", instance_id="<urn:x>")
    b2 = binding("1000", "sip:1000@192.0.2.10:5060;transport=tcp", transport="tcp")
    await exts.save_binding(b1)
    await exts.save_binding(b2)
    assert await exts.list_bindings() == [b2, b1]
    assert (await exts.list_bindings())[0].expires_at.tzinfo is UTC


async def test_save_is_upsert_on_extension_and_contact(exts: Store) -> None:
    contact = "sip:1000@192.0.2.10:5060"
    await exts.save_binding(binding("1000", contact))
    refreshed = binding("1000", contact, T0 + timedelta(hours=1), cseq=2, source="192.0.2.99:1")
    await exts.save_binding(refreshed)
    # Same contact on another extension is a separate binding.
    other = binding("1001", contact)
    await exts.save_binding(other)
    assert await exts.list_bindings() == [refreshed, other]


async def test_expiry_in_other_zone_is_same_instant(exts: Store) -> None:
    plus5 = timezone(timedelta(hours=5))
    await exts.save_binding(binding("1000", "sip:a", datetime(2024, 5, 1, 17, 0, tzinfo=plus5)))
    (got,) = await exts.list_bindings()
    assert got.expires_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def test_naive_expiry_refused(exts: Store) -> None:
    with pytest.raises(ValueError, match=r"^expires_at must be a timezone-aware datetime$"):
        await exts.save_binding(binding("1000", "sip:a", datetime(2024, 5, 1)))


async def test_binding_for_unknown_extension_refused(exts: Store) -> None:
    with pytest.raises(NotFoundError, match=r"extension '4040' does not exist"):
        await exts.save_binding(binding("4040", "sip:a"))
    assert await exts.list_bindings() == []


async def test_delete_one_and_all(exts: Store) -> None:
    for contact in ("sip:a", "sip:b", "sip:c"):
        await exts.save_binding(binding("1000", contact))
    await exts.save_binding(binding("1001", "sip:a"))
    await exts.delete_binding("1000", "sip:b")
    await exts.delete_binding("1000", "sip:missing")  # not an error
    assert [(b.extension_id, b.contact) for b in await exts.list_bindings()] == [
        ("1000", "sip:a"),
        ("1000", "sip:c"),
        ("1001", "sip:a"),
    ]
    await exts.delete_bindings("1000")
    assert [(b.extension_id, b.contact) for b in await exts.list_bindings()] == [("1001", "sip:a")]


async def test_purge_expired(exts: Store) -> None:
    await exts.save_binding(binding("1000", "sip:past", T0 - timedelta(seconds=1)))
    await exts.save_binding(binding("1000", "sip:now", T0))
    await exts.save_binding(binding("1001", "sip:future", T0 + timedelta(microseconds=1)))
    assert await exts.purge_expired_bindings(T0) == 2
    assert [b.contact for b in await exts.list_bindings()] == ["sip:future"]
    assert await exts.purge_expired_bindings(T0) == 0
    with pytest.raises(ValueError, match=r"^now must be a timezone-aware datetime$"):
        await exts.purge_expired_bindings(datetime(2024, 5, 1))


async def test_removing_extension_removes_its_bindings(exts: Store) -> None:
    await exts.save_binding(binding("1000", "sip:a"))
    await exts.save_binding(binding("1001", "sip:b"))
    assert await exts.remove_extension("1000") is True
    assert [b.extension_id for b in await exts.list_bindings()] == ["1001"]


async def test_concurrent_saves_do_not_fail(exts: Store) -> None:
    """Many registrations at once: SQLite must queue writers, not report 'locked'."""
    await asyncio.gather(
        *(
            exts.save_binding(binding("1000" if i % 2 else "1001", f"sip:{i:03d}", cseq=i))
            for i in range(60)
        )
    )
    assert len(await exts.list_bindings()) == 60
