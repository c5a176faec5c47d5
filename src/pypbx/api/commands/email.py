"""SendEmail (spec 8.15): an API extension sends an e-mail through the SMTP provider.

The command is built by a factory because its dependencies (the sender, the default API
extension, the API-extension check) come from the application, not from the per-request
context. Checks follow the evaluation order of spec 4.2: parameters (302, Attachments
included), then the API extension (401), then the provider (501).

Codes: a missing provider and an SMTP failure are both "execution-time failures" of spec
4.2 step 8, which names 501 for SendEmail; its documented text (about SMS) is kept verbatim
as spec 8.15 asks. For SMTP failures the short reason follows that text after `: `, the
same convention the media commands use for 302, so an operator sees "authentication
failed" rather than a misleading SMS message, and clients matching the text still match.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pypbx.api import validators as v
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, Param
from pypbx.api.status import ApiError, Status
from pypbx.api.xmlout import Node, leaf
from pypbx.messaging.email import (
    EmailNotConfiguredError,
    EmailSender,
    EmailSendError,
    InvalidEmailError,
    OutgoingEmail,
    check_subject,
    parse_mailbox,
)

logger = logging.getLogger(__name__)

COMMAND_NAME = "SendEmail"
ATTACHMENT_SEPARATOR = ";"

SenderProvider = Callable[[], EmailSender | None]
# (context, API extension number) -> may this request send through it? False answers 401.
ApiExtensionCheck = Callable[[CommandContext, str], Awaitable[bool]]

# InvalidEmailError.field -> the parameter that carried the value.
_PARAM_FOR_FIELD = {
    "to": "Recipient",
    "cc": "Recipient",
    "bcc": "Recipient",
    "sender": "Sender",
    "subject": "Subject",
    "body": "Message",
    "attachments": "Attachments",
}


def mailbox(value: str) -> str:
    """One address, as the sender will accept it (a display name is allowed)."""
    stripped = value.strip()
    parse_mailbox(stripped, "address")
    return stripped


def subject(value: str) -> str:
    return check_subject(value)


def _invalid(ctx: CommandContext, param: str, reason: str) -> ApiError:
    error = ApiError(Status.INVALID_PARAMETER, param, ctx.command_name)
    error.message = f"{error.message}: {reason}"
    return error


def resolve_attachments(value: str, roots: Sequence[Path]) -> list[Path]:
    """The files named by `Attachments` (`;`-separated absolute paths), each inside one of
    `roots` even after symlinks are followed. Blocking: run it in a worker thread.

    Containment is checked on the normalised path before the file system is touched, so
    the answers for paths outside the roots reveal nothing about what exists there.
    """
    parts = [part.strip() for part in value.split(ATTACHMENT_SEPARATOR) if part.strip()]
    if not parts:
        return []
    if not roots:
        raise InvalidEmailError("attachments", "attachments are not enabled on this PBX")
    allowed = {Path(os.path.normpath(root.absolute())) for root in roots}
    allowed |= {root.resolve() for root in roots}

    def inside(path: Path) -> bool:
        return any(path.is_relative_to(root) for root in allowed)

    files: list[Path] = []
    for raw in parts:
        path = Path(raw)
        if "\x00" in raw or not path.is_absolute():
            raise InvalidEmailError("attachments", f"{raw!r} is not an absolute path")
        if not inside(Path(os.path.normpath(path))):
            raise InvalidEmailError("attachments", f"{raw!r} is outside the attachment directories")
        try:
            real = path.resolve(strict=True)
        except OSError as exc:
            raise InvalidEmailError("attachments", f"{raw!r} does not exist") from exc
        if not inside(real):
            raise InvalidEmailError("attachments", f"{raw!r} is outside the attachment directories")
        if not real.is_file():
            raise InvalidEmailError("attachments", f"{raw!r} is not a file")
        files.append(real)
    return files


def make_send_email_command(
    sender_provider: SenderProvider,
    *,
    default_api_extension: str | None = None,
    api_extension_check: ApiExtensionCheck | None = None,
) -> Command:
    """The SendEmail command, to register in place of the handler-less declaration.

    `sender_provider` returns the configured sender, or None when no SMTP provider is
    configured (501). `ApiExtension` is mandatory unless `default_api_extension` is given
    (spec 7); `api_extension_check`, when given, decides whether the request may use the
    extension (401), and without it any well-formed number is accepted.
    """

    async def send_email(ctx: CommandContext) -> list[Node]:
        api_extension = ctx.arg("ApiExtension", str) or default_api_extension
        if api_extension is None:  # bind() enforces this; kept for a direct call
            raise ApiError(Status.INVALID_PARAMETER, "ApiExtension", ctx.command_name)
        sender = sender_provider()
        outgoing = await _prepare(ctx, sender) if sender is not None else None
        if api_extension_check is not None and not await api_extension_check(ctx, api_extension):
            raise ApiError(Status.API_EXTENSION_UNAVAILABLE, api_extension)
        if sender is None or outgoing is None:
            logger.info("SendEmail refused: no e-mail provider is configured")
            raise ApiError(Status.SMS_DESTINATION_NOT_FOUND)
        try:
            email_id = await sender.deliver(outgoing)
        except EmailSendError as exc:  # the sender has logged it with the server's address
            error = ApiError(Status.SMS_DESTINATION_NOT_FOUND)
            error.message = f"{error.message}: {exc.reason}"
            raise error from exc
        return [leaf("EmailId", email_id)]

    params = (
        Param("ApiExtension", mandatory=default_api_extension is None, validator=v.number_string),
        Param("Sender", validator=mailbox),
        Param("Recipient", mandatory=True, validator=mailbox),
        Param("Message"),
        Param("Subject", validator=subject),
        Param("Attachments"),
    )
    return Command(COMMAND_NAME, send_email, params)


async def _prepare(ctx: CommandContext, sender: EmailSender) -> OutgoingEmail | None:
    """The checked message, 302 for the first unusable parameter, None when the provider
    lacks a sender address (then the request ends in 501 like an absent provider)."""
    try:
        attachments: list[Path] = []
        spec = ctx.arg("Attachments", str)
        if spec is not None:
            roots = sender.settings.attachment_dirs
            attachments = await asyncio.to_thread(resolve_attachments, spec, roots)
        return await sender.prepare(
            [ctx.require("Recipient", str)],
            ctx.arg("Subject", str) or "",
            ctx.arg("Message", str) or "",
            sender=ctx.arg("Sender", str),
            attachments=attachments,
        )
    except InvalidEmailError as exc:
        raise _invalid(ctx, _PARAM_FOR_FIELD.get(exc.field, "Recipient"), exc.reason) from exc
    except EmailNotConfiguredError as exc:
        logger.warning("SendEmail: %s", exc)
        return None
