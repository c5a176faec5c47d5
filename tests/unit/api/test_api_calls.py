"""ListActiveCalls (spec 8.12) in both dialects, and Hangup (spec 8.7)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from api_support import Client, ClientFactory, FakePbx, FakeStore, block, envelope

from pypbx.api.settings import ApiSettings
from pypbx.api.timefmt import o10_seconds, plain_timestamp, xe_seconds, xe_timestamp
from pypbx.pbx.control import ActiveCallInfo, InappropriateStateError
from pypbx.pbx.states import CallState
from pypbx.store.records import OfficeUserRecord

CEST = timezone(timedelta(hours=2))
OK = envelope(200, "Command successfully executed")

XE_EXAMPLE = """
  <ActiveCalls>
    <CallInfo>
      <CallState>InCall</CallState>
      <CallId>uteom</CallId>
      <Source>1000</Source>
      <CallerId>John Smith</CallerId>
      <Destination>1001</Destination>
      <StartTime>2013-07-01T10:49:07.9558+02:00</StartTime>
      <RingDuration>2</RingDuration>
      <TalkDuration>956</TalkDuration>
    </CallInfo>
  </ActiveCalls>
"""

O10_EXAMPLE = """
  <ActiveCalls>
    <Call>
      <CallId>1vQHKd</CallId>
      <Source>103</Source>
      <CallerId>103</CallerId>
      <Destination>101</Destination>
      <CallerDialed>101</CallerDialed>
      <CalleeDialed>101</CalleeDialed>
      <StartTime>2019-04-09 10:34:07</StartTime>
      <RingDuration>0.749</RingDuration>
      <TalkDuration>0.000</TalkDuration>
      <CallState>Ringing</CallState>
    </Call>
  </ActiveCalls>
"""


def xe_call() -> ActiveCallInfo:
    return ActiveCallInfo(
        call_id="uteom",
        state=CallState.IN_CALL,
        source="1000",
        caller_id="John Smith",
        destination="1001",
        caller_dialed="1001",
        callee_dialed="1001",
        # Stored in UTC as the PBX keeps it; shown in the configured local zone.
        start_time=datetime(2013, 7, 1, 8, 49, 7, 955800, tzinfo=UTC),
        ring_duration=2.31,
        talk_duration=956.98,
    )


def o10_call() -> ActiveCallInfo:
    return ActiveCallInfo(
        call_id="1vQHKd",
        state=CallState.RINGING,
        source="103",
        caller_id="103",
        destination="101",
        caller_dialed="101",
        callee_dialed="101",
        start_time=datetime(2019, 4, 9, 10, 34, 7, 512000, tzinfo=CEST),
        ring_duration=0.7494,
        talk_duration=0.0,
    )


@pytest.fixture
async def local(make_client: ClientFactory) -> Client:
    return await make_client(ApiSettings(auth_required=False, timezone=CEST))


async def test_xe_example(local: Client, pbx: FakePbx) -> None:
    pbx.calls = [xe_call()]
    resp = await local.get("/?command=ListActiveCalls")
    assert await resp.text() == envelope(200, "Command successfully executed", *block(XE_EXAMPLE))


async def test_o10_example(
    make_client: ClientFactory, pbx: FakePbx, store: FakeStore, password_hashes: dict[str, str]
) -> None:
    store.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"])
    client = await make_client(ApiSettings(timezone=CEST))
    pbx.calls = [o10_call()]
    resp = await client.get("/api?command=ListActiveCalls&Username=HTTP_User_1&Password=qwe123")
    assert await resp.text() == envelope(200, "Command successfully executed", *block(O10_EXAMPLE))


@pytest.mark.parametrize("path", ["/", "/api"])
async def test_no_calls_is_an_empty_container(client: Client, path: str) -> None:
    resp = await client.get(f"{path}?command=ListActiveCalls")
    assert await resp.text() == envelope(200, "Command successfully executed", "  <ActiveCalls />")


async def test_only_live_calls_by_start_time(local: Client, pbx: FakePbx) -> None:
    first, second = xe_call(), o10_call()
    done = replace(first, call_id="gone", state=CallState.COMPLETED)
    pbx.calls = [second, done, first]
    text = await (await local.get("/?command=ListActiveCalls")).text()
    assert text.index("<CallId>uteom</CallId>") < text.index("<CallId>1vQHKd</CallId>")
    assert "gone" not in text


async def test_values_are_escaped(local: Client, pbx: FakePbx) -> None:
    pbx.calls = [replace(xe_call(), caller_id="Smith & <Co>")]
    text = await (await local.get("/?command=ListActiveCalls")).text()
    assert "<CallerId>Smith &amp; &lt;Co&gt;</CallerId>" in text


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        (
            datetime(2013, 7, 1, 10, 49, 7, 955800, tzinfo=CEST),
            CEST,
            "2013-07-01T10:49:07.9558+02:00",
        ),
        (datetime(2013, 7, 1, 10, 49, 7, tzinfo=CEST), CEST, "2013-07-01T10:49:07+02:00"),
        (datetime(2013, 7, 1, 10, 49, 7, 1, tzinfo=CEST), CEST, "2013-07-01T10:49:07.000001+02:00"),
        (
            datetime(2013, 7, 1, 10, 49, 7, 500000, tzinfo=UTC),
            UTC,
            "2013-07-01T10:49:07.5+00:00",
        ),
        (
            datetime(2013, 1, 1, 0, 30, tzinfo=UTC),
            timezone(timedelta(hours=-5, minutes=-30)),
            "2012-12-31T19:00:00-05:30",
        ),
    ],
)
def test_xe_timestamp(moment: datetime, zone: timezone, expected: str) -> None:
    assert xe_timestamp(moment, zone) == expected


def test_plain_timestamp_and_durations() -> None:
    moment = datetime(2019, 4, 9, 8, 34, 7, 999999, tzinfo=UTC)
    assert plain_timestamp(moment, CEST) == "2019-04-09 10:34:07"
    assert xe_seconds(2.999) == "2"
    assert xe_seconds(-0.5) == "0"
    assert o10_seconds(0.7494) == "0.749"
    assert o10_seconds(0.0) == "0.000"
    assert o10_seconds(956.0) == "956.000"


async def test_hangup_post_example(client: Client, pbx: FakePbx) -> None:
    pbx.calls = [xe_call(), replace(xe_call(), call_id="23Xdz7")]
    resp = await client.post(
        "/",
        data=b"command=Hangup&CallId=23Xdz7",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert await resp.text() == OK
    assert pbx.hung_up == ["23Xdz7"]


async def test_hangup_o10_form(
    make_client: ClientFactory, pbx: FakePbx, store: FakeStore, password_hashes: dict[str, str]
) -> None:
    store.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"])
    client = await make_client(ApiSettings())
    pbx.calls = [replace(o10_call(), call_id="Nt3uh")]
    resp = await client.get("/api?command=Hangup&CallId=Nt3uh&Username=HTTP_User_1&Password=qwe123")
    assert await resp.text() == OK
    assert pbx.hung_up == ["Nt3uh"]


@pytest.mark.parametrize("call_id", ["XzeOK", "g67th7", "xzeok"])
async def test_hangup_unknown_call_601(client: Client, pbx: FakePbx, call_id: str) -> None:
    pbx.calls = [xe_call()]  # id uteom only; ids compare case-sensitively
    resp = await client.get(f"/?command=Hangup&CallId={call_id}")
    assert await resp.text() == envelope(601, f"Call not found with ID '{call_id}'")
    assert pbx.hung_up == []


async def test_hangup_601_echoes_escaped_id(client: Client) -> None:
    resp = await client.get("/?command=Hangup&CallId=%3Cb%3E")
    assert await resp.text() == envelope(601, "Call not found with ID '&lt;b&gt;'")


async def test_hangup_inappropriate_state_303(client: Client, pbx: FakePbx) -> None:
    pbx.hangup_errors["uteom"] = InappropriateStateError("final")
    resp = await client.get("/?command=hangup&callid=uteom")
    assert await resp.text() == envelope(303, "Command 'Hangup' cannot be used here")


@pytest.mark.parametrize(
    "query", ["command=Hangup", "command=Hangup&CallId=", "command=Hangup&CallId=+"]
)
async def test_hangup_missing_call_id_302(client: Client, query: str) -> None:
    resp = await client.get(f"/?{query}")
    assert await resp.text() == envelope(
        302, "Missing or invalid parameter 'CallId' for command 'Hangup'"
    )
