"""Cutting a byte stream (TCP/TLS) into whole SIP messages (RFC 3261 §18.3, RFC 5626 §4.4.1).

Why Content-Length is mandatory here: on a stream it is the only message delimiter, so a
message without it cannot be framed and the connection must be closed.  CRLF keep-alives
("\\r\\n\\r\\n" pings, "\\r\\n" pongs) between messages are skipped.  The framer only finds
boundaries and enforces size bounds; ``parse_message`` does the real parsing of each frame.
"""

from __future__ import annotations

import re

from pypbx.sip.errors import SipParseError
from pypbx.sip.limits import DEFAULT_LIMITS, Limits

_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)
_START_LINE_RE = re.compile(
    rb"(?:SIP/[0-9][^\r\n]*|[!-~]+ [^\r\n]* SIP/[0-9]+\.[0-9]+[ \t]*)\r?", re.IGNORECASE
)


class StreamFramer:
    """Feed bytes as they arrive, get complete messages back.

    After ``feed`` raises ``SipParseError`` the stream is unusable: close the connection.
    """

    __slots__ = ("_buffer", "_checked_start", "_limits", "_needed", "_scanned")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._scanned = 0  # bytes already searched for the end of the header section
        self._needed = 0  # total frame size once the header section is known, else 0
        self._checked_start = False

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every message now complete, in order."""
        self._buffer += data
        frames: list[bytes] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buffer)

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if not self._needed:
            if self._scanned == 0:
                keepalive = len(buffer) - len(buffer.lstrip(b"\r\n"))
                if keepalive:
                    del buffer[:keepalive]
                if not buffer:
                    return None
            self._check_start_line()
            blank = _BLANK_LINE_RE.search(buffer, max(0, self._scanned - 3))
            if blank is None:
                self._scanned = len(buffer)
                if len(buffer) > self._limits.max_message:
                    raise SipParseError("Message too large")
                return None
            self._needed = blank.end() + self._content_length(bytes(buffer[: blank.start()]))
            if self._needed > self._limits.max_message:
                raise SipParseError("Message too large")
        if len(buffer) < self._needed:
            return None
        frame = bytes(buffer[: self._needed])
        del buffer[: self._needed]
        self._needed = 0
        self._scanned = 0
        self._checked_start = False
        return frame

    def _check_start_line(self) -> None:
        """Reject garbage as soon as the first line is complete, not after 64 KiB of it."""
        if self._checked_start:
            return
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self._limits.max_line:
                raise SipParseError("Start line too long")
            return
        if end > self._limits.max_line:
            raise SipParseError("Start line too long")
        if not _START_LINE_RE.fullmatch(self._buffer, 0, end):
            raise SipParseError("Bad start line")
        self._checked_start = True

    def _content_length(self, head: bytes) -> int:
        match = _CONTENT_LENGTH_RE.search(head)
        if match is None:
            raise SipParseError("Missing Content-Length")
        text = match.group(1).strip()
        if not (text.isdigit() and len(text) <= 10):
            raise SipParseError("Bad Content-Length")
        length = int(text)
        if length > self._limits.max_body:
            raise SipParseError("Body too large")
        return length
