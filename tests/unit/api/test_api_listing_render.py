"""`Records` (the node-free listing ListActiveCalls renders through) is byte-identical to
the equivalent containers and leaves, whatever the values hold."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from api_support import Client, ClientFactory, FakePbx
from hypothesis import given
from hypothesis import strategies as st

from pypbx.api.access_log import RedactingAccessLogger
from pypbx.api.settings import ApiSettings
from pypbx.api.status import Status
from pypbx.api.timefmt import o10_seconds, plain_timestamp, xe_seconds, xe_timestamp
from pypbx.api.xmlout import Node, Records, container, leaf, render_response
from pypbx.pbx.control import ActiveCallInfo
from pypbx.pbx.states import CallState

FIELDS = ("A", "B", "C")
texts = st.one_of(st.none(), st.text(max_size=12))


def reference(name: str, row: str, rows: list[tuple[str | None, ...]]) -> Node:
    return container(name, (container(row, map(leaf, FIELDS, values)) for values in rows))


@given(st.lists(st.tuples(texts, texts, texts), max_size=5), st.integers(0, 3))
def test_records_render_like_nodes(rows: list[tuple[str | None, ...]], depth: int) -> None:
    fast: Node = Records("List", row_name="Row", fields=FIELDS, rows=rows)
    slow = reference("List", "Row", rows)
    for _ in range(depth):
        fast, slow = container("Outer", [fast]), container("Outer", [slow])
    assert render_response(Status.OK, "m", [fast]) == render_response(Status.OK, "m", [slow])


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], ["  <L />"]),
        ([("1", "", None)], ["  <L>", "    <R>", "      <A>1</A>", "      <B />", "      <C />",
                             "    </R>", "  </L>"]),
        ([("a&b", "<", "x\ry")], ["  <L>", "    <R>", "      <A>a&amp;b</A>", "      <B>&lt;</B>",
                                  "      <C>x&#xD;y</C>", "    </R>", "  </L>"]),
    ],
)  # fmt: skip
def test_records_vectors(rows: list[tuple[str | None, ...]], expected: list[str]) -> None:
    body = render_response(Status.OK, "m", [Records("L", row_name="R", fields=FIELDS, rows=rows)])
    assert body.decode().split("\n")[4:-1] == expected


def test_records_row_of_wrong_width_is_an_error() -> None:
    with pytest.raises(ValueError):
        render_response(Status.OK, "m", [Records("L", row_name="R", fields=FIELDS, rows=[("1",)])])


def call(index: int, start: datetime) -> ActiveCallInfo:
    return ActiveCallInfo(
        call_id=f"c{index:05d}",
        state=CallState.IN_CALL if index % 3 else CallState.RINGING,
        source=str(1000 + index),
        caller_id="Smith & <Co>\x01" if index % 7 == 0 else "",
        destination="2000",
        caller_dialed="2000",
        callee_dialed="2000",
        start_time=start + timedelta(seconds=index, microseconds=index * 37),
        ring_duration=index / 7,
        talk_duration=index / 3,
    )


def xe_reference(info: ActiveCallInfo, zone: timezone) -> Node:
    return container("CallInfo", [
        leaf("CallState", info.state.value), leaf("CallId", info.call_id),
        leaf("Source", info.source), leaf("CallerId", info.caller_id),
        leaf("Destination", info.destination),
        leaf("StartTime", xe_timestamp(info.start_time, zone)),
        leaf("RingDuration", xe_seconds(info.ring_duration)),
        leaf("TalkDuration", xe_seconds(info.talk_duration)),
    ])  # fmt: skip


def o10_reference(info: ActiveCallInfo, zone: timezone) -> Node:
    return container("Call", [
        leaf("CallId", info.call_id), leaf("Source", info.source),
        leaf("CallerId", info.caller_id), leaf("Destination", info.destination),
        leaf("CallerDialed", info.caller_dialed), leaf("CalleeDialed", info.callee_dialed),
        leaf("StartTime", plain_timestamp(info.start_time, zone)),
        leaf("RingDuration", o10_seconds(info.ring_duration)),
        leaf("TalkDuration", o10_seconds(info.talk_duration)),
        leaf("CallState", info.state.value),
    ])  # fmt: skip


@pytest.mark.parametrize("hours", [0, 2, -5])
async def test_many_calls_match_the_node_rendering(
    make_client: ClientFactory, pbx: FakePbx, hours: int
) -> None:
    zone = timezone(timedelta(hours=hours))
    client: Client = await make_client(ApiSettings(auth_required=False, timezone=zone))
    start = datetime(2024, 3, 31, 0, 59, 58, tzinfo=UTC)
    pbx.calls = [call(i, start) for i in range(300)][::-1]
    pbx.calls.append(replace(pbx.calls[0], call_id="over", state=CallState.COMPLETED))
    live = sorted(pbx.calls[:-1], key=lambda c: c.start_time)
    for path, make in (("/", xe_reference), ("/api", o10_reference)):
        expected = render_response(
            Status.OK,
            "Command successfully executed",
            [container("ActiveCalls", (make(info, zone) for info in live))],
        )
        for _ in range(2):  # the second time from the remembered start times
            resp = await client.get(f"{path}?command=ListActiveCalls")
            assert await resp.read() == expected


@pytest.mark.parametrize(("level", "enabled"), [(logging.INFO, True), (logging.WARNING, False)])
def test_access_log_is_skipped_below_info(level: int, enabled: bool) -> None:
    logger = logging.getLogger("test_api_listing_render.access")
    logger.setLevel(level)
    assert RedactingAccessLogger(logger, "").enabled is enabled
