"""Third-party call control commands (spec 8.2-8.7, 8.12): act on any call by its id."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import tzinfo
from functools import lru_cache
from operator import attrgetter

from pypbx.api import validators as v
from pypbx.api.context import CommandContext, Dialect
from pypbx.api.registry import Command, Param
from pypbx.api.status import ApiError, Status
from pypbx.api.timefmt import o10_seconds, plain_timestamp, xe_seconds, xe_timestamp
from pypbx.api.xmlout import Node, Records
from pypbx.pbx.control import (
    ActiveCallInfo,
    CallNotFoundError,
    InappropriateStateError,
    UnroutableDestinationError,
)

CALL_ID = Param("CallId", mandatory=True, validator=v.call_id)


# Clients poll ListActiveCalls, and a call's start never changes: formatting it (a
# local-time conversion, then strftime) was most of the cost of a long listing, so each
# formatted start is remembered, keyed by moment and zone.
_xe_start = lru_cache(maxsize=8192)(xe_timestamp)
_o10_start = lru_cache(maxsize=8192)(plain_timestamp)


XE_FIELDS = (
    "CallState",
    "CallId",
    "Source",
    "CallerId",
    "Destination",
    "StartTime",
    "RingDuration",
    "TalkDuration",
)
O10_FIELDS = (
    "CallId",
    "Source",
    "CallerId",
    "Destination",
    "CallerDialed",
    "CalleeDialed",
    "StartTime",
    "RingDuration",
    "TalkDuration",
    "CallState",
)


def _xe_call(call: ActiveCallInfo, zone: tzinfo | None) -> tuple[str, ...]:
    """XE_FIELDS' texts for one call."""
    return (
        call.state.value,
        call.call_id,
        call.source,
        call.caller_id,
        call.destination,
        _xe_start(call.start_time, zone),
        xe_seconds(call.ring_duration),
        xe_seconds(call.talk_duration),
    )


def _o10_call(call: ActiveCallInfo, zone: tzinfo | None) -> tuple[str, ...]:
    """O10_FIELDS' texts for one call."""
    return (
        call.call_id,
        call.source,
        call.caller_id,
        call.destination,
        call.caller_dialed,
        call.callee_dialed,
        _o10_start(call.start_time, zone),
        o10_seconds(call.ring_duration),
        o10_seconds(call.talk_duration),
        call.state.value,
    )


async def list_active_calls(ctx: CommandContext) -> list[Node]:
    """Rendered from rows of texts (`Records`), as this may list thousands of calls."""
    zone = ctx.settings.timezone
    calls = sorted(
        (call for call in ctx.pbx.active_calls() if not call.state.is_final),
        key=attrgetter("start_time"),
    )
    if ctx.dialect is Dialect.XE:
        rows = [_xe_call(call, zone) for call in calls]
        return [Records("ActiveCalls", row_name="CallInfo", fields=XE_FIELDS, rows=rows)]
    rows = [_o10_call(call, zone) for call in calls]
    return [Records("ActiveCalls", row_name="Call", fields=O10_FIELDS, rows=rows)]


async def _run(
    ctx: CommandContext, action: Awaitable[None], *, destination: str | None = None
) -> list[Node]:
    """Await a call operation, mapping its errors to the API's codes: 601 for an unknown call
    (naming that id), 303 for a call in the wrong state, 302 naming `destination` for a
    number that cannot be routed."""
    try:
        await action
    except CallNotFoundError as exc:
        raise ApiError(Status.CALL_NOT_FOUND, str(exc.args[0]) if exc.args else "") from exc
    except InappropriateStateError as exc:
        raise ApiError(Status.INAPPROPRIATE_COMMAND, ctx.command_name) from exc
    except UnroutableDestinationError as exc:
        raise ApiError(Status.INVALID_PARAMETER, destination or "", ctx.command_name) from exc
    return []


async def hangup(ctx: CommandContext) -> list[Node]:
    return await _run(ctx, ctx.pbx.hangup(ctx.require("CallId", str)))


async def hold(ctx: CommandContext) -> list[Node]:
    return await _run(ctx, ctx.pbx.hold(ctx.require("CallId", str)))


async def unhold(ctx: CommandContext) -> list[Node]:
    return await _run(ctx, ctx.pbx.unhold(ctx.require("CallId", str)))


async def forward(ctx: CommandContext) -> list[Node]:
    call_id, destination = ctx.require("CallId", str), ctx.require("Destination", str)
    return await _run(ctx, ctx.pbx.forward(call_id, destination), destination="Destination")


async def blind_transfer(ctx: CommandContext) -> list[Node]:
    call_id, target = ctx.require("CallId", str), ctx.require("Target", str)
    party = ctx.require("TransferorParty", str)
    finished_url = ctx.arg("FinishedUrl", str)
    action = ctx.pbx.blind_transfer(call_id, target, party, finished_url)
    return await _run(ctx, action, destination="Target")


async def attended_transfer(ctx: CommandContext) -> list[Node]:
    transferred = ctx.require("TransferredCallId", str)
    target = ctx.require("TargetCallId", str)
    return await _run(ctx, ctx.pbx.attended_transfer(transferred, target))


COMMANDS = (
    Command("ListActiveCalls", list_active_calls),
    Command("Hangup", hangup, (CALL_ID,)),
    Command(
        "Forward",
        forward,
        (CALL_ID, Param("Destination", mandatory=True, validator=v.number_string)),
        aliases=("ForwardCall",),
    ),
    Command("Hold", hold, (CALL_ID,)),
    Command("Unhold", unhold, (CALL_ID,)),
    Command(
        "BlindTransfer",
        blind_transfer,
        (
            CALL_ID,
            Param(
                "TransferorParty",
                mandatory=True,
                validator=v.transferor_party,
                aliases=("TranferorParty",),
            ),
            Param("Target", mandatory=True, validator=v.number_string),
            Param("FinishedUrl", validator=v.url),
        ),
    ),
    Command(
        "AttendedTransfer",
        attended_transfer,
        (
            Param(
                "TransferredCallId",
                mandatory=True,
                validator=v.call_id,
                aliases=("TranferredCallId",),
            ),
            Param("TargetCallId", mandatory=True, validator=v.call_id),
            Param("TransferorParty", validator=v.transferor_party),
        ),
    ),
)
