"""AddConfig, GetConfig, ModifyConfig, RemoveConfig (spec 8.19-8.22)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote_plus

import pytest
from api_support import Client, ClientFactory, FakePbx, FakeStore, block, envelope

from pypbx.api.settings import ApiSettings
from pypbx.sip.digest import compute_ha1
from pypbx.store.records import ExtensionRecord

OK = envelope(200, "Command successfully executed")
INVALID = envelope(702, "Invalid configuration for type 'SIP'")
EXISTS = envelope(703, "Extension configuration already exists")

SPEC_ADD_BODY = (
    "command=AddConfig&ExtensionType=SIP&ConfigXML=%3CConfig+knownType%3D%22SIPExtensionInfo%22"
    "%3E%3CAuthorizationName%3E200%3C%2FAuthorizationName%3E%3CPassword%3Es3cret%3C%2FPassword"
    "%3E%3CUsername%3E200%3C%2FUsername%3E%3CEnabled%3Etrue%3C%2FEnabled%3E%3CID%3E200%3C%2FID"
    "%3E%3CUserID%3Euser200%3C%2FUserID%3E%3C%2FConfig%3E"
)
FIELDS = {
    "AuthorizationName": "200",
    "Password": "s3cret",
    "Username": "200",
    "Enabled": "true",
    "ID": "200",
    "UserID": "user200",
}


def config_xml(known_type: str = "SIPExtensionInfo", root: str = "Config", **fields: str) -> str:
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    attr = f' knownType="{known_type}"' if known_type else ""
    return f"<{root}{attr}>{children}</{root}>"


async def post(client: Client, command: str, xml: str, extension_type: str = "SIP") -> str:
    data = {"command": command, "ExtensionType": extension_type, "ConfigXML": xml}
    return await (await client.post("/", data=data)).text()


def sip(ext_id: str, **kwargs: object) -> ExtensionRecord:
    return ExtensionRecord(ext_id, "SIP", **kwargs)  # type: ignore[arg-type]


# -- AddConfig ---------------------------------------------------------------------------


async def test_add_config_spec_example(client: Client, store: FakeStore) -> None:
    resp = await client.post(
        "/", data=SPEC_ADD_BODY, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert await resp.text() == OK
    record = store.extensions["200"]
    assert (record.id, record.type, record.enabled) == ("200", "SIP", True)
    assert (record.authorization_name, record.username, record.user_id) == ("200", "200", "user200")
    assert record.password == "s3cret"
    assert record.ha1_md5 == compute_ha1("200", "localhost", "s3cret", "MD5")
    assert record.ha1_sha256 == compute_ha1("200", "localhost", "s3cret", "SHA-256")
    resp = await client.post(
        "/", data=SPEC_ADD_BODY, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert await resp.text() == EXISTS


async def test_add_config_html_escaped_get(client: Client, store: FakeStore) -> None:
    escaped = html.escape(config_xml(**FIELDS), quote=False)
    assert escaped.startswith("&lt;Config knownType=")
    resp = await client.get(
        "/?command=AddConfig&ExtensionType=SIP&ConfigXML="
        + re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote_plus(escaped))
    )
    assert await resp.text() == OK
    assert store.extensions["200"].password == "s3cret"


async def test_add_config_documented_escaped_prefix(client: Client, store: FakeStore) -> None:
    # The documented request begins `ConfigXML=%26lt%3bConfig+knownType%3d%22SIPExtensionInfo`.
    rest = html.escape(config_xml(**FIELDS), quote=False).removeprefix(
        '&lt;Config knownType="SIPExtensionInfo"'
    )
    target = (
        "/?command=AddConfig&ExtensionType=SIP&ConfigXML="
        "%26lt%3bConfig+knownType%3d%22SIPExtensionInfo%22" + quote_plus(rest)
    )
    assert await (await client.get(target)).text() == OK


async def test_escaped_entities_inside_values(client: Client, store: FakeStore) -> None:
    xml = config_xml(**{**FIELDS, "Password": "a&amp;b&lt;c"})
    assert await post(client, "AddConfig", xml) == OK
    assert store.extensions["200"].password == "a&b<c"
    escaped = html.escape(config_xml(**{**FIELDS, "ID": "201", "Password": "x&amp;y"}), quote=False)
    assert await post(client, "AddConfig", "  " + escaped) == OK
    assert store.extensions["201"].password == "x&y"


async def test_add_config_lenient_forms(client: Client, store: FakeStore) -> None:
    xml = '\n \ufeff<?xml version="1.0" encoding="utf-8"?>\n' + config_xml(
        **{**FIELDS, "Enabled": " FALSE ", "Extra": "ignored", "ID": " 0042 "}
    )
    resp = await client.post(
        "/", data={"COMMAND": "addconfig", "extensiontype": "sip", "configxml": xml}
    )
    assert await resp.text() == OK
    assert store.extensions["0042"].enabled is False


async def test_add_config_realm_and_no_kept_password(
    make_client: ClientFactory, store: FakeStore
) -> None:
    client = await make_client(
        ApiSettings(auth_required=False, realm="pbx.example", keep_sip_passwords=False)
    )
    xml = config_xml(**{**FIELDS, "AuthorizationName": "auth200"})
    assert await post(client, "AddConfig", xml) == OK
    record = store.extensions["200"]
    assert record.password is None
    assert record.ha1_md5 == compute_ha1("auth200", "pbx.example", "s3cret", "MD5")
    assert record.ha1_sha256 == compute_ha1("auth200", "pbx.example", "s3cret", "SHA-256")
    text = await (await client.get("/?command=GetConfig&ExtensionId=200")).text()
    assert "    <Password />" in text.split("\n")


async def test_add_config_existing_id_of_any_type_703(client: Client, store: FakeStore) -> None:
    store.extensions["200"] = ExtensionRecord("200", "API")
    assert await post(client, "AddConfig", config_xml(**FIELDS)) == EXISTS


@pytest.mark.parametrize(
    ("data", "parameter"),
    [
        ({"ConfigXML": "<Config/>"}, "ExtensionType"),
        ({"ExtensionType": "SIP"}, "ConfigXML"),
        ({"ExtensionType": "SIP", "ConfigXML": "  "}, "ConfigXML"),
        ({}, "ExtensionType"),
    ],
)
@pytest.mark.parametrize("command", ["AddConfig", "ModifyConfig"])
async def test_config_missing_parameters_302(
    client: Client, data: dict[str, str], parameter: str, command: str
) -> None:
    resp = await client.post("/", data={"command": command, **data})
    assert await resp.text() == envelope(
        302, f"Missing or invalid parameter '{parameter}' for command '{command}'"
    )


@pytest.mark.parametrize("command", ["AddConfig", "ModifyConfig"])
async def test_unknown_extension_type_701(client: Client, command: str) -> None:
    assert await post(client, command, "not even xml", "XYZ") == envelope(
        701, "Configuration for type 'XYZ' not found"
    )


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (
            '<Config knownType="SIPExtensionInfo"><ID>1</Config>',
            "ConfigXML is not well-formed: mismatched tag: line 1, column 44",
        ),
        ("<Config", "ConfigXML is not well-formed: unclosed token: line 1, column 0"),
        ("just text", "ConfigXML is not well-formed: syntax error: line 1, column 0"),
        (
            '<Config knownType="SIPExtensionInfo"><ID>&foo;</ID></Config>',
            "ConfigXML is not well-formed: undefined entity: line 1, column 41",
        ),
        (
            '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
            '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            '<Config knownType="SIPExtensionInfo"><ID>&lol3;</ID></Config>',
            "ConfigXML must not contain a DTD",
        ),
        (
            '<!DOCTYPE Config [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<Config knownType="SIPExtensionInfo"><ID>&xxe;</ID></Config>',
            "ConfigXML must not contain a DTD",
        ),
        (
            '<!DOCTYPE Config SYSTEM "http://evil.example/x.dtd"><Config/>',
            "ConfigXML must not contain a DTD",
        ),
    ],
)
@pytest.mark.parametrize("command", ["AddConfig", "ModifyConfig"])
async def test_config_xml_syntax_300(
    client: Client, store: FakeStore, xml: str, reason: str, command: str
) -> None:
    store.extensions["1"] = sip("1", password="p")
    assert await post(client, command, xml) == envelope(
        300, f"Error occured during parsing message: '{reason}'"
    )


async def test_entity_bomb_html_escaped_is_rejected_too(client: Client, store: FakeStore) -> None:
    bomb = '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><Config/>'
    assert await post(client, "AddConfig", html.escape(bomb)) == envelope(
        300, "Error occured during parsing message: 'ConfigXML must not contain a DTD'"
    )
    assert store.extensions == {}


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in FIELDS.items() if k != name}


@pytest.mark.parametrize(
    "xml",
    [
        config_xml(root="Configuration", **FIELDS),
        config_xml(known_type="IVRExtensionInfo", **FIELDS),
        config_xml(known_type="sipextensioninfo", **FIELDS),
        config_xml(known_type="", **FIELDS),
        '<Config xmlns="urn:x" knownType="SIPExtensionInfo"><ID>200</ID></Config>',
        *(config_xml(**_without(name)) for name in FIELDS),
        *(config_xml(**{**FIELDS, name: ""}) for name in FIELDS),
        *(config_xml(**{**FIELDS, name: "  "}) for name in FIELDS),
        config_xml(**{**FIELDS, "Enabled": "yes"}),
        config_xml(**{**FIELDS, "Enabled": "1"}),
        config_xml(**{**FIELDS, "ID": "2 00"}),
        config_xml(**{**FIELDS, "ID": "<x/>"}),
        config_xml(**{**FIELDS, "ID": "1" * 65}),
        config_xml(**{**FIELDS, "ID": "&lt;1&gt;"}),
    ],
)
async def test_add_config_invalid_content_702(client: Client, store: FakeStore, xml: str) -> None:
    assert await post(client, "AddConfig", xml) == INVALID
    assert store.extensions == {}


async def test_api_elements_in_a_sip_document_are_ignored(client: Client, store: FakeStore) -> None:
    xml = config_xml(**FIELDS, IncomingCallUrl="http://x.example/", AllowedUsers="alice")
    assert await post(client, "AddConfig", xml) == OK
    assert store.extensions["200"].settings == {}
    text = await (await client.get("/?command=GetConfig&ExtensionId=200")).text()
    assert "IncomingCallUrl" not in text and 'knownType="SIPExtensionInfo"' in text


async def test_password_kept_exactly(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", config_xml(**{**FIELDS, "Password": " p w "})) == OK
    assert store.extensions["200"].password == " p w "


# -- GetConfig ---------------------------------------------------------------------------

GET_EXAMPLE = """
  <Config knownType="SIPExtensionInfo">
    <AuthorizationName>1000</AuthorizationName>
    <Password>1000</Password>
    <Username>1000</Username>
    <LastIPAddress>192.168.115.188:5060 (Udp)</LastIPAddress>
    <UserAgentName>Grandstream GXP2000 1.2.5.3</UserAgentName>
    <Enabled>true</Enabled>
    <ID>1000</ID>
    <UserID>user1000</UserID>
  </Config>
"""


async def test_get_config_example(client: Client, store: FakeStore) -> None:
    store.extensions["1000"] = sip(
        "1000",
        authorization_name="1000",
        password="1000",
        username="1000",
        last_ip="192.168.115.188:5060 (Udp)",
        user_agent="Grandstream GXP2000 1.2.5.3",
        user_id="user1000",
    )
    resp = await client.get("/?command=GetConfig&ExtensionId=1000")
    assert await resp.text() == envelope(200, "Command successfully executed", *block(GET_EXAMPLE))


async def test_get_config_never_registered_and_escaped(client: Client, store: FakeStore) -> None:
    store.extensions["7"] = sip(
        "7", authorization_name="a&b", password="<p>", username="u", enabled=False, user_id="x"
    )
    text = await (await client.get("/api?command=getconfig&extensionid=7")).text()
    assert text.split("\n")[4:] == [
        '  <Config knownType="SIPExtensionInfo">',
        "    <AuthorizationName>a&amp;b</AuthorizationName>",
        "    <Password>&lt;p&gt;</Password>",
        "    <Username>u</Username>",
        "    <LastIPAddress />",
        "    <UserAgentName />",
        "    <Enabled>false</Enabled>",
        "    <ID>7</ID>",
        "    <UserID>x</UserID>",
        "  </Config>",
        "</Response>",
    ]


async def test_get_config_output_feeds_modify_config(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", config_xml(**FIELDS)) == OK
    text = await (await client.get("/?command=GetConfig&ExtensionId=200")).text()
    config = "\n".join(text.split("\n")[4:-1])
    assert await post(client, "ModifyConfig", config) == OK


async def test_get_config_unknown_701(client: Client) -> None:
    resp = await client.get("/?command=GetConfig&ExtensionId=1234")
    assert await resp.text() == envelope(701, "Configuration for type '1234' not found")


async def test_get_config_missing_id_302(client: Client) -> None:
    resp = await client.get("/?command=GetConfig")
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'ExtensionId' for command 'GetConfig'"
    )


# -- ModifyConfig ------------------------------------------------------------------------


@pytest.fixture
def ext100(store: FakeStore) -> FakeStore:
    store.extensions["100"] = sip(
        "100",
        authorization_name="100",
        password="100",
        username="100",
        user_id="user100",
        ha1_md5=compute_ha1("100", "localhost", "100", "MD5"),
        ha1_sha256=compute_ha1("100", "localhost", "100", "SHA-256"),
        last_ip="10.0.0.1:5060 (Udp)",
        settings={"codecs": ["PCMU"]},
    )
    return store


async def test_modify_config_documented_example(
    client: Client, ext100: FakeStore, pbx: FakePbx
) -> None:
    xml = config_xml(
        AuthorizationName="100",
        Password="100",
        Username="100",
        Enabled="false",
        ID="100",
        UserID="user1000",
    )
    assert await post(client, "ModifyConfig", xml) == OK
    record = ext100.extensions["100"]
    assert record.enabled is False
    assert record.user_id == "user1000"
    assert record.settings == {"codecs": ["PCMU"]}
    assert record.last_ip == "10.0.0.1:5060 (Udp)"
    assert pbx.changed == ["100"]


async def test_modify_config_partial_update(
    client: Client, ext100: FakeStore, pbx: FakePbx
) -> None:
    before = ext100.extensions["100"]
    assert await post(client, "ModifyConfig", config_xml(ID="100", Enabled="false")) == OK
    after = ext100.extensions["100"]
    assert after.enabled is False
    for field in ("authorization_name", "password", "username", "user_id", "ha1_md5", "ha1_sha256"):
        assert getattr(after, field) == getattr(before, field), field


async def test_modify_config_new_credentials_recompute_ha1(
    client: Client, ext100: FakeStore
) -> None:
    assert await post(client, "ModifyConfig", config_xml(ID="100", Password="n3w")) == OK
    record = ext100.extensions["100"]
    assert record.password == "n3w"
    assert record.ha1_md5 == compute_ha1("100", "localhost", "n3w", "MD5")
    xml = config_xml(ID="100", AuthorizationName="auth100")
    assert await post(client, "ModifyConfig", xml) == OK
    record = ext100.extensions["100"]
    assert record.authorization_name == "auth100"
    assert record.ha1_sha256 == compute_ha1("auth100", "localhost", "n3w", "SHA-256")


async def test_modify_auth_name_without_any_password_702(
    make_client: ClientFactory, ext100: FakeStore, pbx: FakePbx
) -> None:
    client = await make_client(ApiSettings(auth_required=False, keep_sip_passwords=False))
    assert await post(client, "ModifyConfig", config_xml(ID="100", Enabled="true")) == OK
    assert ext100.extensions["100"].password is None  # not kept from now on
    before = ext100.extensions["100"]
    assert (
        await post(client, "ModifyConfig", config_xml(ID="100", AuthorizationName="x")) == INVALID
    )
    assert ext100.extensions["100"] == before
    xml = config_xml(ID="100", AuthorizationName="x", Password="pw")
    assert await post(client, "ModifyConfig", xml) == OK
    record = ext100.extensions["100"]
    assert record.password is None
    assert record.ha1_md5 == compute_ha1("x", "localhost", "pw", "MD5")
    assert pbx.changed == ["100", "100"]


async def test_modify_config_unknown_id_701(
    client: Client, ext100: FakeStore, pbx: FakePbx
) -> None:
    assert await post(client, "ModifyConfig", config_xml(**{**FIELDS, "ID": "999"})) == envelope(
        701, "Configuration for type '999' not found"
    )
    # 701 for the id comes before content checks (spec 4.2 step 6 before step 8).
    assert await post(client, "ModifyConfig", config_xml(ID="999", Enabled="maybe")) == envelope(
        701, "Configuration for type '999' not found"
    )
    assert pbx.changed == []


@pytest.mark.parametrize(
    "xml",
    [
        config_xml(Enabled="false"),
        config_xml(ID="", Enabled="false"),
        config_xml(ID="1 0 0"),
        config_xml(ID="100", Enabled="maybe"),
        config_xml(ID="100", Password=""),
        config_xml(ID="100", UserID=" "),
        config_xml(known_type="APIExtensionInfo", ID="100"),
        config_xml(root="Cfg", ID="100"),
    ],
)
async def test_modify_config_invalid_702(
    client: Client, ext100: FakeStore, pbx: FakePbx, xml: str
) -> None:
    before = ext100.extensions["100"]
    assert await post(client, "ModifyConfig", xml) == INVALID
    assert ext100.extensions["100"] == before
    assert pbx.changed == []


async def test_modify_config_cannot_change_type_702(client: Client, store: FakeStore) -> None:
    store.extensions["9994"] = ExtensionRecord("9994", "API")
    assert await post(client, "ModifyConfig", config_xml(ID="9994", Enabled="false")) == INVALID


async def test_modify_config_removed_concurrently_701(
    client: Client, ext100: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = ext100.get_extension

    async def get_then_vanish(extension_id: str) -> ExtensionRecord | None:
        found = await real_get(extension_id)
        ext100.extensions.pop(extension_id, None)
        return found

    monkeypatch.setattr(ext100, "get_extension", get_then_vanish)
    assert await post(client, "ModifyConfig", config_xml(ID="100", Enabled="false")) == envelope(
        701, "Configuration for type '100' not found"
    )


# -- RemoveConfig ------------------------------------------------------------------------


async def test_remove_config_example(client: Client, ext100: FakeStore, pbx: FakePbx) -> None:
    resp = await client.get("/?command=RemoveConfig&ExtensionId=100")
    assert await resp.text() == OK
    assert "100" not in ext100.extensions
    assert pbx.changed == ["100"]
    resp = await client.get("/?command=RemoveConfig&ExtensionId=100")
    assert await resp.text() == envelope(701, "Configuration for type '100' not found")
    assert pbx.changed == ["100"]


async def test_remove_config_missing_id_302(client: Client) -> None:
    resp = await client.get("/?command=removeconfig&ExtensionId=%20")
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'ExtensionId' for command 'RemoveConfig'"
    )
