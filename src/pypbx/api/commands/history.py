"""Call history (spec 8.13). The response shape follows the name used, not the dialect:
`GetCallHistory` answers in the XE shape, `ListCallHistory` in the O10 shape.

Both shapes carry the same rows; they differ in the names of the total and the container
(`NumberOfCalls`/`Calls` vs `TotalRecords`/`CallHistory`) and in how the two duration
elements pypbx appends to each row are written (the XE or O10 ListActiveCalls style).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pypbx.api import validators as v
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, Param
from pypbx.api.timefmt import o10_seconds, plain_timestamp, xe_seconds
from pypbx.api.xmlout import Node, container, leaf
from pypbx.store.records import CallHistoryRecord, HistoryQuery

DEFAULT_ROWS_PER_PAGE = 20
MAX_ROWS_PER_PAGE = 1000
# Keeps PageNumber * RowsPerPage a valid 64-bit SQL OFFSET on every backend.
MAX_PAGE_NUMBER = 1_000_000_000

# A naive moment is read in the PBX's zone, whose offset is under a day: staying a day away
# from the ends of `datetime` guarantees the conversion to UTC cannot overflow.
_NAIVE_MIN = datetime.min + timedelta(days=1)
_NAIVE_MAX = datetime.max - timedelta(days=1)


def moment(value: str) -> datetime:
    """A `From`/`To` value (spec 3.4) that can be turned into UTC, else ValueError (302).

    Checked here rather than in the handler so that the 302 names the first bad parameter
    in table order (spec 4.2).
    """
    parsed = v.timestamp(value)
    if parsed.tzinfo is None:
        if not _NAIVE_MIN <= parsed <= _NAIVE_MAX:
            raise ValueError("date out of range")
        return parsed
    try:
        parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date out of range") from exc
    return parsed


# (total element, container element) of each shape
_XE = ("NumberOfCalls", "Calls")
_O10 = ("TotalRecords", "CallHistory")


def _aware(value: datetime | None, ctx: CommandContext) -> datetime | None:
    """A naive request time means PBX local time (spec 3.4); the store wants aware times."""
    if value is None or value.tzinfo is not None:
        return value
    zone = ctx.settings.timezone
    # astimezone() on a naive value reads it in the host's zone, which `timezone=None` means.
    return value.replace(tzinfo=zone) if zone is not None else value.astimezone()


def _query(ctx: CommandContext) -> HistoryQuery:
    page = ctx.arg("PageNumber", int)
    rows = ctx.arg("RowsPerPage", int)
    return HistoryQuery(
        from_time=_aware(ctx.arg("From", datetime), ctx),
        to_time=_aware(ctx.arg("To", datetime), ctx),
        general=ctx.arg("General", str),
        direction=ctx.arg("Direction", str),
        source=ctx.arg("Source", str),
        destination=ctx.arg("Destination", str),
        state=ctx.arg("State", str),
        dialed=ctx.arg("Dialed", str),
        caller_id=ctx.arg("CallerId", str),
        call_id=ctx.arg("CallId", str),
        type=ctx.arg("Type", str),
        page=page if page is not None else 0,
        rows_per_page=rows if rows is not None else DEFAULT_ROWS_PER_PAGE,
    )


def _row(record: CallHistoryRecord, ctx: CommandContext, o10: bool) -> Node:
    """Documented fields in documented order; the durations are a pypbx extension at the end,
    where clients that only know the documented fields skip them."""
    seconds = o10_seconds if o10 else xe_seconds
    return container(
        "Call",
        [
            leaf("StartTime", plain_timestamp(record.start_time, ctx.settings.timezone)),
            leaf("Direction", record.direction),
            leaf("Source", record.source),
            leaf("Destination", record.destination),
            leaf("State", record.state),  # None while the call runs: an empty element (3.3)
            leaf("Dialed", record.dialed),
            leaf("CallerId", record.caller_id),
            leaf("Type", record.type),
            leaf("CallId", record.call_id),
            leaf("RingDuration", seconds(record.ring_duration)),
            leaf("TalkDuration", seconds(record.talk_duration)),
        ],
    )


async def get_call_history(ctx: CommandContext) -> list[Node]:
    o10 = ctx.requested_name.casefold() == "listcallhistory"
    total_name, rows_name = _O10 if o10 else _XE
    total, records = await ctx.store.query_history(_query(ctx))
    return [
        leaf(total_name, total),
        container(rows_name, (_row(record, ctx, o10) for record in records)),
    ]


COMMANDS = (
    Command(
        "GetCallHistory",
        get_call_history,
        (
            Param("PageNumber", validator=v.integer(minimum=0, maximum=MAX_PAGE_NUMBER)),
            Param("RowsPerPage", validator=v.integer(minimum=1, maximum=MAX_ROWS_PER_PAGE)),
            Param("From", validator=moment),
            Param("To", validator=moment),  # pypbx extension: exclusive upper bound
            Param("General"),
            Param("Direction", validator=v.choice("Internal", "External", "Inbound", "Outbound")),
            Param("Source", validator=v.number_string),
            Param("Destination", validator=v.number_string),
            Param("State"),
            Param("Dialed", validator=v.number_string),
            Param("CallerId"),
            Param("CallId", validator=v.call_id),
            Param("Type"),
        ),
        aliases=("ListCallHistory",),
    ),
)
