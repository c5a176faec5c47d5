"""Status codes and message templates of the Ozeki HTTP API (spec section 4.1).

The templates are part of the wire contract and are copied verbatim, including the
documented misspelling "occured"; clients match on them.
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    OK = 200
    PARSE_ERROR = 300
    NOT_IMPLEMENTED_COMMAND = 301
    INVALID_PARAMETER = 302
    INAPPROPRIATE_COMMAND = 303
    AUTHENTICATION_REQUIRED = 304
    AUTHENTICATION_FAILED = 305
    FORBIDDEN_USER = 306
    FORBIDDEN_ADDRESS = 307
    API_EXTENSION_UNAVAILABLE = 401
    CALL_CONNECT_FAILED = 402
    SMS_DESTINATION_NOT_FOUND = 501
    CALL_NOT_FOUND = 601
    CONFIG_NOT_FOUND = 701
    INVALID_CONFIG = 702
    CONFIG_ALREADY_EXISTS = 703


TEMPLATES: dict[Status, str] = {
    Status.OK: "Command successfully executed",
    Status.PARSE_ERROR: "Error occured during parsing message: '{0}'",
    Status.NOT_IMPLEMENTED_COMMAND: "Not implemented command: '{0}'",
    Status.INVALID_PARAMETER: "Missing or invalid parameter '{0}' for command '{1}'",
    Status.INAPPROPRIATE_COMMAND: "Command '{0}' cannot be used here",
    Status.AUTHENTICATION_REQUIRED: "Authentication required",
    Status.AUTHENTICATION_FAILED: "Authentication failed, bad username or password",
    Status.FORBIDDEN_USER: "User is not allowed to use API in ACL",
    Status.FORBIDDEN_ADDRESS: "Use API from this address is forbidden",
    Status.API_EXTENSION_UNAVAILABLE: (
        "API extension '{0}' unavailable, please check configuration or permissions"
    ),
    Status.CALL_CONNECT_FAILED: "Call connect to '{0}' failed with result state '{1}'",
    Status.SMS_DESTINATION_NOT_FOUND: "Destination of the SMS is not found",
    Status.CALL_NOT_FOUND: "Call not found with ID '{0}'",
    Status.CONFIG_NOT_FOUND: "Configuration for type '{0}' not found",
    Status.INVALID_CONFIG: "Invalid configuration for type '{0}'",
    Status.CONFIG_ALREADY_EXISTS: "Extension configuration already exists",
}


def format_message(status: Status, *args: str) -> str:
    """Fill a template; the arguments are data and are never themselves interpreted."""
    return TEMPLATES[status].format(*args)


class ApiError(Exception):
    """A command outcome other than 200; raised anywhere below the request handler.

    Carrying the code as an exception lets validation and handlers stop at the first
    problem, which is exactly the evaluation order of section 4.2.
    """

    def __init__(self, status: Status, *args: str) -> None:
        self.status = status
        self.message = format_message(status, *args)
        super().__init__(f"{int(status)} {self.message}")
