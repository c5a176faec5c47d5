"""GetCallHistory and ListCallHistory over HTTP, after real calls through a running pypbx.

Extension 1000 (SIPp) places three calls one after another, each to its own SIPp callee:
2001 answers and 1000 hangs up after about 2 s of talk, 2002 answers busy, 2003 rings
until 1000 cancels. The calls are at least a second apart, so each has its own StartTime
second and the `From`/`To` filters, which work on those seconds, can tell them apart. While
the third call rings, the history already lists it, with an empty State.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timedelta

from peers.flows import (
    PbxFactory,
    SippFactory,
    caller,
    finish,
    no_calls_left,
    start_callee,
    wait_for_state,
)
from peers.pbx import ADMIN_USER, PbxProcess

CALLER = ("1000", "pw-1000")
ANSWERED, BUSY, CANCELLED = "2001", "2002", "2003"
OK = "Command successfully executed"
SHAPES = {
    "GetCallHistory": ("NumberOfCalls", "Calls"),
    "ListCallHistory": ("TotalRecords", "CallHistory"),
}
FIELDS = [
    "StartTime",
    "Direction",
    "Source",
    "Destination",
    "State",
    "Dialed",
    "CallerId",
    "Type",
    "CallId",
    "RingDuration",
    "TalkDuration",
]

Row = dict[str, str]


def history(
    pbx: PbxProcess, command: str = "GetCallHistory", **params: str
) -> tuple[int, list[Row]]:
    """(total, rows of the page) of one history query; the shape must match the name used."""
    result = pbx.api(command, **params)
    assert (result.code, result.message) == (200, OK), result.text
    total_name, box = SHAPES[command]
    total = result.root.findtext(total_name)
    assert total is not None, result.text
    rows = result.rows(box, "Call")
    for row in rows:
        assert list(row) == FIELDS, result.text
    return int(total), rows


def ids(pbx: PbxProcess, command: str = "GetCallHistory", **params: str) -> tuple[int, list[str]]:
    total, rows = history(pbx, command, **params)
    return total, [row["CallId"] for row in rows]


def wait_for_history(
    pbx: PbxProcess, predicate: Callable[[list[Row]], bool], timeout: float = 10.0
) -> list[Row]:
    """Poll the history until predicate(rows) holds: rows are written as calls start and end."""
    deadline = time.monotonic() + timeout
    while True:
        rows = history(pbx, RowsPerPage="1000")[1]
        if predicate(rows):
            return rows
        assert time.monotonic() < deadline, f"history never matched: {rows}"
        time.sleep(0.1)


def local_now() -> datetime:
    return datetime.now().replace(microsecond=0)


def place_calls(pbx: PbxProcess, sipp: SippFactory) -> tuple[dict[str, str], datetime, datetime]:
    """Run the three calls; returns (destination -> CallId seen in ListActiveCalls, a local
    time before the first call, a local time after the last)."""
    before = local_now()
    seen: dict[str, str] = {}

    uas = start_callee(pbx, sipp, "uas_answer", ANSWERED, f"pw-{ANSWERED}")
    uac = caller(pbx, sipp, "uac_call", ANSWERED, *CALLER, pause_ms=2000).start()
    seen[ANSWERED] = wait_for_state(pbx, "InCall")["CallId"]
    finish(uac, uas)
    no_calls_left(pbx)
    time.sleep(1.1)

    uas = start_callee(pbx, sipp, "uas_busy", BUSY, f"pw-{BUSY}")
    finish(caller(pbx, sipp, "uac_busy", BUSY, *CALLER).start(), uas)
    no_calls_left(pbx)
    time.sleep(1.1)

    uas = start_callee(pbx, sipp, "uas_ring", CANCELLED, f"pw-{CANCELLED}")
    uac = caller(pbx, sipp, "uac_cancel", CANCELLED, *CALLER, pause_ms=1500).start()
    seen[CANCELLED] = wait_for_state(pbx, "Ringing")["CallId"]
    (running,) = [
        row
        for row in wait_for_history(pbx, lambda rows: len(rows) == 3)
        if row["CallId"] == seen[CANCELLED]
    ]
    assert (running["State"], running["Destination"]) == ("", CANCELLED), running
    finish(uac, uas)
    no_calls_left(pbx)
    return seen, before, local_now() + timedelta(seconds=1)


def test_history_of_real_calls_over_http(start_pbx: PbxFactory, sipp: SippFactory) -> None:
    pbx = start_pbx()
    pbx.add_sip_extension(*CALLER)
    for number in (ANSWERED, BUSY, CANCELLED):
        pbx.add_sip_extension(number, f"pw-{number}")
    seen, before, after = place_calls(pbx, sipp)
    rows = wait_for_history(pbx, lambda rows: len(rows) == 3 and all(r["State"] for r in rows))

    # -- what each call left: ascending start time, one row per call ---------------------
    answered, busy, cancelled = rows
    assert [r["Destination"] for r in rows] == [ANSWERED, BUSY, CANCELLED], rows
    assert [r["State"] for r in rows] == ["CallerHungUp", "Busy", "Cancelled"], rows
    assert answered["CallId"] == seen[ANSWERED] and cancelled["CallId"] == seen[CANCELLED]
    assert len({r["CallId"] for r in rows}) == 3
    starts = [datetime.strptime(r["StartTime"], "%Y-%m-%d %H:%M:%S") for r in rows]
    assert before <= starts[0] < starts[1] < starts[2] <= after, (before, starts, after)
    for row in rows:
        assert (row["Direction"], row["Source"], row["CallerId"], row["Type"]) == (
            "Internal",
            "1000",
            "1000",
            "Audio",
        ), row
        assert row["Dialed"] == row["Destination"], row
        assert len(row["CallId"]) == 6 and row["CallId"].isalnum(), row
    # XE shape: whole seconds
    assert (answered["RingDuration"], answered["TalkDuration"]) in {
        ("0", "1"),
        ("0", "2"),
        ("0", "3"),
    }, answered
    assert (busy["RingDuration"], busy["TalkDuration"]) == ("0", "0"), busy
    assert cancelled["RingDuration"] in {"1", "2"} and cancelled["TalkDuration"] == "0"

    # -- the O10 shape: same rows, durations with three decimals ------------------------
    total, o10 = history(pbx, "ListCallHistory")
    assert total == 3
    assert [{k: v for k, v in r.items() if not k.endswith("Duration")} for r in o10] == [
        {k: v for k, v in r.items() if not k.endswith("Duration")} for r in rows
    ]
    ring, talk = float(o10[0]["RingDuration"]), float(o10[0]["TalkDuration"])
    assert 0 <= ring <= 1.0 and 1.5 <= talk <= 3.5, o10[0]
    assert (o10[1]["RingDuration"][-4], o10[1]["TalkDuration"]) == (".", "0.000"), o10[1]
    assert 1.2 <= float(o10[2]["RingDuration"]) <= 3.0 and o10[2]["TalkDuration"] == "0.000"

    # -- filters --------------------------------------------------------------------------
    a, b, c = (r["CallId"] for r in rows)
    same_day = starts[0].date() == starts[2].date()
    expectations: list[tuple[dict[str, str], list[str] | None]] = [
        ({"State": "Busy"}, [b]),
        ({"State": "callerhangup"}, [a]),
        ({"State": "CANCELLED"}, [c]),
        ({"State": "CalleeHungUp"}, []),
        ({"Destination": CANCELLED}, [c]),
        ({"Dialed": ANSWERED}, [a]),
        ({"Source": "1000"}, [a, b, c]),
        ({"Source": ANSWERED}, []),
        ({"CallerId": "1000"}, [a, b, c]),
        ({"CallId": b}, [b]),
        ({"CallId": b.swapcase()}, [] if b.swapcase() != b else [b]),
        ({"Direction": "internal"}, [a, b, c]),
        ({"Direction": "External"}, []),
        ({"Type": "audio"}, [a, b, c]),
        ({"General": BUSY}, [b]),
        ({"General": a.lower()}, [a]),
        ({"From": busy["StartTime"]}, [b, c]),
        ({"From": starts[1].astimezone().isoformat()}, [b, c]),
        ({"From": f"{starts[0]:%Y-%m-%d}"}, [a, b, c] if same_day else None),
        ({"To": cancelled["StartTime"]}, [a, b]),
        ({"From": busy["StartTime"], "To": cancelled["StartTime"]}, [b]),
        ({"From": f"{after + timedelta(seconds=2):%Y-%m-%d %H:%M:%S}"}, []),
        ({"Source": "1000", "State": "Busy", "Direction": "Internal"}, [b]),
        ({"Source": "1000", "State": "Busy", "Destination": ANSWERED}, []),
    ]  # fmt: skip
    for params, expected in expectations:
        if expected is None:  # the calls straddled midnight; the date-only form says nothing
            continue
        for command in SHAPES:
            assert ids(pbx, command, **params) == (len(expected), expected), (command, params)

    # -- paging: the total is always the whole match ---------------------------------------
    for command in SHAPES:
        pages = [ids(pbx, command, RowsPerPage="2", PageNumber=str(n)) for n in range(3)]
        assert pages == [(3, [a, b]), (3, [c]), (3, [])], command
        assert ids(pbx, command, RowsPerPage="1", PageNumber="1", Source="1000") == (3, [b])

    # -- bad parameters: 302 naming the parameter and the canonical command ---------------
    for params, bad in [
        ({"From": "yesterday"}, "From"),
        ({"RowsPerPage": "0"}, "RowsPerPage"),
        ({"PageNumber": "-1", "Direction": "Sideways"}, "PageNumber"),
        ({"Direction": "Sideways"}, "Direction"),
    ]:
        for command in SHAPES:
            result = pbx.api(command, **params)
            assert (result.code, result.message) == (
                302,
                f"Missing or invalid parameter '{bad}' for command 'GetCallHistory'",
            ), result.text

    # -- an O10 client: GET on /api with credentials in the query --------------------------
    query = urllib.parse.urlencode(
        {
            "command": "ListCallHistory",
            "Username": ADMIN_USER,
            "Password": pbx.admin_password,
            "State": "Busy",
        }
    )
    with urllib.request.urlopen(f"{pbx.base_url}api?{query}", timeout=10.0) as resp:
        root = ET.fromstring(resp.read())  # our own server on loopback: trusted input
    assert root.findtext("Code") == "200" and root.findtext("TotalRecords") == "1"
    assert [e.text for e in root.iterfind("CallHistory/Call/CallId")] == [b]
