"""The command catalogue of spec 1.3 plus the O10 names of section 10, one module per family."""

from __future__ import annotations

from pypbx.api.commands import apiext, calls, config, extensions, history, media, o10_extra
from pypbx.api.commands.email import SenderProvider, make_send_email_command
from pypbx.api.commands.sms import RouterProvider, make_send_sms_command
from pypbx.api.registry import CommandRegistry


def default_registry(
    email_sender: SenderProvider = lambda: None, sms_router: RouterProvider = lambda: None
) -> CommandRegistry:
    """Every documented command name; those without a handler answer 301.

    `email_sender` gives SendEmail its SMTP sender and `sms_router` gives SendSms its message
    router (None: not configured, code 501)."""
    return CommandRegistry(
        (
            *apiext.COMMANDS,
            make_send_email_command(email_sender),
            make_send_sms_command(sms_router),
            *calls.COMMANDS,
            *media.COMMANDS,
            *history.COMMANDS,
            *config.COMMANDS,
            *extensions.COMMANDS,
            *o10_extra.COMMANDS,
        )
    )
