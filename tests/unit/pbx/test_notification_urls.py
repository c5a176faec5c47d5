"""Which global notification URLs are in force: TOML defaults vs the stored HttpApi record."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypbx.api.config_xml import ConfigContentError, check_http_api_id
from pypbx.pbx.notification_urls import NotificationUrls
from pypbx.store.records import HTTP_API_SETTINGS_ID, ExtensionRecord
from pypbx.store.store import Store

TOML_CHANGED = "http://app.example/toml-changed"
TOML_ROUTE = "http://app.example/toml-route"


async def test_stored_settings_replace_defaults_and_removal_restores_them(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pbx.db'}")
    try:
        urls = NotificationUrls(store, call_changed=TOML_CHANGED, route_interception=TOML_ROUTE)
        await urls.reload()
        assert (urls.call_changed(), urls.route_interception()) == (TOML_CHANGED, TOML_ROUTE)

        record = ExtensionRecord(
            HTTP_API_SETTINGS_ID,
            "HttpApi",
            settings={"call_changed_url": "http://app.example/c", "route_interception_url": ""},
        )
        await store.add_extension(record)
        await urls.reload()
        # an empty stored URL turns that notification off rather than falling back to TOML
        assert (urls.call_changed(), urls.route_interception()) == ("http://app.example/c", None)

        disabled = ExtensionRecord(
            HTTP_API_SETTINGS_ID, "HttpApi", enabled=False, settings=record.settings
        )
        await store.update_extension(disabled)
        await urls.reload()
        assert (urls.call_changed(), urls.route_interception()) == (None, None)

        await store.remove_extension(HTTP_API_SETTINGS_ID)
        await urls.reload()
        assert (urls.call_changed(), urls.route_interception()) == (TOML_CHANGED, TOML_ROUTE)
    finally:
        await store.close()


@pytest.mark.parametrize("value", ["HttpApi", " httpapi "])
def test_http_api_id_is_fixed(value: str) -> None:
    assert check_http_api_id(value) == "HttpApi"


def test_other_http_api_ids_are_refused() -> None:
    with pytest.raises(ConfigContentError, match="ID must be HttpApi"):
        check_http_api_id("9000")
