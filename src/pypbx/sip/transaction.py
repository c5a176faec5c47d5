"""SIP transaction layer (RFC 3261 §17, RFC 6026), sans-I/O.

The layer owns every client and server transaction of one SIP stack. It is driven by three inputs
only -- a message that arrived (``receive``), something the transaction user (TU) wants to send
(``send_request`` / ``send_response``), and the passage of time (``handle_timer``) -- and answers
with a queue of events (``pop_events``): datagrams to put on the wire (``Transmit``) and what the
TU must hear about. Time only ever comes in through ``now`` arguments, so every timer scenario of
the RFC can be replayed in a test with a fake clock, and the asyncio glue stays a thin loop.

Retransmission timers (A, E, G) exist only because UDP loses packets, so they are never armed on a
reliable transport; the wait-for-retransmissions timers (D, I, J, K) are zero there, and the
transaction ends at once instead of lingering.

A non-INVITE server transaction that completes over UDP has one job left for its 64*T1 (Timer
J): answer retransmissions of its request with the same final response. That needs the bytes
sent and where they went, not the request, the response and the transaction objects, so the
layer keeps only those (see ``_Completed``): a registration storm keeps tens of thousands of
transactions in that state, and every object they held was one more for the garbage collector
to walk. The transaction object the TU holds stays in 'completed'; its end is silent.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from pypbx.sip.message import (
    Headers,
    Message,
    Request,
    Response,
    SipParseError,
    Via,
    make_response,
)

log = logging.getLogger(__name__)

Addr = tuple[str, int]

MAGIC_COOKIE = "z9hG4bK"
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss"})
DEFAULT_PORTS = {"tls": 5061, "wss": 443, "ws": 80}
DEFAULT_SIP_PORT = 5060
TIMER_D_UNRELIABLE = 32.0  # RFC 3261 Table 4: "> 32s for UDP", independent of T1


# -- transactions ---------------------------------------------------------------------------------


class TransactionKey(NamedTuple):
    """What §17.1.3 / §17.2.3 match on.

    ``call_id``/``cseq`` are only filled for requests from RFC 2543 peers (no magic cookie), whose
    branch alone is not unique enough; ``sent_by`` is empty for client keys, where the branch was
    chosen by us and is therefore unique on its own. A named tuple rather than a frozen
    dataclass: every message builds one and hashes it, and a tuple does both in C.
    """

    branch: str
    sent_by: str
    method: str
    call_id: str = ""
    cseq: int = 0


class _Transaction:
    """State shared by both kinds of transaction; the layer drives it, the TU only reads it."""

    def __init__(self, key: TransactionKey, request: Request, transport: str) -> None:
        self.key = key
        self.request = request
        self.transport = transport
        self.is_invite = request.method == "INVITE"
        self.state = ""
        self.last_response: Response | None = None
        self._interval = 0.0  # current retransmission interval (Timers A, E, G)
        self._timers: dict[str, int] = {}  # armed timer name -> token of its heap entry

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"<{kind} {self.request.method} {self.key.branch} {self.state}>"


class ClientTransaction(_Transaction):
    """A request we sent and the responses that came back for it (§17.1).

    States: INVITE: calling -> proceeding -> accepted (2xx, RFC 6026) | completed (3xx-6xx)
    -> terminated; non-INVITE: trying -> proceeding -> completed -> terminated.
    """

    def __init__(self, key: TransactionKey, request: Request, dest: Addr, transport: str) -> None:
        super().__init__(key, request, transport)
        self.dest = dest
        self.ack: Request | None = None  # the ACK we built for a 3xx-6xx, resent on retransmits
        self.state = "calling" if self.is_invite else "trying"


class ServerTransaction(_Transaction):
    """A request we received and the responses the TU gives it (§17.2).

    States: INVITE: proceeding -> accepted (2xx, RFC 6026) | completed (3xx-6xx) -> confirmed
    -> terminated; non-INVITE: trying -> proceeding -> completed -> terminated.
    """

    def __init__(self, key: TransactionKey, request: Request, source: Addr, transport: str) -> None:
        super().__init__(key, request, transport)
        self.source = source
        self.state = "proceeding" if self.is_invite else "trying"
        self.response_dest: Addr | None = None  # where responses go, once worked out
        self.completed_key: _CompletedKey = ""  # its key once compacted, if worked out


Transaction = ClientTransaction | ServerTransaction


# -- events ---------------------------------------------------------------------------------------
# Plain frozen dataclasses. Interpreted, filling the instance dict directly halved their cost,
# but a compiled class (scripts/compile_core.py) has no instance dict to fill.


@dataclass(frozen=True)
class Transmit:
    """Put ``message`` on the wire; ``dest`` may be a host name the glue still has to resolve.

    ``data``, when set, is ``message`` already serialised (the layer needed the bytes itself).
    """

    message: Message
    dest: Addr
    transport: str
    data: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Retransmit:
    """Put bytes sent before back on the wire: the final response of a completed non-INVITE
    server transaction, repeated for a retransmitted request (the layer kept only its bytes)."""

    data: bytes
    dest: Addr
    transport: str


@dataclass(frozen=True)
class RequestReceived:
    """A new request for the TU; ``transaction`` is None for ACKs, which have none (§17.2.3)."""

    request: Request
    source: Addr
    transport: str
    transaction: ServerTransaction | None


@dataclass(frozen=True)
class ResponseReceived:
    """A response for the TU; ``transaction`` None means stray (e.g. a late 2xx to re-ACK)."""

    response: Response
    transaction: ClientTransaction | None


@dataclass(frozen=True)
class TransactionTimeout:
    """The peer went silent; for a client transaction the TU treats it as a 408.

    Fired by Timer B/F, by Timer H (the ACK for our non-2xx final never came), and 64*T1 after
    a CANCEL for an INVITE that still has no final response (§9.1).
    """

    transaction: Transaction


@dataclass(frozen=True)
class TransactionTerminated:
    """The transaction is gone from the layer; lets the TU drop its own references to it."""

    transaction: Transaction


Event = (
    Transmit
    | Retransmit
    | RequestReceived
    | ResponseReceived
    | TransactionTimeout
    | TransactionTerminated
)

# What is left of a completed non-INVITE server transaction on an unreliable transport:
# (Timer J deadline, the final response's bytes, host and port they went to, transport),
# keyed by the transaction key's fields in one string (``_completed_key``). A registration
# storm keeps tens of thousands of them for 32 s, each object of them a small block that
# later messages' objects are allocated around, so as few objects as can be: one string
# where the key was a tuple of five holding two strings of its own, host and port in the
# entry rather than in a tuple, the deadlines in a deque of their own rather than a
# (deadline, key) tuple each (6 objects a transaction instead of 11). Atoms only: the
# collector never tracks them.
_Completed = tuple[float, bytes, str, int, str]
_CompletedKey = str


def _completed_key(key: TransactionKey) -> _CompletedKey:
    """One string for a key: parsed header values hold no LF, so the join is unambiguous."""
    return f"{key.branch}\n{key.sent_by}\n{key.method}\n{key.call_id}\n{key.cseq}"


# -- matching and routing helpers -----------------------------------------------------------------


def _default_port(transport: str) -> int:
    return DEFAULT_PORTS.get(transport.lower(), DEFAULT_SIP_PORT)


def _sent_by(via: Via) -> str:
    """Normalised sent-by, so that ``host`` and ``host:5060`` compare equal."""
    port = via.port if via.port is not None else _default_port(via.transport)
    return f"{via.host.lower()}:{port}"


def _key_for(message: Message, method: str, *, server: bool) -> TransactionKey:
    """Raises ``SipParseError`` when the top Via (or, for RFC 2543 peers, CSeq) is unusable."""
    return _key_of(message, message.top_via, method, server=server)


def _key_of(message: Message, via: Via, method: str, *, server: bool) -> TransactionKey:
    """``_key_for`` with the message's top Via already at hand."""
    branch = via.branch or ""
    sent_by = _sent_by(via) if server else ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return TransactionKey(branch, sent_by, method)
    # No branch, a pre-3261 one, or the bare cookie with no identifier (RFC 4475 badbranch):
    # fall back to RFC 2543 matching rather than let every such request share one key.
    return TransactionKey(branch, sent_by, method, message.call_id, message.cseq[0])


def _server_key(request: Request, via: Via) -> TransactionKey:
    """The key of the server transaction ``request`` (top Via ``via``) belongs to.

    Remembered in the request's views when the key is the branch's alone, against the Via
    and CSeq texts it was worked out from: the responses made from the request copy its
    views (``make_response``), so ``send_response`` finds its transaction without working
    the key out again.
    """
    if request.method == "ACK":  # it belongs to the INVITE transaction it acknowledges
        return _key_of(request, via, "INVITE", server=True)
    key = _key_of(request, via, request.method, server=True)
    # A response's key has its CSeq's method: the same as the request's (the parser sees
    # to it), and RFC 2543 keys hold more than the Via and CSeq: never remembered.
    if not key.call_id and request.cseq[1] == request.method:
        first = request.headers._first_values()
        request._cache[_KEY_VIEW] = ((first.get("via"), first.get("cseq")), key)
    return key


# The views entry under which _server_key leaves a key for the responses to find.
_KEY_VIEW = "server transaction key"


def _response_key(response: Response, via: Via) -> TransactionKey:
    """The key of the server transaction a response (top Via ``via``) is for."""
    hit = response._cache.get(_KEY_VIEW)
    if hit is not None:
        first = response.headers._first_values()
        if hit[0] == (first.get("via"), first.get("cseq")):
            return cast(TransactionKey, hit[1])
    return _key_of(response, via, response.cseq[1], server=True)


def _client_key(message: Message) -> TransactionKey:
    return _key_for(message, message.cseq[1], server=False)


def _stamp_via(request: Request, source: Addr) -> Via:
    """Record where the request really came from in its top Via (§18.2.1, RFC 3581 §4);
    returns the top Via as it is now.

    Responses copy the Via, so this is what tells a client behind NAT its public address, and
    what ``send_response`` later routes by.
    """
    via = request.top_via
    host, port = source
    rport = "rport" in via.params
    if not rport and via.host == host:
        return via
    params = dict(via.params)
    params["received"] = host  # RFC 3581: always when rport was asked for, even if equal
    if rport:
        params["rport"] = str(port)
    stamped = Via(via.transport, via.host, via.port, params)
    request.replace_top_via(stamped)
    return stamped


def via_destination(via: Via) -> Addr:
    """Where a response goes according to its top Via alone (§18.2.2 + RFC 3581)."""
    maddr = via.params.get("maddr")
    sent_by_port = via.port if via.port is not None else _default_port(via.transport)
    if maddr:
        return maddr, sent_by_port
    received = via.received
    rport = via.rport
    if rport:
        return received or via.host, rport
    if received:
        return received, sent_by_port
    return via.host, sent_by_port


# -- request builders -----------------------------------------------------------------------------


def _copy_headers(source: Message, target: Headers, names: tuple[str, ...]) -> None:
    for name in names:
        for value in source.headers.get_all(name):
            target.add(name, value)


def _single_via_request(invite: Request, method: str, to_value: str) -> Request:
    """The common shape of CANCEL and non-2xx ACK: hop-by-hop copies of the INVITE (§9.1)."""
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    headers.add("Max-Forwards", "70")
    _copy_headers(invite, headers, ("From",))
    headers.add("To", to_value)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} {method}")
    _copy_headers(invite, headers, ("Route",))
    return Request(method, invite.uri, headers)


def make_cancel(invite: Request) -> Request:
    """CANCEL for ``invite`` (§9.1): same branch, so it reaches the same server transaction."""
    to_value = invite.headers.get("To") or ""
    return _single_via_request(invite, "CANCEL", to_value)


def make_ack_for_non2xx(invite: Request, response: Response) -> Request:
    """ACK for a 3xx-6xx (§17.1.1.3); part of the INVITE transaction, hence the same branch."""
    to_value = response.headers.get("To") or invite.headers.get("To") or ""
    return _single_via_request(invite, "ACK", to_value)


# -- the layer ------------------------------------------------------------------------------------


class TransactionLayer:
    """All transactions of one SIP stack, with their timers, in a single deadline heap.

    Timers are cancelled lazily: arming stores a token on the transaction and pushes
    ``(deadline, token, name, txn)``; an entry whose token no longer matches is ignored, which
    keeps every state transition O(1) regardless of how many timers it cancels.
    """

    def __init__(
        self,
        *,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        auto_trying: bool = True,
        timer_d: float = TIMER_D_UNRELIABLE,
    ) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.timer_d = timer_d
        self.auto_trying = auto_trying
        self._clients: dict[TransactionKey, ClientTransaction] = {}
        self._servers: dict[TransactionKey, ServerTransaction] = {}
        # Completed non-INVITE server transactions (UDP), and their Timer J deadlines in the
        # order they were set; one fixed delay makes that deadline order, so no heap. (Were
        # T1 lowered at run time, an entry could outlive its deadline until those queued
        # before it go: it would answer a retransmission a little longer, nothing worse.)
        self._completed: dict[_CompletedKey, _Completed] = {}
        self._expiry: deque[float] = deque()  # deadlines, for the keys below in that order
        self._expiry_keys: deque[_CompletedKey] = deque()
        self._events: list[Event] = []
        self._heap: list[tuple[float, int, str, Transaction]] = []
        self._tokens = itertools.count()

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers) + len(self._completed)

    # -- public API -------------------------------------------------------------------------------

    def pop_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        deadline = heap[0][0] if heap else None
        if self._expiry:
            first = self._expiry[0]
            if deadline is None or first < deadline:
                return first
        return deadline

    def handle_timer(self, now: float) -> None:
        expiry = self._expiry
        if expiry and expiry[0] <= now:
            self._expire_completed(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, name, txn = entry
            del txn._timers[name]
            self._fire(txn, name, now)

    def send_request(
        self, request: Request, dest: Addr, transport: str, now: float
    ) -> ClientTransaction:
        """Start a client transaction; the request must already carry its top Via and branch."""
        if request.method == "ACK":
            raise ValueError("ACK has no client transaction; use send_stateless()")
        key = _client_key(request)
        if key in self._clients:
            raise ValueError(f"a client transaction with branch {key.branch!r} already exists")
        txn = ClientTransaction(key, request, dest, transport.lower())
        self._clients[key] = txn
        self._transmit(request, dest, txn.transport)
        if not txn.reliable:
            txn._interval = self.t1
            self._arm(txn, "A" if txn.is_invite else "E", self.t1, now)
        self._arm(txn, "B" if txn.is_invite else "F", 64 * self.t1, now)
        if request.method == "CANCEL":
            self._guard_cancelled_invite(key, now)
        return txn

    def _guard_cancelled_invite(self, cancel_key: TransactionKey, now: float) -> None:
        """§9.1: an INVITE still without a final 64*T1 after its CANCEL is given up on.

        Without this, a callee that rang and then vanished would pin the INVITE transaction in
        'proceeding' forever, since Timer B no longer runs there.
        """
        invite = self._clients.get(cancel_key._replace(method="INVITE"))
        if invite is not None and invite.state in ("calling", "proceeding"):
            self._arm(invite, "cancelled", 64 * self.t1, now)

    def send_stateless(self, message: Message, dest: Addr, transport: str) -> None:
        """Transmit outside any transaction: ACK for 2xx, or a proxy-style forward."""
        self._transmit(message, dest, transport.lower())

    def send_response(self, response: Response, now: float) -> None:
        """Send a TU response through its server transaction, or statelessly if it has none.

        Raises ``SipParseError`` if the response has no usable top Via or CSeq: that is a TU bug.
        """
        via = response.top_via
        key = _response_key(response, via)
        txn = self._servers.get(key)
        if txn is None:
            if self._completed and _completed_key(key) in self._completed:
                log.warning("%s: dropping %d sent after the final response", key, response.status)
                return
            self._transmit(response, via_destination(via), via.transport.lower())
            return
        if txn.is_invite:
            self._server_invite_send(txn, response, now)
        else:
            self._server_non_invite_send(txn, response, now)

    def cancel_target(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a received CANCEL is aimed at (§9.2)."""
        try:
            key = _key_for(cancel, "INVITE", server=True)
        except SipParseError:
            return None
        return self._servers.get(key)

    def receive(
        self, message: Request | Response, source: Addr, transport: str, now: float
    ) -> None:
        """Feed one parsed message from the network; malformed ones are logged and dropped."""
        try:
            if isinstance(message, Request):
                # "udp" as the transport gave it, not an equal new string: a completed
                # transaction keeps it (see _Completed)
                lower = transport if transport.islower() else transport.lower()
                self._receive_request(message, source, lower, now)
            else:
                self._receive_response(message, now)
        except ValueError as exc:  # SipParseError, or a header value unfit to echo
            log.warning("dropping message from %s:%s: %s", source[0], source[1], exc)

    # -- timers -----------------------------------------------------------------------------------

    def _expire_completed(self, now: float) -> None:
        """Timer J of the compacted transactions whose deadline has come."""
        expiry = self._expiry
        keys = self._expiry_keys
        completed = self._completed
        while expiry and expiry[0] <= now:
            deadline = expiry.popleft()
            key = keys.popleft()
            entry = completed.get(key)
            if entry is not None and entry[0] == deadline:  # not a newer one under the same key
                del completed[key]

    def _live(self, entry: tuple[float, int, str, Transaction]) -> bool:
        _, token, name, txn = entry
        return txn._timers.get(name) == token

    def _arm(self, txn: Transaction, name: str, delay: float, now: float) -> None:
        token = next(self._tokens)
        txn._timers[name] = token
        heapq.heappush(self._heap, (now + delay, token, name, txn))

    def _disarm(self, txn: Transaction, *names: str) -> None:
        for name in names:
            txn._timers.pop(name, None)

    def _wait_then_terminate(self, txn: Transaction, name: str, delay: float, now: float) -> None:
        """Timers D/I/J/K/L/M: linger to absorb retransmissions, or end now if none can come."""
        if delay <= 0:
            self._terminate(txn)
        else:
            self._arm(txn, name, delay, now)

    def _fire(self, txn: Transaction, name: str, now: float) -> None:
        if name in ("A", "E", "G"):
            self._retransmit(txn, name, now)
        elif name in ("B", "F", "H", "cancelled"):
            log.debug("%r: timer %s fired", txn, name)
            self._events.append(TransactionTimeout(txn))
            self._terminate(txn)
        else:  # D, I, J, K, L, M
            self._terminate(txn)

    def _retransmit(self, txn: Transaction, name: str, now: float) -> None:
        if isinstance(txn, ClientTransaction):
            self._transmit(txn.request, txn.dest, txn.transport)
            if name == "A":
                txn._interval *= 2
            elif txn.state == "proceeding":
                txn._interval = self.t2
            else:
                txn._interval = min(2 * txn._interval, self.t2)
        else:
            if txn.last_response is not None:
                self._send_from(txn, txn.last_response)
            txn._interval = min(2 * txn._interval, self.t2)
        self._arm(txn, name, txn._interval, now)

    def _terminate(self, txn: Transaction) -> None:
        txn.state = "terminated"
        txn._timers.clear()
        if isinstance(txn, ClientTransaction):
            if self._clients.get(txn.key) is txn:
                del self._clients[txn.key]
        elif self._servers.get(txn.key) is txn:
            del self._servers[txn.key]
        self._events.append(TransactionTerminated(txn))

    # -- output -----------------------------------------------------------------------------------

    def _transmit(self, message: Message, dest: Addr, transport: str) -> None:
        self._events.append(Transmit(message, dest, transport))

    def _send_from(self, txn: ServerTransaction, response: Response) -> None:
        """Responses go back where the request came from (§18.2.2, RFC 3581)."""
        self._transmit(response, self._response_dest(txn), txn.transport)

    @staticmethod
    def _response_dest(txn: ServerTransaction) -> Addr:
        dest = txn.response_dest
        if dest is None:
            dest = txn.source if txn.reliable else via_destination(txn.request.top_via)
            txn.response_dest = dest
        return dest

    # -- server side ------------------------------------------------------------------------------

    def _receive_request(self, request: Request, source: Addr, transport: str, now: float) -> None:
        key = _server_key(request, _stamp_via(request, source))
        txn = self._servers.get(key)
        completed_key = ""
        if txn is None and self._completed:
            completed_key = _completed_key(key)
            completed = self._completed.get(completed_key)
            if completed is not None:  # a retransmission: the same final again (§17.2.2)
                _, data, host, port, sent_over = completed
                self._events.append(Retransmit(data, (host, port), sent_over))
                return
        if request.method == "ACK":
            self._receive_ack(request, source, transport, txn, now)
        elif txn is not None:
            self._absorb_retransmission(txn)
        else:
            txn = ServerTransaction(key, request, source, transport)
            txn.completed_key = completed_key
            self._servers[key] = txn
            if txn.is_invite and self.auto_trying:
                trying = make_response(request, 100)  # echoes Timestamp (§8.2.6.1)
                txn.last_response = trying
                self._send_from(txn, trying)
            self._events.append(RequestReceived(request, source, transport, txn))

    def _receive_ack(
        self,
        ack: Request,
        source: Addr,
        transport: str,
        txn: ServerTransaction | None,
        now: float,
    ) -> None:
        if txn is None or txn.state == "accepted":
            # ACK for a 2xx: end-to-end, for the TU and its dialog (RFC 6026 §8.7).
            self._events.append(RequestReceived(ack, source, transport, None))
        elif txn.state == "completed":
            txn.state = "confirmed"
            txn._timers.clear()
            self._wait_then_terminate(txn, "I", 0 if txn.reliable else self.t4, now)
        # confirmed: absorbed; proceeding: no final sent yet, so nothing to acknowledge

    def _absorb_retransmission(self, txn: ServerTransaction) -> None:
        if txn.state in ("proceeding", "completed") and txn.last_response is not None:
            self._send_from(txn, txn.last_response)

    def _server_invite_send(self, txn: ServerTransaction, response: Response, now: float) -> None:
        status = response.status
        if txn.state == "proceeding":
            txn.last_response = response
            self._send_from(txn, response)
            if 200 <= status < 300:
                txn.state = "accepted"
                self._arm(txn, "L", 64 * self.t1, now)
            elif status >= 300:
                txn.state = "completed"
                if not txn.reliable:
                    txn._interval = self.t1
                    self._arm(txn, "G", self.t1, now)
                self._arm(txn, "H", 64 * self.t1, now)
        elif txn.state == "accepted" and 200 <= status < 300:
            self._send_from(txn, response)  # the TU retransmitting its 2xx (RFC 6026 §8.5)
        else:
            log.warning("%r: dropping %d sent after the final response", txn, status)

    def _server_non_invite_send(
        self, txn: ServerTransaction, response: Response, now: float
    ) -> None:
        if txn.state not in ("trying", "proceeding"):
            log.warning("%r: dropping %d sent after the final response", txn, response.status)
            return
        txn.last_response = response
        if response.status < 200:
            self._send_from(txn, response)
            txn.state = "proceeding"
        elif txn.reliable:
            self._send_from(txn, response)
            txn.state = "completed"
            self._terminate(txn)  # Timer J = 0
        else:
            self._complete_unreliable(txn, response, now)

    def _complete_unreliable(self, txn: ServerTransaction, response: Response, now: float) -> None:
        """Send the final response and keep the transaction as just its bytes until Timer J.

        The request and response objects stay the TU's business (``txn.last_response``).
        """
        dest = self._response_dest(txn)
        data = response.serialize()
        self._events.append(Transmit(response, dest, txn.transport, data))
        txn.state = "completed"
        txn._timers.clear()
        del self._servers[txn.key]
        key = txn.completed_key or _completed_key(txn.key)
        deadline = now + 64 * self.t1
        self._completed[key] = (deadline, data, dest[0], dest[1], txn.transport)
        self._expiry.append(deadline)
        self._expiry_keys.append(key)

    # -- client side ------------------------------------------------------------------------------

    def _receive_response(self, response: Response, now: float) -> None:
        if not 100 <= response.status <= 699:
            log.warning("dropping response with status %d", response.status)
            return
        txn = self._clients.get(_client_key(response))
        if txn is None:
            self._events.append(ResponseReceived(response, None))
        elif txn.is_invite:
            self._client_invite_response(txn, response, now)
        else:
            self._client_non_invite_response(txn, response, now)

    def _client_invite_response(
        self, txn: ClientTransaction, response: Response, now: float
    ) -> None:
        status = response.status
        if txn.state in ("calling", "proceeding"):
            txn.last_response = response
            if status < 200:
                # Timer B stops too: how long a callee may ring is the TU's decision (it
                # CANCELs, and then the 'cancelled' guard bounds the wait for the 487).
                self._disarm(txn, "A", "B")
                txn.state = "proceeding"
            elif status < 300:
                txn._timers.clear()
                txn.state = "accepted"
                # RFC 6026 Timer M: stay to pass 2xx retransmits (other forks too) to the TU.
                self._arm(txn, "M", 64 * self.t1, now)
            else:
                txn._timers.clear()
                txn.state = "completed"
                txn.ack = make_ack_for_non2xx(txn.request, response)
                self._transmit(txn.ack, txn.dest, txn.transport)
            self._events.append(ResponseReceived(response, txn))
            if txn.state == "completed":
                delay = 0 if txn.reliable else self.timer_d
                self._wait_then_terminate(txn, "D", delay, now)
        elif txn.state == "accepted" and 200 <= status < 300:
            self._events.append(ResponseReceived(response, txn))
        elif txn.state == "completed" and status >= 300 and txn.ack is not None:
            self._transmit(txn.ack, txn.dest, txn.transport)

    def _client_non_invite_response(
        self, txn: ClientTransaction, response: Response, now: float
    ) -> None:
        if txn.state not in ("trying", "proceeding"):
            return  # completed: a retransmitted final, already seen
        txn.last_response = response
        self._events.append(ResponseReceived(response, txn))
        if response.status < 200:
            txn.state = "proceeding"
            return
        txn.state = "completed"
        txn._timers.clear()
        delay = 0 if txn.reliable else self.t4
        self._wait_then_terminate(txn, "K", delay, now)
