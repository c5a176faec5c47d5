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
            "    <string>RingGroup</string>",
            "    <string>Line</string>",
            "    <string>DialPlanRule</string>",
            "    <string>HttpApi</string>",
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


# -- Ring groups, outside lines, dial plan rules -----------------------------------------


def group(store: FakeStore, ext_id: str, *members: str, enabled: bool = True) -> None:
    store.extensions[ext_id] = ExtensionRecord(
        ext_id, "RingGroup", enabled=enabled, settings={"members": list(members)}
    )


def line(store: FakeStore, name: str, *, register: bool, enabled: bool = True) -> None:
    store.extensions[name] = ExtensionRecord(
        name, "Line", enabled=enabled, settings={"host": "h", "register": register}
    )


async def states(client: Client, path: str = "/") -> dict[str, tuple[str, str]]:
    text = await (await client.get(f"{path}?command=ListExtensions")).text()
    rows: dict[str, tuple[str, str]] = {}
    number = kind = ""
    for raw in text.split("\n"):
        item = raw.strip()
        if item.startswith("<PhoneNumber>"):
            number = item[13:-14]
        elif item.startswith("<Type>"):
            kind = item[6:-7]
        elif item.startswith("<State>"):
            rows[number] = (kind, item[7:-8])
    return rows


async def test_dial_plan_rules_are_not_listed(client: Client, store: FakeStore) -> None:
    add(store, "101")
    store.extensions["rule1"] = ExtensionRecord("rule1", "DialPlanRule", settings={"Order": "1"})
    store.extensions["rule2"] = ExtensionRecord("rule2", "dialplanrule")
    assert await states(client) == {"101": ("SIP", "Disconnected")}
    for path in ("/", "/api"):
        for kind in ("DialPlanRule", "dialplanrule"):
            text = await (await client.get(f"{path}?command=ListExtensions&Type={kind}")).text()
            assert text == EMPTY


async def test_ring_group_is_connected_while_a_member_is(
    client: Client, store: FakeStore, pbx: FakePbx
) -> None:
    add(store, "101", "102")
    group(store, "800", "101", "102", "999")  # 999 does not exist (yet)
    assert (await states(client))["800"] == ("RingGroup", "Disconnected")
    pbx.registered.add("102")
    assert (await states(client))["800"] == ("RingGroup", "Connected")
    group(store, "800", "101", "102", enabled=False)
    assert (await states(client))["800"] == ("RingGroup", "Disconnected")


async def test_ring_group_members_of_every_kind(
    client: Client, store: FakeStore, pbx: FakePbx
) -> None:
    add(store, "9994", type="API")
    store.extensions["9995"] = ExtensionRecord("9995", "API", enabled=False)
    line(store, "trunk", register=False)  # available itself, but no group member
    store.extensions["rule"] = ExtensionRecord("rule", "DialPlanRule")
    pbx.registered.update({"trunk", "rule"})
    group(store, "801", "9995", "trunk", "rule")
    group(store, "802", "9995", "9994")
    assert await states(client) == {
        "801": ("RingGroup", "Disconnected"),
        "802": ("RingGroup", "Connected"),
        "9994": ("API", "Connected"),
        "9995": ("API", "Disconnected"),
        "trunk": ("Line", "Connected"),
    }


async def test_nested_ring_groups_even_in_a_loop(
    client: Client, store: FakeStore, pbx: FakePbx
) -> None:
    add(store, "101")
    group(store, "800", "801")
    group(store, "801", "802", "800")
    group(store, "802", "800", "101")
    group(store, "803", "803")  # only itself: ignored
    group(store, "804", "800", enabled=True)
    group(store, "805", "101", enabled=False)
    group(store, "806", "805")
    expected_off = {n: ("RingGroup", "Disconnected") for n in ("800", "801", "802", "803", "804")}
    assert await states(client) == {
        "101": ("SIP", "Disconnected"),
        **expected_off,
        "805": ("RingGroup", "Disconnected"),
        "806": ("RingGroup", "Disconnected"),
    }
    pbx.registered.add("101")
    assert await states(client) == {
        "101": ("SIP", "Connected"),
        **{n: ("RingGroup", "Connected") for n in ("800", "801", "802", "804")},
        "803": ("RingGroup", "Disconnected"),
        "805": ("RingGroup", "Disconnected"),
        "806": ("RingGroup", "Disconnected"),
    }


async def test_line_states_without_a_line_status(
    client: Client, store: FakeStore, pbx: FakePbx
) -> None:
    line(store, "direct", register=False)
    line(store, "off", register=False, enabled=False)
    line(store, "reg", register=True)
    pbx.registered.update({"direct", "off", "reg"})  # the registrar knows no lines
    assert await states(client) == {
        "direct": ("Line", "Connected"),
        "off": ("Line", "Disconnected"),
        "reg": ("Line", "Disconnected"),
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Connected", "Connected"),
        ("connected", "Connected"),
        ("Registered", "Connected"),
        ("Disconnected", "Disconnected"),
        ("Registering", "Disconnected"),
        ("Unregistered", "Disconnected"),
        ("Failed: 403 Forbidden", "Disconnected"),
        (None, "Disconnected"),
    ],
)
async def test_registering_line_state_comes_from_the_pbx(
    client: Client, store: FakeStore, pbx: FakePbx, status: str | None, expected: str
) -> None:
    asked: list[str] = []

    def line_status(name: str) -> str | None:
        asked.append(name)
        return status

    pbx.line_status = line_status  # type: ignore[attr-defined]
    line(store, "reg", register=True)
    line(store, "reg-off", register=True, enabled=False)
    line(store, "direct", register=False)
    assert await states(client) == {
        "direct": ("Line", "Connected"),
        "reg": ("Line", expected),
        "reg-off": ("Line", "Disconnected"),
    }
    assert asked == ["reg"]


@pytest.mark.parametrize(
    ("path", "type_filter", "expected"),
    [
        ("/", "RingGroup", ["800"]),
        ("/", "ringgroup", ["800"]),
        ("/", "Line", ["voipservice1"]),
        ("/api", "Ringing group", ["800"]),
        ("/api", "outside LINE", ["voipservice1"]),
        ("/api", "RingGroup", []),
        ("/api", "Line", []),
    ],
)
async def test_new_types_filter(
    client: Client, store: FakeStore, path: str, type_filter: str, expected: list[str]
) -> None:
    add(store, "101")
    group(store, "800", "101")
    line(store, "voipservice1", register=False)
    store.extensions["r"] = ExtensionRecord("r", "DialPlanRule")
    text = await (await client.get(f"{path}?command=ListExtensions&type={type_filter}")).text()
    ids = [line.strip()[13:-14] for line in text.split("\n") if "<PhoneNumber>" in line]
    assert ids == expected


NEW_TYPES_O10 = """
  <Extensions>
    <ExtensionSummary>
      <Id>800@localhost</Id>
      <PhoneNumber>800</PhoneNumber>
      <Type>Ringing group</Type>
      <State>Disconnected</State>
    </ExtensionSummary>
    <ExtensionSummary>
      <Id>voipservice1@localhost</Id>
      <PhoneNumber>voipservice1</PhoneNumber>
      <Type>Outside line</Type>
      <State>Connected</State>
    </ExtensionSummary>
  </Extensions>
"""


async def test_new_types_o10(client: Client, store: FakeStore) -> None:
    group(store, "800", "101")
    line(store, "voipservice1", register=False)
    store.extensions["r"] = ExtensionRecord("r", "DialPlanRule")
    resp = await client.get("/api?command=ListExtensions")
    assert await resp.text() == envelope(
        200, "Command successfully executed", *block(NEW_TYPES_O10)
    )


async def test_types_added_by_config_are_listed(client: Client, store: FakeStore) -> None:
    for kind, xml in (
        (
            "SIP",
            "<AuthorizationName>101</AuthorizationName><Password>p</Password>"
            "<Username>101</Username><Enabled>true</Enabled><ID>101</ID><UserID>u</UserID>",
        ),
        ("RingGroup", "<ID>800</ID><Enabled>true</Enabled><Members>101</Members>"),
        ("Line", "<ID>voipservice1</ID><Enabled>true</Enabled><Host>192.0.2.1</Host>"),
        ("DialPlanRule", "<ID>r</ID><Pattern>8XX</Pattern><Destination>800</Destination>"),
    ):
        config = f'<Config knownType="{kind}ExtensionInfo">{xml}</Config>'
        data = {"command": "AddConfig", "ExtensionType": kind, "ConfigXML": config}
        assert "<Code>200</Code>" in await (await client.post("/", data=data)).text()
    assert await states(client) == {
        "101": ("SIP", "Disconnected"),
        "800": ("RingGroup", "Disconnected"),
        "voipservice1": ("Line", "Connected"),
    }
