"""The back-to-back user agent: connects an extension's call to another extension.

Each call has a caller leg (pypbx answers the phone's INVITE) and callee legs (pypbx calls
every registered contact of the dialled extension; the first to answer wins). Media is
anchored: both legs get their own RTP port on pypbx and a bridge relays between them.
Every call, however it ends, goes through `_end`, which writes its one history row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pypbx.media.dtmf import DtmfDigit
from pypbx.media.endpoint import MediaManager, RtpEndpoint
from pypbx.media.leg_output import LegOutput
from pypbx.media.player import Pcm, Playout
from pypbx.media.sounds import default_hold_music
from pypbx.net.stack import SipStack
from pypbx.pbx.agent import AGENT_HEADER, ApiAgent
from pypbx.pbx.auth import SipAuthenticator
from pypbx.pbx.call import Call, Leg, LegKind, new_call_id
from pypbx.pbx.call_ids import CallIdPool
from pypbx.pbx.call_limits import CallLimits
from pypbx.pbx.call_routing import ROUTING_STATES, CallRouting, Failure
from pypbx.pbx.control import CallNotFoundError, InappropriateStateError
from pypbx.pbx.leg_media import LegMedia
from pypbx.pbx.lines import Lines
from pypbx.pbx.registrar import Binding, Registrar
from pypbx.pbx.replies import reply
from pypbx.pbx.router import CallRouter
from pypbx.pbx.routing import RouteInterceptor
from pypbx.pbx.sdp_helpers import (
    ALLOW,
    SUPPORTED_CODECS,
    codec_spec,
    new_session_id,
    sdp_direction,
    sip_uri,
)
from pypbx.pbx.session_timers import SessionTimers
from pypbx.pbx.states import CallState, HistoryResult, RoutingState
from pypbx.pbx.transfers import Transfers
from pypbx.sip.dialog import Dialog
from pypbx.sip.digest_client import DigestClient
from pypbx.sip.message import (
    Address,
    Headers,
    Request,
    Response,
    SipParseError,
    SipURI,
    generate_call_id,
    generate_tag,
)
from pypbx.sip.sdp import TELEPHONE_EVENT, Codec, SdpError, SessionDescription, build_sdp, negotiate
from pypbx.sip.transaction import RequestReceived, ServerTransaction, make_cancel
from pypbx.store.records import ExtensionRecord
from pypbx.store.store import Store

__all__ = ["ALLOW", "B2BUA", "SUPPORTED_CODECS"]

# How a callee's final failure response ends the call: (public state, history result).
_FAILURES: dict[int, tuple[CallState, HistoryResult]] = {
    486: (CallState.BUSY, HistoryResult.BUSY),
    600: (CallState.BUSY, HistoryResult.BUSY),
    603: (CallState.BUSY, HistoryResult.REJECTED),
    404: (CallState.ERROR, HistoryResult.NOT_FOUND),
    484: (CallState.ERROR, HistoryResult.NOT_FOUND),
    604: (CallState.ERROR, HistoryResult.NOT_FOUND),
    408: (CallState.BUSY, HistoryResult.NOT_ANSWERED),
    480: (CallState.BUSY, HistoryResult.NOT_ANSWERED),
}
# When forks fail differently, the response relayed to the caller is the most telling.
_PREFERENCE = [486, 600, 603, 480, 408]
_T1, _T2 = 0.5, 4.0  # RFC 3261 timers, for the 2xx the B2BUA retransmits itself (§13.3.1.4)
_ACK_WAIT = 64 * _T1  # how long a UAS waits for the ACK of its 2xx

log = logging.getLogger(__name__)


class B2BUA:
    def __init__(
        self,
        stack: SipStack,
        store: Store,
        registrar: Registrar,
        authenticator: SipAuthenticator,
        media: MediaManager,
        *,
        ring_timeout: float = 90.0,
        media_address: str | None = None,
        hold_music: Pcm | None = None,
        inband_dtmf: str = "auto",
        rtp_timeout: float = 60.0,
    ) -> None:
        self.stack = stack
        self.store = store
        self.registrar = registrar
        self.auth = authenticator
        self.media = media
        self.ring_timeout = ring_timeout
        self.media_address = media_address
        self.hold_music = hold_music if hold_music is not None else default_hold_music()
        self.playout = Playout()
        self.calls: dict[str, Call] = {}
        self._call_ids = CallIdPool(new_call_id, store.taken_call_ids)
        self._dialogs: dict[tuple[str, str], Leg] = {}
        self._invites: dict[ServerTransaction, Leg] = {}
        self._setting_up: set[ServerTransaction] = set()
        self._cancelled_early: set[ServerTransaction] = set()
        self.on_call_ended: list[Callable[[Call], None]] = []
        self.on_state_change: list[Callable[[Call, CallState], None]] = []
        self.on_digit: Callable[[Leg, DtmfDigit], None] = lambda leg, digit: None
        self.inband_dtmf = inband_dtmf
        self._background_tasks: set[asyncio.Task[None]] = set()
        self.rtp_timeout = rtp_timeout  # seconds without RTP that end a call; 0: never
        self._watchdog: asyncio.Task[None] | None = None
        self.agent: ApiAgent | None = None  # rings API extensions; set by the service
        self.interceptor: RouteInterceptor | None = None  # RoutingInterception, if configured
        self.router = CallRouter(store)  # dial plan and ring groups (replaced by the service)
        self.lines: Lines | None = None  # outside lines (set by the service)
        self.leg_media = LegMedia(self)
        self.routing = CallRouting(self)
        self.transfers = Transfers(self)
        self.call_limits = CallLimits()  # unlimited unless the service configures them
        self.session_timers = SessionTimers(self)  # RFC 4028, configured by the app

    # ================================================================ dispatch
    def in_dialog(self, event: RequestReceived) -> bool:
        """Handle a request inside one of our dialogs; False if it belongs to none."""
        request = event.request
        tag = request.to_addr.tag
        if tag is None:
            return False
        leg = self._dialogs.get((request.call_id, tag))
        if leg is None:
            if request.method != "ACK":
                self.stack.send_response(reply(request, 481, "Call/Transaction Does Not Exist"))
            return True
        method = request.method
        if method == "ACK":
            self._on_ack(leg, request)
            return True
        if leg.dialog is not None and not leg.dialog.accept_request(request):
            self.stack.send_response(reply(request, 500, "CSeq out of order"))
            return True
        if method == "BYE":
            self._on_bye(leg, request)
        elif method in ("INVITE", "UPDATE"):
            self._on_reinvite(leg, request)
        elif method == "REFER":
            self.transfers.on_refer(leg, request)
        elif method == "INFO":
            self.leg_media.on_info(leg, request)
        elif method in ("OPTIONS", "NOTIFY"):
            self.stack.send_response(reply(request, 200))
        else:
            response = reply(request, 501, "Not Implemented")
            response.headers.add("Allow", ALLOW)
            self.stack.send_response(response)
        return True

    def on_cancel(self, event: RequestReceived) -> None:
        cancel = event.request
        target = self.stack.layer.cancel_target(cancel)
        if target is None:
            self.stack.send_response(reply(cancel, 481, "Call/Transaction Does Not Exist"))
            return
        leg = self._invites.get(target)
        tag = leg.local_tag if leg is not None else None
        self.stack.send_response(reply(cancel, 200, tag=tag))
        if leg is not None:
            call = leg.call
            if call.answered is None and not call.is_over:
                self._reject_caller(call, 487, "Request Terminated")
                self._end(call, CallState.CANCELLED, HistoryResult.CANCELLED)
        elif target in self._setting_up:
            self._cancelled_early.add(target)
            self.stack.send_response(reply(target.request, 487, "Request Terminated"))

    def on_stray_response(self, response: Response) -> None:
        """A 2xx retransmitted after its transaction ended: our ACK was lost, send it again."""
        tag = response.from_addr.tag
        if tag is None or not 200 <= response.status < 300:
            return
        leg = self._dialogs.get((response.call_id, tag))
        if leg is not None and leg.last_ack is not None:
            self.stack.send_stateless(leg.last_ack, leg.peer, leg.transport)

    # ================================================================ API extensions
    def _from_agent(self, event: RequestReceived) -> bool:
        agent = self.agent
        return (
            agent is not None
            and event.source == agent.address
            and event.request.headers.get(AGENT_HEADER) is not None
        )

    async def _agent_extension(self, request: Request) -> ExtensionRecord | None:
        """The API extension an agent INVITE calls from; None if it may not call."""
        number = request.headers.get(AGENT_HEADER) or ""
        extension = await self.store.get_extension(number)
        if extension is None or extension.type != "API" or not extension.enabled:
            return None
        return extension

    def call_by_sip_call_id(self, sip_call_id: str) -> Call | None:
        """The call one of whose legs is the SIP dialog with this Call-ID."""
        for call in self.calls.values():
            for leg in call.legs():
                if leg.invite.call_id == sip_call_id:
                    return call
        return None

    # ================================================================ new calls
    async def on_invite(self, event: RequestReceived) -> None:
        txn = event.transaction
        assert txn is not None
        self._setting_up.add(txn)
        try:
            await self._setup(event, txn)
        finally:
            self._setting_up.discard(txn)
            self._cancelled_early.discard(txn)

    async def _setup(self, event: RequestReceived, txn: ServerTransaction) -> None:
        request = event.request
        rejection = self.session_timers.check_request(request)  # 420, 422
        if rejection is not None:
            self.stack.send_response(rejection)
            return
        if request.max_forwards is not None and request.max_forwards <= 0:
            self.stack.send_response(reply(request, 483, "Too Many Hops"))
            return
        inbound = await self.lines.inbound(request, event.source) if self.lines else None
        caller_ext: ExtensionRecord | None
        if inbound is not None:  # from a provider, for one of the line's numbers: no digest
            caller_ext = ExtensionRecord(inbound.caller or "anonymous", "Line")
        elif self._from_agent(event):
            caller_ext = await self._agent_extension(request)
            if caller_ext is None:
                self.stack.send_response(reply(request, 403, "Forbidden"))
                return
        else:
            result = await self.auth.authenticate(request, proxy=True)
            if result.response is not None:
                if txn not in self._cancelled_early:
                    self.stack.send_response(result.response)
                return
            caller_ext = result.extension
            assert caller_ext is not None
        if txn in self._cancelled_early:
            return
        try:
            offer = SessionDescription.parse(request.body) if request.body else None
        except SdpError as exc:
            self.stack.send_response(reply(request, 400, f"Bad SDP: {exc}"))
            return
        if offer is None:
            self.stack.send_response(reply(request, 488, "SDP offer required"))
            return
        try:
            negotiate(offer, SUPPORTED_CODECS)
        except SdpError:
            self.stack.send_response(reply(request, 488, "Not Acceptable Here"))
            return

        call_id = await self._unique_call_id()
        if txn in self._cancelled_early:
            return
        refusal = self.call_limits.admit(caller_ext, self.calls.values())  # no await till add
        if refusal is not None:
            self.stack.send_response(reply(request, refusal.status, refusal.reason))
            return
        now = self._now()
        call = Call(id=call_id, started=now)
        call.source = caller_ext.id
        call.caller_id = request.from_addr.display_name or caller_ext.id
        if caller_ext.type == "API":  # the Call command's CallerId, shown to the callee
            call.presented = request.from_addr.uri.user or caller_ext.id
        if inbound is not None:
            call.line = inbound.line.name
            call.direction = "Inbound"
            call.dialed = inbound.did
        call.dialed = request.uri.user or ""
        call.destination = call.dialed
        caller = Leg(
            kind=LegKind.CALLER,
            call=call,
            peer=event.source,
            transport=event.transport,
            local_tag=generate_tag(),
            invite=request,
            server_txn=txn,
            extension_id=caller_ext.id,
            remote_sdp=offer,
            remote_direction=sdp_direction(offer),
        )
        call.caller = caller
        self.add_call(call)
        self._invites[txn] = caller
        self.store.history.start(call.history(now))
        log.info("call %s: %s -> %s", call.id, call.source, call.dialed)

        await self.routing.route(call, call.dialed, RoutingState.CALLING)

    def _ring(self, call: Call, bindings: list[Binding]) -> None:
        """Call every registered phone of the destination and (re)start the ring timer."""
        assert call.callee_endpoint is not None
        limited = self.registrar.is_registered  # SIP phones; not API extensions or lines
        bindings = self.call_limits.free(call, bindings, self.calls.values(), limited)
        if not bindings:  # every phone's extension is at its call limit: busy
            self._unanswered(call, 486, "Busy Here", CallState.BUSY, HistoryResult.BUSY)
            return
        for binding in bindings:
            self._fork(call, binding, call.callee_endpoint, call.fork_codecs)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        call.ring_timer = asyncio.get_running_loop().call_later(
            call.ring_time or self.ring_timeout, self._ring_timeout, call
        )

    def _fork(
        self, call: Call, binding: Binding, endpoint: RtpEndpoint, codecs: list[Codec]
    ) -> None:
        peer_ip = binding.source[0]
        host = self.stack.local_host(peer_ip)
        try:
            target_uri = SipURI.parse(binding.contact)
        except SipParseError:
            log.warning("call %s: unusable contact %r", call.id, binding.contact)
            return
        local_tag = generate_tag()
        route = call.line_route
        if route is not None and binding.extension_id != route.line:
            route = None
        from_user = route.from_user if route is not None else call.presented or call.source
        from_addr = Address(
            uri=sip_uri(from_user, route.domain if route is not None else host),
            display_name=call.caller_id if call.caller_id != call.source else None,
            params={"tag": local_tag},
        )
        to_addr = Address(
            uri=sip_uri(route.number, route.domain)
            if route is not None
            else sip_uri(call.destination, host),
            display_name=None,
            params={},
        )
        sdp = build_sdp(
            address=self.leg_media.media_host(peer_ip),
            port=endpoint.local_port,
            codecs=codecs,
            telephone_event=TELEPHONE_EVENT,
            direction="sendrecv",
            session_id=new_session_id(),
            session_version=1,
        )
        headers = Headers()
        headers.add("Via", str(self.stack.new_via(peer_ip, binding.transport)))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(from_addr))
        headers.add("To", str(to_addr))
        headers.add("Call-ID", generate_call_id(host))
        headers.add("CSeq", "1 INVITE")
        contact = self.stack.contact_uri(peer_ip, binding.transport, "pypbx")
        headers.add("Contact", f"<{contact}>")
        headers.add("Allow", ALLOW)
        self.session_timers.offer(headers)
        headers.add("Content-Type", "application/sdp")
        invite = Request("INVITE", target_uri, headers, sdp.serialize())
        leg = Leg(
            kind=LegKind.CALLEE,
            call=call,
            peer=binding.source,
            transport=binding.transport,
            local_tag=local_tag,
            invite=invite,
            endpoint=endpoint,
            extension_id=binding.extension_id,
            local_sdp=sdp,
        )
        if route is not None and route.credentials is not None:
            leg.digest = DigestClient(route.credentials)
        call.forks.append(leg)
        self._dialogs[leg.dialog_key] = leg
        leg.client_txn = self.stack.send_request(
            invite,
            binding.source,
            binding.transport,
            on_response=lambda response: self._on_fork_response(leg, response),
            on_timeout=lambda: self._on_fork_failed(leg, 408),
        )

    # ================================================================ callee responses
    def _on_fork_response(self, leg: Leg, response: Response) -> None:
        call = leg.call
        status = response.status
        if status < 200:
            leg.got_provisional = True
            if leg.cancel_pending:
                leg.cancel_pending = False
                self._send_cancel(leg)
                return
            if status > 100 and not call.is_over and call.answered is None:
                self._on_ringing(leg, response)
            return
        if status < 300:
            self._on_fork_answered(leg, response)
            return
        retry: Request | None = None
        if status in (401, 407) and leg.digest is not None and not call.is_over:
            retry = leg.digest.retry(leg.invite, response)  # a provider's challenge
        elif status == 422 and not call.is_over:  # RFC 4028: a longer session interval
            retry = self.session_timers.retry_invite(leg, response)
        if retry is not None:  # each answered at most once per nonce / Min-SE
            leg.invite = retry
            leg.client_txn = self.stack.send_request(
                retry,
                leg.peer,
                leg.transport,
                on_response=lambda r: self._on_fork_response(leg, r),
                on_timeout=lambda: self._on_fork_failed(leg, 408),
            )
            return
        self._on_fork_failed(leg, status, response.reason)

    def _on_ringing(self, leg: Leg, response: Response) -> None:
        call = leg.call
        caller = call.caller
        assert caller is not None
        sdp = self._parse_sdp(response)
        if sdp is not None and self.leg_media.accept_callee_sdp(leg, sdp):
            # Early media: bridge now and give the caller our answer in a 183.
            self.leg_media.bridge(call, leg)
            if not call.caller_connected:
                self._send_provisional(caller, 183, with_sdp=True)
        elif caller.provisional_sent == 0 and not call.caller_connected:
            self._send_provisional(caller, 180, with_sdp=False)

    def _on_fork_answered(self, leg: Leg, response: Response) -> None:
        call = leg.call
        if leg.dialog is None or leg.dialog.remote_tag != response.to_addr.tag:
            leg.dialog = Dialog.from_uac(leg.invite, response)
        via = self.stack.new_via(leg.peer[0], leg.transport)
        ack = leg.dialog.create_ack(leg.invite.cseq[0], via)
        leg.last_ack = ack
        self.stack.send_stateless(ack, leg.peer, leg.transport)
        if call.callee is leg:
            return  # a retransmitted 2xx: re-ACKed above
        if call.is_over or call.callee is not None or leg.terminated:
            # Answered too late (another phone won, or the caller gave up): hang it up.
            self._send_bye(leg)
            leg.terminated = True
            self._forget(leg)
            return
        sdp = self._parse_sdp(response)
        if sdp is None or not self.leg_media.accept_callee_sdp(leg, sdp):
            self._send_bye(leg)
            self._on_fork_failed(leg, 488)
            return
        call.callee = leg
        if call.ring_group is not None and leg.extension_id:  # the member who answered
            call.destination = leg.extension_id
        call.answered = self._now()
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for other in list(call.forks):
            if other is not leg:
                self._cancel_fork(other)
        call.forks = [leg]
        caller = call.caller
        assert caller is not None
        self.leg_media.bridge(call, leg)
        self.session_timers.fork_answered(leg, response)
        if not call.caller_connected:
            self._answer_caller(caller)
        self._set_state(call, CallState.IN_CALL)
        log.info("call %s answered by %s", call.id, leg.extension_id)

    def _on_fork_failed(self, leg: Leg, status: int, reason: str | None = None) -> None:
        call = leg.call
        if leg.terminated:
            return
        leg.terminated = True
        leg.final_status = status
        self._forget(leg)
        if call.is_over or call.answered is not None:
            return
        live = [f for f in call.forks if not f.terminated]
        if live:
            return
        statuses = [f.final_status or 500 for f in call.forks]
        chosen = next(
            (s for s in _PREFERENCE if s in statuses), statuses[0] if statuses else status
        )
        state, result = _FAILURES.get(chosen, (CallState.ERROR, HistoryResult.ERROR))
        if chosen == 408:  # our own transaction timed out: the phone is unavailable
            chosen = 480
        self._unanswered(call, chosen, reason if chosen == status else None, state, result)

    def _ring_timeout(self, call: Call) -> None:
        if call.is_over or call.answered is not None:
            return
        log.info("call %s: no answer after %.0f s", call.id, call.ring_time or self.ring_timeout)
        for fork in call.forks:
            self._cancel_fork(fork)
        self._unanswered(
            call, 480, "Temporarily Unavailable", CallState.BUSY, HistoryResult.NOT_ANSWERED
        )

    def _unanswered(
        self, call: Call, status: int, reason: str | None, state: CallState, result: HistoryResult
    ) -> None:
        """Nobody answered: call a transferor back once, else release the caller and end."""
        if call.recall_to is not None and not call.recalled:
            call.recalled = True
            bindings = self.registrar.bindings(call.recall_to)
            if bindings:
                log.info(
                    "call %s: transfer target failed, calling %s back", call.id, call.recall_to
                )
                call.forks = []
                call.destination = call.recall_to
                self._ring(call, bindings)
                return
        failure = Failure(status, reason, state, result)
        if call.interceptions or call.route_decision or call.group_members or call.group_fallback:
            routing = ROUTING_STATES.get(result, RoutingState.ERROR)
            self._background(self.routing.attempt_failed(call, call.dialed, routing, failure))
            return
        self.routing.give_up(call, failure)

    # ================================================================ in-dialog
    def _on_ack(self, leg: Leg, request: Request) -> None:
        if leg.answer_2xx is not None and request.cseq[0] == leg.answer_2xx.cseq[0]:
            leg.answer_2xx = None
            if leg.retransmit is not None:
                leg.retransmit.cancel()
                leg.retransmit = None
            if leg.terminated:  # the call ended before this ACK came: its wait is over
                self._forget(leg)
        if request.body:  # answer to an offer we made in a 2xx (late-offer re-INVITE)
            sdp = self._parse_sdp(request)
            if sdp is not None:
                self.leg_media.update_remote_media(leg, sdp)

    def _on_bye(self, leg: Leg, request: Request) -> None:
        self.stack.send_response(reply(request, 200))
        call = leg.call
        leg.terminated = True
        if call.is_over:
            return
        if call.answered is None:
            if leg is call.caller:  # a transferred party gave up while the target rang
                self._end(call, CallState.CANCELLED, HistoryResult.CANCELLED)
            elif leg.kind is LegKind.CALLEE:  # BYE on an early dialog: that fork failed
                leg.terminated = False
                self._on_fork_failed(leg, 480)
            return
        other = call.other(leg)
        if other is not None:
            self._send_bye(other)
        result = (
            HistoryResult.CALLER_HUNG_UP if leg is call.caller else HistoryResult.CALLEE_HUNG_UP
        )
        self._end(call, CallState.COMPLETED, result)

    def _on_reinvite(self, leg: Leg, request: Request) -> None:
        """A phone changed its media (new address, codec, or hold) or refreshed the session
        (RFC 4028): answer for pypbx.

        Media is anchored, so the other phone need not know; only the hold state is shared.
        """
        if leg.call.is_over or leg.endpoint is None or leg.local_sdp is None:
            self.stack.send_response(reply(request, 481, "Call/Transaction Does Not Exist"))
            return
        rejection = self.session_timers.check_request(request, leg)  # 420, 422, 491
        if rejection is not None:
            self.stack.send_response(rejection)
            return
        sdp = self._parse_sdp(request) if request.body else None
        if request.body and sdp is None:
            self.stack.send_response(reply(request, 488, "Not Acceptable Here"))
            return
        if leg.dialog is not None:
            leg.dialog.refresh_target(request)
        if sdp is None:
            if request.method == "UPDATE":  # a session refresh without an offer
                response = reply(request, 200)
                self.session_timers.answered(leg, request, response)
                self.stack.send_response(response)
                return
            # Offer-less re-INVITE: our 2xx carries the offer, the ACK the answer.
            leg.local_sdp.session_version += 1
        else:
            try:
                codecs, event = negotiate(sdp, SUPPORTED_CODECS)
            except SdpError:
                self.stack.send_response(reply(request, 488, "Not Acceptable Here"))
                return
            self.leg_media.update_remote_media(leg, sdp)
            codec = codec_spec(codecs[0], event)
            leg.local_sdp = self.leg_media.answer(
                leg,
                sdp,
                codecs[0],
                event,
                session_id=leg.local_sdp.session_id,
                version=leg.local_sdp.session_version + 1,
            )
            if codec != leg.codec:
                leg.codec = codec
                if leg.call.callee is not None:
                    self.leg_media.bridge(leg.call, leg.call.callee)
        response = self._response_with_sdp(request, 200, leg)
        self.session_timers.answered(leg, request, response)
        self.stack.send_response(response)
        if request.method == "INVITE":
            self._retransmit_until_ack(leg, response)
        self.leg_media.update_hold_state(leg.call)

    # ================================================================ media
    # ================================================================ sending
    def _send_provisional(self, caller: Leg, status: int, *, with_sdp: bool) -> None:
        if with_sdp:
            response = self._response_with_sdp(caller.invite, status, caller)
        else:
            response = reply(caller.invite, status, tag=caller.local_tag)
            response.headers.add("Contact", f"<{self._contact(caller)}>")
        caller.provisional_sent = status
        self.stack.send_response(response)

    def _answer_caller(self, caller: Leg) -> None:
        response = self._response_with_sdp(caller.invite, 200, caller)
        self.session_timers.answered(caller, caller.invite, response)
        caller.dialog = Dialog.from_uas(caller.invite, caller.local_tag)
        self._dialogs[caller.dialog_key] = caller
        self.stack.send_response(response)
        self._retransmit_until_ack(caller, response)

    def _response_with_sdp(self, request: Request, status: int, leg: Leg) -> Response:
        assert leg.local_sdp is not None
        response = reply(request, status, tag=leg.local_tag)
        response.headers.add("Contact", f"<{self._contact(leg)}>")
        response.headers.add("Allow", ALLOW)
        response.headers.add("Content-Type", "application/sdp")
        response.body = leg.local_sdp.serialize()
        return response

    def _contact(self, leg: Leg) -> SipURI:
        return self.stack.contact_uri(leg.peer[0], leg.transport, "pypbx")

    def _retransmit_until_ack(self, leg: Leg, response: Response) -> None:
        """RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx until the ACK arrives."""
        leg.answer_2xx = response
        if leg.retransmit is not None:
            leg.retransmit.cancel()
        if leg.transport != "udp":
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ACK_WAIT
        leg.retransmit = loop.call_later(_T1, self._resend_2xx, leg, response, 2 * _T1, deadline)

    def _resend_2xx(self, leg: Leg, response: Response, interval: float, deadline: float) -> None:
        # A method rather than a closure that schedules itself: such a closure is a
        # reference cycle holding the leg until the garbage collector comes round.
        if leg.answer_2xx is not response or leg.terminated:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            log.warning("call %s: no ACK for our 2xx, hanging up", leg.call.id)
            leg.answer_2xx = None
            self._abort(leg.call)
            return
        self.stack.send_stateless(response, leg.peer, leg.transport)
        leg.retransmit = loop.call_later(
            interval, self._resend_2xx, leg, response, min(interval * 2, _T2), deadline
        )

    def _reject_caller(self, call: Call, status: int, reason: str | None = None) -> None:
        """Release the caller of a call that will not be answered.

        A phone that called in gets the final response to its INVITE; a transferred party,
        already in a dialog with us, gets a BYE.
        """
        caller = call.caller
        if caller is None or caller.answer_2xx is not None or call.answered is not None:
            return
        if call.caller_connected:
            self._send_bye(caller)
            return
        self.stack.send_response(reply(caller.invite, status, reason, tag=caller.local_tag))

    def _cancel_fork(self, leg: Leg) -> None:
        """Stop a callee leg that is still ringing (its late 2xx, if any, gets a BYE)."""
        if leg.terminated:
            return
        leg.terminated = True
        self._forget(leg)
        if leg.got_provisional:
            self._send_cancel(leg)
        else:
            leg.cancel_pending = True  # RFC 3261 §9.1: CANCEL only after a provisional response

    def _send_cancel(self, leg: Leg) -> None:
        cancel = make_cancel(leg.invite)
        self.stack.send_request(cancel, leg.peer, leg.transport, on_response=lambda r: None)

    def _send_bye(self, leg: Leg) -> None:
        if leg.dialog is None:
            return
        via = self.stack.new_via(leg.peer[0], leg.transport)
        bye = leg.dialog.create_request("BYE", via)
        self.stack.send_request(bye, leg.peer, leg.transport, on_response=lambda r: None)

    # ================================================================ ending
    def _abort(self, call: Call) -> None:
        """Tear down both sides of a call that went wrong."""
        if call.is_over:
            return
        for leg in call.legs():
            if leg.dialog is not None and not leg.terminated:
                self._send_bye(leg)
        self._end(call, CallState.ERROR, HistoryResult.ERROR)

    def _end(self, call: Call, state: CallState, result: HistoryResult) -> None:
        if call.is_over:
            return
        call.ended = self._now()
        call.result = result
        self._set_state(call, state)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for fork in call.forks:
            if fork is not call.callee:
                self._cancel_fork(fork)
        for leg in call.legs():
            leg.terminated = True
            if leg.retransmit is not None and leg.kind is LegKind.CALLEE:
                leg.retransmit.cancel()
            if leg.player is not None:
                self.playout.stop(leg.player)
                leg.player = None
            self.leg_media.stop_output(leg)
            self._forget(leg)
        caller = call.caller
        if caller is not None and caller.server_txn is not None:
            self._invites.pop(caller.server_txn, None)
        self.calls.pop(call.id, None)
        self._background(self._finish(call))
        log.info("call %s ended: %s (%s)", call.id, state.value, result.value)
        for listener in self.on_call_ended:
            try:
                listener(call)
            except Exception:
                log.exception("call-ended listener failed for call %s", call.id)

    async def _finish(self, call: Call) -> None:
        if call.bridge is not None:
            self.media.unbridge(call.bridge)
            call.bridge = None
        endpoints = {id(ep): ep for ep in (leg.endpoint for leg in call.legs()) if ep}
        if call.callee_endpoint is not None:
            endpoints[id(call.callee_endpoint)] = call.callee_endpoint
        for leg in call.legs():
            leg.endpoint = None
        call.callee_endpoint = None
        if call.history_started is not None:  # a start written directly (transfers)
            await call.history_started
        # Queued before the media is released: a history query made once the call has left
        # the active calls then finds its final row (queries flush the queue first).
        self.store.history.finish(call.history(self._now()))
        try:
            for endpoint in endpoints.values():
                await self.media.release(endpoint)
        finally:
            call.let_go()

    def _forget(self, leg: Leg) -> None:
        """Take an ended leg out of the dialog table: at once, or, for a caller leg whose 2xx
        is not ACKed yet, once the ACK comes or can no longer come (64*T1), so that a late or
        retransmitted ACK still matches its dialog."""
        if leg.answer_2xx is None:
            if self._dialogs.get(leg.dialog_key) is leg:
                del self._dialogs[leg.dialog_key]
        else:
            asyncio.get_running_loop().call_later(_ACK_WAIT, self._forget_unacked, leg)

    def _forget_unacked(self, leg: Leg) -> None:
        leg.answer_2xx = None
        self._forget(leg)

    def _set_state(self, call: Call, state: CallState) -> None:
        if call.state is state:
            return
        answered = call.state is CallState.RINGING and state is CallState.IN_CALL
        call.state = state
        if state is CallState.IN_CALL:  # back from hold: phones may only now send again
            call.media_watch_from = self._now()
        if answered:  # CallChanged reports Answered once on the way to InCall (spec 4.2)
            self._state_changed(call, CallState.ANSWERED)
        self._state_changed(call, state)

    def add_call(self, call: Call) -> None:
        """A new call enters the PBX (set up, or created by a transfer) in its first state."""
        self.calls[call.id] = call
        self._state_changed(call, call.state)
        if self.rtp_timeout and (self._watchdog is None or self._watchdog.done()):
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_media())

    async def _watch_media(self) -> None:
        """End calls whose phone vanished: no BYE, but no RTP either for `rtp_timeout` s
        (a phone that lost power or network). Calls on hold are left alone: a phone that
        holds with `inactive` rightly sends nothing."""
        period = min(5.0, self.rtp_timeout / 2)
        while self.calls:
            await asyncio.sleep(period)
            now = self._now()
            for call in list(self.calls.values()):
                if call.state is not CallState.IN_CALL or call.answered is None:
                    continue
                for leg in [leg for leg in (call.caller, call.callee) if leg is not None]:
                    if leg.endpoint is None:
                        continue
                    last = max(leg.endpoint.received_at, call.answered, call.media_watch_from)
                    if now - last > self.rtp_timeout:
                        self._media_lost(call, leg)
                        break

    def _media_lost(self, call: Call, silent: Leg) -> None:
        log.warning(
            "call %s: no RTP from %s for %.0f s: ending the call",
            call.id,
            silent.extension_id or silent.kind.value,
            self.rtp_timeout,
        )
        for leg in (call.caller, call.callee):
            if leg is not None:
                self._send_bye(leg)
        self._end(call, CallState.ERROR, HistoryResult.ERROR)

    def _state_changed(self, call: Call, state: CallState) -> None:
        for listener in self.on_state_change:
            try:
                listener(call, state)
            except Exception:
                log.exception("state listener failed for call %s", call.id)

    # ================================================================ API operations
    def get(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise CallNotFoundError(call_id)
        return call

    def hangup(self, call_id: str) -> None:
        call = self.get(call_id)
        if call.is_over:
            raise InappropriateStateError(call_id)
        if call.answered is None:
            self._reject_caller(call, 487, "Request Terminated")
            self._end(call, CallState.CANCELLED, HistoryResult.CANCELLED)
            return
        for leg in (call.caller, call.callee):
            if leg is not None:
                self._send_bye(leg)
        self._end(call, CallState.COMPLETED, HistoryResult.CALLER_HUNG_UP)

    def hold(self, call_id: str) -> None:
        """The Hold command: both parties hear hold music and not each other."""
        call = self.get(call_id)
        if call.state is not CallState.IN_CALL:
            raise InappropriateStateError(call_id)
        call.api_hold = True
        self.leg_media.update_hold_state(call)

    def unhold(self, call_id: str) -> None:
        """The Unhold command: reconnect a call held by Hold (not one a phone holds)."""
        call = self.get(call_id)
        if not call.api_hold or call.state is not CallState.HOLD:
            raise InappropriateStateError(call_id)
        call.api_hold = False
        self.leg_media.update_hold_state(call)

    def shutdown(self) -> None:
        """End every call as the process stops: BYE to answered legs, 503 to ringing ones."""
        for call in list(self.calls.values()):
            if call.answered is None:
                self._reject_caller(call, 503, "Service Unavailable")
            else:
                for leg in (call.caller, call.callee):
                    if leg is not None:
                        self._send_bye(leg)
            self._end(call, CallState.ERROR, HistoryResult.ABORTED)

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        self._background(coro)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run work that outlives the current SIP event; `drain` waits for all of it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def drain(self) -> None:
        """Wait until every ended call has released its media and written its history."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        while self._background_tasks:
            await asyncio.gather(*self._background_tasks, return_exceptions=True)
        await self.playout.close()

    # ---------------------------------------------------------------- delegated operations
    async def forward(self, call_id: str, destination: str) -> None:
        await self.transfers.forward(call_id, destination)

    async def blind_transfer(
        self, call_id: str, target: str, transferor_party: str, *, referrer: Leg | None = None
    ) -> str:
        """Returns the id of the new call that carries the transferred party on."""
        return await self.transfers.blind_transfer(
            call_id, target, transferor_party, referrer=referrer
        )

    async def attended_transfer(self, transferred_id: str, target_id: str) -> None:
        await self.transfers.attended_transfer(transferred_id, target_id)

    def apply_media(self, call: Call) -> None:
        self.leg_media.apply_media(call)

    def leg_output(self, leg: Leg) -> LegOutput:
        return self.leg_media.leg_output(leg)

    def send_info(self, leg: Leg, body: bytes, content_type: str) -> None:
        self.leg_media.send_info(leg, body, content_type)

    # ================================================================ helpers
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _unique_call_id(self) -> str:
        return await self._call_ids.take(self.calls)

    def _parse_sdp(self, message: Request | Response) -> SessionDescription | None:
        if not message.body:
            return None
        try:
            return SessionDescription.parse(message.body)
        except SdpError as exc:
            log.info("unusable SDP from %s: %s", message.call_id, exc)
            return None

    @staticmethod
    async def _safe(awaitable: object) -> None:
        try:
            await awaitable  # type: ignore[misc]
        except Exception:
            log.exception("call history write failed")
