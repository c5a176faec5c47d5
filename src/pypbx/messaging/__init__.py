"""Messages the PBX sends outside calls: e-mail now (spec 8.15), SMS later (spec 8.14)."""

from pypbx.messaging.email import (
    Attachment,
    EmailError,
    EmailNotConfiguredError,
    EmailSender,
    EmailSendError,
    EmailSettings,
    InvalidEmailError,
    OutgoingEmail,
)

__all__ = [
    "Attachment",
    "EmailError",
    "EmailNotConfiguredError",
    "EmailSendError",
    "EmailSender",
    "EmailSettings",
    "InvalidEmailError",
    "OutgoingEmail",
]
