"""Contact ID alarms on live calls: the SendAlarmNotification command and verb, and the
ReceiveAlarmNotification verb (http-api 8.16, notifications-ozml 4.12, 6.22, 6.23).

The protocol itself is `pypbx.media.contact_id`; this module puts one of its two machines on
a call of an API extension, as if an alarm panel or a receiving centre were plugged into the
extension's own phone (the in-process agent):

* what the extension hears is what the PBX sends the agent, observed by a tap on the
  extension's own leg. That is the far phone's audio relayed through the bridge, or, when
  the far party is itself an API extension, what that one's script plays;
* what the extension says is played into the far party's leg through its `LegOutput`, the
  way Play does;
* key presses the far phone sends out of band (RFC 4733, SIP INFO) come through the call's
  digit listeners. In-band tones are always looked for in the audio, whatever the
  `[media] inband_dtmf` setting, since Contact ID is in-band by definition.

Sending calls from the API extension through the agent, like the `Call` command, but runs no
script on the call: the Contact ID exchange is all it carries, and it is hung up after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pypbx.media.bridge import CodecSpec
from pypbx.media.contact_id import (
    ContactIdError,
    ContactIdMessage,
    ContactIdReceiver,
    ContactIdSender,
    SendResult,
)
from pypbx.media.dtmf import DtmfDigit
from pypbx.media.endpoint import RtpEndpoint
from pypbx.media.inbound import InboundAudio, PcmSink
from pypbx.media.player import Pcm
from pypbx.pbx.agent import AgentCall, AgentCalls, ApiAgent
from pypbx.pbx.b2bua import B2BUA
from pypbx.pbx.call import Call, Leg
from pypbx.pbx.call_media import CallMedia
from pypbx.pbx.control import (
    AlarmRequest,
    AlarmRequestError,
    ApiExtensionError,
    CallNotFoundError,
)
from pypbx.pbx.states import CallState
from pypbx.store.records import api_extension_settings

__all__ = ["AlarmRequest", "AlarmRequestError", "AlarmTiming", "Alarms"]

log = logging.getLogger(__name__)

RESULT_NOTIFICATION = "AlarmNotificationResult"
_POLL = 0.05  # how often call setup is checked on
_CHECK = 1.0  # how often a running exchange checks that its audio still goes out
_SETUP_WAIT = 2.0  # from the agent's 200 to the B2BUA's call being bridged


@dataclass(frozen=True, slots=True)
class AlarmTiming:
    """How long each side waits, in seconds."""

    ring_time: float = 60.0  # for the alarm call to be answered
    handshake_timeout: float = 10.0  # from answer to the receiver's handshake
    receive_timeout: float = 60.0  # for a whole message to be received


class _Machine(Protocol):
    """What `ContactIdSender` and `ContactIdReceiver` have in common."""

    @property
    def done(self) -> bool: ...

    def receive(self, pcm: Pcm, now: float) -> None: ...

    def next_frame(self, now: float) -> Pcm: ...

    def abort(self, reason: str) -> None: ...


class Alarms:
    """Contact ID on the running PBX; cheap to make, holds no state of its own between uses
    (running exchanges live in their tasks and on the call's legs)."""

    def __init__(
        self,
        b2bua: B2BUA,
        media: CallMedia,
        agent: ApiAgent,
        *,
        agent_calls: AgentCalls,
        timing: AlarmTiming | None = None,
    ) -> None:
        self.b2bua = b2bua
        self.media = media
        self.agent = agent
        self.agent_calls = agent_calls
        self.timing = timing or AlarmTiming()

    # ---------------------------------------------------------------- sending
    async def send(self, request: AlarmRequest, *, username: str | None = None) -> None:
        """Check the request and the API extension, then call and send in the background;
        returns at once. The outcome goes to `request.result_url` (AlarmNotificationResult).

        Raises AlarmRequestError (a parameter, code 302) or ApiExtensionError (code 401).
        """
        message = alarm_message(request)
        extension = request.api_extension
        if not extension:
            raise AlarmRequestError("ApiExtension", "no API extension to call from")
        record = await self.b2bua.store.get_extension(extension)
        if record is None or record.type != "API" or not record.enabled:
            raise ApiExtensionError(extension)
        settings = api_extension_settings(record)
        if username is not None and not settings.allows(username):
            raise ApiExtensionError(extension)
        log.info(
            "API extension %s sends Contact ID %s to %s",
            extension,
            message.digits,
            request.phone_number,
        )
        self.b2bua.background(
            self._send(
                request,
                message,
                extension,
                settings.default_caller_id,
                settings.default_display_name,
            )
        )

    async def _send(
        self,
        request: AlarmRequest,
        message: ContactIdMessage,
        extension: str,
        caller_id: str,
        display_name: str,
    ) -> None:
        try:
            result = await self._call_and_send(request, message, extension, caller_id, display_name)
        except Exception:
            log.exception("sending the alarm to %s failed", request.phone_number)
            result = SendResult(False, "internal error", 0)
        log.info(
            "Contact ID alarm to %s: %s%s",
            request.phone_number,
            "Success" if result.success else "Failed",
            f" ({result.reason})" if result.reason else "",
        )
        if request.result_url:
            fields = [
                ("PhoneNumber", request.phone_number),
                ("AccountNumber", message.account),
                ("EventCode", message.event_code),
                ("Result", "Success" if result.success else "Failed"),
                ("Reason", result.reason),
            ]
            self.media.notifier.post(request.result_url, RESULT_NOTIFICATION, fields)

    async def _call_and_send(
        self,
        request: AlarmRequest,
        message: ContactIdMessage,
        extension: str,
        caller_id: str,
        display_name: str,
    ) -> SendResult:
        agent_call = await self.agent.originate(
            extension, request.phone_number, caller_id, display_name
        )
        try:
            return await self._on_answer(agent_call, message)
        finally:
            self.agent.hangup(agent_call)  # CANCEL, BYE, or nothing if it has ended

    async def _on_answer(self, agent_call: AgentCall, message: ContactIdMessage) -> SendResult:
        """Wait for the alarm call to be answered, then send."""
        answered = asyncio.ensure_future(agent_call.answered.wait())
        ended = asyncio.ensure_future(agent_call.ended.wait())
        try:
            await asyncio.wait(
                (answered, ended), timeout=self.timing.ring_time, return_when="FIRST_COMPLETED"
            )
        finally:
            answered.cancel()
            ended.cancel()
        if not agent_call.answered.is_set():
            if not agent_call.ended.is_set():
                return SendResult(False, "no answer", 0)
            return SendResult(False, f"call failed (SIP {agent_call.final_status or 500})", 0)
        call, own = await self._connected(agent_call)
        if call is None or own is None:
            return SendResult(False, "call ended", 0)
        loop = asyncio.get_running_loop()
        sender = ContactIdSender(
            message, loop.time(), handshake_timeout=self.timing.handshake_timeout
        )
        await self._exchange(call, own, sender)
        return sender.result or SendResult(False, "call ended", sender.attempts)

    async def _connected(self, agent_call: AgentCall) -> tuple[Call | None, Leg | None]:
        """The B2BUA's call the agent's answered INVITE belongs to, once it is bridged, and
        the leg facing the agent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETUP_WAIT
        while loop.time() < deadline and not agent_call.ended.is_set():
            call = self.b2bua.call_by_sip_call_id(agent_call.sip_call_id)
            if call is not None and call.is_over:
                break
            own = _agent_leg(call, agent_call) if call is not None else None
            if call is not None and own is not None and _has_media(call):
                return call, own
            await asyncio.sleep(_POLL)
        return None, None

    # ---------------------------------------------------------------- receiving
    async def receive(
        self, call_id: str, api_extension: str | None = None
    ) -> ContactIdMessage | None:
        """Act as the receiving centre on a call of an API extension until one message has
        been acknowledged (returned) or none came (None). CallNotFoundError: no such call
        (or it has ended); LookupError: not a call of an API extension."""
        call = self.b2bua.calls.get(call_id)
        if call is None or call.is_over:
            raise CallNotFoundError(call_id)
        agent_call = self.agent_calls.get(call_id, api_extension=api_extension)
        own = _agent_leg(call, agent_call) if agent_call is not None else None
        if own is None or call.state is not CallState.IN_CALL or not _has_media(call):
            raise LookupError(f"call {call_id} is not an answered call of an API extension")
        loop = asyncio.get_running_loop()
        receiver = ContactIdReceiver(loop.time(), timeout=self.timing.receive_timeout)
        await self._exchange(call, own, receiver, receiver.receive_digit)
        if receiver.message is None:
            log.info("call %s: no Contact ID alarm received (%s)", call_id, receiver.reason)
        else:
            log.info("call %s: Contact ID alarm %s received", call_id, receiver.message.digits)
        return receiver.message

    # ---------------------------------------------------------------- the exchange
    async def _exchange(
        self,
        call: Call,
        own: Leg,
        machine: _Machine,
        on_key: Callable[[str, float], None] | None = None,
    ) -> None:
        """Run `machine` on the call until it is done or the call ends; hears on `own` (the
        API extension's leg), speaks into the other one. Cancelling it stops it quietly."""
        far, endpoint = call.other(own), own.endpoint  # the leg drops it when the call ends
        if far is None or far.endpoint is None or endpoint is None or own.codec is None:
            machine.abort("no media")
            return
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()

        def hear(pcm: Pcm) -> None:
            machine.receive(pcm, loop.time())
            if machine.done:
                finished.set()

        def key(of: Call, leg: Leg, digit: DtmfDigit) -> None:
            # in-band presses are found in the audio itself; the leg's own detector, when
            # the settings run it, would only report them twice
            if on_key is not None and of is call and leg is far and digit.source != "inband":
                on_key(digit.digit, loop.time())

        def ended(of: Call) -> None:
            if of is call:
                finished.set()

        heard = _Heard(own.codec, hear)
        endpoint.add_tap(heard)
        self.media.digit_listeners.append(key)
        self.b2bua.on_call_ended.append(ended)
        source = _MachineSource(machine, loop.time, finished.set)
        output = self.b2bua.leg_output(far)
        output.play(source)
        self.b2bua.apply_media(call)
        try:
            while not finished.is_set() and not call.is_over:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), _CHECK)
                if output.source is not source and not machine.done:
                    # another prompt took the line (a Play meanwhile): nothing drives the
                    # machine's clock any more
                    machine.abort("interrupted")
            if not machine.done:
                machine.abort("call ended")
        finally:
            with contextlib.suppress(ValueError):  # a closed endpoint has dropped its taps
                endpoint.remove_tap(heard)
            with contextlib.suppress(ValueError):
                self.media.digit_listeners.remove(key)
            with contextlib.suppress(ValueError):
                self.b2bua.on_call_ended.remove(ended)
            if output.source is source:
                output.stop_playback()
                if not call.is_over:
                    self.b2bua.apply_media(call)


def alarm_message(request: AlarmRequest) -> ContactIdMessage:
    """The Contact ID message a request asks for; AlarmRequestError names a bad parameter."""
    try:
        return ContactIdMessage.build(
            account=request.account_number,
            event_code=request.event_code,
            partition=request.partition_number,
            zone=request.zone_number,
            qualifier=request.event_qualifier,
        )
    except ContactIdError as exc:
        raise AlarmRequestError(exc.field or "AccountNumber", exc.reason) from exc


def _agent_leg(call: Call, agent_call: AgentCall) -> Leg | None:
    """The leg of `call` whose SIP dialog is the agent's (the API extension's own leg)."""
    for leg in (call.caller, call.callee):
        if leg is not None and leg.invite.call_id == agent_call.sip_call_id:
            return leg
    return None


def _has_media(call: Call) -> bool:
    legs = (call.caller, call.callee)
    return call.bridge is not None and all(
        leg is not None and leg.endpoint is not None and leg.codec is not None for leg in legs
    )


class _MachineSource:
    """`AudioSource` for a leg's output: the machine's frames until it is done (and then
    `on_done`, once the last frame has been handed out)."""

    def __init__(
        self, machine: _Machine, clock: Callable[[], float], on_done: Callable[[], None]
    ) -> None:
        self._machine = machine
        self._clock = clock
        self._on_done = on_done

    def next_frame(self) -> Pcm | None:
        if self._machine.done:
            self._on_done()
            return None
        frame = self._machine.next_frame(self._clock())
        if self._machine.done:
            self._on_done()
        return frame


class _Heard:
    """`PacketTap` on the API extension's own leg: the packets the PBX sends the extension,
    decoded as if the extension had received them."""

    def __init__(self, codec: CodecSpec, sink: PcmSink) -> None:
        self._audio = InboundAudio(codec, _ignore, inband=False)
        self._audio.sinks[self] = sink

    def on_rtp(self, endpoint: RtpEndpoint, data: bytes | bytearray, inbound: bool) -> None:
        if not inbound:
            self._audio.on_rtp(endpoint, data, True)


def _ignore(digit: DtmfDigit) -> None:
    """Telephone-events toward the extension: the far leg's digit listener has them."""
