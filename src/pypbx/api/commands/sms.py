"""SendSms (spec 8.14): an API extension sends a text message.

Built by a factory because the message router comes from the running PBX, not from the
per-request context. Destinations are extensions for now: a SIP extension's phones get a SIP
MESSAGE (kept until they register when they are offline), an API extension gets IncomingSMS.
A mobile number needs an SMS connection (SMPP, GSM modem) that pypbx does not have yet, so it
answers 501 like Ozeki does for a recipient without an SMS route.

Checks follow spec 4.2: parameters (302), the API extension (401), the route (501).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from pypbx.api import validators as v
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, Param
from pypbx.api.status import ApiError, Status
from pypbx.api.xmlout import Node, leaf
from pypbx.pbx.control import ApiExtensionError
from pypbx.pbx.messages import MessageTooLargeError, SmsDestinationNotFoundError

logger = logging.getLogger(__name__)

COMMAND_NAME = "SendSms"


class SmsRouter(Protocol):
    """What the command needs of `pypbx.pbx.messages.MessageRouter`."""

    async def send_sms(
        self,
        api_extension: str,
        sender: str | None,
        recipient: str,
        message: str,
        delivery_report_url: str | None,
        *,
        username: str | None = None,
    ) -> str: ...


# The running PBX's router; None while messaging is not enabled (every request answers 501).
RouterProvider = Callable[[], SmsRouter | None]


def make_send_sms_command(router_provider: RouterProvider) -> Command:
    """The SendSms command, to register in place of the handler-less declaration."""

    async def send_sms(ctx: CommandContext) -> list[Node]:
        api_extension = ctx.arg("ApiExtension", str) or ctx.settings.default_api_extension
        if api_extension is None:
            raise ApiError(Status.INVALID_PARAMETER, "ApiExtension", ctx.command_name)
        router = router_provider()
        if router is None:
            logger.info("SendSms refused: messaging is not enabled")
            raise ApiError(Status.SMS_DESTINATION_NOT_FOUND)
        try:
            sms_id = await router.send_sms(
                api_extension,
                ctx.arg("Sender", str),
                ctx.require("Recipient", str),
                ctx.require("Message", str),
                ctx.arg("DeliveryReportURL", str),
                username=ctx.user.username if ctx.user is not None else None,
            )
        except ApiExtensionError as exc:
            raise ApiError(Status.API_EXTENSION_UNAVAILABLE, api_extension) from exc
        except MessageTooLargeError as exc:
            error = ApiError(Status.INVALID_PARAMETER, "Message", ctx.command_name)
            error.message = f"{error.message}: {exc}"
            raise error from exc
        except SmsDestinationNotFoundError as exc:
            raise ApiError(Status.SMS_DESTINATION_NOT_FOUND) from exc
        return [leaf("SmsId", sms_id)]

    params = (
        Param("ApiExtension", validator=v.number_string),
        Param("Sender", validator=v.number_string),
        Param("Recipient", mandatory=True, validator=v.number_string),
        Param("Message", mandatory=True),
        Param("DeliveryReportURL", validator=v.url, aliases=("DelivaryReportURL",)),
    )
    return Command(COMMAND_NAME, send_sms, params)
