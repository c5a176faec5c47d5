"""ListExtensions (spec 8.17) in both dialects and ListExtensionTypes (spec 8.18)."""

from __future__ import annotations

import pytest
from api_support import Client, ClientFactory, FakePbx, FakeStore, block, envelope

from pypbx.api.settings import ApiSettings
from pypbx.store.records import ExtensionRecord

XE_EXAMPLE = """
  <Extensions>
    <ExtensionSummary>
      <Id>1000</Id>
      <Type>SIP</Type>
      <PhoneNumber>1000</PhoneNumber>
      <State>Disconnected</State>
    </ExtensionSummary>
    <ExtensionSummary>
      <Id>1001</Id>
      <Type>SIP</Type>
      <PhoneNumber>1001</PhoneNumber>
      <State>Connected</State>
    </ExtensionSummary>
  </Extensions>
"""

O10_ITEM = """
    <ExtensionSummary>
      <Id>101@localhost</Id>
      <PhoneNumber>101</PhoneNumber>
      <Type>Phone</Type>
      <State>Disconnected</State>
    </ExtensionSummary>
"""

EMPTY = envelope(200, "Command successfully executed", "  <Extensions />")


def add(store: FakeStore, *ids: str, type: str = "SIP") -> None:
    for ext_id in ids:
        store.extensions[ext_id] = ExtensionRecord(ext_id, type)


async def test_xe_example(client: Client, store: FakeStore, pbx: FakePbx) -> None:
    add(store, "1001", "1000")  # stored unsorted, listed by number
    pbx.registered.add("1001")
    resp = await client.get("/?command=ListExtensions")
    assert await resp.text() == envelope(200, "Command successfully executed", *block(XE_EXAMPLE))


async def test_o10_item(client: Client, store: FakeStore) -> None:
    add(store, "101")
    resp = await client.get("/api?command=ListExtensions")
    assert await resp.text() == envelope(
        200,
        "Command successfully executed",
        "  <Extensions>",
        *block(O10_ITEM),
        "  </Extensions>",
    )


async def test_o10_domain_state_and_type_names(
    make_client: ClientFactory, store: FakeStore, pbx: FakePbx
) -> None:
    client = await make_client(ApiSettings(auth_required=False, domain="pbx.example"))
    add(store, "102")
    add(store, "9994", type="API")
    add(store, "800", type="IVR")
    add(store, "7", type="Custom")
    pbx.registered.add("102")
    text = await (await client.get("/api/?command=ListExtensions")).text()
    assert "<Id>102@pbx.example</Id>" in text
    assert "<State>Connected</State>" in text
    types = [line.strip() for line in text.split("\n") if "<Type>" in line]
    assert types == [
        "<Type>Custom</Type>",
        "<Type>Phone</Type>",
        "<Type>IVR extension</Type>",
        "<Type>API extension</Type>",
    ]


async def test_numeric_order(client: Client, store: FakeStore) -> None:
    add(store, "10", "9", "abc", "100", "09")
    text = await (await client.get("/?command=ListExtensions")).text()
    ids = [line.strip()[4:-5] for line in text.split("\n") if "<Id>" in line]
    assert ids == ["09", "9", "10", "100", "abc"]


@pytest.mark.parametrize(
    ("path", "type_filter", "expected"),
    [
        ("/api", "Phone", ["101", "102"]),
        ("/api", "phone", ["101", "102"]),
        ("/api", "API+extension", ["9994"]),
        ("/api", "SIP", []),
        ("/", "sip", ["101", "102"]),
        ("/", "Phone", []),
        ("/", "API", ["9994"]),
        ("/", "Nonsense", []),
        ("/", "", ["101", "102", "9994"]),
    ],
)
async def test_type_filter(
    client: Client, store: FakeStore, path: str, type_filter: str, expected: list[str]
) -> None:
    add(store, "101", "102")
    add(store, "9994", type="API")
    text = await (await client.get(f"{path}?command=ListExtensions&type={type_filter}")).text()
    ids = [line.strip()[13:-14] for line in text.split("\n") if "<PhoneNumber>" in line]
    assert ids == expected
    if not expected:
        assert text == EMPTY


async def test_no_extensions_is_an_empty_container(client: Client) -> None:
    assert await (await client.get("/api?command=ListExtensions")).text() == EMPTY


async def test_list_extension_types(client: Client) -> None:
    for path in ("/", "/api"):
        resp = await client.get(f"{path}?command=listextensiontypes")
        assert await resp.text() == envelope(
            200,
            "Command successfully executed",
            "  <ExtensionTypes>",
            "    <string>SIP</string>",
            "    <string>API</string>",
            "  </ExtensionTypes>",
        )


API_XE = """
  <Extensions>
    <ExtensionSummary>
      <Id>1000</Id>
      <Type>SIP</Type>
      <PhoneNumber>1000</PhoneNumber>
      <State>Disconnected</State>
    </ExtensionSummary>
    <ExtensionSummary>
      <Id>9990</Id>
      <Type>API</Type>
      <PhoneNumber>9990</PhoneNumber>
      <State>Disconnected</State>
    </ExtensionSummary>
    <ExtensionSummary>
      <Id>9994</Id>
      <Type>API</Type>
      <PhoneNumber>9994</PhoneNumber>
      <State>Connected</State>
    </ExtensionSummary>
  </Extensions>
"""

API_O10 = """
  <Extensions>
    <ExtensionSummary>
      <Id>1000@localhost</Id>
      <PhoneNumber>1000</PhoneNumber>
      <Type>Phone</Type>
      <State>Disconnected</State>
    </ExtensionSummary>
    <ExtensionSummary>
      <Id>9990@localhost</Id>
      <PhoneNumber>9990</PhoneNumber>
      <Type>API extension</Type>
      <State>Disconnected</State>
    </ExtensionSummary>
    <ExtensionSummary>
      <Id>9994@localhost</Id>
      <PhoneNumber>9994</PhoneNumber>
      <Type>API extension</Type>
      <State>Connected</State>
    </ExtensionSummary>
  </Extensions>
"""


@pytest.mark.parametrize(("path", "expected"), [("/", API_XE), ("/api", API_O10)])
async def test_api_extensions_are_connected_while_enabled(
    client: Client, store: FakeStore, pbx: FakePbx, path: str, expected: str
) -> None:
    """No registration for an API extension: enabled = available, whatever the registrar says."""
    add(store, "1000")
    add(store, "9994", type="API")
    store.extensions["9990"] = ExtensionRecord("9990", "API", enabled=False)
    pbx.registered.add("9990")
    resp = await client.get(f"{path}?command=ListExtensions")
    assert await resp.text() == envelope(200, "Command successfully executed", *block(expected))


async def test_api_extension_added_by_config_is_listed(client: Client, store: FakeStore) -> None:
    xml = '<Config knownType="APIExtensionInfo"><ID>9994</ID><Enabled>true</Enabled></Config>'
    data = {"command": "AddConfig", "ExtensionType": "api", "ConfigXML": xml}
    resp = await client.post("/", data=data)
    assert "<Code>200</Code>" in await resp.text()
    text = await (await client.get("/?command=ListExtensions&Type=API")).text()
    assert [line.strip() for line in text.split("\n")[4:]] == [
        "<Extensions>",
        "<ExtensionSummary>",
        "<Id>9994</Id>",
        "<Type>API</Type>",
        "<PhoneNumber>9994</PhoneNumber>",
        "<State>Connected</State>",
        "</ExtensionSummary>",
        "</Extensions>",
        "</Response>",
    ]
