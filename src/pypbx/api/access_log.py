"""An aiohttp access logger that never writes the `Password` parameter (spec 5.5).

Credentials travel in query strings, and aiohttp's default access log line contains the
full request target; this logger writes the same kind of line with passwords masked.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

REDACTED = "***"
_SECRET_NAMES = frozenset({"password"})


def _redact_pairs(part: str) -> str:
    pieces = part.split("&")
    for index, piece in enumerate(pieces):
        name, eq, _ = piece.partition("=")
        # Decode leniently: the line is logged even for requests that were refused as 300.
        if eq and unquote_plus(name, errors="replace").strip().lstrip("/").casefold() in (
            _SECRET_NAMES
        ):
            pieces[index] = f"{name}={REDACTED}"
    return "&".join(pieces)


def redact_target(target: str) -> str:
    """The request target with every password value replaced.

    The path is treated like a query too, because of the tolerated `/command=...&...` form.
    """
    path, question, query = target.partition("?")
    return _redact_pairs(path) + question + (_redact_pairs(query) if question else "")


class RedactingAccessLogger(AbstractAccessLogger):
    """`remote "METHOD target HTTP/x.y" status bytes seconds "user-agent"`, password-free."""

    @property
    def enabled(self) -> bool:
        """Below INFO nothing is written, so aiohttp skips the redaction (and timing) too."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        version = f"{request.version.major}.{request.version.minor}"
        self.logger.info(
            '%s "%s %s HTTP/%s" %d %d %.3fs "%s"',
            request.remote or "-",
            request.method,
            redact_target(request.raw_path),
            version,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
        )
