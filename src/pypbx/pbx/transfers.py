"""Transfers and forwarding: the HTTP commands and the phones' REFER (RFC 3515/3891/5589).

A transfer moves legs, with their dialogs and RTP ports intact, out of calls into a new call
(new CallId), so the phones never notice more than a re-bridge; the old calls end
`Transferred`. REFER from a phone runs the very same code as the HTTP commands, so both
leave identical states and history.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import TYPE_CHECKING

from pypbx.media.player import LoopingSource, Player
from pypbx.media.sounds import ringback_tone
from pypbx.pbx.call import Call, Leg
from pypbx.pbx.control import CallNotFoundError, InappropriateStateError, UnroutableDestinationError
from pypbx.pbx.replies import reply
from pypbx.pbx.sdp_helpers import SUPPORTED_CODECS
from pypbx.pbx.states import CallState, HistoryResult
from pypbx.sip.message import Address, Request, SipParseError
from pypbx.sip.sdp import PCMA, PCMU

if TYPE_CHECKING:
    from pypbx.pbx.b2bua import B2BUA

log = logging.getLogger(__name__)


class Transfers:
    """Works on the B2BUA's calls and legs: forward, blind and attended transfer, REFER handling."""

    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua

    def on_refer(self, leg: Leg, request: Request) -> None:
        """A phone transfers its partner (RFC 3515/5589): the same BlindTransfer the HTTP
        command performs, with the progress reported back in NOTIFY sipfrag bodies."""
        call = leg.call
        try:
            refer_to = Address.parse(request.headers.get("Refer-To") or "", "Refer-To")
        except SipParseError:
            self.b2bua.stack.send_response(reply(request, 400, "Bad Refer-To"))
            return
        replaces = next(
            (v for k, v in refer_to.uri.headers.items() if k.lower() == "replaces"), None
        )
        if replaces is not None:
            self._refer_replaces(leg, request, replaces)
            return
        target = refer_to.uri.user or ""
        if call.is_over or call.state not in (CallState.IN_CALL, CallState.HOLD) or not target:
            self.b2bua.stack.send_response(reply(request, 403, "Forbidden"))
            return
        self.b2bua.stack.send_response(reply(request, 202, "Accepted"))
        self._notify_refer(leg, "SIP/2.0 100 Trying", final=False)
        party = "caller" if leg is call.caller else "callee"
        self.b2bua._background(self._refer(leg, call.id, target, party))

    def _refer_replaces(self, leg: Leg, request: Request, replaces: str) -> None:
        """REFER with Replaces (RFC 3891/5589): the phone's other call is the target call."""
        other = self._dialog_from_replaces(replaces)
        self.b2bua.stack.send_response(reply(request, 202, "Accepted"))
        self._notify_refer(leg, "SIP/2.0 100 Trying", final=False)
        if other is None or other.call is leg.call or other.call.is_over:
            # An unknown (e.g. still ringing) target fails in the NOTIFY, not as a 481 to the
            # REFER: that would tell the phone this dialog is gone (RFC 5057), and it would
            # hang up on the very party it meant to transfer.
            self._notify_refer(leg, "SIP/2.0 481 Call/Transaction Does Not Exist", final=True)
            return

        async def transfer() -> None:
            try:
                await self.attended_transfer(leg.call.id, other.call.id, referrer=leg)
            except (CallNotFoundError, InappropriateStateError):
                self._notify_refer(leg, "SIP/2.0 481 Call/Transaction Does Not Exist", final=True)

        self.b2bua._background(transfer())

    def _dialog_from_replaces(self, value: str) -> Leg | None:
        """The leg a Replaces value names: call-id plus our tag (the phone's to-tag)."""
        parts = urllib.parse.unquote(value).split(";")
        params = dict(p.strip().partition("=")[::2] for p in parts[1:])
        call_id = parts[0].strip()
        for tag in (params.get("to-tag"), params.get("from-tag")):
            if tag and (call_id, tag) in self.b2bua._dialogs:
                return self.b2bua._dialogs[(call_id, tag)]
        return None

    async def _refer(self, leg: Leg, call_id: str, target: str, party: str) -> None:
        try:
            await self.blind_transfer(call_id, target, party, referrer=leg)
        except UnroutableDestinationError:
            self._notify_refer(leg, "SIP/2.0 404 Not Found", final=True)
        except (CallNotFoundError, InappropriateStateError):
            self._notify_refer(leg, "SIP/2.0 481 Call/Transaction Does Not Exist", final=True)

    def _notify_refer(self, leg: Leg, sipfrag: str, *, final: bool) -> None:
        if leg.dialog is None or leg.terminated:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = leg.dialog.create_request(
            "NOTIFY",
            self.b2bua.stack.new_via(leg.peer[0], leg.transport),
            body=(sipfrag + "\r\n").encode(),
            content_type="message/sipfrag;version=2.0",
            extra_headers=[("Event", "refer"), ("Subscription-State", state)],
        )
        self.b2bua.stack.send_request(notify, leg.peer, leg.transport, on_response=lambda r: None)

    async def forward(self, call_id: str, destination: str) -> None:
        """The Forward command: a ringing call rings `destination` instead, same CallId."""
        call = self.b2bua.get(call_id)
        if call.state is not CallState.RINGING or call.callee_endpoint is None:
            raise InappropriateStateError(call_id)
        target = await self.b2bua.store.get_extension(destination)
        if target is None or not target.enabled or target.type != "SIP":
            raise UnroutableDestinationError(destination)
        bindings = self.b2bua.registrar.bindings(target.id)
        if not bindings:
            raise UnroutableDestinationError(destination)
        if call.is_over or call.answered is not None:  # changed while we looked it up
            raise InappropriateStateError(call_id)
        log.info("call %s forwarded from %s to %s", call.id, call.destination, target.id)
        for fork in call.forks:
            self.b2bua._cancel_fork(fork)
        call.forks = []
        if call.bridge is not None:  # early media of the old destination
            self.b2bua.media.unbridge(call.bridge)
            call.bridge = None
        call.destination = target.id
        self.b2bua._ring(call, bindings)

    async def blind_transfer(
        self, call_id: str, target: str, transferor_party: str, *, referrer: Leg | None = None
    ) -> str:
        """The BlindTransfer command: the named party leaves, the other one is put through to
        `target` in a new call (ringback meanwhile); if the target fails, the transferor is
        called back."""
        call = self.b2bua.get(call_id)
        if call.state not in (CallState.IN_CALL, CallState.HOLD):
            raise InappropriateStateError(call_id)
        target_ext = await self.b2bua.store.get_extension(target)
        if target_ext is None or not target_ext.enabled or target_ext.type != "SIP":
            raise UnroutableDestinationError(target)
        bindings = self.b2bua.registrar.bindings(target_ext.id)
        if not bindings:
            raise UnroutableDestinationError(target)
        new_id = await self.b2bua._unique_call_id()
        endpoint = await self.b2bua.media.create_endpoint()
        if call.state not in (CallState.IN_CALL, CallState.HOLD):  # changed meanwhile
            await self.b2bua.media.release(endpoint)
            raise InappropriateStateError(call_id)
        transferor = call.caller if transferor_party == "caller" else call.callee
        transferee = call.other(transferor) if transferor is not None else None
        assert transferor is not None and transferee is not None
        assert transferee.endpoint is not None and transferee.codec is not None

        self.detach(call, transferee)
        if referrer is transferor:  # a REFER: tell the phone its transfer went through
            self._notify_refer(transferor, "SIP/2.0 200 OK", final=True)
        self.b2bua._send_bye(transferor)
        self.b2bua._end(call, CallState.TRANSFERRED, HistoryResult.TRANSFER_COMPLETED)

        now = self.b2bua._now()
        new = Call(id=new_id, started=now, caller_connected=True)
        new.recall_to = transferor.extension_id
        new.caller = transferee
        transferee.call = new
        new.source = transferee.extension_id or ""
        new.caller_id = new.source
        new.dialed = target
        new.destination = target_ext.id
        new.callee_endpoint = endpoint
        first = PCMA if transferee.codec.name == "PCMA" else PCMU
        new.fork_codecs = [first] + [c for c in SUPPORTED_CODECS if c is not first]
        self.b2bua.add_call(new)
        new.history_started = asyncio.get_running_loop().create_task(
            self.b2bua._safe(self.b2bua.store.start_history(new.history(now)))
        )
        source = LoopingSource(ringback_tone())
        transferee.player = self.b2bua.playout.start(
            Player(transferee.endpoint, transferee.codec, source)
        )
        log.info("call %s: %s transferred to %s as call %s", call.id, new.source, target, new.id)
        self.b2bua._ring(new, bindings)
        return new.id

    async def attended_transfer(
        self, transferred_id: str, target_id: str, *, referrer: Leg | None = None
    ) -> None:
        """The AttendedTransfer command: the party common to both calls (the transferor)
        leaves both; the other party of each is connected to the other in a new call."""
        first, second = self.b2bua.get(transferred_id), self.b2bua.get(target_id)
        if first is second:
            raise InappropriateStateError(target_id)
        if first.state not in (CallState.IN_CALL, CallState.HOLD):
            raise InappropriateStateError(transferred_id)
        if second.state is not CallState.IN_CALL and referrer is None:
            raise InappropriateStateError(target_id)
        if second.state not in (CallState.IN_CALL, CallState.HOLD):
            raise InappropriateStateError(target_id)
        common = _common_party(first, second)
        if common is None:
            raise InappropriateStateError(target_id)
        first_transferor, second_transferor = common
        transferee = first.other(first_transferor)
        target = second.other(second_transferor)
        assert transferee is not None and target is not None
        assert transferee.endpoint is not None and transferee.codec is not None
        assert target.endpoint is not None and target.codec is not None
        new_id = await self.b2bua._unique_call_id()
        if first.is_over or second.is_over:  # one ended meanwhile
            raise CallNotFoundError(transferred_id if first.is_over else target_id)

        self.detach(first, transferee)
        self.detach(second, target)
        if referrer is not None:
            self._notify_refer(referrer, "SIP/2.0 200 OK", final=True)
        for call, transferor in ((first, first_transferor), (second, second_transferor)):
            self.b2bua._send_bye(transferor)
            self.b2bua._end(call, CallState.TRANSFERRED, HistoryResult.TRANSFER_COMPLETED)

        now = self.b2bua._now()
        new = Call(id=new_id, started=now, caller_connected=True)
        new.caller, new.callee, new.forks = transferee, target, [target]
        transferee.call = target.call = new
        new.source = transferee.extension_id or ""
        new.caller_id = new.source
        new.dialed = new.destination = target.extension_id or ""
        new.answered = now
        new.state = CallState.IN_CALL
        self.b2bua.add_call(new)
        new.history_started = asyncio.get_running_loop().create_task(
            self.b2bua._safe(self.b2bua.store.start_history(new.history(now)))
        )
        self.b2bua.leg_media.bridge(new, target)
        self.b2bua.leg_media.update_hold_state(new)
        log.info(
            "calls %s and %s: %s connected to %s as call %s",
            first.id,
            second.id,
            new.source,
            new.destination,
            new.id,
        )

    def detach(self, call: Call, leg: Leg) -> None:
        """Take `leg` out of `call` with its dialog and RTP port intact (transfers)."""
        if call.bridge is not None:
            self.b2bua.media.unbridge(call.bridge)
            call.bridge = None
        if leg is call.caller:
            call.caller = None
            if leg.server_txn is not None:
                self.b2bua._invites.pop(leg.server_txn, None)
        else:
            call.callee = None
            call.forks = [f for f in call.forks if f is not leg]
        if call.callee_endpoint is leg.endpoint:
            call.callee_endpoint = None
        if leg.player is not None:
            self.b2bua.playout.stop(leg.player)
            leg.player = None
        self.b2bua.leg_media.stop_output(leg)
        if leg.inbound is not None:
            leg.inbound.sinks.clear()  # recorder and mixer feeds belonged to the old call


def _common_party(first: Call, second: Call) -> tuple[Leg, Leg] | None:
    """The legs of the one extension that takes part in both calls (the transferor)."""
    for a in (first.caller, first.callee):
        for b in (second.caller, second.callee):
            if (
                a is not None
                and b is not None
                and a.extension_id
                and (a.extension_id == b.extension_id)
            ):
                return a, b
    return None
