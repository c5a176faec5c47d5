"""API-extension commands (spec 8.1, 8.14-8.16): an API extension calls or sends messages.

`ApiExtension` is not mandatory in the tables below because a configured default API
extension may stand in for it (spec 7); the handler reports 302 when neither exists.
"""

from __future__ import annotations

from pypbx.api import validators as v
from pypbx.api.registry import Command, Param

API_EXTENSION = Param("ApiExtension", validator=v.number_string)

COMMANDS = (
    Command(
        "Call",
        None,
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
        "SendSms",
        None,
        (
            API_EXTENSION,
            Param("Sender", validator=v.number_string),
            Param("Recipient", mandatory=True, validator=v.number_string),
            Param("Message", mandatory=True),
            Param("DeliveryReportURL", validator=v.url, aliases=("DelivaryReportURL",)),
        ),
    ),
    Command(
        "SendAlarmNotification",
        None,
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
