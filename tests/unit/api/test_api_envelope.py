"""The response envelope and status templates (spec 3.2, 3.3, 4.1), byte for byte."""

from __future__ import annotations

import pytest

from pypbx.api.status import TEMPLATES, ApiError, Status, format_message
from pypbx.api.xmlout import Node, container, leaf, render_response, render_status

OK_BYTES = (
    b'<?xml version="1.0"?>\n'
    b'<Response xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    b' xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n'
    b"  <Code>200</Code>\n"
    b"  <Message>Command successfully executed</Message>\n"
    b"</Response>"
)


def test_ok_envelope_bytes() -> None:
    assert render_status(Status.OK) == OK_BYTES


def test_payload_follows_message_and_nests_with_two_spaces() -> None:
    body = render_response(
        Status.OK,
        "Command successfully executed",
        [container("ActiveCalls", [container("CallInfo", [leaf("CallId", "uteom")])])],
    )
    assert body.decode().split("\n")[4:] == [
        "  <ActiveCalls>",
        "    <CallInfo>",
        "      <CallId>uteom</CallId>",
        "    </CallInfo>",
        "  </ActiveCalls>",
        "</Response>",
    ]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (container("ActiveCalls", []), "<ActiveCalls />"),
        (leaf("UserAgentName", None), "<UserAgentName />"),
        (leaf("UserAgentName", ""), "<UserAgentName />"),
        (leaf("Enabled", True), "<Enabled>true</Enabled>"),
        (leaf("Enabled", False), "<Enabled>false</Enabled>"),
        (leaf("Code", 601), "<Code>601</Code>"),
        (leaf("CallerId", "Smith & <Co>"), "<CallerId>Smith &amp; &lt;Co&gt;</CallerId>"),
        (leaf("CallerId", "a\x01b"), "<CallerId>a\ufffdb</CallerId>"),
        (leaf("CallerId", "a\rb"), "<CallerId>a&#xD;b</CallerId>"),
        (leaf("CallerId", 'say "hi"'), '<CallerId>say "hi"</CallerId>'),
        (
            Node("Config", attrs={"knownType": 'a"<&'}, children=[leaf("ID", "1")]),
            '<Config knownType="a&quot;&lt;&amp;">',
        ),
    ],
)
def test_element_rendering(node: Node, expected: str) -> None:
    lines = render_response(Status.OK, "m", [node]).decode().split("\n")
    assert lines[4].strip() == expected


def test_error_envelope_has_no_payload_and_is_utf8() -> None:
    body = render_status(Status.CALL_NOT_FOUND, "Ünïcode")
    assert body.decode("utf-8").split("\n")[2:] == [
        "  <Code>601</Code>",
        "  <Message>Call not found with ID 'Ünïcode'</Message>",
        "</Response>",
    ]


@pytest.mark.parametrize(
    ("status", "args", "message"),
    [
        (Status.OK, (), "Command successfully executed"),
        (Status.PARSE_ERROR, ("x",), "Error occured during parsing message: 'x'"),
        (Status.NOT_IMPLEMENTED_COMMAND, ("Foo",), "Not implemented command: 'Foo'"),
        (
            Status.INVALID_PARAMETER,
            ("CallId", "Hold"),
            "Missing or invalid parameter 'CallId' for command 'Hold'",
        ),
        (Status.INAPPROPRIATE_COMMAND, ("Forward",), "Command 'Forward' cannot be used here"),
        (Status.AUTHENTICATION_REQUIRED, (), "Authentication required"),
        (Status.AUTHENTICATION_FAILED, (), "Authentication failed, bad username or password"),
        (Status.FORBIDDEN_USER, (), "User is not allowed to use API in ACL"),
        (Status.FORBIDDEN_ADDRESS, (), "Use API from this address is forbidden"),
        (
            Status.API_EXTENSION_UNAVAILABLE,
            ("9986",),
            "API extension '9986' unavailable, please check configuration or permissions",
        ),
        (
            Status.CALL_CONNECT_FAILED,
            ("1000", "NotFound"),
            "Call connect to '1000' failed with result state 'NotFound'",
        ),
        (Status.SMS_DESTINATION_NOT_FOUND, (), "Destination of the SMS is not found"),
        (Status.CALL_NOT_FOUND, ("g67th7",), "Call not found with ID 'g67th7'"),
        (Status.CONFIG_NOT_FOUND, ("1234",), "Configuration for type '1234' not found"),
        (Status.INVALID_CONFIG, ("SIP",), "Invalid configuration for type 'SIP'"),
        (Status.CONFIG_ALREADY_EXISTS, (), "Extension configuration already exists"),
    ],
)
def test_templates_verbatim(status: Status, args: tuple[str, ...], message: str) -> None:
    assert format_message(status, *args) == message
    assert ApiError(status, *args).message == message


def test_every_status_has_a_template() -> None:
    assert set(TEMPLATES) == set(Status)


def test_braces_in_arguments_are_data() -> None:
    assert format_message(Status.NOT_IMPLEMENTED_COMMAND, "{0}{1}") == (
        "Not implemented command: '{0}{1}'"
    )
