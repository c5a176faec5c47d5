"""API-extension commands (spec 8.1, 8.14-8.16): an API extension calls or sends messages.

`ApiExtension` is not mandatory in the tables below because a configured default API
extension may stand in for it (spec 7); the handler reports 302 when neither exists.
"""

from __future__ import annotations

from pypbx.api import validators as v
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, Param
from pypbx.api.status import ApiError, Status
from pypbx.api.xmlout import Node
from pypbx.pbx.control import (
    AlarmRequest,
    AlarmRequestError,
    ApiExtensionError,
    CallFailedError,
    CallRequest,
)

API_EXTENSION = Param("ApiExtension", validator=v.number_string)


async def call(ctx: CommandContext) -> list[Node]:
    """Spec 8.1: answered once the call rings (or has failed), not when it is answered."""
    api_extension = ctx.arg("ApiExtension", str) or ctx.settings.default_api_extension
    if api_extension is None:
        raise ApiError(Status.INVALID_PARAMETER, "ApiExtension", ctx.command_name)
    request = CallRequest(
        api_extension=api_extension,
        dialed=ctx.require("Dialed", str),
        caller_id=ctx.arg("CallerId", str),
        caller_display_name=ctx.arg("CallerDisplayName", str),
        url=ctx.arg("Url", str),
        error_url=ctx.arg("ErrorUrl", str),
        response_ozml=ctx.arg("ResponseOzML", str),
        finished_url=ctx.arg("FinishedUrl", str),
        ring_time=ctx.arg("RingTime", int),
    )
    username = ctx.user.username if ctx.user is not None else None
    try:
        await ctx.pbx.call(request, username)
    except ApiExtensionError as exc:
        raise ApiError(Status.API_EXTENSION_UNAVAILABLE, api_extension) from exc
    except CallFailedError as exc:
        raise ApiError(Status.CALL_CONNECT_FAILED, exc.dialed, exc.state) from exc
    return []


async def send_alarm_notification(ctx: CommandContext) -> list[Node]:
    """Spec 8.16: answered once the alarm call is placed; the outcome goes to ResultUrl."""
    api_extension = ctx.arg("ApiExtension", str) or ctx.settings.default_api_extension
    if api_extension is None:
        raise ApiError(Status.INVALID_PARAMETER, "ApiExtension", ctx.command_name)
    request = AlarmRequest(
        phone_number=ctx.require("PhoneNumber", str),
        account_number=ctx.require("AccountNumber", str),
        event_code=ctx.require("EventCode", str),
        partition_number=ctx.require("PartitionNumber", str),
        zone_number=ctx.require("ZoneNumber", str),
        event_qualifier=ctx.arg("EventQualifier", str) or "NewEvent",
        api_extension=api_extension,
        result_url=ctx.arg("ResultUrl", str),
    )
    username = ctx.user.username if ctx.user is not None else None
    try:
        await ctx.pbx.send_alarm(request, username)
    except AlarmRequestError as exc:
        raise ApiError(Status.INVALID_PARAMETER, exc.param, ctx.command_name) from exc
    except ApiExtensionError as exc:
        raise ApiError(Status.API_EXTENSION_UNAVAILABLE, api_extension) from exc
    return []


COMMANDS = (
    Command(
        "Call",
        call,
        (
            Param("Dialed", mandatory=True, validator=v.number_string, aliases=("Dialled",)),
            API_EXTENSION,
            Param("CallerId", validator=v.number_string),
            Param("CallerDisplayName"),
            Param("Url", validator=v.url),
            Param("ErrorUrl", validator=v.url),
            Param("ResponseOzML"),
            Param("FinishedUrl", validator=v.url),
            Param("RingTime", validator=v.integer(minimum=1)),
        ),
    ),
    Command(
        "SendAlarmNotification",
        send_alarm_notification,
        (
            Param(
                "PhoneNumber", mandatory=True, validator=v.number_string, aliases=("Phone number",)
            ),
            API_EXTENSION,
            Param("ResultUrl", validator=v.url),
            Param("AccountNumber", mandatory=True, validator=v.digits(4, min_length=4)),
            Param("EventQualifier", validator=v.choice("NewEvent", "NewRestore", "StatusReport")),
            Param("EventCode", mandatory=True, validator=v.digits(3)),
            Param("PartitionNumber", mandatory=True, validator=v.digits(2)),
            Param("ZoneNumber", mandatory=True, validator=v.digits(3)),
        ),
    ),
)
