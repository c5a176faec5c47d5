"""Ring groups, outside lines and dial plan rules configured over the HTTP API of a running
pypbx (spec notifications 8.3, 9.2, 10.4; http-api 8.17-8.22).

Each type is added, read, listed, modified and removed with the same commands as a phone
extension; the configuration survives a restart; ids are one space across all types; dial
plan rules are configurable but never listed; and an outside line's provider credentials
are no SIP account of this PBX.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from peers.flows import PbxFactory, SippFactory, register
from peers.pbx import ApiResult, PbxProcess
from peers.ports import PortAllocator

KNOWN = {
    "RingGroup": "RingGroupExtensionInfo",
    "Line": "LineExtensionInfo",
    "DialPlanRule": "DialPlanRuleExtensionInfo",
}
GROUP = {"ID": "800", "Enabled": "true", "Members": "101, 102", "Strategy": "hunt"}
RULE = {
    "ID": "to-sales",
    "Pattern": "8XX",
    "Destination": "800",
    "From": "ext:101,102",
    "OnNoAnswer": "Next",
    "TimeCondition": "Mon-Fri 08:00-17:00 Europe/Budapest",
}
LINE_USER, LINE_PASSWORD = "36123456", "provider-secret"


def config(kind: str, **fields: str) -> str:
    """ConfigXML for `kind`, spelt in any case (ExtensionType is case-insensitive)."""
    known = next(value for name, value in KNOWN.items() if name.casefold() == kind.casefold())
    root = ET.Element("Config", knownType=known)
    for tag, text in fields.items():
        ET.SubElement(root, tag).text = text
    return ET.tostring(root, encoding="unicode")


def command(pbx: PbxProcess, name: str, kind: str, **fields: str) -> ApiResult:
    return pbx.api(name, ExtensionType=kind, ConfigXML=config(kind, **fields))


def ok(result: ApiResult) -> None:
    assert (result.code, result.message) == (200, "Command successfully executed"), result.text


def get_config(pbx: PbxProcess, ext: str, kind: str) -> list[tuple[str, str]]:
    result = pbx.api("GetConfig", ExtensionId=ext)
    assert result.code == 200, result.text
    element = result.root.find("Config")
    assert element is not None, result.text
    assert element.get("knownType") == KNOWN[kind], result.text
    return [(child.tag, child.text or "") for child in element]


def listed(pbx: PbxProcess) -> dict[str, tuple[str, str]]:
    """ListExtensions (XE dialect) as {number: (Type, State)}."""
    result = pbx.api("ListExtensions")
    assert result.code == 200, result.text
    return {
        row["PhoneNumber"]: (row["Type"], row["State"])
        for row in result.rows("Extensions", "ExtensionSummary")
    }


def line_fields(ports: PortAllocator) -> dict[str, str]:
    """A registering line towards a loopback port nobody answers on: never Connected."""
    return {
        "ID": "voipservice1",
        "Enabled": "true",
        "Host": "127.0.0.1",
        "Port": str(ports.port()),
        "Username": LINE_USER,
        "Password": LINE_PASSWORD,
        "Register": "true",
        "RegisterExpiry": "300",
        "DIDs": "+3612345600, +3612345601",
        "CallerId": "+3612345600",
        "MaxChannels": "2",
    }


def test_life_cycle_of_each_type_and_restart(
    start_pbx: PbxFactory, sipp: SippFactory, ports: PortAllocator
) -> None:
    pbx = start_pbx()
    types = pbx.api("ListExtensionTypes")
    assert [e.text for e in types.root.findall("ExtensionTypes/string")] == [
        "SIP",
        "API",
        "RingGroup",
        "Line",
        "DialPlanRule",
        "HttpApi",
    ]
    pbx.add_sip_extension("101", "pw-101")
    pbx.add_sip_extension("102", "pw-102")

    # -- add --
    ok(command(pbx, "AddConfig", "RingGroup", **GROUP))
    ok(command(pbx, "AddConfig", "line", **line_fields(ports)))
    ok(command(pbx, "AddConfig", "Line", ID="direct", Enabled="true", Host="192.0.2.10"))
    ok(command(pbx, "AddConfig", "DIALPLANRULE", **RULE))
    ok(command(pbx, "AddConfig", "DialPlanRule", ID="rest", Pattern="0.", Destination="direct"))
    for kind, fields in (
        ("RingGroup", GROUP),
        ("DialPlanRule", {**RULE, "ID": "101"}),  # a rule cannot take an extension's id
        ("RingGroup", {**GROUP, "ID": "to-sales"}),  # nor an extension a rule's
    ):
        again = command(pbx, "AddConfig", kind, **fields)
        assert (again.code, again.message) == (703, "Extension configuration already exists")

    # -- get --
    group = get_config(pbx, "800", "RingGroup")
    assert group == [
        ("Members", "101,102"),
        ("RingTime", "30"),
        ("Strategy", "Hunt"),
        ("Fallback", ""),
        ("Enabled", "true"),
        ("ID", "800"),
        ("UserID", ""),
    ]
    line = get_config(pbx, "voipservice1", "Line")
    assert [tag for tag, _ in line] == [
        "Host",
        "Port",
        "Transport",
        "Username",
        "AuthorizationName",
        "Password",
        "Register",
        "RegisterExpiry",
        "OutboundProxy",
        "DIDs",
        "CallerId",
        "MaxChannels",
        "Enabled",
        "ID",
    ]
    assert dict(line)["Password"] == LINE_PASSWORD
    assert dict(line)["DIDs"] == "+3612345600,+3612345601"
    assert dict(line)["Transport"] == "udp"
    rule = dict(get_config(pbx, "to-sales", "DialPlanRule"))
    assert (rule["Order"], rule["Kind"], rule["From"], rule["Enabled"]) == (
        "10",
        "Call",
        "ext:101,102",
        "true",
    )
    assert dict(get_config(pbx, "rest", "DialPlanRule"))["Order"] == "20"

    # -- list: rules are not extensions --
    assert listed(pbx) == {
        "101": ("SIP", "Disconnected"),
        "102": ("SIP", "Disconnected"),
        "800": ("RingGroup", "Disconnected"),
        "direct": ("Line", "Connected"),
        "voipservice1": ("Line", "Disconnected"),
    }
    register(pbx, sipp, "102", "pw-102")
    assert listed(pbx)["800"] == ("RingGroup", "Connected")
    assert pbx.api("ListExtensions", Type="DialPlanRule").root.find("Extensions") is not None
    assert pbx.api("ListExtensions", Type="DialPlanRule").rows("Extensions", "X") == []
    lines = pbx.api("ListExtensions", Type="line").rows("Extensions", "ExtensionSummary")
    assert [row["Id"] for row in lines] == ["direct", "voipservice1"]

    # -- modify: partial, 702 for bad content or another type, 701 for unknown ids --
    ok(command(pbx, "ModifyConfig", "RingGroup", ID="800", RingTime="15", Members="102"))
    ok(command(pbx, "ModifyConfig", "Line", ID="direct", Enabled="false"))
    ok(command(pbx, "ModifyConfig", "DialPlanRule", ID="to-sales", Order="", Enabled="false"))
    for kind, fields in (
        ("RingGroup", {"ID": "800", "Members": "800"}),
        ("Line", {"ID": "voipservice1", "Transport": "sctp"}),
        ("DialPlanRule", {"ID": "to-sales", "From": "nobody"}),
        ("DialPlanRule", {"ID": "800", "Pattern": "8"}),
        ("Line", {"ID": "to-sales", "Host": "h"}),
    ):
        bad = command(pbx, "ModifyConfig", kind, **fields)
        assert (bad.code, bad.message) == (702, f"Invalid configuration for type '{kind}'")
    unknown = command(pbx, "ModifyConfig", "Line", ID="voipservice9", Host="h")
    assert (unknown.code, unknown.message) == (
        701,
        "Configuration for type 'voipservice9' not found",
    )
    group = get_config(pbx, "800", "RingGroup")
    assert dict(group)["Members"] == "102"
    assert dict(group)["RingTime"] == "15"
    assert dict(group)["Strategy"] == "Hunt"
    rule = dict(get_config(pbx, "to-sales", "DialPlanRule"))
    assert (rule["Order"], rule["Enabled"], rule["From"]) == ("30", "false", "ext:101,102")
    assert listed(pbx)["direct"] == ("Line", "Disconnected")
    before = {
        "800": get_config(pbx, "800", "RingGroup"),
        "voipservice1": get_config(pbx, "voipservice1", "Line"),
        "direct": get_config(pbx, "direct", "Line"),
        "to-sales": get_config(pbx, "to-sales", "DialPlanRule"),
        "rest": get_config(pbx, "rest", "DialPlanRule"),
    }

    # -- restart --
    assert pbx.stop() == 0, pbx.log_tail()
    pbx.start()
    after = {
        "800": get_config(pbx, "800", "RingGroup"),
        "voipservice1": get_config(pbx, "voipservice1", "Line"),
        "direct": get_config(pbx, "direct", "Line"),
        "to-sales": get_config(pbx, "to-sales", "DialPlanRule"),
        "rest": get_config(pbx, "rest", "DialPlanRule"),
    }
    assert after == before
    types_after = {number: kind for number, (kind, _) in listed(pbx).items()}
    assert types_after == {
        "101": "SIP",
        "102": "SIP",
        "800": "RingGroup",
        "direct": "Line",
        "voipservice1": "Line",
    }

    # -- remove --
    for ext in ("800", "voipservice1", "direct", "to-sales", "rest"):
        ok(pbx.remove_extension(ext))
        gone = pbx.api("GetConfig", ExtensionId=ext)
        assert (gone.code, gone.message) == (701, f"Configuration for type '{ext}' not found")
        assert pbx.remove_extension(ext).code == 701
    assert set(listed(pbx)) == {"101", "102"}


def register_is_refused(pbx: PbxProcess, sipp: SippFactory, to: str, auth: tuple[str, str]) -> None:
    """REGISTER for `to` authenticating as `auth`: challenged (401), then refused (403)."""
    run = sipp("register_rejected", remote=pbx.sip_address, service=to, auth=auth)
    result = run.run()
    assert result.ok, result.describe()
    statuses = [m.status for m in result.trace() if not m.sent and m.status and m.status >= 200]
    assert statuses == [401, 403], f"{statuses}\n{result.describe()}"


def test_line_credentials_are_no_sip_account_and_hidden_passwords_survive(
    start_pbx: PbxFactory, sipp: SippFactory, ports: PortAllocator
) -> None:
    pbx = start_pbx(config={"security": {"keep_sip_passwords": False}})
    fields = {**line_fields(ports), "AuthorizationName": "auth-" + LINE_USER}
    ok(command(pbx, "AddConfig", "Line", **fields))
    ok(command(pbx, "AddConfig", "RingGroup", ID="800", Enabled="true", Members="101"))

    for target in ("voipservice1", LINE_USER, "800"):
        register_is_refused(pbx, sipp, target, (LINE_USER, LINE_PASSWORD))
    register_is_refused(pbx, sipp, LINE_USER, ("auth-" + LINE_USER, LINE_PASSWORD))

    # Kept (the PBX needs it towards the provider) but not shown; GetConfig fed back to
    # ModifyConfig therefore keeps it, across a restart too.
    line = get_config(pbx, "voipservice1", "Line")
    assert "Password" not in dict(line)
    assert dict(line)["AuthorizationName"] == "auth-" + LINE_USER
    text = pbx.api("GetConfig", ExtensionId="voipservice1").text
    element = ET.fromstring(text).find("Config")
    assert element is not None
    round_trip = ET.tostring(element, encoding="unicode")
    ok(pbx.api("ModifyConfig", ExtensionType="Line", ConfigXML=round_trip))
    assert pbx.stop() == 0, pbx.log_tail()
    pbx.start()
    assert get_config(pbx, "voipservice1", "Line") == line
    # The stored password is still the one configured: a phone cannot use it either.
    register_is_refused(pbx, sipp, LINE_USER, (LINE_USER, LINE_PASSWORD))
