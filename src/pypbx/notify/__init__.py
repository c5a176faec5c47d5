"""Notifications: HTTP webhooks from the PBX to business applications (spec section 2).

`Notifier` sends them; `NotifySettings` configures it; `NotificationReply` is what comes back.
Receivers verify the optional signature as documented in `pypbx.notify.signing`.
"""

from pypbx.notify.client import Notifier, OnReply
from pypbx.notify.reply import NotificationReply
from pypbx.notify.settings import NotifySettings
from pypbx.notify.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature
from pypbx.notify.wire import Fields

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Fields",
    "NotificationReply",
    "Notifier",
    "NotifySettings",
    "OnReply",
    "sign",
    "verify_signature",
]
