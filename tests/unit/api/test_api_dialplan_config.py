"""Dial plan rules through AddConfig/GetConfig/ModifyConfig/RemoveConfig (spec 9.2,
8.19-8.22) and their reading as rule fields (`dial_plan_rule_fields`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import OPEN, Client, FakePbx, FakeStore, block, envelope

from pypbx.api import config_xml
from pypbx.api.config_xml import (
    DIAL_PLAN_RULE,
    ConfigContentError,
    check_settings_fields,
    check_settings_record,
)
from pypbx.api.server import create_app
from pypbx.pbx.dialplan import Rule, rule_from_fields
from pypbx.store import Store
from pypbx.store.records import (
    DIAL_PLAN_RULE_FIELDS,
    ExtensionRecord,
    dial_plan_rule_fields,
)

OK = envelope(200, "Command successfully executed")
INVALID = envelope(702, "Invalid configuration for type 'DialPlanRule'")
EXISTS = envelope(703, "Extension configuration already exists")

FIELDS = {
    "ID": "outbound-national",
    "Enabled": "true",
    "Order": "30",
    "Kind": "Call",
    "From": "ext:101,102",
    "Pattern": "0.",
    "Destination": "voipservice1",
    "StripDigits": "1",
    "AddPrefix": "+36",
    "CallerId": "+3612345600",
    "RingTime": "60",
    "OnBusy": "9000",
    "OnNoAnswer": "Next",
    "OnNotFound": "",
    "OnError": "9000",
    "TimeCondition": "Mon-Fri 08:00-17:00",
}
STORED = {k: v for k, v in FIELDS.items() if k not in ("ID", "Enabled")}
DEFAULTS = {
    "Order": "10",
    "Kind": "Call",
    "From": "Any",
    "Pattern": "1XX",
    "Destination": "800",
    "StripDigits": "0",
    "AddPrefix": "",
    "CallerId": "",
    "RingTime": "",
    "OnBusy": "",
    "OnNoAnswer": "",
    "OnNotFound": "",
    "OnError": "",
    "TimeCondition": "",
}

GET_FULL = """
  <Config knownType="DialPlanRuleExtensionInfo">
    <Order>30</Order>
    <Kind>Call</Kind>
    <From>ext:101,102</From>
    <Pattern>0.</Pattern>
    <Destination>voipservice1</Destination>
    <StripDigits>1</StripDigits>
    <AddPrefix>+36</AddPrefix>
    <CallerId>+3612345600</CallerId>
    <RingTime>60</RingTime>
    <OnBusy>9000</OnBusy>
    <OnNoAnswer>Next</OnNoAnswer>
    <OnNotFound />
    <OnError>9000</OnError>
    <TimeCondition>Mon-Fri 08:00-17:00</TimeCondition>
    <Enabled>true</Enabled>
    <ID>outbound-national</ID>
  </Config>
"""

GET_MINIMAL = """
  <Config knownType="DialPlanRuleExtensionInfo">
    <Order>10</Order>
    <Kind>Call</Kind>
    <From>Any</From>
    <Pattern>1XX</Pattern>
    <Destination>800</Destination>
    <StripDigits>0</StripDigits>
    <AddPrefix />
    <CallerId />
    <RingTime />
    <OnBusy />
    <OnNoAnswer />
    <OnNotFound />
    <OnError />
    <TimeCondition />
    <Enabled>true</Enabled>
    <ID>sales</ID>
  </Config>
"""


def rule_xml(known_type: str = "DialPlanRuleExtensionInfo", **fields: str) -> str:
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<Config knownType="{known_type}">{children}</Config>'


def minimal(rule_id: str, **more: str) -> str:
    return rule_xml(**{"ID": rule_id, "Pattern": "1XX", "Destination": "800", **more})


async def post(client: Client, command: str, xml: str, extension_type: str = "DialPlanRule") -> str:
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
    assert await post(client, "AddConfig", rule_xml(**FIELDS)) == OK
    record = store.extensions["outbound-national"]
    assert (record.type, record.enabled, record.user_id, record.settings) == (
        "DialPlanRule",
        True,
        "",
        STORED,
    )
    assert (record.username, record.authorization_name, record.password) == ("", "", None)
    assert await post(client, "AddConfig", rule_xml(**FIELDS)) == EXISTS
    assert await get_config(client, "outbound-national") == envelope(
        200, "Command successfully executed", *block(GET_FULL)
    )


async def test_add_minimal_config_stores_defaults(client: Client, store: FakeStore) -> None:
    """Enabled defaults to true for a rule (spec 9.2), unlike for extensions."""
    assert await post(client, "AddConfig", minimal("sales")) == OK
    record = store.extensions["sales"]
    assert (record.enabled, record.settings) == (True, DEFAULTS)
    assert await get_config(client, "sales") == envelope(
        200, "Command successfully executed", *block(GET_MINIMAL)
    )


async def test_order_appends(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", minimal("a")) == OK
    assert await post(client, "AddConfig", minimal("b")) == OK
    assert await post(client, "AddConfig", minimal("c", Order="5")) == OK
    assert await post(client, "AddConfig", minimal("d", Order="")) == OK
    store.extensions["odd"] = ExtensionRecord("odd", "DialPlanRule", settings={"Order": 99})
    store.extensions["x"] = ExtensionRecord("x", "SIP", settings={"Order": "500"})
    assert await post(client, "AddConfig", minimal("e")) == OK
    orders = {k: r.settings["Order"] for k, r in store.extensions.items() if k in "abcde"}
    assert orders == {"a": "10", "b": "20", "c": "5", "d": "30", "e": "40"}
    # Moving a rule to the end: an empty Order appends it anew (after the others only).
    assert await post(client, "ModifyConfig", rule_xml(ID="a", Order="")) == OK
    assert store.extensions["a"].settings["Order"] == "50"
    assert await post(client, "ModifyConfig", rule_xml(ID="a", Order="")) == OK
    assert store.extensions["a"].settings["Order"] == "50"


async def test_appended_order_is_capped(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", minimal("last", Order="999995")) == OK
    assert await post(client, "AddConfig", minimal("after")) == OK
    assert store.extensions["after"].settings["Order"] == "999999"


@pytest.mark.parametrize("extension_type", ["dialplanrule", " DIALPLANRULE ", "DialPlanRule"])
async def test_extension_type_is_case_insensitive(
    client: Client, store: FakeStore, extension_type: str
) -> None:
    assert await post(client, "AddConfig", rule_xml(**FIELDS), extension_type) == OK
    assert store.extensions["outbound-national"].type == "DialPlanRule"


async def test_add_lenient_forms(client: Client, store: FakeStore) -> None:
    xml = rule_xml(
        ID=" r1 ",
        Enabled=" FALSE ",
        Order=" 007 ",
        Kind=" sms ",
        Pattern="  re:^(06|36)[0-9]+$  ",
        Destination=" gsm-modem ",
        StripDigits=" 02 ",
        TimeCondition=" sat,sun ",
        UserID="ignored",
        Name="ignored: the ID is the name",
    )
    assert await post(client, "AddConfig", xml) == OK
    record = store.extensions["r1"]
    assert (record.enabled, record.user_id) == (False, "")
    assert record.settings == {
        **DEFAULTS,
        "Order": "7",
        "Kind": "SMS",
        "Pattern": "re:^(06|36)[0-9]+$",
        "Destination": "gsm-modem",
        "StripDigits": "2",
        "TimeCondition": "sat,sun",
    }


@pytest.mark.parametrize("existing_type", ["SIP", "API", "RingGroup", "Line"])
async def test_rule_names_share_the_id_space_703(
    client: Client, store: FakeStore, existing_type: str
) -> None:
    store.extensions["800"] = ExtensionRecord("800", existing_type)
    assert await post(client, "AddConfig", minimal("800")) == EXISTS
    assert store.extensions["800"].type == existing_type


async def test_extension_cannot_take_a_rule_name_703(client: Client, store: FakeStore) -> None:
    assert await post(client, "AddConfig", minimal("9994")) == OK
    api = '<Config knownType="APIExtensionInfo"><ID>9994</ID><Enabled>true</Enabled></Config>'
    assert await post(client, "AddConfig", api, "API") == EXISTS


@pytest.mark.parametrize(
    "xml",
    [
        rule_xml(**without("ID")),
        rule_xml(**without("Pattern")),
        rule_xml(**without("Destination")),
        rule_xml(**with_fields(ID="")),
        rule_xml(**with_fields(ID="to voicemail")),
        rule_xml(**with_fields(Enabled="")),
        rule_xml(**with_fields(Enabled="on")),
        rule_xml(**with_fields(Pattern=" ")),
        rule_xml(**with_fields(Pattern="0&#9;1")),
        rule_xml(**with_fields(Pattern="X" * 513)),
        rule_xml(**with_fields(Destination="")),
        rule_xml(**with_fields(Destination="d" * 129)),
        rule_xml(**with_fields(Order="first")),
        rule_xml(**with_fields(Order="-1")),
        rule_xml(**with_fields(Order="1000000")),
        rule_xml(**with_fields(Kind="Fax")),
        rule_xml(**with_fields(StripDigits="65")),
        rule_xml(**with_fields(StripDigits="1.5")),
        rule_xml(**with_fields(RingTime="0")),
        rule_xml(**with_fields(RingTime="3601")),
        rule_xml(**with_fields(OnBusy="a&#10;b")),
        rule_xml(**with_fields(From="f" * 513)),
        rule_xml(known_type="DialPlanRuleInfo", **FIELDS),
        rule_xml(known_type="RingGroupExtensionInfo", **FIELDS),
    ],
)
async def test_add_invalid_content_702(client: Client, store: FakeStore, xml: str) -> None:
    assert await post(client, "AddConfig", xml) == INVALID
    assert store.extensions == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Pattern": "1", "Destination": "2"}, "missing elements: ID"),
        ({"ID": "r", "Destination": "2"}, "missing elements: Pattern"),
        ({"ID": "r"}, "missing elements: Pattern, Destination"),
        ({"ID": "r", "Pattern": "", "Destination": "2"}, "Pattern is empty"),
        (
            {"ID": "r", "Pattern": "1", "Destination": "2", "Order": "x"},
            "Order is not an integer from 0 to 999999",
        ),
        (
            {"ID": "r", "Pattern": "1", "Destination": "2", "Kind": "Fax"},
            "Kind is not one of Call, SMS, Email",
        ),
        (
            {"ID": "r", "Pattern": "1", "Destination": "2", "OnError": "x\ty"},
            "OnError contains control characters",
        ),
        (
            {"ID": "r", "Pattern": "1", "Destination": "d" * 129},
            "Destination is longer than 128 characters",
        ),
    ],
)
def test_check_messages(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigContentError) as caught:
        check_settings_fields("DialPlanRule", fields, require_all=True)
    assert str(caught.value) == message


# -- ModifyConfig ------------------------------------------------------------------------


@pytest.fixture
def rule(store: FakeStore) -> FakeStore:
    store.extensions["outbound-national"] = ExtensionRecord(
        "outbound-national", "DialPlanRule", settings=dict(STORED)
    )
    return store


async def test_modify_only_present_elements(client: Client, rule: FakeStore, pbx: FakePbx) -> None:
    xml = rule_xml(ID="outbound-national", Enabled="false", Pattern="06.", OnBusy="")
    assert await post(client, "ModifyConfig", xml) == OK
    record = rule.extensions["outbound-national"]
    assert record.enabled is False
    assert record.settings == {**STORED, "Pattern": "06.", "OnBusy": ""}
    assert pbx.changed == ["outbound-national"]


async def test_modify_empty_elements_reset_to_defaults(client: Client, rule: FakeStore) -> None:
    xml = rule_xml(ID="outbound-national", Kind="", From="", StripDigits="", RingTime="")
    assert await post(client, "ModifyConfig", xml) == OK
    assert rule.extensions["outbound-national"].settings == {
        **STORED,
        "Kind": "Call",
        "From": "Any",
        "StripDigits": "0",
        "RingTime": "",
    }


async def test_get_config_output_feeds_modify_config(client: Client, rule: FakeStore) -> None:
    before = rule.extensions["outbound-national"]
    config = "\n".join((await get_config(client, "outbound-national")).split("\n")[4:-1])
    assert await post(client, "ModifyConfig", config) == OK
    assert rule.extensions["outbound-national"] == before


@pytest.mark.parametrize(
    "xml",
    [
        rule_xml(ID="outbound-national", Pattern=""),
        rule_xml(ID="outbound-national", Destination=" "),
        rule_xml(ID="outbound-national", Kind="Fax"),
        rule_xml(ID="outbound-national", Enabled="no"),
        rule_xml(known_type="LineExtensionInfo", ID="outbound-national"),
    ],
)
async def test_modify_invalid_702(client: Client, rule: FakeStore, pbx: FakePbx, xml: str) -> None:
    before = rule.extensions["outbound-national"]
    assert await post(client, "ModifyConfig", xml) == INVALID
    assert rule.extensions["outbound-national"] == before
    assert pbx.changed == []


async def test_modify_cannot_change_type_702(client: Client, store: FakeStore) -> None:
    store.extensions["800"] = ExtensionRecord("800", "RingGroup", settings={"members": ["1"]})
    assert await post(client, "ModifyConfig", minimal("800")) == INVALID
    assert store.extensions["800"].type == "RingGroup"


async def test_remove(client: Client, rule: FakeStore, pbx: FakePbx) -> None:
    text = await (await client.get("/?command=RemoveConfig&ExtensionId=outbound-national")).text()
    assert text == OK
    assert rule.extensions == {}
    assert pbx.changed == ["outbound-national"]


# -- The dial plan's own rule parser -----------------------------------------------------


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Records what the dial plan's parser is given (it still decides)."""
    seen: list[dict[str, str]] = []

    def recording(fields: Mapping[str, str]) -> Rule:
        seen.append(dict(fields))
        return rule_from_fields(fields)

    monkeypatch.setattr(config_xml, "rule_from_fields", recording)
    return seen


async def test_rule_parser_sees_every_field(
    client: Client, store: FakeStore, parser: list[dict[str, str]]
) -> None:
    assert await post(client, "AddConfig", minimal("sales", Enabled="false")) == OK
    assert parser == [{"Name": "sales", "Enabled": "false", **DEFAULTS}]
    assert await post(client, "ModifyConfig", rule_xml(ID="sales", Enabled="true")) == OK
    assert parser[-1] == {"Name": "sales", "Enabled": "true", **DEFAULTS}


@pytest.mark.parametrize(
    "changes",
    [
        {"Pattern": "1[XX"},
        {"From": "101"},
        {"From": "ext:101,,102"},
        {"AddPrefix": "a"},
        {"TimeCondition": "Someday"},
        {"TimeCondition": "Mon 25:00-26:00"},
        {"From": "num:1[2"},
        {"Destination": "Next"},
    ],
)
async def test_rule_parser_refusal_is_702(
    client: Client,
    store: FakeStore,
    pbx: FakePbx,
    parser: list[dict[str, str]],
    changes: dict[str, str],
) -> None:
    """Shape-valid values the dial plan cannot use are refused at configuration time."""
    assert await post(client, "AddConfig", minimal("r", **changes)) == INVALID
    assert store.extensions == {}
    assert await post(client, "AddConfig", minimal("r")) == OK
    assert await post(client, "ModifyConfig", rule_xml(ID="r", **changes)) == INVALID
    assert store.extensions["r"].settings == DEFAULTS
    assert pbx.changed == []
    assert len(parser) == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"From": "101"}, "From: must be Any, ext:<ids>, line:<names> or num:<pattern>, got '101'"),
        ({"Destination": "Next"}, "Destination: Next is not a destination"),
    ],
)
def test_rule_parser_message_is_the_reason(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigContentError) as caught:
        check_settings_record("DialPlanRule", "r", True, {**DEFAULTS, **changes})
    assert str(caught.value) == message


# -- Real store --------------------------------------------------------------------------


async def test_rule_survives_the_real_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}"
    store = await Store.open(url)
    try:
        async with TestClient(TestServer(create_app(OPEN, store, FakePbx()))) as client:
            assert await post(client, "AddConfig", rule_xml(**FIELDS)) == OK
            assert await post(client, "AddConfig", minimal("later")) == OK
    finally:
        await store.close()
    store = await Store.open(url)
    try:
        record = await store.get_extension("outbound-national")
        assert record is not None
        assert record.settings == STORED
        later = await store.get_extension("later")
        assert later is not None
        assert later.settings["Order"] == "40"
    finally:
        await store.close()


# -- dial_plan_rule_fields ---------------------------------------------------------------


def test_settings_keys_agree() -> None:
    assert tuple(s.key for s in DIAL_PLAN_RULE.settings) == DIAL_PLAN_RULE_FIELDS
    assert tuple(s.element for s in DIAL_PLAN_RULE.settings) == DIAL_PLAN_RULE_FIELDS


def test_rule_fields() -> None:
    record = ExtensionRecord("outbound-national", "DialPlanRule", settings=dict(STORED))
    assert dial_plan_rule_fields(record) == {
        "Name": "outbound-national",
        "Enabled": "true",
        **STORED,
    }


def test_rule_fields_tolerate_malformed_values() -> None:
    record = ExtensionRecord(
        "r", "dialplanrule", enabled=False, settings={"Order": 5, "Pattern": " 1X ", "x": "y"}
    )
    fields = dial_plan_rule_fields(record)
    assert fields == {
        "Name": "r",
        "Enabled": "false",
        **dict.fromkeys(DIAL_PLAN_RULE_FIELDS, ""),
        "Pattern": "1X",
    }


def test_rule_fields_refuse_other_types() -> None:
    with pytest.raises(ValueError, match=r"^extension 100 is of type SIP, not DialPlanRule$"):
        dial_plan_rule_fields(ExtensionRecord("100", "SIP"))


async def test_stored_rules_load_into_the_dial_plan(client: Client, store: FakeStore) -> None:
    """What the config commands store is what the router reads back."""
    assert await post(client, "AddConfig", rule_xml(**FIELDS)) == OK
    assert await post(client, "AddConfig", minimal("sales", Enabled="false")) == OK
    full = rule_from_fields(dial_plan_rule_fields(store.extensions["outbound-national"]))
    assert (full.name, full.order, full.destination, full.strip_digits) == (
        "outbound-national",
        30,
        "voipservice1",
        1,
    )
    assert (full.add_prefix, full.caller_id, full.ring_time, full.on_no_answer) == (
        "+36",
        "+3612345600",
        60,
        "Next",
    )
    assert full.on_not_found is None
    assert full.rewrite("0612345") == "+36612345"
    sales = rule_from_fields(dial_plan_rule_fields(store.extensions["sales"]))
    assert (sales.name, sales.order, sales.enabled, sales.ring_time) == ("sales", 40, False, 90)
