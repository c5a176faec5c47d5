"""Extensions, office users and settings, on every backend under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pypbx.store import (
    AlreadyExistsError,
    ExtensionRecord,
    NotFoundError,
    OfficeUserRecord,
    Store,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def sip(ext_id: str, **kwargs: object) -> ExtensionRecord:
    fields: dict[str, object] = {"type": "SIP", "created_at": T0, "updated_at": T0, **kwargs}
    return ExtensionRecord(ext_id, **fields)  # type: ignore[arg-type]


async def test_add_get_round_trip_all_fields(store: Store) -> None:
    ext = ExtensionRecord(
        id="1000",
        type="SIP",
        enabled=False,
        user_id="u-1",
        username="alice",
        authorization_name="alice-auth",
        password="s3cret",
        ha1_md5="0" * 32,
        ha1_sha256="f" * 64,
        settings={"codecs": ["PCMU", "PCMA"], "nested": {"n": 1, "ok": True, "none": None}},
        last_ip="192.0.2.1",
        user_agent="baresip",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
    )
    await store.add_extension(ext)
    got = await store.get_extension("1000")
    assert got == ext
    assert got is not None
    assert got.created_at.tzinfo is UTC


async def test_defaults_round_trip_with_none_password(store: Store) -> None:
    await store.add_extension(sip("1001"))
    got = await store.get_extension("1001")
    assert got == sip("1001")
    assert got is not None
    assert got.password is None and got.settings == {}


async def test_get_missing_is_none(store: Store) -> None:
    assert await store.get_extension("nope") is None


async def test_add_duplicate_id_of_any_type_fails(store: Store) -> None:
    await store.add_extension(sip("1000"))
    with pytest.raises(AlreadyExistsError, match=r"^extension '1000' already exists$"):
        await store.add_extension(ExtensionRecord("1000", "API"))
    got = await store.get_extension("1000")
    assert got is not None and got.type == "SIP"


async def test_non_utc_times_are_stored_as_the_same_instant(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    await store.add_extension(sip("1000", created_at=datetime(2024, 5, 1, 14, 0, tzinfo=plus2)))
    got = await store.get_extension("1000")
    assert got is not None
    assert got.created_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert got.created_at.tzinfo is UTC


async def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match=r"^created_at must be a timezone-aware datetime$"):
        await store.add_extension(sip("1000", created_at=datetime(2024, 5, 1)))
    assert await store.get_extension("1000") is None


async def test_update_replaces_config_but_keeps_runtime_and_creation(store: Store) -> None:
    await store.add_extension(sip("1000", username="a", last_ip="192.0.2.7", user_agent="ua"))
    before = datetime.now(UTC)
    edited = sip(
        "1000",
        type="API",
        enabled=False,
        username="b",
        password=None,
        ha1_md5="1" * 32,
        settings={"x": 1},
        created_at=T0 + timedelta(days=9),
    )
    await store.update_extension(edited)
    got = await store.get_extension("1000")
    assert got is not None
    assert (got.type, got.enabled, got.username) == ("API", False, "b")
    assert (got.password, got.ha1_md5) == (None, "1" * 32)
    assert got.settings == {"x": 1}
    assert (got.last_ip, got.user_agent) == ("192.0.2.7", "ua")
    assert got.created_at == T0
    assert got.updated_at >= before - timedelta(seconds=1)


async def test_update_missing_raises(store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"^extension '9' does not exist$"):
        await store.update_extension(sip("9"))


async def test_remove(store: Store) -> None:
    await store.add_extension(sip("1000"))
    assert await store.remove_extension("1000") is True
    assert await store.remove_extension("1000") is False
    assert await store.get_extension("1000") is None


async def test_list_orders_numeric_ids_numerically_then_others(store: Store) -> None:
    for ext_id in ["abc", "100", "9", "Zed", "1000", "10", "007", "7", "1a"]:
        await store.add_extension(sip(ext_id))
    ids = [e.id for e in await store.list_extensions()]
    assert ids == ["007", "7", "9", "10", "100", "1000", "1a", "Zed", "abc"]


async def test_list_by_type(store: Store) -> None:
    await store.add_extension(sip("2"))
    await store.add_extension(ExtensionRecord("1", "API"))
    await store.add_extension(sip("3"))
    assert [e.id for e in await store.list_extensions("SIP")] == ["2", "3"]
    assert [e.id for e in await store.list_extensions("API")] == ["1"]
    assert await store.list_extensions("IVR") == []
    assert [e.id for e in await store.list_extensions()] == ["1", "2", "3"]


async def test_find_by_auth_name(store: Store) -> None:
    await store.add_extension(sip("1000", username="alice", authorization_name="alice-auth"))
    await store.add_extension(sip("1001", username="bob"))
    # 1002's username equals 1000's authorization name: the explicit auth name wins.
    await store.add_extension(sip("1002", username="alice-auth"))

    found = await store.find_extension_by_auth_name("alice-auth")
    assert found is not None and found.id == "1000"
    found = await store.find_extension_by_auth_name("bob")
    assert found is not None and found.id == "1001"
    # A username does not stand in for an authorization name that is set.
    assert await store.find_extension_by_auth_name("alice") is None
    assert await store.find_extension_by_auth_name("BOB") is None
    assert await store.find_extension_by_auth_name("") is None


async def test_find_by_auth_name_returns_disabled_too(store: Store) -> None:
    await store.add_extension(sip("1000", username="u", enabled=False))
    found = await store.find_extension_by_auth_name("u")
    assert found is not None and found.enabled is False


async def test_set_runtime(store: Store) -> None:
    await store.add_extension(sip("1000"))
    await store.set_extension_runtime("1000", last_ip="198.51.100.4", user_agent="Linphone/5")
    got = await store.get_extension("1000")
    assert got is not None
    assert (got.last_ip, got.user_agent, got.updated_at) == ("198.51.100.4", "Linphone/5", T0)
    # An extension removed meanwhile is not an error.
    await store.set_extension_runtime("gone", last_ip="x", user_agent="y")
    assert await store.get_extension("gone") is None


# -- office users ------------------------------------------------------------------------


async def test_users(store: Store) -> None:
    assert await store.count_users() == 0
    admin = OfficeUserRecord("admin", "$scrypt$x", is_admin=True, created_at=T0)
    await store.add_user(admin)
    await store.add_user(OfficeUserRecord("api", "$scrypt$y", may_use_api=True, created_at=T0))
    assert await store.count_users() == 2
    assert await store.get_user("admin") == admin
    assert await store.get_user("ADMIN") is None
    assert await store.get_user("nobody") is None
    assert [u.username for u in await store.list_users()] == ["admin", "api"]

    with pytest.raises(AlreadyExistsError, match=r"^user 'admin' already exists$"):
        await store.add_user(OfficeUserRecord("admin", "other"))

    await store.update_user(
        OfficeUserRecord("admin", "$scrypt$z", may_use_api=False, is_admin=False)
    )
    got = await store.get_user("admin")
    assert got == OfficeUserRecord("admin", "$scrypt$z", False, False, created_at=T0)

    with pytest.raises(NotFoundError, match=r"user 'ghost' does not exist"):
        await store.update_user(OfficeUserRecord("ghost", "h"))

    assert await store.remove_user("api") is True
    assert await store.remove_user("api") is False
    assert await store.count_users() == 1


# -- settings ----------------------------------------------------------------------------


async def test_settings(store: Store) -> None:
    assert await store.get_setting("missing") is None
    assert await store.get_setting("missing", default=42) == 42
    value = {"list": [1, 2.5, "x"], "flag": False, "nested": {"a": None}}
    await store.set_setting("sip", value)
    assert await store.get_setting("sip") == value
    await store.set_setting("sip", "replaced")
    assert await store.get_setting("sip") == "replaced"
    await store.set_setting("n", 7)
    assert await store.get_setting("n") == 7
    # An explicit None is a stored value, not a missing key.
    await store.set_setting("none", None)
    assert await store.get_setting("none", default="d") is None
