"""Call history (spec 8.13). The response shape follows the name used, not the dialect:
`GetCallHistory` answers in the XE shape, `ListCallHistory` in the O10 shape."""

from __future__ import annotations

from pypbx.api import validators as v
from pypbx.api.registry import Command, Param

COMMANDS = (
    Command(
        "GetCallHistory",
        None,
        (
            Param("PageNumber", validator=v.integer(minimum=0)),
            Param("RowsPerPage", validator=v.integer(minimum=1)),
            Param("From", validator=v.timestamp),
            Param("To", validator=v.timestamp),  # pypbx extension: exclusive upper bound
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
