"""What each phone of a call hears, and the media-level SIP around it.

SDP offers and answers for the legs, the bridge between them, hold (music for the held
party), prompts and DTMF that pypbx itself sends a phone, the taps that watch what a phone
sends, and SIP INFO key presses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pypbx.media.dtmf import DtmfDigit, DtmfError
from pypbx.media.inbound import InboundAudio
from pypbx.media.leg_output import LegOutput
from pypbx.media.player import LoopingSource, Player
from pypbx.net.localaddr import advertised_address
from pypbx.pbx.call import Call, Leg
from pypbx.pbx.replies import reply
from pypbx.pbx.sdp_helpers import codec_spec, sdp_direction
from pypbx.pbx.states import CallState
from pypbx.sip.dtmf_info import DTMF_INFO_CONTENT_TYPES, parse_dtmf_info
from pypbx.sip.message import Request
from pypbx.sip.sdp import Codec, SessionDescription, build_answer

if TYPE_CHECKING:
    from pypbx.pbx.b2bua import B2BUA

log = logging.getLogger(__name__)


class LegMedia:
    """The B2BUA's media side of each leg: SDP, bridging, hold, prompt output, inbound taps."""

    def __init__(self, b2bua: B2BUA) -> None:
        self.b2bua = b2bua
        self._outputs: dict[LegOutput, Leg] = {}

    def on_info(self, leg: Leg, request: Request) -> None:
        """SIP INFO key presses (application/dtmf-relay, application/dtmf); other INFO
        packages are acknowledged and ignored."""
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in DTMF_INFO_CONTENT_TYPES or leg.call.is_over:
            self.b2bua.stack.send_response(reply(request, 200))
            return
        try:
            key, duration = parse_dtmf_info(content_type, request.body)
        except DtmfError as exc:
            self.b2bua.stack.send_response(reply(request, 400, "Bad DTMF Body"))
            log.info("call %s: bad DTMF INFO body: %s", leg.call.id, exc)
            return
        self.b2bua.stack.send_response(reply(request, 200))
        self.b2bua.on_digit(leg, DtmfDigit(key, "info", self.b2bua._now(), duration))

    def send_info(self, leg: Leg, body: bytes, content_type: str) -> None:
        if leg.dialog is None or leg.terminated:
            return
        info = leg.dialog.create_request(
            "INFO",
            self.b2bua.stack.new_via(leg.peer[0], leg.transport),
            body=body,
            content_type=content_type,
        )
        self.b2bua.stack.send_request(info, leg.peer, leg.transport, on_response=lambda r: None)

    def accept_callee_sdp(self, leg: Leg, sdp: SessionDescription) -> bool:
        audio = sdp.audio()
        if audio is None:
            return False
        chosen = next((c for c in audio.codecs if c.name.upper() in ("PCMU", "PCMA")), None)
        if chosen is None:
            return False
        event = next((c for c in audio.codecs if c.name.lower() == "telephone-event"), None)
        leg.codec = codec_spec(chosen, event)
        leg.remote_sdp = sdp
        leg.remote_direction = sdp_direction(sdp)
        if leg.endpoint is not None:
            leg.endpoint.set_remote(sdp.audio_endpoint())
        return True

    def update_remote_media(self, leg: Leg, sdp: SessionDescription) -> None:
        leg.remote_sdp = sdp
        leg.remote_direction = sdp_direction(sdp)
        endpoint = sdp.audio_endpoint()
        usable = endpoint is not None and endpoint[1] != 0 and endpoint[0] not in ("0.0.0.0", "::")
        if leg.endpoint is not None and usable:
            leg.endpoint.set_remote(endpoint)

    def bridge(self, call: Call, callee: Leg) -> None:
        caller = call.caller
        assert caller is not None
        if caller.endpoint is None or callee.endpoint is None:
            return
        if caller.codec is None or callee.codec is None:
            return
        if call.bridge is not None:
            self.b2bua.media.unbridge(call.bridge)
        call.bridge = self.b2bua.media.bridge(
            caller.endpoint, callee.endpoint, caller.codec, callee.codec
        )
        self._apply_media(call)

    def update_hold_state(self, call: Call) -> None:
        """Public state and media after a Hold/Unhold command or a phone's (un)hold re-INVITE."""
        if call.is_over or call.answered is None:
            return
        held = call.api_hold or any(leg.held for leg in (call.caller, call.callee) if leg)
        if held and call.state is CallState.IN_CALL:
            self.b2bua._set_state(call, CallState.HOLD)
        elif not held and call.state is CallState.HOLD:
            self.b2bua._set_state(call, CallState.IN_CALL)
        self._apply_media(call)

    def _apply_media(self, call: Call) -> None:
        """Decide what each phone hears: the other phone, hold music, a prompt, or nothing.

        A phone that put the call on hold itself (sendonly/inactive) gets nothing; its
        partner gets music. The Hold command gives both parties music. A prompt or DTMF that
        pypbx sends a phone (Play, Speak, SendDTMF) takes over that phone's stream and mixes
        in the other phone when it would otherwise hear it. Otherwise the bridge relays.
        """
        bridge = call.bridge
        if bridge is None or call.is_over:
            return
        for leg in (call.caller, call.callee):
            if leg is None or leg.endpoint is None or leg.codec is None:
                continue
            self._watch_inbound(leg)
            other = call.other(leg)
            music = not leg.held and (call.api_hold or (other is not None and other.held))
            output = leg.output if leg.output is not None and leg.output.busy else None
            bridge.toward(leg.endpoint).paused = music or leg.held or output is not None
            # A re-INVITE may change a held leg's codec: its music must follow, or the
            # phone gets frames in the payload type it no longer expects.
            if leg.player is not None and (
                not music or output is not None or leg.player.codec != leg.codec
            ):
                self.b2bua.playout.stop(leg.player)
                leg.player = None
            if music and output is None and leg.player is None:
                source = LoopingSource(self.b2bua.hold_music)
                leg.player = self.b2bua.playout.start(Player(leg.endpoint, leg.codec, source))
            if output is not None:
                output.set_codec(leg.codec)
                output.mix_conversation = not (music or leg.held)
            self._feed_conversation(other, leg, output is not None and output.mix_conversation)

    def apply_media(self, call: Call) -> None:
        """Re-decide what each phone of `call` hears (after a prompt or DTMF was queued)."""
        self._apply_media(call)

    def _watch_inbound(self, leg: Leg) -> None:
        """Tap what the phone sends, for DTMF detection, recording and prompt mixing."""
        assert leg.endpoint is not None and leg.codec is not None
        mode = self.b2bua.inband_dtmf
        inband = mode == "always" or (mode == "auto" and leg.codec.telephone_event_pt is None)
        if leg.inbound is None:
            leg.inbound = InboundAudio(
                leg.codec, lambda digit: self.b2bua.on_digit(leg, digit), inband=inband
            )
            # it watches what the phone sends only: spare every packet sent to it the call
            leg.endpoint.add_tap(leg.inbound, outbound=False)
            leg.inbound.sinks.on_added = leg.endpoint.reclaim
        elif leg.inbound.codec != leg.codec or leg.inbound.inband != inband:
            leg.inbound.set_codec(leg.codec, inband=inband)

    @staticmethod
    def _feed_conversation(speaker: Leg | None, listener: Leg, on: bool) -> None:
        """Route `speaker`'s decoded audio into the prompt mix `listener` hears, or stop."""
        if speaker is None or speaker.inbound is None or listener.output is None:
            return
        sinks = speaker.inbound.sinks
        if on:
            sinks[listener.output] = listener.output.conversation.push
        else:
            sinks.pop(listener.output, None)

    def leg_output(self, leg: Leg) -> LegOutput:
        """The leg's own output (created on first use), started on the playout clock."""
        assert leg.endpoint is not None and leg.codec is not None
        output = leg.output
        if output is None or output.finished or output.endpoint is not leg.endpoint:
            if output is not None:
                self.b2bua.playout.stop(output)
            output = leg.output = LegOutput(leg.endpoint, leg.codec, self._output_idle)
            self._outputs[output] = leg
        if output not in self.b2bua.playout:
            self.b2bua.playout.start(output)
        return output

    def _output_idle(self, output: LegOutput) -> None:
        leg = self._outputs.pop(output, None)
        if leg is None or leg.output is not output:
            return
        leg.output = None
        other = leg.call.other(leg)
        if other is not None and other.inbound is not None:
            other.inbound.sinks.pop(output, None)
        self._apply_media(leg.call)

    def stop_output(self, leg: Leg) -> None:
        output = leg.output
        if output is None:
            return
        leg.output = None
        self._outputs.pop(output, None)
        self.b2bua.playout.stop(output)
        for other in (leg.call.caller, leg.call.callee):
            if other is not None and other.inbound is not None:
                other.inbound.sinks.pop(output, None)

    def answer(
        self,
        leg: Leg,
        offer: SessionDescription,
        codec: Codec,
        event: Codec | None,
        *,
        session_id: int,
        version: int,
    ) -> SessionDescription:
        """pypbx's SDP answer to a phone's offer: this leg's RTP port, one codec."""
        assert leg.endpoint is not None
        return build_answer(
            offer,
            address=self.media_host(leg.peer[0]),
            port=leg.endpoint.local_port,
            codecs=[codec],
            telephone_event=event,
            session_id=session_id,
            session_version=version,
        )

    def media_host(self, peer_ip: str) -> str:
        return advertised_address(
            self.b2bua.stack.bind_host,
            self.b2bua.media_address or self.b2bua.stack.advertised,
            peer_ip,
        )
