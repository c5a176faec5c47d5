"""The in-memory extension lookups of Store stay exact across every kind of write."""

from __future__ import annotations

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
