"""Abuse protection end to end: REGISTER floods, concurrent call limits, HTTP API login bans.

All test traffic is loopback, which the default ignore list exempts, so these pypbx run
with an empty one; the attacker sends from 127.0.0.2 (Linux routes all of 127/8 to lo)
while the office's phones and the test harness use 127.0.0.1, a different source.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

from test_sip_access import finals, register_refused, shape

from peers.flows import (
    PbxFactory,
    SippFactory,
    caller,
    final_status,
    finish,
    listen,
    no_calls_left,
    register,
)
from peers.pbx import ADMIN_USER, PbxProcess
from peers.sipp import SippResult, TracedMessage
from peers.webhook import WebServer

ATTACKER = "127.0.0.2"
OFFICE = {"1000": "pw-1000", "1001": "pw-1001", "2000": "pw-2000", "2001": "pw-2001"}


def start(start_pbx: PbxFactory, **security: Any) -> PbxProcess:
    pbx = start_pbx(config={"security": {"auth_ban_ignore": [], **security}})
    for ext, password in OFFICE.items():
        pbx.add_sip_extension(ext, password)
    return pbx


def statuses(result: SippResult) -> list[int]:
    return [m.status for m in result.trace() if not m.sent and m.status and m.status >= 200]


def flood(pbx: PbxProcess, sipp: SippFactory, calls: int, rate: int) -> Any:
    """A REGISTER flood from the attacker's address (started, not awaited)."""
    return sipp(
        "register_flood",
        remote=pbx.sip_address,
        service="1000",
        calls=calls,
        timeout=30,
        extra=["-i", ATTACKER, "-r", str(rate)],
    ).start()


def office_call(pbx: PbxProcess, sipp: SippFactory) -> None:
    """1000 calls 2000, which answers; both registered from 127.0.0.1."""
    reg = register(pbx, sipp, "2000", OFFICE["2000"])
    uas = listen(sipp, "uas_answer", reg.local_port)
    register(pbx, sipp, "1000", OFFICE["1000"])
    uac = caller(pbx, sipp, "uac_call", "2000", "1000", OFFICE["1000"], pause_ms=500).start()
    finish(uac, uas)


# ---- request floods --------------------------------------------------------------------


def test_a_register_flood_gets_503_while_the_office_registers_and_calls(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start(start_pbx, register_rate=5.0, register_burst=10, flood_ban_after=0)
    attack = flood(pbx, sipp, calls=300, rate=100)
    time.sleep(0.5)  # the flood is on
    office_call(pbx, sipp)
    result = attack.wait()
    assert result.ok, result.describe()
    seen = statuses(result)
    assert len(seen) == 300, result.describe()
    # the burst and what the rate refilled during ~3 s were challenged; the rest refused
    assert 10 <= seen.count(401) <= 40, seen
    assert seen.count(503) == 300 - seen.count(401)
    assert seen[:10] == [401] * 10
    refusals = result.received(status=503)
    assert {m.header("Retry-After") for m in refusals} == {"1"}
    assert "flood from 127.0.0.2: more than 5 REGISTERs/s (burst 10)" in pbx.log_tail(2000)
    log = pbx.log_path.read_text()
    assert log.count("flood from 127.0.0.2") == 1  # logged once, not per request
    no_calls_left(pbx)


def test_the_api_agents_own_calls_are_never_rate_limited(
    start_pbx: PbxFactory, web: WebServer
) -> None:
    """With nothing exempt (auth_ban_ignore empty) and a tiny INVITE budget, the calls
    the API extensions place through pypbx's own agent are still all put through."""
    pbx = start(start_pbx, invite_rate=0.2, invite_burst=1, flood_ban_after=0)
    web.replies["/incoming"] = b"<Response><Hangup/></Response>"
    pbx.add_api_extension("9994")
    pbx.add_api_extension("9995", web.url("/incoming"))
    for _ in range(4):
        result = pbx.api("Call", Dialed="9995", ApiExtension="9994")
        assert result.code == 200, result.text
    for _ in range(4):
        web.wait_for("IncomingCall", timeout=10)
    no_calls_left(pbx, timeout=15)


def test_sustained_flooding_gets_the_source_banned(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start(
        start_pbx, register_rate=5.0, register_burst=10, flood_ban_after=1, flood_ban_seconds=60
    )
    attack = flood(pbx, sipp, calls=250, rate=100)
    result = attack.wait()
    assert result.ok, result.describe()
    seen = statuses(result)
    first_ban = seen.index(403)
    assert 503 in seen[:first_ban] and set(seen[first_ban:]) == {403}, seen
    assert len(seen) - first_ban > 100  # banned after about a second of flooding
    assert "banned 127.0.0.2 for 60 s: flooding for 1 s" in pbx.log_path.read_text()
    office_call(pbx, sipp)  # 127.0.0.1 is not 127.0.0.2


def header_names(message: TracedMessage) -> list[str]:
    return [line.partition(":")[0].strip() for line in message.header_lines]


def test_no_extension_enumeration_with_the_limits_on(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    """test_sip_access's checks again, with the flood limits applying to 127.0.0.1: REGISTER
    and INVITE answer an unknown user, a disabled one and a wrong password alike."""
    pbx = start(start_pbx)
    assert pbx.modify_sip_extension("2001", Enabled="false").code == 200
    cases = [("1000", "guess"), ("4711", "guess"), ("2001", OFFICE["2001"])]
    registers = []
    invites = []
    for user, password in cases:
        challenge, refusal = finals(register_refused(pbx, sipp, user, password))
        registers.append((shape(challenge), shape(refusal)))
        result = caller(pbx, sipp, "uac_refused", "2000", user, password).run()
        assert result.ok, result.describe()
        invites.append([(m.first_line, header_names(m)) for m in finals(result)])
    assert registers[0][1][0] == "SIP/2.0 403 Forbidden"
    assert registers[1:] == [registers[0]] * 2
    assert [line for line, _ in invites[0]] == [
        "SIP/2.0 407 Proxy Authentication Required",
        "SIP/2.0 403 Forbidden",
    ]
    assert invites[1:] == [invites[0]] * 2
    options = sipp("options", remote=pbx.sip_address).run()
    assert options.ok, options.describe()


# ---- concurrent call limits ------------------------------------------------------------


def callee(pbx: PbxProcess, sipp: SippFactory, ext: str, calls: int) -> Any:
    reg = register(pbx, sipp, ext, OFFICE[ext])
    uas = sipp("uas_answer", local_port=reg.local_port, rtp_echo=True, calls=calls, timeout=60)
    uas.start().wait_until_listening()
    return uas


def talking(pbx: PbxProcess, count: int) -> None:
    pbx.wait_for_calls(
        lambda calls: sum(c.get("CallState") == "InCall" for c in calls) == count, timeout=15
    )


def refused(pbx: PbxProcess, sipp: SippFactory, ext: str, number: str) -> int:
    run = caller(pbx, sipp, "uac_refused", number, ext, OFFICE[ext]).run()
    assert run.ok, run.describe()
    return final_status(run)


def test_max_calls_refuses_the_third_call_until_one_ends(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start(start_pbx, max_calls=2)
    uas = callee(pbx, sipp, "2000", calls=3)
    short = caller(pbx, sipp, "uac_call", "2000", "1000", OFFICE["1000"], pause_ms=4000).start()
    long = caller(pbx, sipp, "uac_call", "2000", "1001", OFFICE["1001"], pause_ms=12000).start()
    talking(pbx, 2)
    assert refused(pbx, sipp, "1000", "2000") == 503
    finish(short)
    again = caller(pbx, sipp, "uac_call", "2000", "1000", OFFICE["1000"], pause_ms=500).run()
    assert again.ok, again.describe()
    finish(long, uas)
    no_calls_left(pbx)
    pbx.stop()
    rows = pbx.history()
    # the refused call never became a call: no row, like an INVITE refused for its password
    assert sorted((r.source, r.state) for r in rows) == [
        ("1000", "CallerHungUp"),
        ("1000", "CallerHungUp"),
        ("1001", "CallerHungUp"),
    ], "\n".join(map(str, rows))


def test_extension_limits_make_caller_and_callee_busy(
    start_pbx: PbxFactory, sipp: SippFactory
) -> None:
    pbx = start(start_pbx, max_calls_per_extension=2)
    pbx.add_config(
        "RingGroup", "RingGroupExtensionInfo", ID="600", Enabled="true", Members="2000,2001"
    )
    uas = callee(pbx, sipp, "2000", calls=3)
    backup = callee(pbx, sipp, "2001", calls=1)
    first = caller(pbx, sipp, "uac_call", "2000", "1000", OFFICE["1000"], pause_ms=4000).start()
    second = caller(pbx, sipp, "uac_call", "2000", "1000", OFFICE["1000"], pause_ms=12000)
    second.start()
    talking(pbx, 2)  # 1000 and 2000 are both in two calls
    assert refused(pbx, sipp, "1000", "2001") == 486  # the caller is at its limit
    assert refused(pbx, sipp, "1001", "2000") == 486  # the callee is
    group = caller(pbx, sipp, "uac_call", "600", "1001", OFFICE["1001"], pause_ms=500).run()
    assert group.ok, group.describe()  # the ring group rang 2001 only
    finish(first)
    again = caller(pbx, sipp, "uac_call", "2000", "1001", OFFICE["1001"], pause_ms=500).run()
    assert again.ok, again.describe()
    finish(second, uas, backup)
    no_calls_left(pbx)
    pbx.stop()
    rows = [(r.source, r.destination, r.state) for r in pbx.history()]
    assert rows == [
        ("1000", "2000", "CallerHungUp"),
        ("1000", "2000", "CallerHungUp"),
        ("1001", "2000", "Busy"),  # the callee was busy: a call that ended Busy
        ("1001", "2001", "CallerHungUp"),
        ("1001", "2000", "CallerHungUp"),
    ], rows


# ---- HTTP API login bans ---------------------------------------------------------------


def api_from(pbx: PbxProcess, source: str, **fields: str) -> tuple[int, str]:
    """POST a command from `source` (a loopback address of our choice): (Code, Message)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", pbx.http_port, timeout=10, source_address=(source, 0)
    )
    try:
        body = urllib.parse.urlencode({"command": "ListActiveCalls", **fields})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", "/", body=body, headers=headers)
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    root = ET.fromstring(text)  # our own server on loopback: trusted input
    return int(root.findtext("Code") or 0), root.findtext("Message") or ""


def test_api_logins_are_banned_after_wrong_passwords(start_pbx: PbxFactory) -> None:
    pbx = start(start_pbx, auth_ban_failures=3, auth_ban_window=60.0, auth_ban_seconds=3.0)
    right = {"Username": ADMIN_USER, "Password": pbx.admin_password}
    wrong = {"Username": ADMIN_USER, "Password": "guess"}
    refusal = (305, "Authentication failed, bad username or password")
    assert api_from(pbx, ATTACKER) == (304, "Authentication required")
    assert api_from(pbx, ATTACKER, **right)[0] == 200
    for _ in range(3):
        assert api_from(pbx, ATTACKER, **wrong) == refusal
    banned_at = time.monotonic()
    assert api_from(pbx, ATTACKER, **right) == refusal  # told apart from nothing
    assert api_from(pbx, ATTACKER) == (304, "Authentication required")
    assert pbx.api("ListActiveCalls").code == 200  # 127.0.0.1 is another address
    assert "banned 127.0.0.2 for 3 s after 3 failed authentications" in pbx.log_path.read_text()
    time.sleep(max(0.0, banned_at + 3.2 - time.monotonic()))
    assert api_from(pbx, ATTACKER, **right)[0] == 200
