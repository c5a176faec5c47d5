"""Contact ID alarms end to end: one API extension sends an alarm (the SendAlarmNotification
command, or the OzML verb), another receives it with ReceiveAlarmNotification; the handshake,
the 16 DTMF digits and the kissoff travel as real RTP through pypbx's B2BUA.

The receiving script reports what it decoded with SendSms to a third API extension, whose
IncomingSMS reaches the test's web server: a call-less notification, so it arrives even when
the panel has already hung up after the kissoff (as panels do).
"""

from __future__ import annotations

import time
from typing import Any

from peers.flows import (
    PbxFactory,
    PhoneFactory,
    SippFactory,
    caller,
    finish,
    no_calls_left,
    start_callee,
)
from peers.pbx import PbxProcess
from peers.webhook import Notification, WebServer

RECEIVER = "9001"  # the receiving centre
PANEL = "9002"  # the alarm panel
REPORTS = "9009"  # gets the receiving script's report as IncomingSMS

FIELDS = ("account", "eventqualifier", "eventcode", "eventname", "partition", "zone")
REPORT = ";".join(f"{name}=${name}" for name in FIELDS)
RECEIVE = f"""<?xml version="1.0"?>
<Response>
  <ReceiveAlarmNotification>
    <Received>
      <SendSms Recipient="{REPORTS}" Message="{REPORT}"></SendSms>
    </Received>
  </ReceiveAlarmNotification>
</Response>""".encode()


def centre(pbx: PbxProcess, web: WebServer) -> None:
    """The receiving centre's API extension and the one its reports go to."""
    web.replies["/incoming"] = RECEIVE
    pbx.add_api_extension(RECEIVER, web.url("/incoming"))
    pbx.add_api_extension(REPORTS, web.url("/reports"))


def report(web: WebServer, timeout: float = 30.0) -> dict[str, str]:
    """The receiving script's report: the decoded alarm's variables."""
    note = web.wait_for("IncomingSMS", timeout)
    assert note.path == "/reports", note
    return dict(pair.split("=", 1) for pair in note.field("Message").split(";"))


def result(web: WebServer, timeout: float = 30.0) -> dict[str, str]:
    note = web.wait_for("AlarmNotificationResult", timeout)
    assert note.path == "/result", note
    return dict(note.fields)


def test_alarm_command_between_two_api_extensions(pbx: PbxProcess, web: WebServer) -> None:
    centre(pbx, web)
    pbx.add_api_extension(PANEL)
    params: dict[str, Any] = {
        "PhoneNumber": RECEIVER,
        "ApiExtension": PANEL,
        "ResultUrl": web.url("/result"),
        "AccountNumber": "1234",
        "EventCode": "110",
        "PartitionNumber": "1",
        " ZoneNumber": "10",  # spec 8.16: a stray space before a name must not matter
    }
    sent = time.monotonic()
    answer = pbx.api("SendAlarmNotification", **params)
    assert (answer.code, answer.message) == (200, "Command successfully executed"), answer.text
    assert time.monotonic() - sent < 2.0  # answered once the call is started, not at its end
    incoming = dict(web.wait_for("IncomingCall").fields)
    assert (incoming["Caller"], incoming["Dialed"]) == (PANEL, RECEIVER)
    assert report(web) == {
        "account": "1234",
        "eventqualifier": "NewEvent",
        "eventcode": "110",
        "eventname": "Fire",
        "partition": "01",
        "zone": "010",
    }
    outcome = result(web)
    assert outcome == {
        "NotificationName": "AlarmNotificationResult",
        "PhoneNumber": RECEIVER,
        "AccountNumber": "1234",
        "EventCode": "110",
        "Result": "Success",
        "Reason": "",
    }
    no_calls_left(pbx)
    history = pbx.api("GetCallHistory", CallId=incoming["CallId"])
    assert history.root.findtext("NumberOfCalls") == "1", history.text
    assert history.root.findtext("Calls/Call/Source") == PANEL, history.text


SEND_FROM_SCRIPT = """<Response>
  <SendAlarmNotification PhoneNumber="9001" AccountNumber="4321" EventQualifier="NewRestore"
    EventCode="130" PartitionNumber="12" ZoneNumber="7" ResultUrl="{url}"/>
  <Delay>20</Delay>
</Response>"""


def test_alarm_verb_in_a_script(pbx: PbxProcess, web: WebServer, sipp: SippFactory) -> None:
    """A phone calls an API extension whose script sends an alarm from that extension."""
    centre(pbx, web)
    web.replies["/panel"] = SEND_FROM_SCRIPT.format(url=web.url("/result")).encode()
    pbx.add_api_extension(PANEL, web.url("/panel"))
    pbx.add_sip_extension("1000", "pw-1000")
    phone = caller(pbx, sipp, "uac_call", PANEL, "1000", "pw-1000", pause_ms=3000).start()
    assert report(web) == {
        "account": "4321",
        "eventqualifier": "NewRestore",
        "eventcode": "130",
        "eventname": "Burglary",
        "partition": "12",
        "zone": "007",
    }
    outcome = result(web)
    assert (outcome["Result"], outcome["AccountNumber"], outcome["EventCode"]) == (
        "Success",
        "4321",
        "130",
    )
    incoming = web.wait_for("IncomingCall")  # the first one: the phone's call to the panel
    alarm_call = [n for n in web.named("IncomingCall") if n.field("Dialed") == RECEIVER]
    assert [n.field("Caller") for n in alarm_call] == [PANEL]
    assert incoming.field("Caller") == "1000"
    finish(phone)
    no_calls_left(pbx)


def test_a_line_that_never_handshakes_fails(
    pbx: PbxProcess, web: WebServer, sipp: SippFactory
) -> None:
    """The number answers (and echoes what it hears) but is no receiving centre."""
    pbx.add_api_extension(PANEL)
    pbx.add_sip_extension("2000", "pw-2000")
    uas = start_callee(pbx, sipp, "uas_answer", "2000", "pw-2000")
    answer = pbx.api(
        "SendAlarmNotification",
        PhoneNumber="2000",
        ApiExtension=PANEL,
        ResultUrl=web.url("/result"),
        AccountNumber="1234",
        EventCode="110",
        PartitionNumber="1",
        ZoneNumber="10",
    )
    assert answer.code == 200, answer.text
    started = time.monotonic()
    outcome = result(web, timeout=30)
    assert (outcome["Result"], outcome["Reason"]) == ("Failed", "no handshake")
    assert 8.0 <= time.monotonic() - started <= 14.0  # the 10 s handshake timeout
    finish(uas)  # hung up by pypbx after the failure
    no_calls_left(pbx)


def test_unreachable_number_fails(pbx: PbxProcess, web: WebServer) -> None:
    pbx.add_api_extension(PANEL)
    answer = pbx.api(
        "SendAlarmNotification",
        PhoneNumber="5555",
        ApiExtension=PANEL,
        ResultUrl=web.url("/result"),
        AccountNumber="1234",
        EventCode="110",
        PartitionNumber="1",
        ZoneNumber="10",
    )
    assert answer.code == 200, answer.text
    outcome = result(web)
    assert (outcome["Result"], outcome["Reason"]) == ("Failed", "call failed (SIP 404)")


def test_parameters_are_checked(pbx: PbxProcess, web: WebServer) -> None:
    pbx.add_api_extension(PANEL)
    pbx.add_sip_extension("3000", "pw-3000")
    good = {
        "PhoneNumber": "3000",
        "ApiExtension": PANEL,
        "AccountNumber": "1234",
        "EventCode": "110",
        "PartitionNumber": "1",
        "ZoneNumber": "10",
    }

    def refused(**change: str | None) -> tuple[int, str]:
        params: dict[str, Any] = {k: v for k, v in (good | change).items() if v is not None}
        answer = pbx.api("SendAlarmNotification", **params)
        return answer.code, answer.message

    def bad(name: str) -> tuple[int, str]:
        return 302, f"Missing or invalid parameter '{name}' for command 'SendAlarmNotification'"

    assert refused(PhoneNumber=None) == bad("PhoneNumber")
    assert refused(PhoneNumber="12 34") == bad("PhoneNumber")
    assert refused(AccountNumber=None) == bad("AccountNumber")
    assert refused(AccountNumber="123") == bad("AccountNumber")
    assert refused(AccountNumber="12345") == bad("AccountNumber")
    assert refused(EventCode="1100") == bad("EventCode")
    assert refused(EventCode="fire") == bad("EventCode")
    assert refused(PartitionNumber="100") == bad("PartitionNumber")
    assert refused(ZoneNumber=None) == bad("ZoneNumber")
    assert refused(ZoneNumber="1000") == bad("ZoneNumber")
    assert refused(EventQualifier="Alarm") == bad("EventQualifier")
    assert refused(ResultUrl="ftp://example.com/x") == bad("ResultUrl")
    assert refused(ApiExtension=None) == bad("ApiExtension")  # no default API extension
    assert refused(ApiExtension="9990")[0] == 401
    assert refused(ApiExtension="3000")[0] == 401  # a SIP extension cannot place it
    assert pbx.active_calls() == []
    assert web.named("AlarmNotificationResult") == []


def test_alias_and_default_api_extension(start_pbx: PbxFactory, web: WebServer) -> None:
    """`Phone number` is accepted for PhoneNumber, and the configured default API extension
    places the call when ApiExtension is left out."""
    pbx = start_pbx(config={"http_api": {"default_api_extension": PANEL}})
    pbx.add_api_extension(PANEL)
    centre(pbx, web)
    alias: dict[str, Any] = {"Phone number": RECEIVER}
    answer = pbx.api(
        "SendAlarmNotification",
        **alias,
        ResultUrl=web.url("/result"),
        AccountNumber="0042",
        EventCode="602",
        PartitionNumber="0",
        ZoneNumber="0",
        EventQualifier="statusreport",
    )
    assert answer.code == 200, answer.text
    assert report(web)["eventname"] == "Periodic test report"
    assert result(web)["Result"] == "Success"
    incoming: Notification = web.wait_for("IncomingCall")
    assert incoming.field("Caller") == PANEL


def test_a_phone_sends_the_message_as_rfc4733_events(
    pbx: PbxProcess, web: WebServer, make_phone: PhoneFactory
) -> None:
    """A softphone standing in for a panel keys the 16 digits as telephone-events: the
    receiving script takes them as well as in-band tones."""
    centre(pbx, web)
    pbx.add_sip_extension("1000", "pw-1000")
    phone = make_phone("1000", tone=440.0, registrar=pbx.sip_address, password="pw-1000")
    phone.dial(f"sip:{RECEIVER}@{pbx.sip_address}")
    phone.wait_for_event("CALL_ESTABLISHED", 15)
    time.sleep(1.6)  # the line settles (1 s) and the handshake is sent (0.3 s)
    phone.send_dtmf("1234181131010158")  # burglary, perimeter, zone 15
    assert report(web) == {
        "account": "1234",
        "eventqualifier": "NewEvent",
        "eventcode": "131",
        "eventname": "Perimeter",
        "partition": "01",
        "zone": "015",
    }
    phone.wait_for_event("CALL_CLOSED", 15)  # the receiving script ends: hung up
    no_calls_left(pbx)
