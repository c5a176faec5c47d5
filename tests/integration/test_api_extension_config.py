"""API extensions configured over the HTTP API of a running pypbx (spec 7, 8.17-8.22).

An API extension is added, read, listed, modified and removed with the same commands as a
phone extension (`ExtensionType=API`, `knownType="APIExtensionInfo"`); its configuration
survives a restart; and because it has no SIP credentials no phone can register as its
number, neither with a guessed password nor with another extension's valid credentials.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from peers.flows import PbxFactory, SippFactory, register
from peers.pbx import ApiResult, PbxProcess

API_EXT = "9994"
PHONE = ("1000", "pw-1000")
FULL = {
    "ID": API_EXT,
    "Enabled": "true",
    "IncomingCallUrl": "http://127.0.0.1:9/calls?a=1&b=2",
    "AllowedUsers": "admin, alice",
    "DefaultCallerId": "+3612345",
    "DefaultDisplayName": "Help desk",
    "UserID": "user9994",
}
ELEMENT_ORDER = [
    "IncomingCallUrl",
    "IncomingSmsUrl",
    "AllowedUsers",
    "DefaultCallerId",
    "DefaultDisplayName",
    "Enabled",
    "ID",
    "UserID",
]


def api_config(**fields: str) -> str:
    config = ET.Element("Config", knownType="APIExtensionInfo")
    for tag, text in fields.items():
        ET.SubElement(config, tag).text = text
    return ET.tostring(config, encoding="unicode")


def config_command(pbx: PbxProcess, command: str, **fields: str) -> ApiResult:
    return pbx.api(command, ExtensionType="API", ConfigXML=api_config(**fields))


def get_config(pbx: PbxProcess, ext: str) -> list[tuple[str, str]]:
    result = pbx.api("GetConfig", ExtensionId=ext)
    assert result.code == 200, result.text
    config = result.root.find("Config")
    assert config is not None, result.text
    assert config.get("knownType") == "APIExtensionInfo", result.text
    return [(child.tag, child.text or "") for child in config]


def listed(pbx: PbxProcess) -> dict[str, tuple[str, str]]:
    """ListExtensions (XE dialect) as {number: (Type, State)}."""
    result = pbx.api("ListExtensions")
    assert result.code == 200, result.text
    return {
        row["PhoneNumber"]: (row["Type"], row["State"])
        for row in result.rows("Extensions", "ExtensionSummary")
    }


def register_is_refused(pbx: PbxProcess, sipp: SippFactory, to: str, auth: tuple[str, str]) -> None:
    """REGISTER for `to` authenticating as `auth`: challenged (401), then refused (403)."""
    run = sipp("register_rejected", remote=pbx.sip_address, service=to, auth=auth)
    result = run.run()
    assert result.ok, result.describe()
    statuses = [m.status for m in result.trace() if not m.sent and m.status and m.status >= 200]
    assert statuses == [401, 403], f"{statuses}\n{result.describe()}"


def test_api_extension_life_cycle_and_restart(start_pbx: PbxFactory, sipp: SippFactory) -> None:
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

    assert config_command(pbx, "AddConfig", **FULL).code == 200
    again = config_command(pbx, "AddConfig", **FULL)
    assert (again.code, again.message) == (703, "Extension configuration already exists")
    assert get_config(pbx, API_EXT) == [
        ("IncomingCallUrl", "http://127.0.0.1:9/calls?a=1&b=2"),
        ("IncomingSmsUrl", ""),
        ("AllowedUsers", "admin,alice"),
        ("DefaultCallerId", "+3612345"),
        ("DefaultDisplayName", "Help desk"),
        ("Enabled", "true"),
        ("ID", API_EXT),
        ("UserID", "user9994"),
    ]
    pbx.add_sip_extension(*PHONE)
    assert listed(pbx) == {"1000": ("SIP", "Disconnected"), API_EXT: ("API", "Connected")}
    filtered = pbx.api("ListExtensions", Type="api").rows("Extensions", "ExtensionSummary")
    assert [row["Id"] for row in filtered] == [API_EXT]

    # Partial update: only the elements sent change; an empty one clears its value.
    result = config_command(pbx, "ModifyConfig", ID=API_EXT, Enabled="false", DefaultDisplayName="")
    assert result.code == 200, result.text
    modified = get_config(pbx, API_EXT)
    assert [tag for tag, _ in modified] == ELEMENT_ORDER
    assert dict(modified)["Enabled"] == "false"
    assert dict(modified)["DefaultDisplayName"] == ""
    assert dict(modified)["AllowedUsers"] == "admin,alice"
    assert listed(pbx)[API_EXT] == ("API", "Disconnected")

    bad = config_command(pbx, "ModifyConfig", ID=API_EXT, IncomingCallUrl="ftp://x/")
    assert (bad.code, bad.message) == (702, "Invalid configuration for type 'API'")
    unknown = config_command(pbx, "ModifyConfig", ID="9995", Enabled="true")
    assert (unknown.code, unknown.message) == (701, "Configuration for type '9995' not found")
    assert get_config(pbx, API_EXT) == modified

    assert pbx.stop() == 0, pbx.log_tail()
    pbx.start()
    assert get_config(pbx, API_EXT) == modified
    assert listed(pbx) == {"1000": ("SIP", "Disconnected"), API_EXT: ("API", "Disconnected")}

    assert config_command(pbx, "ModifyConfig", ID=API_EXT, Enabled="true").code == 200
    assert listed(pbx)[API_EXT] == ("API", "Connected")
    removed = pbx.remove_extension(API_EXT)
    assert removed.code == 200, removed.text
    assert listed(pbx) == {"1000": ("SIP", "Disconnected")}
    gone = pbx.api("GetConfig", ExtensionId=API_EXT)
    assert (gone.code, gone.message) == (701, f"Configuration for type '{API_EXT}' not found")
    assert pbx.remove_extension(API_EXT).code == 701


def test_no_phone_can_register_as_an_api_extension(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*PHONE)
    assert config_command(pbx, "AddConfig", **FULL).code == 200

    register_is_refused(pbx, sipp, API_EXT, (API_EXT, API_EXT))
    register_is_refused(pbx, sipp, API_EXT, (API_EXT, ""))
    # Valid credentials of another extension do not bind the API number either.
    register_is_refused(pbx, sipp, API_EXT, PHONE)
    assert listed(pbx)[API_EXT] == ("API", "Connected")

    # A number that was a registered phone and became an API extension keeps nothing of it.
    pbx.add_sip_extension("9995", "pw-9995")
    register(pbx, sipp, "9995", "pw-9995")
    assert pbx.extensions()["9995"] == "Connected"
    switch = config_command(pbx, "ModifyConfig", ID="9995", Enabled="true")
    assert (switch.code, switch.message) == (702, "Invalid configuration for type 'API'")
    assert pbx.remove_extension("9995").code == 200
    assert config_command(pbx, "AddConfig", ID="9995", Enabled="false").code == 200
    register_is_refused(pbx, sipp, "9995", ("9995", "pw-9995"))
    assert listed(pbx)["9995"] == ("API", "Disconnected")
    assert pbx.stop() == 0, pbx.log_tail()
    pbx.start()
    register_is_refused(pbx, sipp, API_EXT, (API_EXT, API_EXT))
