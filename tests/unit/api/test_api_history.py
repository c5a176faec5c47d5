"""GetCallHistory / ListCallHistory (spec 8.13) over HTTP against the real SQLite store.

Times are stored in UTC and shown in the API's zone, fixed here at UTC+02:00 so that every
expected `StartTime` is exact: a row stored at 06:02:50 UTC shows as 08:02:50.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import FakePbx, block, code_message, envelope

from pypbx.api.server import create_app
from pypbx.api.settings import ApiSettings
from pypbx.store import Store
from pypbx.store.records import CallHistoryRecord, OfficeUserRecord

ZONE = timezone(timedelta(hours=2))
SETTINGS = ApiSettings(auth_required=False, timezone=ZONE)
OK = "Command successfully executed"
Client = TestClient[Any, Any]


def utc(hour: int, minute: int, second: int, day: int = 13) -> datetime:
    return datetime(2013, 8, day, hour, minute, second, tzinfo=UTC)


def record(call_id: str, start: datetime, **fields: Any) -> CallHistoryRecord:
    values: dict[str, Any] = {
        "answer_time": None,
        "end_time": start + timedelta(seconds=5),
        "direction": "Internal",
        "source": "1003",
        "destination": "1001",
        "dialed": "1001",
        "caller_id": "1003",
        "state": "CalleeHungUp",
        "ring_duration": 1.0,
        "talk_duration": 4.0,
        **fields,
    }
    return CallHistoryRecord(call_id=call_id, start_time=start, **values)


# The two calls of the spec's example (8.13), plus a spread of others for the filters.
SPEC_ROWS = [
    record(
        "20GPS3",
        utc(6, 2, 50),
        destination="50",
        dialed="50",
        state="TransferCompleted",
        ring_duration=2.5,
        talk_duration=3.25,
    ),
    record("2Fqjg2", utc(6, 2, 56), ring_duration=0.75, talk_duration=12.999),
]
MORE_ROWS = [
    record(
        "aB3xYz",
        utc(9, 0, 0),
        direction="Inbound",
        source="+3612345",
        caller_id="John Smith",
        destination="1002",
        dialed="200",
        state="CallerHungUp",
    ),
    record(
        "Busy01",
        utc(10, 0, 0),
        source="1001",
        caller_id="1001",
        destination="1003",
        dialed="1003",
        state="Busy",
        talk_duration=0.0,
    ),
    record(
        "Vid001",
        utc(11, 0, 0, day=14),
        direction="Outbound",
        destination="06301234567",
        dialed="06301234567",
        state="Cancelled",
        type="Video",
        talk_duration=0.0,
    ),
]


@pytest.fixture
async def history_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}")
    try:
        yield store
    finally:
        await store.close()


async def start_client(store: Store, settings: ApiSettings = SETTINGS) -> Client:
    client: Client = TestClient(TestServer(create_app(settings, store, FakePbx())))
    await client.start_server()
    return client


@pytest.fixture
async def client(history_store: Store) -> AsyncIterator[Client]:
    for rec in SPEC_ROWS:
        await history_store.finish_history(rec)
    test_client = await start_client(history_store)
    try:
        yield test_client
    finally:
        await test_client.close()


@pytest.fixture
async def full(client: Client, history_store: Store) -> Client:
    for rec in MORE_ROWS:
        await history_store.finish_history(rec)
    return client


async def get(client: Client, path: str = "/", **params: str) -> str:
    params.setdefault("command", "GetCallHistory")
    return await (await client.get(path, params=params)).text()


def call_ids(text: str) -> list[str]:
    return [line.strip()[8:-9] for line in text.split("\n") if line.strip().startswith("<CallId>")]


def total(text: str) -> int:
    for name in ("NumberOfCalls", "TotalRecords"):
        start = text.find(f"<{name}>")
        if start >= 0:
            return int(text[start + len(name) + 2 : text.index(f"</{name}>")])
    raise AssertionError(text)


SPEC_CALLS = """
    <Call>
      <StartTime>2013-08-13 08:02:50</StartTime>
      <Direction>Internal</Direction>
      <Source>1003</Source>
      <Destination>50</Destination>
      <State>TransferCompleted</State>
      <Dialed>50</Dialed>
      <CallerId>1003</CallerId>
      <Type>Audio</Type>
      <CallId>20GPS3</CallId>
      <RingDuration>{r1}</RingDuration>
      <TalkDuration>{t1}</TalkDuration>
    </Call>
    <Call>
      <StartTime>2013-08-13 08:02:56</StartTime>
      <Direction>Internal</Direction>
      <Source>1003</Source>
      <Destination>1001</Destination>
      <State>CalleeHungUp</State>
      <Dialed>1001</Dialed>
      <CallerId>1003</CallerId>
      <Type>Audio</Type>
      <CallId>2Fqjg2</CallId>
      <RingDuration>{r2}</RingDuration>
      <TalkDuration>{t2}</TalkDuration>
    </Call>
"""


async def test_spec_example_request_xe_shape(client: Client) -> None:
    # The documented request, empty filters and `General= ` included (spec 8.13).
    query = (
        "/?Command=GetCallHistory&PageNumber=0&RowsPerPage=20&From=&General=+&Direction="
        "&Source=&Destination=&State=&Dialed=&CallerId=&CallId="
    )
    text = await (await client.get(query)).text()
    calls = SPEC_CALLS.format(r1="2", t1="3", r2="0", t2="12").strip("\n")
    assert text == envelope(
        200,
        OK,
        "  <NumberOfCalls>2</NumberOfCalls>",
        "  <Calls>",
        *block(calls),
        "  </Calls>",
    )


async def test_list_call_history_o10_shape(client: Client) -> None:
    text = await get(client, "/api", command="ListCallHistory")
    calls = SPEC_CALLS.format(r1="2.500", t1="3.250", r2="0.750", t2="12.999").strip("\n")
    assert text == envelope(
        200,
        OK,
        "  <TotalRecords>2</TotalRecords>",
        "  <CallHistory>",
        *block(calls),
        "  </CallHistory>",
    )


@pytest.mark.parametrize(
    ("path", "command", "shape"),
    [
        ("/", "GetCallHistory", "<NumberOfCalls>"),
        ("/api", "GetCallHistory", "<NumberOfCalls>"),
        ("/", "ListCallHistory", "<TotalRecords>"),
        ("/api", "ListCallHistory", "<TotalRecords>"),
        ("/", "listcallhistory", "<TotalRecords>"),
        ("/api", "GETCALLHISTORY", "<NumberOfCalls>"),
        ("/", " ListCallHistory ", "<TotalRecords>"),
    ],
)
async def test_shape_follows_the_name_not_the_path(
    client: Client, path: str, command: str, shape: str
) -> None:
    text = await get(client, path, command=command)
    assert code_message(text) == (200, OK)
    assert shape in text
    other = "<TotalRecords>" if shape == "<NumberOfCalls>" else "<NumberOfCalls>"
    assert other not in text


async def test_empty_history_has_empty_containers(history_store: Store) -> None:
    client = await start_client(history_store)
    try:
        assert await get(client) == envelope(
            200, OK, "  <NumberOfCalls>0</NumberOfCalls>", "  <Calls />"
        )
        assert await get(client, command="ListCallHistory") == envelope(
            200, OK, "  <TotalRecords>0</TotalRecords>", "  <CallHistory />"
        )
    finally:
        await client.close()


async def test_paging_reports_the_total_before_paging(full: Client) -> None:
    every = ["20GPS3", "2Fqjg2", "aB3xYz", "Busy01", "Vid001"]
    assert call_ids(await get(full)) == every
    pages = []
    for number in range(4):
        text = await get(full, PageNumber=str(number), RowsPerPage="2")
        assert total(text) == 5
        pages.append(call_ids(text))
    assert pages == [every[0:2], every[2:4], every[4:5], []]
    past_end = await get(full, command="ListCallHistory", PageNumber="3", RowsPerPage="2")
    assert "<TotalRecords>5</TotalRecords>\n  <CallHistory />" in past_end
    # The total counts the filtered calls, not the page.
    text = await get(full, Source="1003", PageNumber="1", RowsPerPage="1")
    assert (total(text), call_ids(text)) == (3, ["2Fqjg2"])


async def test_default_page_is_the_first_twenty(history_store: Store) -> None:
    start = utc(0, 0, 0)
    for n in range(25):
        await history_store.finish_history(record(f"c{n:05d}", start + timedelta(minutes=n)))
    client = await start_client(history_store)
    try:
        text = await get(client)
        assert total(text) == 25
        assert call_ids(text) == [f"c{n:05d}" for n in range(20)]
        text = await get(client, PageNumber="1")
        assert call_ids(text) == [f"c{n:05d}" for n in range(20, 25)]
        text = await get(client, RowsPerPage="1000")
        assert len(call_ids(text)) == 25
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # From: inclusive, local time of the API's zone (UTC+2) unless an offset is given
        ({"From": "2013-08-13 08:02:56"}, ["2Fqjg2", "aB3xYz", "Busy01", "Vid001"]),
        ({"From": "2013-08-13 08:02:57"}, ["aB3xYz", "Busy01", "Vid001"]),
        ({"From": "2013-08-14"}, ["Vid001"]),
        ({"From": "2013-08-13T11:00:00"}, ["aB3xYz", "Busy01", "Vid001"]),
        ({"From": "2013-08-13T11:00:01"}, ["Busy01", "Vid001"]),
        ({"From": "2013-08-13T09:00:00Z"}, ["aB3xYz", "Busy01", "Vid001"]),
        ({"From": "2013-08-13T09:00:00+00:00"}, ["aB3xYz", "Busy01", "Vid001"]),
        ({"From": "2013-08-13T10:00:00-01:00"}, ["Vid001"]),
        ({"From": "2013-08-13T08:02:56.5+02:00"}, ["aB3xYz", "Busy01", "Vid001"]),
        # To: the pypbx extension, exclusive
        ({"To": "2013-08-13 08:02:56"}, ["20GPS3"]),
        (
            {"From": "2013-08-13 08:02:50", "To": "2013-08-13 12:00:00"},
            ["20GPS3", "2Fqjg2", "aB3xYz"],
        ),
        ({"To": "2013-08-14"}, ["20GPS3", "2Fqjg2", "aB3xYz", "Busy01"]),
        ({"From": "2013-08-14", "To": "2013-08-14"}, []),
        # General: case-insensitive substring of Source/Destination/Dialed/CallerId/CallId
        ({"General": "smith"}, ["aB3xYz"]),
        ({"General": "00"}, ["20GPS3", "2Fqjg2", "aB3xYz", "Busy01", "Vid001"]),
        ({"General": "1002"}, ["aB3xYz"]),
        ({"General": "gps"}, ["20GPS3"]),
        ({"General": "0630"}, ["Vid001"]),
        ({"General": "%"}, []),
        ({"General": "Smith "}, []),
        # Enumerations: exact, case-insensitive
        ({"Direction": "inbound"}, ["aB3xYz"]),
        ({"Direction": "Internal"}, ["20GPS3", "2Fqjg2", "Busy01"]),
        ({"Direction": "External"}, []),
        ({"State": "busy"}, ["Busy01"]),
        ({"State": "CallerHangUp"}, ["aB3xYz"]),
        ({"State": "calleehungup"}, ["2Fqjg2"]),
        ({"State": "Hung"}, []),
        ({"State": "NoSuchState"}, []),
        ({"Type": "audio"}, ["20GPS3", "2Fqjg2", "aB3xYz", "Busy01"]),
        ({"Type": "Video"}, ["Vid001"]),
        # Numbers and ids: exact
        ({"Source": "+3612345"}, ["aB3xYz"]),
        ({"Source": " 1001 "}, ["Busy01"]),
        ({"Source": "100"}, []),
        ({"Destination": "50"}, ["20GPS3"]),
        ({"Dialed": "200"}, ["aB3xYz"]),
        ({"CallerId": "John Smith"}, ["aB3xYz"]),
        ({"CallerId": "john smith"}, []),
        ({"CallId": "aB3xYz"}, ["aB3xYz"]),
        ({"CallId": "ab3xyz"}, []),
        # AND
        ({"Source": "1003", "State": "CalleeHungUp"}, ["2Fqjg2"]),
        ({"Source": "1003", "Direction": "Outbound", "Type": "video"}, ["Vid001"]),
        ({"Source": "1001", "Direction": "Outbound"}, []),
        # parameter names without regard to case
        ({"source": "1001"}, ["Busy01"]),
        ({"CALLID": "20GPS3"}, ["20GPS3"]),
    ],
)  # fmt: skip
async def test_filters(full: Client, params: dict[str, str], expected: list[str]) -> None:
    for command in ("GetCallHistory", "ListCallHistory"):
        text = await get(full, command=command, **params)
        assert code_message(text) == (200, OK), text
        assert (total(text), call_ids(text)) == (len(expected), expected), command


async def test_host_zone_when_none_is_configured(history_store: Store) -> None:
    start = utc(6, 2, 50)
    await history_store.finish_history(record("local1", start))
    client = await start_client(history_store, ApiSettings(auth_required=False))
    try:
        local = start.astimezone()
        text = await get(client)
        assert f"<StartTime>{local:%Y-%m-%d %H:%M:%S}</StartTime>" in text
        assert call_ids(await get(client, From=f"{local:%Y-%m-%d %H:%M:%S}")) == ["local1"]
        later = local + timedelta(seconds=1)
        assert call_ids(await get(client, From=f"{later:%Y-%m-%d %H:%M:%S}")) == []
    finally:
        await client.close()


async def test_running_call_has_an_empty_state(history_store: Store) -> None:
    running = record("run001", utc(12, 0, 0), end_time=None, state=None, talk_duration=0.0)
    await history_store.start_history(running)
    client = await start_client(history_store)
    try:
        text = await get(client)
        assert "      <State />\n" in text
        assert call_ids(text) == ["run001"]
        assert call_ids(await get(client, State="Busy")) == []
    finally:
        await client.close()


async def test_values_are_escaped(history_store: Store) -> None:
    await history_store.finish_history(record("esc001", utc(12, 0, 0), caller_id="<A&B>"))
    client = await start_client(history_store)
    try:
        assert "<CallerId>&lt;A&amp;B&gt;</CallerId>" in await get(client)
        assert call_ids(await get(client, CallerId="<A&B>")) == ["esc001"]
        assert call_ids(await get(client, General="a&b")) == ["esc001"]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"PageNumber": "-1"}, "PageNumber"),
        ({"PageNumber": "first"}, "PageNumber"),
        ({"PageNumber": "1.5"}, "PageNumber"),
        ({"PageNumber": "1000000001"}, "PageNumber"),
        ({"RowsPerPage": "0"}, "RowsPerPage"),
        ({"RowsPerPage": "1001"}, "RowsPerPage"),
        ({"RowsPerPage": "ten"}, "RowsPerPage"),
        ({"From": "yesterday"}, "From"),
        ({"From": "2013-02-30"}, "From"),
        ({"From": "2013-08-13 25:00:00"}, "From"),
        ({"From": "13.08.2013"}, "From"),
        ({"From": "0001-01-01"}, "From"),
        ({"From": "9999-12-31T23:00:00-05:00"}, "From"),
        ({"To": "8/13/2013"}, "To"),
        ({"Direction": "Sideways"}, "Direction"),
        ({"Source": "10 03"}, "Source"),
        ({"Destination": "1001;x"}, "Destination"),
        ({"Dialed": "<50>"}, "Dialed"),
        ({"CallId": "x" * 65}, "CallId"),
        # the first offending parameter in table order is named (spec 4.2)
        ({"Direction": "Sideways", "PageNumber": "-1"}, "PageNumber"),
        ({"CallId": "x" * 65, "From": "never", "Source": "a b"}, "From"),
        ({"Dialed": "!", "Source": "!"}, "Source"),
    ],
)
async def test_invalid_parameters_302(full: Client, params: dict[str, str], bad: str) -> None:
    for command in ("GetCallHistory", "ListCallHistory"):
        text = await get(full, command=command, **params)
        # the canonical command name is echoed, whichever name was used (spec 2.4)
        assert text == envelope(
            302, f"Missing or invalid parameter '{bad}' for command 'GetCallHistory'"
        )


async def test_post_and_authentication(
    history_store: Store, password_hashes: dict[str, str]
) -> None:
    for rec in SPEC_ROWS:
        await history_store.finish_history(rec)
    await history_store.add_user(OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"]))
    client = await start_client(history_store, ApiSettings(timezone=ZONE))
    try:
        resp = await client.get("/api?command=ListCallHistory")
        assert code_message(await resp.text()) == (304, "Authentication required")
        query = "/api?command=ListCallHistory&Username=HTTP_User_1&Password=qwe123&RowsPerPage=1"
        text = await (await client.get(query)).text()
        assert (total(text), call_ids(text)) == (2, ["20GPS3"])
        form = {
            "command": "GetCallHistory",
            "Username": "HTTP_User_1",
            "Password": "qwe123",
            "State": "transfercompleted",
        }
        text = await (await client.post("/", data=form)).text()
        assert (total(text), call_ids(text)) == (1, ["20GPS3"])
    finally:
        await client.close()
