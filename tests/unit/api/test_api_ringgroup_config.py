"""Ring groups through AddConfig/GetConfig/ModifyConfig/RemoveConfig (spec 8.3, 10.4,
8.19-8.22) and the typed reading of their settings (`ring_group_settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import OPEN, Client, FakePbx, FakeStore, block, envelope

from pypbx.api.config_xml import RING_GROUP
from pypbx.api.server import create_app
from pypbx.pbx.dialplan import RingGroup, Strategy, hunt_order
from pypbx.store import Store
from pypbx.store.records import (
    RING_GROUP_SETTING_KEYS,
    ExtensionRecord,
    RingGroupSettings,
    ring_group_settings,
)

OK = envelope(200, "Command successfully executed")
INVALID = envelope(702, "Invalid configuration for type 'RingGroup'")
EXISTS = envelope(703, "Extension configuration already exists")

FIELDS = {
    "ID": "800",
    "Enabled": "true",
    "Members": "101,102,103",
    "RingTime": "20",
    "Strategy": "Hunt",
    "Fallback": "9000",
    "UserID": "sales",
}
STORED = {"members": ["101", "102", "103"], "ring_time": 20, "strategy": "Hunt", "fallback": "9000"}
DEFAULTS = {"members": ["101"], "ring_time": 30, "strategy": "RingAll", "fallback": ""}

GET_FULL = """
  <Config knownType="RingGroupExtensionInfo">
    <Members>101,102,103</Members>
    <RingTime>20</RingTime>
    <Strategy>Hunt</Strategy>
    <Fallback>9000</Fallback>
    <Enabled>true</Enabled>
    <ID>800</ID>
    <UserID>sales</UserID>
  </Config>
"""

GET_MINIMAL = """
  <Config knownType="RingGroupExtensionInfo">
    <Members>101</Members>
    <RingTime>30</RingTime>
    <Strategy>RingAll</Strategy>
    <Fallback />
    <Enabled>false</Enabled>
    <ID>801</ID>
    <UserID />
  </Config>
"""


def group_xml(known_type: str = "RingGroupExtensionInfo", **fields: str) -> str:
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<Config knownType="{known_type}">{children}</Config>'


async def post(client: Client, command: str, xml: str, extension_type: str = "RingGroup") -> str:
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
    assert await post(client, "AddConfig", group_xml(**FIELDS)) == OK
    record = store.extensions["800"]
    assert (record.type, record.enabled, record.user_id, record.settings) == (
        "RingGroup",
        True,
        "sales",
        STORED,
    )
    # Nothing can authenticate as a group.
    assert (record.username, record.authorization_name) == ("", "")
    assert (record.password, record.ha1_md5, record.ha1_sha256) == (None, None, None)
    assert await post(client, "AddConfig", group_xml(**FIELDS)) == EXISTS
    assert await get_config(client, "800") == envelope(
        200, "Command successfully executed", *block(GET_FULL)
    )


async def test_add_minimal_config_stores_defaults(client: Client, store: FakeStore) -> None:
    xml = group_xml(ID="801", Enabled="false", Members="101")
    assert await post(client, "AddConfig", xml) == OK
    assert store.extensions["801"].settings == DEFAULTS
    assert await get_config(client, "801") == envelope(
        200, "Command successfully executed", *block(GET_MINIMAL)
    )


@pytest.mark.parametrize("extension_type", ["ringgroup", " RINGGROUP ", "RingGroup"])
async def test_extension_type_is_case_insensitive(
    client: Client, store: FakeStore, extension_type: str
) -> None:
    assert await post(client, "AddConfig", group_xml(**FIELDS), extension_type) == OK
    assert store.extensions["800"].type == "RingGroup"


async def test_add_lenient_forms(client: Client, store: FakeStore) -> None:
    xml = group_xml(
        ID=" 800 ",
        Enabled=" TRUE ",
        Members=" 102 , ,101,102,, 9994 ",
        RingTime=" 045 ",
        Strategy=" hunt ",
        Fallback=" +3612345 ",
        Password="ignored",
        Extra="ignored",
    )
    assert await post(client, "AddConfig", xml) == OK
    record = store.extensions["800"]
    assert record.settings == {
        "members": ["102", "101", "9994"],
        "ring_time": 45,
        "strategy": "Hunt",
        "fallback": "+3612345",
    }
    assert record.password is None


@pytest.mark.parametrize("existing_type", ["SIP", "API", "Line", "DialPlanRule"])
async def test_add_existing_id_of_any_type_703(
    client: Client, store: FakeStore, existing_type: str
) -> None:
    store.extensions["800"] = ExtensionRecord("800", existing_type)
    assert await post(client, "AddConfig", group_xml(**FIELDS)) == EXISTS
    assert store.extensions["800"].type == existing_type


@pytest.mark.parametrize(
    "xml",
    [
        group_xml(**without("ID")),
        group_xml(**without("Enabled")),
        group_xml(**without("Members")),
        group_xml(**with_fields(ID="")),
        group_xml(**with_fields(ID="8 00")),
        group_xml(**with_fields(Enabled="yes")),
        group_xml(**with_fields(Members="")),
        group_xml(**with_fields(Members=" , ,")),
        group_xml(**with_fields(Members="101,1 02")),
        group_xml(**with_fields(Members="101,&lt;x&gt;")),
        group_xml(**with_fields(Members="101,800")),  # the group itself
        group_xml(**with_fields(Members=",".join(str(n) for n in range(1000, 1101)))),
        group_xml(**with_fields(RingTime="0")),
        group_xml(**with_fields(RingTime="3601")),
        group_xml(**with_fields(RingTime="-5")),
        group_xml(**with_fields(RingTime="2.5")),
        group_xml(**with_fields(RingTime="thirty")),
        group_xml(**with_fields(RingTime="１０")),  # noqa: RUF001 - fullwidth digits
        group_xml(**with_fields(Strategy="Random")),
        group_xml(**with_fields(Fallback="voice mail")),
        group_xml(**with_fields(UserID="u&#10;x")),
        group_xml(known_type="RingGroupExtension", **FIELDS),
        group_xml(known_type="SIPExtensionInfo", **FIELDS),
    ],
)
async def test_add_invalid_content_702(client: Client, store: FakeStore, xml: str) -> None:
    assert await post(client, "AddConfig", xml) == INVALID
    assert store.extensions == {}


async def test_hundred_members_is_the_limit(client: Client, store: FakeStore) -> None:
    members = ",".join(str(n) for n in range(1000, 1100))
    assert await post(client, "AddConfig", group_xml(**with_fields(Members=members))) == OK
    assert len(store.extensions["800"].settings["members"]) == 100


async def test_config_syntax_error_300(client: Client) -> None:
    assert await post(client, "AddConfig", '<Config knownType="RingGroupExtensionInfo">') == (
        envelope(
            300,
            "Error occured during parsing message: "
            "'ConfigXML is not well-formed: no element found: line 1, column 43'",
        )
    )


# -- ModifyConfig ------------------------------------------------------------------------


@pytest.fixture
def group800(store: FakeStore) -> FakeStore:
    store.extensions["800"] = ExtensionRecord(
        "800", "RingGroup", user_id="sales", settings=dict(STORED)
    )
    return store


async def test_modify_only_present_elements(
    client: Client, group800: FakeStore, pbx: FakePbx
) -> None:
    assert await post(client, "ModifyConfig", group_xml(ID="800", Members="105, 104")) == OK
    record = group800.extensions["800"]
    assert (record.enabled, record.user_id) == (True, "sales")
    assert record.settings == {**STORED, "members": ["105", "104"]}
    assert pbx.changed == ["800"]


async def test_modify_empty_elements_reset_to_defaults(client: Client, group800: FakeStore) -> None:
    xml = group_xml(ID="800", RingTime="", Strategy=" ", Fallback="", UserID="")
    assert await post(client, "ModifyConfig", xml) == OK
    record = group800.extensions["800"]
    assert record.user_id == ""
    assert record.settings == {**STORED, "ring_time": 30, "strategy": "RingAll", "fallback": ""}


async def test_get_config_output_feeds_modify_config(
    client: Client, group800: FakeStore, pbx: FakePbx
) -> None:
    before = group800.extensions["800"]
    config = "\n".join((await get_config(client, "800")).split("\n")[4:-1])
    assert await post(client, "ModifyConfig", config) == OK
    assert group800.extensions["800"] == before
    assert pbx.changed == ["800"]


@pytest.mark.parametrize(
    "xml",
    [
        group_xml(ID="800", Members=""),
        group_xml(ID="800", Members="101,800"),
        group_xml(ID="800", RingTime="0"),
        group_xml(ID="800", Strategy="LongestIdle"),
        group_xml(ID="800", Enabled="maybe"),
        group_xml(known_type="APIExtensionInfo", ID="800"),
    ],
)
async def test_modify_invalid_702(
    client: Client, group800: FakeStore, pbx: FakePbx, xml: str
) -> None:
    before = group800.extensions["800"]
    assert await post(client, "ModifyConfig", xml) == INVALID
    assert group800.extensions["800"] == before
    assert pbx.changed == []


async def test_modify_unknown_id_701(client: Client, group800: FakeStore) -> None:
    assert await post(client, "ModifyConfig", group_xml(ID="801", RingTime="x")) == envelope(
        701, "Configuration for type '801' not found"
    )


async def test_modify_cannot_change_type_702(client: Client, store: FakeStore) -> None:
    store.extensions["100"] = ExtensionRecord("100", "SIP", username="100", password="pw")
    before = store.extensions["100"]
    assert await post(client, "ModifyConfig", group_xml(ID="100", Members="101")) == INVALID
    assert store.extensions["100"] == before
    store.extensions["800"] = ExtensionRecord("800", "RingGroup", settings=dict(STORED))
    sip = '<Config knownType="SIPExtensionInfo"><ID>800</ID><Enabled>false</Enabled></Config>'
    assert await post(client, "ModifyConfig", sip, "SIP") == envelope(
        702, "Invalid configuration for type 'SIP'"
    )
    assert store.extensions["800"].enabled is True


# -- RemoveConfig ------------------------------------------------------------------------


async def test_remove(client: Client, group800: FakeStore, pbx: FakePbx) -> None:
    assert await (await client.get("/?command=RemoveConfig&ExtensionId=800")).text() == OK
    assert group800.extensions == {}
    assert pbx.changed == ["800"]
    assert await get_config(client, "800") == envelope(
        701, "Configuration for type '800' not found"
    )


# -- Real store --------------------------------------------------------------------------


async def test_settings_survive_the_real_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}"
    store = await Store.open(url)
    try:
        async with TestClient(TestServer(create_app(OPEN, store, FakePbx()))) as client:
            assert await post(client, "AddConfig", group_xml(**FIELDS)) == OK
            assert await post(client, "ModifyConfig", group_xml(ID="800", RingTime="25")) == OK
    finally:
        await store.close()
    store = await Store.open(url)
    try:
        record = await store.get_extension("800")
        assert record is not None
        assert record.settings == {**STORED, "ring_time": 25}
        assert ring_group_settings(record).ring_time == 25
    finally:
        await store.close()


# -- ring_group_settings -----------------------------------------------------------------


def test_settings_keys_agree() -> None:
    assert tuple(s.key for s in RING_GROUP.settings) == RING_GROUP_SETTING_KEYS


def test_typed_settings_with_every_value() -> None:
    record = ExtensionRecord("800", "RingGroup", settings=dict(STORED))
    assert ring_group_settings(record) == RingGroupSettings(
        members=("101", "102", "103"), ring_time=20, strategy="Hunt", fallback="9000"
    )


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"members": "101", "ring_time": "20", "strategy": "hunt", "fallback": 5},
        {"members": None, "ring_time": True, "strategy": None, "fallback": "  "},
        {"members": [], "ring_time": 0, "strategy": "", "fallback": None},
        {"members": [7, None, " ", "800"], "ring_time": 3601},
    ],
)
def test_typed_settings_tolerate_malformed_values(settings: dict[str, Any]) -> None:
    assert ring_group_settings(
        ExtensionRecord("800", "ringgroup", settings=settings)
    ) == RingGroupSettings((), 30, "RingAll", None)


def test_typed_members_trimmed_deduplicated_in_order() -> None:
    record = ExtensionRecord("800", "RingGroup", settings={"members": [" 103", "101", "103 "]})
    assert ring_group_settings(record).members == ("103", "101")


def test_typed_settings_refuse_other_types() -> None:
    with pytest.raises(ValueError, match=r"^extension 100 is of type SIP, not RingGroup$"):
        ring_group_settings(ExtensionRecord("100", "SIP"))


async def test_stored_group_builds_the_dial_plan_group(client: Client, store: FakeStore) -> None:
    """The typed settings are exactly what the dial plan's RingGroup takes."""
    assert await post(client, "AddConfig", group_xml(**FIELDS)) == OK
    typed = ring_group_settings(store.extensions["800"])
    built = RingGroup(
        id="800",
        members=typed.members,
        ring_time=typed.ring_time,
        strategy=Strategy.parse(typed.strategy),
        fallback=typed.fallback,
    )
    assert hunt_order(built, {"103", "101"}) == ["101", "103"]
    assert built.strategy is Strategy.HUNT
