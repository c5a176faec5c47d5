"""Session timers (RFC 4028) on the B2BUA's legs: the asyncio side of `pypbx.sip.session_timer`.

Each leg negotiates its own timer, since pypbx is UAS toward the caller and UAC toward the
callee. Where pypbx refreshes, it sends an UPDATE (when the peer allows it) or a re-INVITE
with its current SDP at half the interval; where the phone refreshes and stops doing so,
the call ends the way a call whose RTP stopped ends (BYE to both legs, `Error` in the
history), because in both cases the phone has vanished without a BYE.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pypbx.pbx.call import Call, Leg, LegKind
from pypbx.pbx.replies import reply
from pypbx.pbx.sdp_helpers import ALLOW, SUPPORTED, SUPPORTED_EXTENSIONS
from pypbx.sip.message import Headers, Request, Response, generate_branch
from pypbx.sip.sdp import SessionDescription
from pypbx.sip.session_timer import (
    OPTION_TAG,
    Accept,
    Policy,
    SessionTimer,
    SessionTimerError,
    TimerHeaders,
    TooSmall,
    allows_method,
    answer_request,
    negotiated,
    request_headers,
    retry_interval,
    unsupported,
)

if TYPE_CHECKING:
    from pypbx.pbx.b2bua import B2BUA

log = logging.getLogger(__name__)

MAX_422_RETRIES = 3  # per callee leg: a peer that keeps raising its Min-SE is not followed
REINVITE_BUSY_DELAY = 1.0  # the phone's own re-INVITE awaits its ACK: refresh a bit later


@dataclass(eq=False)
class _LegTimer:
    timer: SessionTimer
    use_update: bool  # the peer allows UPDATE: refresh without SDP or ACK
    handle: asyncio.TimerHandle | None = None
    pending: Request | None = None  # our refresh awaiting its final response


class SessionTimers:
    """Negotiates, refreshes and enforces the session timer of every leg of the B2BUA."""

    def __init__(self, b2bua: B2BUA, *, session_expires: int = 1800, min_se: int = 90) -> None:
        self.b2bua = b2bua
        self.policy = Policy(max(session_expires, 0), max(min_se, 1))
        self._legs: dict[Leg, _LegTimer] = {}
        self._retries: weakref.WeakKeyDictionary[Leg, int] = weakref.WeakKeyDictionary()
        b2bua.on_call_ended.append(self._call_ended)

    def configure(self, *, session_expires: int, min_se: int) -> None:
        """Settings `[sip] session_expires` (0: never ask for a timer) and `session_min_se`."""
        self.policy = Policy(max(session_expires, 0), max(min_se, 1))

    def active(self, leg: Leg) -> SessionTimer | None:
        """The leg's running timer, if any (for tests and diagnostics)."""
        state = self._legs.get(leg)
        return state.timer if state is not None else None

    # ================================================================ requests we answer
    def check_request(self, request: Request, leg: Leg | None = None) -> Response | None:
        """The error response an INVITE/re-INVITE/UPDATE gets before anything else: 420 for
        an extension we lack, 400 for a malformed timer header, 422 for an interval below our
        Min-SE, 491 for a re-INVITE that crosses our own refresh on `leg`. None: go on."""
        unknown = unsupported(request.headers.get_all("Require"), SUPPORTED_EXTENSIONS)
        if unknown:
            response = reply(request, 420, "Bad Extension")
            response.headers.add("Unsupported", ", ".join(unknown))
            return response
        try:
            asked = TimerHeaders.read(request.headers)
        except SessionTimerError as exc:
            return reply(request, 400, str(exc))
        decision = answer_request(asked, self.policy)
        if isinstance(decision, TooSmall):
            response = reply(request, 422, "Session Interval Too Small")
            response.headers.add("Min-SE", str(decision.min_se))
            return response
        state = self._legs.get(leg) if leg is not None else None
        if (
            state is not None
            and state.pending is not None
            and state.pending.method == "INVITE"
            and request.method == "INVITE"
        ):
            return reply(request, 491, "Request Pending")  # RFC 3261 §14.2
        return None

    def answered(self, leg: Leg, request: Request, response: Response) -> None:
        """Our 2xx to `leg`'s INVITE, re-INVITE or UPDATE is about to go out: add the timer
        headers and (re)start the leg's timer, since a successful one is a refresh (§10)."""
        if "Supported" not in response.headers:
            response.headers.add("Supported", SUPPORTED)
        try:
            asked = TimerHeaders.read(request.headers)
        except SessionTimerError:  # check_request refused it already; be safe anyway
            asked = TimerHeaders()
        decision = answer_request(asked, self.policy)
        if not isinstance(decision, Accept) or decision.session_expires is None:
            self._stop(leg)
            return
        if decision.require:
            response.headers.add("Require", OPTION_TAG)
        response.headers.add("Session-Expires", str(decision.session_expires))
        timer = negotiated(decision.session_expires, we_sent_request=False, now=self._now())
        assert timer is not None
        previous = self._legs.get(leg)
        use_update = request.method == "UPDATE" or allows_method(request.headers, "UPDATE")
        if previous is not None:
            use_update = use_update or previous.use_update
        self._start(leg, timer, use_update)

    # ================================================================ INVITEs we send
    def offer(self, headers: Headers) -> None:
        """Timer headers for a new INVITE to a callee: Supported, and our interval if any."""
        if self.policy.session_expires <= 0:
            headers.add("Supported", SUPPORTED)
            return
        interval = max(self.policy.session_expires, self.policy.min_se)
        for name, value in request_headers(interval, self.policy.min_se, refresher=None):
            headers.add(name, SUPPORTED if name == "Supported" else value)

    def retry_invite(self, leg: Leg, response: Response) -> Request | None:
        """A 422 to a callee leg's INVITE: the INVITE again with the interval asked for
        (new transaction: CSeq + 1, new branch), or None when it cannot be satisfied."""
        retries = self._retries.get(leg, 0)
        if retries >= MAX_422_RETRIES:
            return None
        try:
            sent = TimerHeaders.read(leg.invite.headers)
            got = TimerHeaders.read(response.headers)
        except SessionTimerError as exc:
            log.info("call %s: unusable 422: %s", leg.call.id, exc)
            return None
        current = sent.session_expires.interval if sent.session_expires is not None else 0
        interval = retry_interval(current, got)
        if interval is None:
            return None
        self._retries[leg] = retries + 1
        retry = leg.invite.copy()
        via = retry.top_via.copy()
        via.params["branch"] = generate_branch()
        retry.top_via = via
        number, method = leg.invite.cseq
        retry.cseq = (number + 1, method)
        retry.headers.set("Session-Expires", str(interval))
        retry.headers.set("Min-SE", str(interval))
        if "Supported" not in retry.headers:
            retry.headers.add("Supported", SUPPORTED)
        log.info(
            "call %s: callee wants a session interval of %d s, asking again", leg.call.id, interval
        )
        return retry

    def fork_answered(self, leg: Leg, response: Response) -> None:
        """The callee's 2xx: start the timer it settled on (none without Session-Expires)."""
        try:
            got = TimerHeaders.read(response.headers)
        except SessionTimerError as exc:
            log.info("call %s: callee's session timer ignored: %s", leg.call.id, exc)
            return
        timer = negotiated(got.session_expires, we_sent_request=True, now=self._now())
        if timer is not None:
            self._start(leg, timer, allows_method(response.headers, "UPDATE"))

    # ================================================================ the timer itself
    def _start(self, leg: Leg, timer: SessionTimer, use_update: bool) -> None:
        state = self._legs.get(leg)
        if state is None:
            state = self._legs[leg] = _LegTimer(timer, use_update)
        else:
            state.timer = timer
            state.use_update = use_update
        log.debug(
            "call %s: session timer %d s on the %s leg, %s refreshes",
            leg.call.id,
            timer.interval,
            leg.kind.value,
            "pypbx" if timer.we_refresh else "the phone",
        )
        self._arm(leg, state, timer.deadline)

    def _arm(self, leg: Leg, state: _LegTimer, when: float) -> None:
        if state.handle is not None:
            state.handle.cancel()
        state.handle = asyncio.get_running_loop().call_at(when, self._fire, leg)

    def _stop(self, leg: Leg) -> None:
        state = self._legs.pop(leg, None)
        if state is not None and state.handle is not None:
            state.handle.cancel()

    def _call_ended(self, call: Call) -> None:
        for leg in call.legs():
            self._stop(leg)

    def _fire(self, leg: Leg) -> None:
        state = self._legs.get(leg)
        if state is None:
            return
        state.handle = None
        call = leg.call
        if leg.terminated or call.is_over:
            self._stop(leg)
            return
        action = state.timer.due(self._now())
        if action is None:
            self._arm(leg, state, state.timer.deadline)
        elif action == "refresh":
            self._refresh(leg, state)
        else:
            log.warning(
                "call %s: no session refresh from %s within %d s: ending the call",
                call.id,
                leg.extension_id or leg.kind.value,
                state.timer.interval,
            )
            self._stop(leg)
            self.b2bua._abort(call)

    # ================================================================ refreshes we send
    def _refresh(self, leg: Leg, state: _LegTimer) -> None:
        dialog = leg.dialog
        if dialog is None or (not state.use_update and leg.local_sdp is None):
            self._stop(leg)
            return
        if state.pending is not None:
            return
        if leg.answer_2xx is not None:  # don't cross the phone's own unfinished re-INVITE
            self._arm(leg, state, self._now() + REINVITE_BUSY_DELAY)
            return
        stack = self.b2bua.stack
        headers = request_headers(state.timer.interval, self.policy.min_se, refresher="uac")
        headers += [("Contact", f"<{self.b2bua._contact(leg)}>"), ("Allow", ALLOW)]
        via = stack.new_via(leg.peer[0], leg.transport)
        if state.use_update:
            request = dialog.create_request("UPDATE", via, extra_headers=headers)
        else:
            assert leg.local_sdp is not None
            request = dialog.create_request(
                "INVITE",
                via,
                body=leg.local_sdp.serialize(),  # unchanged SDP, unchanged version (RFC 3264)
                content_type="application/sdp",
                extra_headers=headers,
            )
        if leg.digest is not None:  # an outside line: its provider may challenge us
            leg.digest.prepare(request)
        self._send(leg, state, request)

    def _send(self, leg: Leg, state: _LegTimer, request: Request) -> None:
        state.pending = request
        self.b2bua.stack.send_request(
            request,
            leg.peer,
            leg.transport,
            on_response=lambda response: self._on_refresh_response(leg, request, response),
            on_timeout=lambda: self._refresh_failed(leg, request, 408),
        )

    def _on_refresh_response(self, leg: Leg, request: Request, response: Response) -> None:
        status = response.status
        if status < 200 or leg.dialog is None:
            return
        if status < 300 and request.method == "INVITE":
            self._ack(leg, request)  # every 2xx, retransmissions included (§13.2.2.4)
        state = self._legs.get(leg)
        if state is None or state.pending is not request or leg.terminated or leg.call.is_over:
            return
        state.pending = None
        if status < 300:
            self._refreshed(leg, state, response)
        elif status in (408, 481):  # §10: the dialog is gone
            self._give_up(leg, status)
        elif status == 422:
            self._retry_larger(leg, state, response)
        elif status in (401, 407) and self._authenticate(leg, state, request, response):
            return  # a provider's challenge on an outside line, answered
        elif status == 491:  # glare with the phone's re-INVITE: try again after a pause
            self._arm(leg, state, self._now() + random.uniform(2.1, 4.0))
        elif request.method == "UPDATE" and status in (405, 501):
            state.use_update = False
            self._refresh(leg, state)
        else:  # the session stands; try again after another half interval
            log.info("call %s: session refresh answered %d", leg.call.id, status)
            state.timer.refreshed(self._now())
            self._arm(leg, state, state.timer.deadline)

    def _ack(self, leg: Leg, request: Request) -> None:
        assert leg.dialog is not None
        via = self.b2bua.stack.new_via(leg.peer[0], leg.transport)
        ack = leg.dialog.create_ack(request.cseq[0], via)
        leg.last_ack = ack  # re-sent if a stray retransmission of the 2xx comes later
        self.b2bua.stack.send_stateless(ack, leg.peer, leg.transport)

    def _refreshed(self, leg: Leg, state: _LegTimer, response: Response) -> None:
        assert leg.dialog is not None
        leg.dialog.refresh_target(response)
        sdp = self.b2bua._parse_sdp(response)
        if sdp is not None:
            self._update_media(leg, sdp)
        try:
            got = TimerHeaders.read(response.headers)
        except SessionTimerError:
            got = TimerHeaders()
        timer = negotiated(got.session_expires, we_sent_request=True, now=self._now())
        if timer is None:
            log.info("call %s: %s leg no longer uses a session timer", leg.call.id, leg.kind.value)
            self._stop(leg)
            return
        self._start(leg, timer, state.use_update)

    def _update_media(self, leg: Leg, sdp: SessionDescription) -> None:
        """The answer to our re-offer: the callee may pick another of the codecs offered."""
        media = self.b2bua.leg_media
        call = leg.call
        before = leg.codec
        if leg.kind is LegKind.CALLEE:
            media.accept_callee_sdp(leg, sdp)
        else:
            media.update_remote_media(leg, sdp)
        if leg.codec != before and call.callee is not None:
            media.bridge(call, call.callee)
        media.update_hold_state(call)

    def _authenticate(
        self, leg: Leg, state: _LegTimer, request: Request, response: Response
    ) -> bool:
        """A provider challenges our refresh on an outside line: answer as for the INVITE."""
        if leg.digest is None or leg.dialog is None:
            return False
        retry = leg.digest.retry(request, response)
        if retry is None:
            return False
        leg.dialog.local_seq = max(leg.dialog.local_seq, retry.cseq[0])
        self._send(leg, state, retry)
        return True

    def _retry_larger(self, leg: Leg, state: _LegTimer, response: Response) -> None:
        try:
            got = TimerHeaders.read(response.headers)
        except SessionTimerError:
            got = TimerHeaders()
        interval = retry_interval(state.timer.interval, got)
        if interval is None:
            state.timer.refreshed(self._now())
            self._arm(leg, state, state.timer.deadline)
            return
        state.timer.interval = interval
        self._refresh(leg, state)

    def _refresh_failed(self, leg: Leg, request: Request, status: int) -> None:
        state = self._legs.get(leg)
        if state is None or state.pending is not request:
            return
        state.pending = None
        self._give_up(leg, status)

    def _give_up(self, leg: Leg, status: int) -> None:
        call = leg.call
        if leg.terminated or call.is_over:
            return
        log.warning(
            "call %s: session refresh to %s failed (%d): ending the call",
            call.id,
            leg.extension_id or leg.kind.value,
            status,
        )
        self._stop(leg)
        self.b2bua._abort(call)

    def _now(self) -> float:
        return self.b2bua._now()
