"""The global notification URLs can be set over the API (ExtensionType `HttpApi`).

The TOML `[http_api]` URLs are the defaults; a stored `HttpApi` configuration replaces them
at once (no restart), survives a restart, turns the notifications off when disabled, and
gives the TOML values back when removed. Calls are SIPp caller -> pypbx -> SIPp callee and
the notifications are what a local web server actually received.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from peers.flows import PbxFactory, SippFactory, caller, finish, listen, no_calls_left, register
from peers.pbx import ApiResult, PbxProcess
from peers.webhook import WebServer

CALLER = ("1000", "pw-1000")
CALLEE = ("2000", "pw-2000")
KNOWN_TYPE = "HttpApiSettingsInfo"


def http_api_config(command: str, pbx: PbxProcess, **fields: str) -> ApiResult:
    config = ET.Element("Config", knownType=KNOWN_TYPE)
    for tag, text in {"ID": "HttpApi", **fields}.items():
        ET.SubElement(config, tag).text = text
    xml = ET.tostring(config, encoding="unicode")
    return pbx.api(command, ExtensionType="HttpApi", ConfigXML=xml)


def call_once(pbx: PbxProcess, sipp: SippFactory, callee_port: int) -> None:
    uas = listen(sipp, "uas_answer", callee_port)
    uac = caller(pbx, sipp, "uac_call", CALLEE[0], *CALLER, pause_ms=300).start()
    finish(uac, uas)
    no_calls_left(pbx)


def changed_paths(web: WebServer) -> set[str]:
    return {n.path for n in web.named("CallChanged")}


def wait_for_path(web: WebServer, path: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while path not in changed_paths(web):
        assert time.monotonic() < deadline, f"no CallChanged at {path}: {web.received}"
        time.sleep(0.05)


def test_stored_urls_replace_the_toml_ones_until_removed(
    start_pbx: PbxFactory, sipp: SippFactory, web: WebServer
) -> None:
    pbx = start_pbx(config={"http_api": {"call_changed_url": web.url("/toml")}})
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    callee_port = register(pbx, sipp, *CALLEE).local_port

    call_once(pbx, sipp, callee_port)
    wait_for_path(web, "/toml")

    added = http_api_config("AddConfig", pbx, CallChangedUrl=web.url("/stored"))
    assert added.code == 200, added.text
    shown = pbx.api("GetConfig", ExtensionId="HttpApi")
    assert shown.root.findtext("Config/CallChangedUrl") == web.url("/stored")
    assert shown.root.findtext("Config/RouteInterceptionUrl") == ""
    assert shown.root.findtext("Config/Enabled") == "true"
    assert "HttpApi" not in pbx.extensions()
    web.received.clear()
    call_once(pbx, sipp, callee_port)
    wait_for_path(web, "/stored")
    assert changed_paths(web) == {"/stored"}

    # kept across a restart
    assert pbx.stop() == 0, pbx.log_tail()
    pbx.start()
    web.received.clear()
    call_once(pbx, sipp, callee_port)
    wait_for_path(web, "/stored")
    assert changed_paths(web) == {"/stored"}

    # disabled: no CallChanged at all (the stored setting wins over TOML while it exists)
    modified = http_api_config("ModifyConfig", pbx, Enabled="false")
    assert modified.code == 200, modified.text
    web.received.clear()
    call_once(pbx, sipp, callee_port)
    time.sleep(1.0)  # would-be notifications are sent at once; give them time to show up
    assert changed_paths(web) == set()

    # removed: the TOML URL is back
    assert pbx.remove_extension("HttpApi").code == 200
    call_once(pbx, sipp, callee_port)
    wait_for_path(web, "/toml")


def test_route_interception_url_set_over_the_api(
    pbx: PbxProcess, sipp: SippFactory, web: WebServer
) -> None:
    pbx.add_sip_extension(*CALLER)
    pbx.add_sip_extension(*CALLEE)
    pbx.add_sip_extension("3000", "pw-3000")
    callee_port = register(pbx, sipp, "3000", "pw-3000").local_port
    web.replies["/route"] = b'<Response><Route Destination="3000"/></Response>'
    added = http_api_config("AddConfig", pbx, RouteInterceptionUrl=web.url("/route"))
    assert added.code == 200, added.text
    # 2000 is not even registered: the application routes the call to 3000
    call_once(pbx, sipp, callee_port)
    fields = dict(web.wait_for("RoutingInterception").fields)
    assert fields["OriginalDialedNumber"] == "2000"


def test_http_api_config_is_checked(pbx: PbxProcess) -> None:
    bad_id = pbx.api(
        "AddConfig",
        ExtensionType="HttpApi",
        ConfigXML=f'<Config knownType="{KNOWN_TYPE}"><ID>other</ID></Config>',
    )
    assert bad_id.code == 702, bad_id.text
    bad_url = http_api_config("AddConfig", pbx, CallChangedUrl="ftp://x/y")
    assert bad_url.code == 702, bad_url.text
    assert http_api_config("AddConfig", pbx).code == 200
    assert http_api_config("AddConfig", pbx).code == 703
