"""The one exception every SIP parser raises.

Why one type: the transport layer must decide, for any input, between "answer 4xx/5xx" and
"drop silently" without knowing which parser failed.  Carrying the partially parsed request
(when it is good enough to route a response) and the status to answer with lets it do that,
in the spirit of h11's RemoteProtocolError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pypbx.sip.model import Request


class SipParseError(ValueError):
    """Malformed or over-limit SIP input.

    ``reason`` is a short phrase fit for a 400 reason phrase and for logs.  ``request`` is set
    when the input was a request whose request line and top Via were readable, so a response
    the sender can match can be built with ``make_response(err.request, err.status,
    err.reason)`` (its other headers may be missing or malformed; they are echoed as they
    came); when it is None the input must be dropped.  ``status`` is 400 unless a more specific
    code applies (505 for a foreign SIP version, 513 for an oversize body).
    """

    def __init__(self, reason: str, request: Request | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request
        self.status = status
