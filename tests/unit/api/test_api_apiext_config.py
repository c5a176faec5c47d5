"""API extensions through AddConfig/GetConfig/ModifyConfig/RemoveConfig (spec 7, 8.19-8.22),
and the typed reading of their settings (`pypbx.store.records.api_extension_settings`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import OPEN, Client, FakePbx, FakeStore, block, envelope

from pypbx.api.config_xml import API_SETTINGS
from pypbx.api.server import create_app
from pypbx.store import Store
from pypbx.store.records import (
    API_SETTING_KEYS,
    ApiExtensionSettings,
    ExtensionRecord,
    api_extension_settings,
)

OK = envelope(200, "Command successfully executed")
INVALID = envelope(702, "Invalid configuration for type 'API'")
EXISTS = envelope(703, "Extension configuration already exists")

FIELDS = {
    "ID": "9994",
    "Enabled": "true",
    "IncomingCallUrl": "http://app.example/calls?x=1&amp;y=2",
    "IncomingSmsUrl": "https://app.example/sms",
    "AllowedUsers": "alice,bob",
    "DefaultCallerId": "+3612345",
    "DefaultDisplayName": "Help desk",
    "UserID": "user9994",
}
STORED_SETTINGS = {
    "incoming_call_url": "http://app.example/calls?x=1&y=2",
    "incoming_sms_url": "https://app.example/sms",
    "allowed_users": ["alice", "bob"],
    "default_caller_id": "+3612345",
    "default_display_name": "Help desk",
}
EMPTY_SETTINGS = {
    "incoming_call_url": "",
    "incoming_sms_url": "",
    "allowed_users": [],
    "default_caller_id": "",
    "default_display_name": "",
}

GET_FULL = """
  <Config knownType="APIExtensionInfo">
    <IncomingCallUrl>http://app.example/calls?x=1&amp;y=2</IncomingCallUrl>
    <IncomingSmsUrl>https://app.example/sms</IncomingSmsUrl>
    <AllowedUsers>alice,bob</AllowedUsers>
    <DefaultCallerId>+3612345</DefaultCallerId>
    <DefaultDisplayName>Help desk</DefaultDisplayName>
    <Enabled>true</Enabled>
    <ID>9994</ID>
    <UserID>user9994</UserID>
  </Config>
"""

GET_MINIMAL = """
  <Config knownType="APIExtensionInfo">
    <IncomingCallUrl />
    <IncomingSmsUrl />
    <AllowedUsers />
    <DefaultCallerId />
    <DefaultDisplayName />
    <Enabled>false</Enabled>
    <ID>9990</ID>
    <UserID />
  </Config>
"""


def api_xml(known_type: str = "APIExtensionInfo", root: str = "Config", **fields: str) -> str:
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    attr = f' knownType="{known_type}"' if known_type else ""
    return f"<{root}{attr}>{children}</{root}>"


async def post(client: Client, command: str, xml: str, extension_type: str = "API") -> str:
    data = {"command": command, "ExtensionType": extension_type, "ConfigXML": xml}
    return await (await client.post("/", data=data)).text()


async def get_config(client: Client, ext_id: str, path: str = "/") -> str:
    return await (await client.get(f"{path}?command=GetConfig&ExtensionId={ext_id}")).text()


def with_fields(**changes: str) -> dict[str, str]:
    return {**FIELDS, **changes}


def without(*names: str) -> dict[str, str]:
    return {k: v for k, v in FIELDS.items() if k not in names}


# -- AddConfig ---------------------------------------------------------------------------


async def test_add_full_config(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", api_xml(**FIELDS)) == OK
    record = store.extensions["9994"]
    assert (record.id, record.type, record.enabled, record.user_id) == (
        "9994",
        "API",
        True,
        "user9994",
    )
    assert record.settings == STORED_SETTINGS
    # No SIP credentials at all: nothing can authenticate (register, call) as it.
    assert (record.username, record.authorization_name) == ("", "")
    assert (record.password, record.ha1_md5, record.ha1_sha256) == (None, None, None)
    assert await post(client, "AddConfig", api_xml(**FIELDS)) == EXISTS


async def test_add_minimal_config_stores_every_setting_empty(
    client: Client, store: FakeStore
) -> None:
    assert await post(client, "AddConfig", api_xml(ID="9990", Enabled="false")) == OK
    record = store.extensions["9990"]
    assert (record.enabled, record.user_id, record.settings) == (False, "", EMPTY_SETTINGS)
    assert await get_config(client, "9990") == envelope(
        200, "Command successfully executed", *block(GET_MINIMAL)
    )


@pytest.mark.parametrize("extension_type", ["api", " Api ", "API"])
async def test_extension_type_is_case_insensitive(
    client: Client, store: FakeStore, extension_type: str
) -> None:
    assert await post(client, "AddConfig", api_xml(**FIELDS), extension_type) == OK
    assert store.extensions["9994"].type == "API"


async def test_add_lenient_forms(client: Client, store: FakeStore) -> None:
    xml = '<?xml version="1.0" encoding="utf-8"?>\n' + api_xml(
        ID=" 0042 ",
        Enabled=" TRUE ",
        IncomingCallUrl="  HTTPS://App.Example:8443/in  ",
        AllowedUsers=" alice , ,bob,alice,, ",
        DefaultCallerId=" 100 ",
        DefaultDisplayName="  Front desk  ",
        UserID=" u1 ",
        Password="ignored",
        AuthorizationName="0042",
        Extra="ignored",
    )
    assert await post(client, "AddConfig", xml) == OK
    record = store.extensions["0042"]
    assert record.enabled is True
    assert record.user_id == "u1"
    assert record.settings == {
        "incoming_call_url": "HTTPS://App.Example:8443/in",
        "incoming_sms_url": "",
        "allowed_users": ["alice", "bob"],
        "default_caller_id": "100",
        "default_display_name": "Front desk",
    }
    # SIP elements in an API document are ignored, not half-applied.
    assert (record.password, record.authorization_name, record.ha1_md5) == (None, "", None)


async def test_add_html_escaped_config(client: Client, store: FakeStore) -> None:
    escaped = html.escape(api_xml(**FIELDS), quote=False)
    assert escaped.startswith("&lt;Config knownType=")
    assert await post(client, "AddConfig", escaped) == OK
    assert store.extensions["9994"].settings == STORED_SETTINGS


@pytest.mark.parametrize("existing_type", ["SIP", "API", "IVR"])
async def test_add_existing_id_of_any_type_703(
    client: Client, store: FakeStore, existing_type: str
) -> None:
    store.extensions["9994"] = ExtensionRecord("9994", existing_type, username="x")
    assert await post(client, "AddConfig", api_xml(**FIELDS)) == EXISTS
    assert store.extensions["9994"].type == existing_type


async def test_sip_add_over_api_id_703(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", api_xml(**FIELDS)) == OK
    sip = (
        '<Config knownType="SIPExtensionInfo"><AuthorizationName>9994</AuthorizationName>'
        "<Password>pw</Password><Username>9994</Username><Enabled>true</Enabled>"
        "<ID>9994</ID><UserID>u</UserID></Config>"
    )
    assert await post(client, "AddConfig", sip, "SIP") == EXISTS
    assert store.extensions["9994"].type == "API"


@pytest.mark.parametrize(
    "xml",
    [
        api_xml(**without("ID")),
        api_xml(**without("Enabled")),
        api_xml(**without("ID", "Enabled")),
        api_xml(**with_fields(ID="")),
        api_xml(**with_fields(ID="99 94")),
        api_xml(**with_fields(ID="1" * 65)),
        api_xml(**with_fields(Enabled="")),
        api_xml(**with_fields(Enabled="yes")),
        api_xml(**with_fields(Enabled="1")),
        api_xml(**with_fields(IncomingCallUrl="ftp://app.example/x")),
        api_xml(**with_fields(IncomingCallUrl="app.example/calls")),
        api_xml(**with_fields(IncomingCallUrl="/calls")),
        api_xml(**with_fields(IncomingCallUrl="http://")),
        api_xml(**with_fields(IncomingCallUrl="http:///calls")),
        api_xml(**with_fields(IncomingCallUrl="http://app example/")),
        api_xml(**with_fields(IncomingCallUrl="http://app.example/a b")),
        api_xml(**with_fields(IncomingCallUrl="http://app.example:99999/")),
        api_xml(**with_fields(IncomingCallUrl="http://[::1/")),
        api_xml(**with_fields(IncomingCallUrl="javascript:alert(1)")),
        api_xml(**with_fields(IncomingCallUrl="http://app.example/" + "x" * 2048)),
        api_xml(**with_fields(IncomingSmsUrl="mailto:sms@app.example")),
        api_xml(**with_fields(DefaultCallerId="12 34")),
        api_xml(**with_fields(DefaultCallerId="&lt;1&gt;")),
        api_xml(**with_fields(DefaultCallerId="1" * 129)),
        api_xml(**with_fields(DefaultDisplayName="Help&#9;desk")),
        api_xml(**with_fields(DefaultDisplayName="Help&#10;Via: x")),
        api_xml(**with_fields(DefaultDisplayName="d" * 129)),
        api_xml(**with_fields(AllowedUsers="alice,b&#13;ob")),
        api_xml(**with_fields(AllowedUsers="u" * 129)),
        api_xml(**with_fields(UserID="u&#127;")),
        api_xml(known_type="SIPExtensionInfo", **FIELDS),
        api_xml(known_type="apiextensioninfo", **FIELDS),
        api_xml(known_type="", **FIELDS),
        api_xml(root="Configuration", **FIELDS),
        '<Config xmlns="urn:x" knownType="APIExtensionInfo"><ID>9994</ID></Config>',
    ],
)
async def test_add_invalid_content_702(client: Client, store: FakeStore, xml: str) -> None:
    assert await post(client, "AddConfig", xml) == INVALID
    assert store.extensions == {}


async def test_sip_document_with_api_type_and_vice_versa_702(
    client: Client, store: FakeStore
) -> None:
    assert await post(client, "AddConfig", api_xml(**FIELDS), "SIP") == envelope(
        702, "Invalid configuration for type 'SIP'"
    )
    assert store.extensions == {}


async def test_api_config_syntax_error_300(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", '<Config knownType="APIExtensionInfo"><ID>') == (
        envelope(
            300,
            "Error occured during parsing message: "
            "'ConfigXML is not well-formed: no element found: line 1, column 41'",
        )
    )


@pytest.mark.parametrize("command", ["AddConfig", "ModifyConfig"])
async def test_unknown_type_still_701(client: Client, command: str) -> None:
    assert await post(client, command, api_xml(**FIELDS), "APIExtension") == envelope(
        701, "Configuration for type 'APIExtension' not found"
    )


# -- GetConfig ---------------------------------------------------------------------------


async def test_get_full_config(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", api_xml(**FIELDS)) == OK
    for path in ("/", "/api"):
        assert await get_config(client, "9994", path) == envelope(
            200, "Command successfully executed", *block(GET_FULL)
        )


async def test_get_config_output_feeds_modify_config(
    client: Client, store: FakeStore, pbx: FakePbx
) -> None:
    assert await post(client, "AddConfig", api_xml(**without("IncomingSmsUrl"))) == OK
    before = store.extensions["9994"]
    text = await get_config(client, "9994")
    config = "\n".join(text.split("\n")[4:-1])
    assert "<IncomingSmsUrl />" in config  # stored value: follows IncomingCallUrl
    assert await post(client, "ModifyConfig", config) == OK
    assert store.extensions["9994"] == before
    assert pbx.changed == ["9994"]


async def test_get_config_tolerates_odd_stored_settings(client: Client, store: FakeStore) -> None:
    store.extensions["9"] = ExtensionRecord(
        "9", "API", settings={"incoming_call_url": 5, "allowed_users": ["a", 7]}
    )
    text = await get_config(client, "9")
    assert "    <IncomingCallUrl />" in text.split("\n")
    assert "    <AllowedUsers>a,7</AllowedUsers>" in text.split("\n")


# -- ModifyConfig ------------------------------------------------------------------------


@pytest.fixture
def ext9994(store: FakeStore) -> FakeStore:
    store.extensions["9994"] = ExtensionRecord(
        "9994", "API", user_id="user9994", settings=dict(STORED_SETTINGS)
    )
    return store


async def test_modify_only_present_elements(
    client: Client, ext9994: FakeStore, pbx: FakePbx
) -> None:
    assert await post(client, "ModifyConfig", api_xml(ID="9994", Enabled="false")) == OK
    record = ext9994.extensions["9994"]
    assert (record.enabled, record.user_id, record.settings) == (False, "user9994", STORED_SETTINGS)
    xml = api_xml(ID="9994", IncomingCallUrl="http://other.example/in", AllowedUsers="carol, dave")
    assert await post(client, "ModifyConfig", xml) == OK
    record = ext9994.extensions["9994"]
    assert record.enabled is False
    assert record.settings == {
        **STORED_SETTINGS,
        "incoming_call_url": "http://other.example/in",
        "allowed_users": ["carol", "dave"],
    }
    assert pbx.changed == ["9994", "9994"]


async def test_modify_empty_elements_clear(client: Client, ext9994: FakeStore) -> None:
    xml = api_xml(
        ID="9994",
        IncomingCallUrl="",
        IncomingSmsUrl=" ",
        AllowedUsers=" , ",
        DefaultCallerId="",
        DefaultDisplayName="",
        UserID="",
    )
    assert await post(client, "ModifyConfig", xml) == OK
    record = ext9994.extensions["9994"]
    assert (record.enabled, record.user_id, record.settings) == (True, "", EMPTY_SETTINGS)


async def test_modify_keeps_unrelated_settings_keys(client: Client, store: FakeStore) -> None:
    store.extensions["9994"] = ExtensionRecord("9994", "API", settings={"future": {"a": 1}})
    assert await post(client, "ModifyConfig", api_xml(ID="9994", DefaultCallerId="55")) == OK
    assert store.extensions["9994"].settings == {"future": {"a": 1}, "default_caller_id": "55"}


@pytest.mark.parametrize(
    "xml",
    [
        api_xml(Enabled="false"),
        api_xml(ID="", Enabled="false"),
        api_xml(ID="99 94"),
        api_xml(ID="9994", Enabled="maybe"),
        api_xml(ID="9994", Enabled=""),
        api_xml(ID="9994", IncomingCallUrl="not a url"),
        api_xml(ID="9994", IncomingSmsUrl="ftp://x.example/"),
        api_xml(ID="9994", DefaultCallerId="a b"),
        api_xml(ID="9994", DefaultDisplayName="x&#10;y"),
        api_xml(known_type="SIPExtensionInfo", ID="9994"),
        api_xml(root="Cfg", ID="9994"),
    ],
)
async def test_modify_invalid_702(
    client: Client, ext9994: FakeStore, pbx: FakePbx, xml: str
) -> None:
    before = ext9994.extensions["9994"]
    assert await post(client, "ModifyConfig", xml) == INVALID
    assert ext9994.extensions["9994"] == before
    assert pbx.changed == []


async def test_modify_unknown_id_701(client: Client, ext9994: FakeStore, pbx: FakePbx) -> None:
    # 701 for the id comes before content checks (spec 4.2), as for SIP.
    for xml in (api_xml(**with_fields(ID="9995")), api_xml(ID="9995", Enabled="maybe")):
        assert await post(client, "ModifyConfig", xml) == envelope(
            701, "Configuration for type '9995' not found"
        )
    assert pbx.changed == []


async def test_modify_cannot_change_type_702(client: Client, store: FakeStore) -> None:
    store.extensions["100"] = ExtensionRecord("100", "SIP", username="100", password="pw")
    before = store.extensions["100"]
    assert await post(client, "ModifyConfig", api_xml(ID="100", Enabled="false")) == INVALID
    assert store.extensions["100"] == before


# -- RemoveConfig ------------------------------------------------------------------------


async def test_remove_api_extension(client: Client, ext9994: FakeStore, pbx: FakePbx) -> None:
    resp = await client.get("/?command=RemoveConfig&ExtensionId=9994")
    assert await resp.text() == OK
    assert ext9994.extensions == {}
    assert pbx.changed == ["9994"]
    assert await get_config(client, "9994") == envelope(
        701, "Configuration for type '9994' not found"
    )


# -- Real store --------------------------------------------------------------------------


async def test_settings_survive_the_real_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}"
    store = await Store.open(url)
    try:
        app = create_app(OPEN, store, FakePbx())
        async with TestClient(TestServer(app)) as client:
            assert await post(client, "AddConfig", api_xml(**FIELDS)) == OK
            xml = api_xml(ID="9994", AllowedUsers="carol")
            assert await post(client, "ModifyConfig", xml) == OK
    finally:
        await store.close()
    store = await Store.open(url)
    try:
        record = await store.get_extension("9994")
        assert record is not None
        assert record.settings == {**STORED_SETTINGS, "allowed_users": ["carol"]}
        assert (await store.find_extension_by_auth_name("9994")) is None
        app = create_app(OPEN, store, FakePbx())
        async with TestClient(TestServer(app)) as client:
            text = await get_config(client, "9994")
        assert "    <AllowedUsers>carol</AllowedUsers>" in text.split("\n")
    finally:
        await store.close()


# -- api_extension_settings --------------------------------------------------------------


def test_settings_keys_agree() -> None:
    assert tuple(API_SETTINGS.values()) == API_SETTING_KEYS


def test_typed_settings_with_every_value() -> None:
    record = ExtensionRecord("9994", "API", settings=dict(STORED_SETTINGS))
    assert api_extension_settings(record) == ApiExtensionSettings(
        incoming_call_url="http://app.example/calls?x=1&y=2",
        incoming_sms_url="https://app.example/sms",
        allowed_users=("alice", "bob"),
        default_caller_id="+3612345",
        default_display_name="Help desk",
    )


@pytest.mark.parametrize(
    "settings",
    [{}, dict(EMPTY_SETTINGS), {"incoming_call_url": None, "allowed_users": "alice"}],
)
def test_typed_settings_defaults(settings: dict[str, Any]) -> None:
    typed = api_extension_settings(ExtensionRecord("9990", "API", settings=settings))
    assert typed == ApiExtensionSettings(None, None, (), "9990", "9990")
    assert typed.allows("anyone")


def test_sms_url_follows_call_url() -> None:
    record = ExtensionRecord("1", "API", settings={"incoming_call_url": "http://a.example/"})
    typed = api_extension_settings(record)
    assert (typed.incoming_call_url, typed.incoming_sms_url) == (
        "http://a.example/",
        "http://a.example/",
    )


def test_typed_settings_tolerate_malformed_values() -> None:
    record = ExtensionRecord(
        "7",
        "api",
        settings={
            "incoming_call_url": 42,
            "incoming_sms_url": " http://s.example/ ",
            "allowed_users": ["alice", 3, " ", None, " bob "],
            "default_caller_id": ["x"],
            "default_display_name": "  ",
        },
    )
    assert api_extension_settings(record) == ApiExtensionSettings(
        None, "http://s.example/", ("alice", "bob"), "7", "7"
    )


def test_allowed_users_are_exact_names() -> None:
    typed = api_extension_settings(
        ExtensionRecord("1", "API", settings={"allowed_users": ["alice", "bob"]})
    )
    assert typed.allows("alice") and typed.allows("bob")
    assert not typed.allows("Alice")
    assert not typed.allows("carol")


def test_typed_settings_refuse_other_types() -> None:
    with pytest.raises(ValueError, match=r"^extension 100 is of type SIP, not API$"):
        api_extension_settings(ExtensionRecord("100", "SIP"))
