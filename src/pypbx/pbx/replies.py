"""Responses a UAS core sends: every final response carries a To tag (RFC 3261 §8.2.6.2)."""

from __future__ import annotations

from pypbx.sip.message import Request, Response, generate_tag, make_response


def reply(
    request: Request, status: int, reason: str | None = None, *, tag: str | None = None
) -> Response:
    """A response to `request`, tagged unless it is 100 Trying or the To already has a tag."""
    to_tag = None
    if status > 100 and request.to_addr.tag is None:
        to_tag = tag or generate_tag()
    return make_response(request, status, reason, to_tag=to_tag)
