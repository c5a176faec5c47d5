"""Third-party call control commands (spec 8.2-8.7, 8.12): act on any call by its id."""

from __future__ import annotations

from collections.abc import Awaitable

from pypbx.api import validators as v
from pypbx.api.context import CommandContext, Dialect
from pypbx.api.registry import Command, Param
from pypbx.api.status import ApiError, Status
from pypbx.api.timefmt import o10_seconds, plain_timestamp, xe_seconds, xe_timestamp
from pypbx.api.xmlout import Node, container, leaf
from pypbx.pbx.control import (
    ActiveCallInfo,
    CallNotFoundError,
    InappropriateStateError,
    UnroutableDestinationError,
)

CALL_ID = Param("CallId", mandatory=True, validator=v.call_id)


def _xe_call(call: ActiveCallInfo, ctx: CommandContext) -> Node:
    return container(
        "CallInfo",
        [
            leaf("CallState", call.state.value),
            leaf("CallId", call.call_id),
            leaf("Source", call.source),
            leaf("CallerId", call.caller_id),
            leaf("Destination", call.destination),
            leaf("StartTime", xe_timestamp(call.start_time, ctx.settings.timezone)),
            leaf("RingDuration", xe_seconds(call.ring_duration)),
            leaf("TalkDuration", xe_seconds(call.talk_duration)),
        ],
    )


def _o10_call(call: ActiveCallInfo, ctx: CommandContext) -> Node:
    return container(
        "Call",
        [
            leaf("CallId", call.call_id),
            leaf("Source", call.source),
            leaf("CallerId", call.caller_id),
            leaf("Destination", call.destination),
            leaf("CallerDialed", call.caller_dialed),
            leaf("CalleeDialed", call.callee_dialed),
            leaf("StartTime", plain_timestamp(call.start_time, ctx.settings.timezone)),
            leaf("RingDuration", o10_seconds(call.ring_duration)),
            leaf("TalkDuration", o10_seconds(call.talk_duration)),
            leaf("CallState", call.state.value),
        ],
    )


async def list_active_calls(ctx: CommandContext) -> list[Node]:
    render = _xe_call if ctx.dialect is Dialect.XE else _o10_call
    calls = sorted(
        (call for call in ctx.pbx.active_calls() if not call.state.is_final),
        key=lambda call: call.start_time,
    )
    return [container("ActiveCalls", (render(call, ctx) for call in calls))]


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
