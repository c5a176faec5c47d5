"""SIP dialog state (RFC 3261 §12), sans-I/O.

A dialog is the peer-to-peer relationship that outlives any one transaction: it remembers the
tags, the CSeq spaces of both sides, where the peer can be reached (remote target) and the proxies
that asked to stay on the path (route set), so that every later in-dialog request is built the
same way however the dialog began.
"""

from __future__ import annotations

import logging

from pypbx.sip.message import Address, Headers, Message, Request, Response, SipURI, Via

log = logging.getLogger(__name__)

MAX_FORWARDS = "70"
# Methods whose requests carry our Contact, because they may refresh the peer's view of us.
_TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# URI parameters not allowed in a Request-URI (§19.1.1 table 1), stripped for strict routing.
_NOT_IN_REQUEST_URI = ("method",)


def _first_contact_uri(message: Message) -> SipURI | None:
    contacts = message.contacts
    return contacts[0].uri.copy() if contacts else None


def _untagged(address: Address) -> Address:
    """The address without its tag: the dialog keeps tags apart, as its identifier."""
    params = {name: value for name, value in address.params.items() if name != "tag"}
    return address.copy(params=params)


def _route_set(message: Message, *, reverse: bool) -> list[Address]:
    routes = [address.copy() for address in message.record_routes]
    if reverse:
        routes.reverse()
    return routes


class Dialog:
    """One dialog, seen from our side; ``early`` until a 2xx confirms it (§12.1).

    The TU owns the instance, feeds it in-dialog requests (``accept_request``) and target
    refreshes, and asks it for the requests it sends (``create_request``/``create_ack``).
    """

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_uri: Address,
        remote_uri: Address,
        local_seq: int,
        remote_seq: int | None,
        remote_target: SipURI,
        route_set: list[Address],
        local_target: SipURI | None = None,
        state: str = "confirmed",
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_target = local_target
        self.state = state

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self.state}>"

    @property
    def id(self) -> tuple[str, str, str | None]:
        """(Call-ID, local tag, remote tag), the dialog identifier of §12."""
        return self.call_id, self.local_tag, self.remote_tag

    # -- creation ---------------------------------------------------------------------------------

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """Dialog created by a 1xx-with-tag or 2xx to a request we sent (§12.1.2)."""
        local_tag = request.from_addr.tag
        if local_tag is None:
            raise ValueError("request has no From tag")
        if response.status < 200 and response.to_addr.tag is None:
            raise ValueError("a provisional response without To tag creates no dialog")
        target = _first_contact_uri(response) or request.uri.copy()
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=response.to_addr.tag,
            local_uri=_untagged(request.from_addr),
            remote_uri=_untagged(request.to_addr),
            local_seq=request.cseq[0],
            remote_seq=None,
            remote_target=target,
            route_set=_route_set(response, reverse=True),
            local_target=_first_contact_uri(request),
            state="confirmed" if 200 <= response.status < 300 else "early",
        )

    @classmethod
    def from_uas(
        cls, request: Request, local_tag: str, *, local_target: SipURI | None = None
    ) -> Dialog:
        """Dialog created by our response to a request we received (§12.1.1).

        The local CSeq space starts empty (0); our first request in the dialog uses 1.
        """
        target = _first_contact_uri(request) or request.from_addr.uri.copy()
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_addr.tag,
            local_uri=_untagged(request.to_addr),
            remote_uri=_untagged(request.from_addr),
            local_seq=0,
            remote_seq=request.cseq[0],
            remote_target=target,
            route_set=_route_set(request, reverse=False),
            local_target=local_target,
        )

    def confirm(self, response: Response) -> None:
        """A 2xx for an early UAC dialog: its route set is recomputed from it (§13.2.2.4)."""
        self.state = "confirmed"
        self.route_set = _route_set(response, reverse=True)
        self.refresh_target(response)

    # -- requests we send -------------------------------------------------------------------------

    def create_request(
        self,
        method: str,
        via: Via,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1); ACK and CANCEL reuse the current CSeq."""
        if method not in ("ACK", "CANCEL"):
            self.local_seq += 1
        return self._build(method, self.local_seq, via, body, content_type, extra_headers)

    def create_ack(
        self,
        invite_cseq: int,
        via: Via,
        *,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """ACK for a 2xx (§13.2.2.4): a request of its own, with the INVITE's CSeq number."""
        return self._build("ACK", invite_cseq, via, body, content_type, None)

    def next_hop(self) -> SipURI:
        """Where the request goes first (§8.1.2): the top Route (loose or strict) or the target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def _build(
        self,
        method: str,
        cseq: int,
        via: Via,
        body: bytes,
        content_type: str | None,
        extra_headers: list[tuple[str, str]] | None,
    ) -> Request:
        request_uri, routes = self._routing()
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", MAX_FORWARDS)
        for route in routes:
            headers.add("Route", str(route))
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        headers.add("To", str(self._remote_address()))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        extra = extra_headers or []
        has_contact = any(name.lower() in ("contact", "m") for name, _ in extra)
        if self.local_target is not None and method in _TARGET_REFRESH_METHODS and not has_contact:
            headers.add("Contact", f"<{self.local_target}>")
        for name, value in extra:
            headers.add(name, value)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return Request(method, request_uri, headers, body)

    def _remote_address(self) -> Address:
        if self.remote_tag is None:  # an RFC 2543 peer that never sent a tag
            return self.remote_uri
        return self.remote_uri.with_tag(self.remote_tag)

    def _routing(self) -> tuple[SipURI, list[Address]]:
        """Request-URI and Route list for the next request, loose or strict (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # Strict router: it expects itself in the Request-URI and the real target last in Route.
        request_uri = first.uri.copy()
        for name in _NOT_IN_REQUEST_URI:
            request_uri.params.pop(name, None)
        request_uri.headers.clear()
        return request_uri, [*self.route_set[1:], Address(self.remote_target)]

    # -- requests we receive ----------------------------------------------------------------------

    def accept_request(self, request: Request) -> bool:
        """Remote CSeq check (§12.2.2); False means the TU answers 500.

        ACK and CANCEL reuse the INVITE's number and are never answered with 500, so they are
        exempt and never move the remote sequence.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        cseq = request.cseq[0]
        if self.remote_seq is not None and cseq < self.remote_seq:
            log.info(
                "%r: %s CSeq %d below %d, out of order", self, request.method, cseq, self.remote_seq
            )
            return False
        self.remote_seq = cseq
        return True

    def refresh_target(self, message: Message) -> None:
        """Target refresh (§12.2): re-INVITE, UPDATE or their 2xx carry the peer's new Contact."""
        uri = _first_contact_uri(message)
        if uri is not None:
            self.remote_target = uri
