"""Outside lines through AddConfig/GetConfig/ModifyConfig/RemoveConfig (spec 8.1-8.3,
8.19-8.22) and the typed reading of their settings (`line_settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import OPEN, Client, ClientFactory, FakePbx, FakeStore, block, envelope

from pypbx.api.config_xml import LINE, ConfigContentError, check_settings_fields
from pypbx.api.server import create_app
from pypbx.api.settings import ApiSettings
from pypbx.store import Store
from pypbx.store.records import (
    LINE_SETTING_KEYS,
    ExtensionRecord,
    LineSettings,
    line_settings,
)

OK = envelope(200, "Command successfully executed")
INVALID = envelope(702, "Invalid configuration for type 'Line'")
EXISTS = envelope(703, "Extension configuration already exists")

FIELDS = {
    "ID": "voipservice1",
    "Enabled": "true",
    "Host": "sip.provider.example",
    "Port": "5080",
    "Transport": "tcp",
    "Username": "36123456",
    "AuthorizationName": "auth-36123456",
    "Password": "pr0vider secret",
    "Register": "true",
    "RegisterExpiry": "600",
    "OutboundProxy": "proxy.provider.example:5070",
    "DIDs": "+3612345600,+3612345601",
    "CallerId": "+3612345600",
    "MaxChannels": "4",
}
STORED = {
    "host": "sip.provider.example",
    "port": 5080,
    "transport": "tcp",
    "username": "36123456",
    "authorization_name": "auth-36123456",
    "register": True,
    "register_expiry": 600,
    "outbound_proxy": "proxy.provider.example:5070",
    "dids": ["+3612345600", "+3612345601"],
    "caller_id": "+3612345600",
    "max_channels": 4,
}
DEFAULTS = {
    "host": "10.0.0.5",
    "port": 5060,
    "transport": "udp",
    "username": "",
    "authorization_name": "",
    "register": False,
    "register_expiry": 3600,
    "outbound_proxy": "",
    "dids": [],
    "caller_id": "",
    "max_channels": 0,
}

GET_FULL = """
  <Config knownType="LineExtensionInfo">
    <Host>sip.provider.example</Host>
    <Port>5080</Port>
    <Transport>tcp</Transport>
    <Username>36123456</Username>
    <AuthorizationName>auth-36123456</AuthorizationName>
    <Password>pr0vider secret</Password>
    <Register>true</Register>
    <RegisterExpiry>600</RegisterExpiry>
    <OutboundProxy>proxy.provider.example:5070</OutboundProxy>
    <DIDs>+3612345600,+3612345601</DIDs>
    <CallerId>+3612345600</CallerId>
    <MaxChannels>4</MaxChannels>
    <Enabled>true</Enabled>
    <ID>voipservice1</ID>
  </Config>
"""

GET_MINIMAL = """
  <Config knownType="LineExtensionInfo">
    <Host>10.0.0.5</Host>
    <Port>5060</Port>
    <Transport>udp</Transport>
    <Username />
    <AuthorizationName />
    <Password />
    <Register>false</Register>
    <RegisterExpiry>3600</RegisterExpiry>
    <OutboundProxy />
    <DIDs />
    <CallerId />
    <MaxChannels>0</MaxChannels>
    <Enabled>false</Enabled>
    <ID>trunk_2</ID>
  </Config>
"""


def line_xml(known_type: str = "LineExtensionInfo", **fields: str) -> str:
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<Config knownType="{known_type}">{children}</Config>'


async def post(client: Client, command: str, xml: str, extension_type: str = "Line") -> str:
    data = {"command": command, "ExtensionType": extension_type, "ConfigXML": xml}
    return await (await client.post("/", data=data)).text()


async def get_config(client: Client, ext_id: str) -> str:
    return await (await client.get(f"/?command=GetConfig&ExtensionId={ext_id}")).text()


def with_fields(**changes: str) -> dict[str, str]:
    return {**FIELDS, **changes}


def without(*names: str) -> dict[str, str]:
    return {k: v for k, v in FIELDS.items() if k not in names}


# -- AddConfig ---------------------------------------------------------------------------


async def test_add_full_config(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", line_xml(**FIELDS)) == OK
    record = store.extensions["voipservice1"]
    assert (record.type, record.enabled, record.user_id, record.settings) == (
        "Line",
        True,
        "",
        STORED,
    )
    # The provider credentials are not SIP credentials of this PBX: the name columns stay
    # empty so the registrar never matches a phone against them.
    assert (record.username, record.authorization_name) == ("", "")
    assert (record.password, record.ha1_md5, record.ha1_sha256) == ("pr0vider secret", None, None)
    assert await post(client, "AddConfig", line_xml(**FIELDS)) == EXISTS
    assert await get_config(client, "voipservice1") == envelope(
        200, "Command successfully executed", *block(GET_FULL)
    )


async def test_add_minimal_config_stores_defaults(client: Client, store: FakeStore) -> None:
    xml = line_xml(ID="trunk_2", Enabled="false", Host="10.0.0.5")
    assert await post(client, "AddConfig", xml) == OK
    record = store.extensions["trunk_2"]
    assert (record.settings, record.password) == (DEFAULTS, None)
    assert await get_config(client, "trunk_2") == envelope(
        200, "Command successfully executed", *block(GET_MINIMAL)
    )


@pytest.mark.parametrize("extension_type", ["line", " LINE ", "Line"])
async def test_extension_type_is_case_insensitive(
    client: Client, store: FakeStore, extension_type: str
) -> None:
    assert await post(client, "AddConfig", line_xml(**FIELDS), extension_type) == OK
    assert store.extensions["voipservice1"].type == "Line"


async def test_add_lenient_forms(client: Client, store: FakeStore) -> None:
    xml = line_xml(
        ID=" Trunk-A_1 ",
        Enabled=" True ",
        Host=" [2001:db8::1] ",
        Port=" 05060 ",
        Transport=" TCP ",
        Username=" 361 ",
        Password=" spaced ",
        Register=" FALSE ",
        OutboundProxy=" [2001:db8::2]:5070 ",
        DIDs=" 100, ,+3611,100 ",
        UserID="ignored: a line has no owner",
    )
    assert await post(client, "AddConfig", xml) == OK
    record = store.extensions["Trunk-A_1"]
    assert record.settings == {
        **DEFAULTS,
        "host": "2001:db8::1",
        "transport": "tcp",
        "username": "361",
        "outbound_proxy": "[2001:db8::2]:5070",
        "dids": ["100", "+3611"],
    }
    assert (record.password, record.user_id) == (" spaced ", "")


@pytest.mark.parametrize(
    ("host", "stored"),
    [
        ("SIP.Provider.example", "SIP.Provider.example"),
        ("provider.example.", "provider.example."),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("localhost", "localhost"),
    ],
)
async def test_host_forms(client: Client, store: FakeStore, host: str, stored: str) -> None:
    assert await post(client, "AddConfig", line_xml(**with_fields(Host=host))) == OK
    assert store.extensions["voipservice1"].settings["host"] == stored


@pytest.mark.parametrize("proxy", ["proxy.example", "192.0.2.1:5060", "[::1]", "[::1]:65535"])
async def test_outbound_proxy_forms(client: Client, store: FakeStore, proxy: str) -> None:
    assert await post(client, "AddConfig", line_xml(**with_fields(OutboundProxy=proxy))) == OK
    assert store.extensions["voipservice1"].settings["outbound_proxy"] == proxy


@pytest.mark.parametrize("existing_type", ["SIP", "API", "RingGroup", "DialPlanRule"])
async def test_add_existing_id_of_any_type_703(
    client: Client, store: FakeStore, existing_type: str
) -> None:
    store.extensions["voipservice1"] = ExtensionRecord("voipservice1", existing_type)
    assert await post(client, "AddConfig", line_xml(**FIELDS)) == EXISTS
    assert store.extensions["voipservice1"].type == existing_type


@pytest.mark.parametrize(
    "xml",
    [
        line_xml(**without("ID")),
        line_xml(**without("Enabled")),
        line_xml(**without("Host")),
        line_xml(**with_fields(ID="voip.service")),
        line_xml(**with_fields(ID="voip service")),
        line_xml(**with_fields(ID="v" * 65)),
        line_xml(**with_fields(Host="")),
        line_xml(**with_fields(Host="bad host")),
        line_xml(**with_fields(Host="-x.example")),
        line_xml(**with_fields(Host="[192.0.2.1]")),
        line_xml(**with_fields(Host="10.0.0.256")),
        line_xml(**with_fields(Host="sip.example:5060")),
        line_xml(**with_fields(Port="0")),
        line_xml(**with_fields(Port="65536")),
        line_xml(**with_fields(Port="http")),
        line_xml(**with_fields(Transport="tls")),
        line_xml(**with_fields(Register="yes")),
        line_xml(**with_fields(RegisterExpiry="59")),
        line_xml(**with_fields(RegisterExpiry="86401")),
        line_xml(**with_fields(OutboundProxy="proxy:0")),
        line_xml(**with_fields(OutboundProxy="proxy:")),
        line_xml(**with_fields(OutboundProxy="proxy:sip")),
        line_xml(**with_fields(OutboundProxy="[::1")),
        line_xml(**with_fields(OutboundProxy="[::1]5060")),
        line_xml(**with_fields(OutboundProxy="a b:5060")),
        line_xml(**with_fields(DIDs="36 1 111")),
        line_xml(**with_fields(CallerId="x y")),
        line_xml(**with_fields(MaxChannels="-1")),
        line_xml(**with_fields(Username="a b")),
        line_xml(**with_fields(Username="user@host")),
        line_xml(**with_fields(AuthorizationName="a&#10;b")),
        line_xml(**with_fields(Password="p" * 129)),
        line_xml(**with_fields(Username="")),  # Register is true
        line_xml(**without("Username")),
        line_xml(known_type="LineInfo", **FIELDS),
    ],
)
async def test_add_invalid_content_702(client: Client, store: FakeStore, xml: str) -> None:
    assert await post(client, "AddConfig", xml) == INVALID
    assert store.extensions == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Enabled": "true", "Host": "h"}, "missing elements: ID"),
        ({"ID": "a.b", "Enabled": "true", "Host": "h"}, "ID missing or invalid"),
        ({"ID": "a", "Host": "h"}, "missing elements: Enabled"),
        ({"ID": "a", "Enabled": "true"}, "missing elements: Host"),
        ({"ID": "a", "Enabled": "true", "Host": " "}, "Host is empty"),
        ({"ID": "a", "Enabled": "true", "Host": "a_b"}, "Host is not a host name or IP address"),
        (
            {"ID": "a", "Enabled": "true", "Host": "h", "Port": "0"},
            "Port is not an integer from 1 to 65535",
        ),
        (
            {"ID": "a", "Enabled": "true", "Host": "h", "Transport": "tls"},
            "Transport is not one of udp, tcp",
        ),
        ({"ID": "a", "Enabled": "true", "Host": "h", "Register": "1"}, "Register is not a bool"),
        (
            {"ID": "a", "Enabled": "true", "Host": "h", "OutboundProxy": "p:99999"},
            "OutboundProxy has an invalid port",
        ),
        (
            {"ID": "a", "Enabled": "true", "Host": "h", "OutboundProxy": "[p]:1"},
            "OutboundProxy is not host[:port]",
        ),
        (
            {"ID": "a", "Enabled": "true", "Host": "h", "Username": "a:b"},
            "Username is not a SIP user name",
        ),
        (
            {"ID": "a", "Enabled": "true", "Host": "h", "DIDs": "1,a b"},
            "DIDs is not a number-string",
        ),
    ],
)
def test_check_messages(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigContentError) as caught:
        check_settings_fields("Line", fields, require_all=True)
    assert str(caught.value) == message


# -- Passwords ---------------------------------------------------------------------------


async def test_password_kept_but_hidden_when_sip_passwords_are_not_kept(
    make_client: ClientFactory, store: FakeStore
) -> None:
    """The PBX needs the password to answer the provider's challenges, so it is kept; the
    setting only hides it, and GetConfig leaves it out so a round trip does not clear it."""
    client = await make_client(ApiSettings(auth_required=False, keep_sip_passwords=False))
    assert await post(client, "AddConfig", line_xml(**FIELDS)) == OK
    assert store.extensions["voipservice1"].password == "pr0vider secret"
    text = await get_config(client, "voipservice1")
    assert "Password" not in text
    assert "    <AuthorizationName>auth-36123456</AuthorizationName>" in text.split("\n")
    assert "    <Register>true</Register>" in text.split("\n")
    before = store.extensions["voipservice1"]
    assert await post(client, "ModifyConfig", "\n".join(text.split("\n")[4:-1])) == OK
    assert store.extensions["voipservice1"] == before


async def test_modify_password(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", line_xml(**FIELDS)) == OK
    xml = line_xml(ID="voipservice1", Password=" n3w ")
    assert await post(client, "ModifyConfig", xml) == OK
    assert store.extensions["voipservice1"].password == " n3w "
    assert await post(client, "ModifyConfig", line_xml(ID="voipservice1", Port="5061")) == OK
    assert store.extensions["voipservice1"].password == " n3w "  # absent: kept
    assert await post(client, "ModifyConfig", line_xml(ID="voipservice1", Password="")) == OK
    assert store.extensions["voipservice1"].password is None  # empty: no password
    assert "    <Password />" in (await get_config(client, "voipservice1")).split("\n")


# -- ModifyConfig ------------------------------------------------------------------------


@pytest.fixture
def line1(store: FakeStore) -> FakeStore:
    store.extensions["voipservice1"] = ExtensionRecord(
        "voipservice1", "Line", password="pw", settings=dict(STORED)
    )
    return store


async def test_modify_only_present_elements(client: Client, line1: FakeStore, pbx: FakePbx) -> None:
    xml = line_xml(ID="voipservice1", Enabled="false", Host="192.0.2.9", DIDs="5")
    assert await post(client, "ModifyConfig", xml) == OK
    record = line1.extensions["voipservice1"]
    assert (record.enabled, record.password) == (False, "pw")
    assert record.settings == {**STORED, "host": "192.0.2.9", "dids": ["5"]}
    assert pbx.changed == ["voipservice1"]


async def test_modify_empty_elements_reset_to_defaults(client: Client, line1: FakeStore) -> None:
    xml = line_xml(
        ID="voipservice1",
        Port="",
        Transport="",
        AuthorizationName="",
        Register="",
        RegisterExpiry="",
        OutboundProxy="",
        DIDs="",
        CallerId="",
        MaxChannels="",
    )
    assert await post(client, "ModifyConfig", xml) == OK
    assert line1.extensions["voipservice1"].settings == {
        **DEFAULTS,
        "host": "sip.provider.example",
        "username": "36123456",
    }


async def test_register_needs_a_username_after_the_merge(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", line_xml(ID="l", Enabled="true", Host="h")) == OK
    assert await post(client, "ModifyConfig", line_xml(ID="l", Register="true")) == INVALID
    xml = line_xml(ID="l", Register="true", Username="u")
    assert await post(client, "ModifyConfig", xml) == OK
    assert await post(client, "ModifyConfig", line_xml(ID="l", Username="")) == INVALID
    assert store.extensions["l"].settings["username"] == "u"


@pytest.mark.parametrize(
    "xml",
    [
        line_xml(ID="voipservice1", Host=""),
        line_xml(ID="voipservice1", Port="99999"),
        line_xml(ID="voipservice1", Transport="sctp"),
        line_xml(ID="voipservice1", Enabled="maybe"),
        line_xml(known_type="SIPExtensionInfo", ID="voipservice1"),
    ],
)
async def test_modify_invalid_702(client: Client, line1: FakeStore, pbx: FakePbx, xml: str) -> None:
    before = line1.extensions["voipservice1"]
    assert await post(client, "ModifyConfig", xml) == INVALID
    assert line1.extensions["voipservice1"] == before
    assert pbx.changed == []


async def test_modify_cannot_change_type_702(client: Client, store: FakeStore) -> None:
    store.extensions["trunk"] = ExtensionRecord("trunk", "API")
    assert await post(client, "ModifyConfig", line_xml(ID="trunk", Host="h")) == INVALID
    assert store.extensions["trunk"].type == "API"


async def test_modify_unknown_id_701(client: Client, line1: FakeStore) -> None:
    assert await post(client, "ModifyConfig", line_xml(ID="voipservice2", Port="x")) == envelope(
        701, "Configuration for type 'voipservice2' not found"
    )


async def test_remove(client: Client, line1: FakeStore, pbx: FakePbx) -> None:
    text = await (await client.get("/?command=RemoveConfig&ExtensionId=voipservice1")).text()
    assert text == OK
    assert line1.extensions == {}
    assert pbx.changed == ["voipservice1"]


# -- Real store --------------------------------------------------------------------------


async def test_line_survives_the_real_store_and_is_no_sip_account(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}"
    store = await Store.open(url)
    try:
        async with TestClient(TestServer(create_app(OPEN, store, FakePbx()))) as client:
            assert await post(client, "AddConfig", line_xml(**FIELDS)) == OK
    finally:
        await store.close()
    store = await Store.open(url)
    try:
        record = await store.get_extension("voipservice1")
        assert record is not None
        assert (record.settings, record.password) == (STORED, "pr0vider secret")
        for name in ("36123456", "auth-36123456", "voipservice1"):
            assert await store.find_extension_by_auth_name(name) is None
    finally:
        await store.close()


# -- line_settings -----------------------------------------------------------------------


def test_settings_keys_agree() -> None:
    keys = tuple(s.key for s in LINE.settings if s.key is not None)
    assert keys == LINE_SETTING_KEYS


def test_typed_settings_with_every_value() -> None:
    record = ExtensionRecord("voipservice1", "Line", password="pw", settings=dict(STORED))
    assert line_settings(record) == LineSettings(
        name="voipservice1",
        host="sip.provider.example",
        port=5080,
        transport="tcp",
        username="36123456",
        authorization_name="auth-36123456",
        password="pw",
        register=True,
        register_expiry=600,
        outbound_proxy="proxy.provider.example:5070",
        dids=("+3612345600", "+3612345601"),
        caller_id="+3612345600",
        max_channels=4,
    )


DEFAULT_TYPED = LineSettings(
    name="l",
    host="",
    port=5060,
    transport="udp",
    username="",
    authorization_name="",
    password=None,
    register=False,
    register_expiry=3600,
    outbound_proxy=None,
    dids=(),
    caller_id=None,
    max_channels=0,
)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"host": 5, "port": "5080", "transport": "tls", "register": "true", "dids": "1,2"},
        {"port": 0, "register_expiry": 59, "max_channels": -1, "outbound_proxy": " "},
        {"port": True, "register_expiry": 86401, "max_channels": None, "caller_id": 36},
    ],
)
def test_typed_settings_tolerate_malformed_values(settings: dict[str, Any]) -> None:
    assert line_settings(ExtensionRecord("l", "line", password="", settings=settings)) == (
        DEFAULT_TYPED
    )


def test_authorization_name_falls_back_to_username() -> None:
    typed = line_settings(ExtensionRecord("l", "Line", settings={"username": "361"}))
    assert (typed.username, typed.authorization_name) == ("361", "361")


@pytest.mark.parametrize(
    ("max_channels", "active", "allowed"),
    [(0, 0, True), (0, 1000, True), (2, 0, True), (2, 1, True), (2, 2, False), (1, 5, False)],
)
def test_has_capacity(max_channels: int, active: int, allowed: bool) -> None:
    typed = line_settings(ExtensionRecord("l", "Line", settings={"max_channels": max_channels}))
    assert typed.has_capacity(active) is allowed


def test_typed_settings_refuse_other_types() -> None:
    with pytest.raises(ValueError, match=r"^extension 100 is of type SIP, not Line$"):
        line_settings(ExtensionRecord("100", "SIP"))
