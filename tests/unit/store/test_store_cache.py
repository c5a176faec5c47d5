"""The in-memory extension lookups of Store stay exact across every kind of write."""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from pypbx.store import ExtensionRecord, Store


def sip(ext_id: str, **kwargs: object) -> ExtensionRecord:
    return ExtensionRecord(
        id=ext_id,
        type="SIP",
        username=ext_id,
        authorization_name=ext_id,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_lookups_see_updates_and_removals(store: Store) -> None:
    await store.add_extension(sip("100", password="a"))
    assert (await store.get_extension("100")).password == "a"  # type: ignore[union-attr]
    assert (await store.find_extension_by_auth_name("100")).password == "a"  # type: ignore[union-attr]
    await store.update_extension(sip("100", password="b", enabled=False))
    assert (await store.get_extension("100")).password == "b"  # type: ignore[union-attr]
    found = await store.find_extension_by_auth_name("100")
    assert found is not None and not found.enabled
    assert await store.remove_extension("100")
    assert await store.get_extension("100") is None
    assert await store.find_extension_by_auth_name("100") is None


async def test_unknown_names_become_visible_when_added(store: Store) -> None:
    assert await store.find_extension_by_auth_name("200") is None
    assert await store.get_extension("200") is None
    await store.add_extension(sip("200"))
    assert await store.find_extension_by_auth_name("200") is not None
    assert await store.get_extension("200") is not None


async def test_editing_a_returned_record_does_not_change_the_store(store: Store) -> None:
    await store.add_extension(sip("300", settings={"a": [1]}))
    first = await store.get_extension("300")
    assert first is not None
    first.password = "changed"
    first.settings["a"].append(2)
    again = await store.get_extension("300")
    assert again is not None and again.password is None and again.settings == {"a": [1]}


async def test_runtime_info_is_visible_at_once(store: Store) -> None:
    await store.add_extension(sip("400"))
    await store.get_extension("400")
    await store.set_extension_runtime("400", last_ip="127.0.0.1:5062 (Udp)", user_agent="x")
    found = await store.get_extension("400")
    assert found is not None and found.last_ip == "127.0.0.1:5062 (Udp)"


async def test_lookups_during_a_full_load_wait_for_it_instead_of_querying(store: Store) -> None:
    """A registration storm right after provisioning: one query serves every lookup."""
    for n in range(50):
        await store.add_extension(sip(str(500 + n), password=f"pw{n}"))
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    engine = store._engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        names = [str(500 + n) for n in range(50)] + ["nobody"]
        found = await asyncio.gather(*(store.find_extension_by_auth_name(n) for n in names))
        by_id = await asyncio.gather(*(store.get_extension(str(500 + n)) for n in range(50)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [r.password if r else None for r in found] == [f"pw{n}" for n in range(50)] + [None]
    assert [r.id if r else None for r in by_id] == [str(500 + n) for n in range(50)]
    assert len(statements) == 1, statements


async def test_load_extensions_fills_the_cache_at_start_up(store: Store) -> None:
    await store.add_extension(sip("600", password="x"))
    assert await store.load_extensions()
    assert store._extensions.complete
    assert await store.find_extension_by_auth_name("unknown") is None
    found = await store.find_extension_by_auth_name("600")
    assert found is not None and found.password == "x"


async def test_a_failed_load_lets_waiting_lookups_query_on_their_own(store: Store) -> None:
    await store.add_extension(sip("700", password="y"))
    real_read = store._read
    calls = 0

    async def flaky_read(statement: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.01)
            raise OSError("disk gone")
        return await real_read(statement)  # type: ignore[arg-type]

    store._read = flaky_read  # type: ignore[assignment,method-assign]
    first, second = await asyncio.gather(
        store.find_extension_by_auth_name("700"),
        store.find_extension_by_auth_name("700"),
        return_exceptions=True,
    )
    assert isinstance(first, OSError)
    assert isinstance(second, ExtensionRecord) and second.password == "y"
    assert store._loading is None


def _count_selects(store: Store) -> tuple[list[str], object]:
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(store._engine.sync_engine, "before_cursor_execute", count)
    return statements, count


async def test_a_change_keeps_a_full_cache_full(store: Store) -> None:
    """After an add, update or removal the cache is complete again: a storm of REGISTERs
    (for real or made-up names) right after an administrator's change sends no queries."""
    await store.add_extension(sip("800", password="a"))
    assert await store.load_extensions()
    await store.add_extension(sip("801", password="b"))
    await store.update_extension(sip("800", password="c"))
    await store.add_extension(sip("802"))
    assert await store.remove_extension("802")
    statements, count = _count_selects(store)
    try:
        found = await store.find_extension_by_auth_name("801")
        changed = await store.find_extension_by_auth_name("800")
        assert await store.find_extension_by_auth_name("802") is None
        assert await store.find_extension_by_auth_name("made-up") is None
        assert await store.get_extension("802") is None
    finally:
        event.remove(store._engine.sync_engine, "before_cursor_execute", count)
    assert found is not None and found.password == "b"
    assert changed is not None and changed.password == "c"
    assert statements == []


async def test_auth_name_precedence_follows_changes_in_a_full_cache(store: Store) -> None:
    plain = ExtensionRecord(id="900", type="SIP", username="x", authorization_name="")
    await store.add_extension(plain)
    assert await store.load_extensions()
    found = await store.find_extension_by_auth_name("x")
    assert found is not None and found.id == "900"  # by username: no authorization name
    explicit = ExtensionRecord(id="950", type="SIP", username="950", authorization_name="x")
    await store.add_extension(explicit)
    found = await store.find_extension_by_auth_name("x")
    assert found is not None and found.id == "950"  # an explicit authorization name wins
    explicit.authorization_name = "y"
    await store.update_extension(explicit)
    found = await store.find_extension_by_auth_name("x")
    assert found is not None and found.id == "900"
    found = await store.find_extension_by_auth_name("y")
    assert found is not None and found.id == "950"
    assert await store.remove_extension("900")
    assert await store.find_extension_by_auth_name("x") is None
    assert store._extensions.complete
