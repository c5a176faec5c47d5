"""Play, Speak, Record and SendDTMF on live calls, and what the phones' key presses become.

These are the media halves of the HTTP commands (spec 8.8-8.11) and, later, of the OzML
verbs of the same names: one implementation each. The B2BUA owns the legs and decides what
each phone hears (`apply_media`); this module asks it for a leg's output and hands that the
audio, and hangs recorders on the legs' inbound taps. Slow work (downloads, decoding, speech
synthesis, MP3 encoding) runs off the event loop or in worker threads, so a Play never
stalls another call's packets.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pypbx.media.audiofile import AudioFormatError
from pypbx.media.dtmf import DtmfDigit, digit_to_event, encode_event
from pypbx.media.fetch import AudioRequestError, AudioResolver
from pypbx.media.leg_output import DtmfStep, EventBurst
from pypbx.media.player import FRAME, ClipSource, Pcm
from pypbx.media.recorder import CallRecorder, RecordingResult, StopReason, finalize
from pypbx.media.recorder import recording_name as make_recording_name
from pypbx.media.tts import SpeechEngine, SpeechError, SpeechUnavailableError, VoiceChoice
from pypbx.notify import Notifier
from pypbx.pbx.b2bua import B2BUA
from pypbx.pbx.call import Call, Leg
from pypbx.pbx.control import InappropriateStateError, InvalidMediaRequestError, RecordRequest
from pypbx.pbx.states import CallState
from pypbx.sip.dtmf_info import DTMF_RELAY_CONTENT_TYPE, build_dtmf_relay

__all__ = ["CallMedia", "MediaOptions"]

log = logging.getLogger(__name__)

_PLAYABLE = (CallState.IN_CALL, CallState.HOLD)  # spec 8.9-8.11
_EVENT_VOLUME = 10  # -10 dBm0, the level RFC 4733 examples use
_MS_PER_TICK = 20


@dataclass(frozen=True)
class MediaOptions:
    recordings_dir: Path
    public_url: Callable[[], str]  # base of RecordURL, e.g. http://192.0.2.1:7780
    dtmf_duration_ms: int = 100
    dtmf_pause_ms: int = 100


@dataclass(eq=False)
class _Recording:
    """A running recording and what it is attached to; ticked by the playout clock."""

    call: Call
    recorder: CallRecorder
    request: RecordRequest
    legs: list[Leg] = field(default_factory=list)
    finished: bool = False
    # the finished file (encoded as asked) and its URL, for callers that wait for it (OzML)
    done: asyncio.Future[tuple[RecordingResult, str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def tick(self) -> None:
        self.recorder.tick(asyncio.get_running_loop().time())
        if self.recorder.finished:
            self.finished = True


class CallMedia:
    def __init__(
        self,
        b2bua: B2BUA,
        resolver: AudioResolver,
        speech: SpeechEngine,
        notifier: Notifier,
        options: MediaOptions,
    ) -> None:
        self.b2bua = b2bua
        self.resolver = resolver
        self.speech = speech
        self.notifier = notifier
        self.options = options
        self.recordings: dict[str, _Recording] = {}
        # Key presses of any call (OzML UserInput, logging): (call, leg pressed on, digit).
        self.digit_listeners: list[Callable[[Call, Leg, DtmfDigit], None]] = []
        b2bua.on_digit = self._on_digit
        b2bua.on_call_ended.append(self._call_ended)

    # ------------------------------------------------------------------ Play, Speak
    async def play(
        self, call_id: str, party: str, audio_file: str, *, repeat: bool, timeout: int | None
    ) -> None:
        self._media_call(call_id, _PLAYABLE)
        pcm = await self.load_audio(audio_file)
        call = self._media_call(call_id, _PLAYABLE)  # it may have ended during the download
        self.start_prompt(call, party, pcm, repeat=repeat, limit=timeout)

    async def speak(
        self, call_id: str, party: str, text: str, *, language: str | None, voice: str | None
    ) -> None:
        self._media_call(call_id, _PLAYABLE)
        pcm = await self.synthesize(text, language=language, voice=voice)
        call = self._media_call(call_id, _PLAYABLE)
        self.start_prompt(call, party, pcm)

    async def load_audio(self, audio_file: str) -> Pcm:
        """A file or URL as PCM (the Play command and verb); InvalidMediaRequestError names
        `AudioFile` and says what is wrong with it."""
        try:
            return await self.resolver.load(audio_file)
        except (AudioRequestError, AudioFormatError) as exc:
            raise InvalidMediaRequestError("AudioFile", str(exc)) from exc

    async def synthesize(self, text: str, *, language: str | None, voice: str | None) -> Pcm:
        """Speech for `text` (the Speak command and verb); InvalidMediaRequestError names
        `Text` when it cannot be had."""
        try:
            choice = VoiceChoice(language=language or "", voice=voice or "")
            return await self.speech.synthesize(text, choice)
        except (SpeechUnavailableError, SpeechError, ValueError) as exc:
            raise InvalidMediaRequestError("Text", str(exc)) from exc

    def start_prompt(
        self,
        call: Call,
        party: str,
        pcm: Pcm,
        *,
        repeat: bool = False,
        limit: float | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Lay `pcm` over what `party` hears, replacing any prompt playing to it."""
        legs = self.legs(call, party)
        for index, leg in enumerate(legs):
            output = self.b2bua.leg_output(leg)
            done = on_done if index == len(legs) - 1 else None
            output.play(ClipSource(pcm, repeat=repeat, limit=limit), done)
        self.b2bua.apply_media(call)
        log.info(
            "call %s: playing %.1f s%s to %s", call.id, len(pcm) / 8000, " looped" * repeat, party
        )

    # ------------------------------------------------------------------ SendDTMF
    async def send_dtmf(self, call_id: str, party: str, keys: str) -> None:
        call = self._media_call(call_id, (CallState.IN_CALL,))
        for leg in self.legs(call, party):
            self.send_keys(leg, keys)

    def send_keys(self, leg: Leg, keys: str) -> None:
        """Key presses toward one phone: RFC 4733 events if it negotiated them, else SIP INFO."""
        if leg.codec is None or leg.endpoint is None:
            return
        duration, pause = self.options.dtmf_duration_ms, self.options.dtmf_pause_ms
        if leg.codec.telephone_event_pt is not None:
            self.b2bua.leg_output(leg).queue_dtmf(dtmf_steps(keys, duration, pause))
            self.b2bua.apply_media(leg.call)
        else:
            self.b2bua.background(self._send_info(leg, keys, duration, pause))
        log.info("call %s: sending DTMF %s to the %s", leg.call.id, keys, self._party_of(leg))

    async def _send_info(self, leg: Leg, keys: str, duration: int, pause: int) -> None:
        for key in keys:
            if leg.terminated:
                return
            self.b2bua.send_info(leg, build_dtmf_relay(key, duration), DTMF_RELAY_CONTENT_TYPE)
            await asyncio.sleep((duration + pause) / 1000)

    # ------------------------------------------------------------------ Record
    async def record(
        self,
        call_id: str,
        request: RecordRequest,
        *,
        parties: tuple[str, ...] = ("caller", "callee"),
    ) -> _Recording:
        """Start recording `parties` of the call; the result arrives in `.done`."""
        call = self._media_call(call_id, _PLAYABLE)
        if call_id in self.recordings:
            raise InappropriateStateError(call_id)
        directory = self._recording_dir(request.record_path)
        name = make_recording_name(call_id, datetime.now(UTC).astimezone(), "wav", directory)
        loop = asyncio.get_running_loop()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            recorder = CallRecorder(
                directory / name,
                now=loop.time(),
                stereo=request.stereo,
                max_duration=request.duration,
                inactivity=request.inactivity,
                finish_digits=request.finish_digits,
            )
        except OSError as exc:
            log.error("cannot record call %s into %s: %s", call_id, directory, exc)
            raise InvalidMediaRequestError("RecordPath", f"cannot write there: {exc}") from exc
        recording = _Recording(call, recorder, request)
        self.recordings[call_id] = recording
        self._attach_recorder(recording, parties)
        self.b2bua.playout.start(recording)
        self.b2bua.background(self._await_recording(recording))
        log.info("call %s: recording to %s", call_id, recorder.path)
        return recording

    def _recording_dir(self, record_path: str | None) -> Path:
        root = self.options.recordings_dir.resolve()
        if not record_path:
            return root
        if "\x00" in record_path:
            raise InvalidMediaRequestError("RecordPath", "contains a NUL character")
        candidate = Path(record_path)
        target = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if not target.is_relative_to(root):
            raise InvalidMediaRequestError(
                "RecordPath", "must be a directory inside the recordings directory"
            )
        return target

    def _attach_recorder(self, recording: _Recording, parties: tuple[str, ...]) -> None:
        call, recorder = recording.call, recording.recorder
        for leg, party in ((call.caller, "caller"), (call.callee, "callee")):
            if leg is None or leg.inbound is None or party not in parties:
                continue

            def feed(pcm: Pcm, party: str = party) -> None:
                recorder.feed(party, pcm, asyncio.get_running_loop().time())  # type: ignore[arg-type]

            leg.inbound.sinks[recording] = feed
            recording.legs.append(leg)

    async def _await_recording(self, recording: _Recording) -> None:
        """Wait for the recording to stop (by itself, or at the end of the call), then
        encode it and report RecordCompleted."""
        while not recording.recorder.finished:
            await asyncio.sleep(0.1)
        for leg in recording.legs:
            if leg.inbound is not None:
                leg.inbound.sinks.pop(recording, None)
        recording.finished = True
        self.recordings.pop(recording.call.id, None)
        result = recording.recorder.result
        try:
            result = await asyncio.to_thread(finalize, result, recording.request.format)
        except Exception:
            log.exception("finishing the recording of call %s failed", recording.call.id)
        log.info(
            "call %s: recording finished (%s, %.1f s): %s",
            recording.call.id,
            result.reason,
            result.duration,
            result.path,
        )
        if not recording.done.done():
            recording.done.set_result((result, self.recording_url(result.path)))
        if recording.request.finished_url:
            self.notifier.post(
                recording.request.finished_url,
                "RecordCompleted",
                self._record_completed(recording.call, result),
                key=recording.call.id,
            )

    def _record_completed(self, call: Call, result: RecordingResult) -> list[tuple[str, str]]:
        fields = [
            ("CallId", call.id),
            ("RecordURL", self.recording_url(result.path)),
            ("Format", result.format),
            ("Duration", str(round(result.duration))),
            ("Reason", result.reason),
        ]
        if result.finish_digit:
            fields.append(("FinishDigit", result.finish_digit))
        return fields

    def recording_url(self, path: Path) -> str:
        relative = path.resolve().relative_to(self.options.recordings_dir.resolve())
        quoted = "/".join(urllib.parse.quote(part) for part in relative.parts)
        return f"{self.options.public_url().rstrip('/')}/recordings/{quoted}"

    def stop_recording(self, call_id: str, reason: str = StopReason.STOPPED) -> None:
        recording = self.recordings.get(call_id)
        if recording is not None and not recording.recorder.finished:
            recording.recorder.stop(reason)

    # ------------------------------------------------------------------ events
    def _on_digit(self, leg: Leg, digit: DtmfDigit) -> None:
        call = leg.call
        log.info(
            "call %s: DTMF %s from the %s (%s)",
            call.id,
            digit.digit,
            self._party_of(leg),
            digit.source,
        )
        recording = self.recordings.get(call.id)
        if recording is not None:
            recording.recorder.dtmf(digit.digit, asyncio.get_running_loop().time())
        if digit.source == "info":
            # RFC 4733 events and in-band tones reach the other phone through the bridge;
            # an INFO press has to be passed on.
            other = call.other(leg)
            if other is not None and not call.is_over:
                self.send_keys(other, digit.digit)
        for listener in tuple(self.digit_listeners):
            try:
                listener(call, leg, digit)
            except Exception:
                log.exception("DTMF listener failed for call %s", call.id)

    def _call_ended(self, call: Call) -> None:
        self.stop_recording(call.id, StopReason.HANGUP)

    # ------------------------------------------------------------------ helpers
    def _media_call(self, call_id: str, states: tuple[CallState, ...]) -> Call:
        call = self.b2bua.get(call_id)
        if call.state not in states or call.caller is None or call.callee is None:
            raise InappropriateStateError(call_id)
        return call

    @staticmethod
    def legs(call: Call, party: str) -> list[Leg]:
        """The legs `party` ('caller', 'callee', 'all') names that have media set up."""
        party = party.lower()
        chosen = {"caller": [call.caller], "callee": [call.callee]}.get(
            party, [call.caller, call.callee]
        )
        return [leg for leg in chosen if leg is not None and leg.endpoint and leg.codec]

    @staticmethod
    def _party_of(leg: Leg) -> str:
        return "caller" if leg is leg.call.caller else "callee"


def dtmf_steps(keys: str, duration_ms: int, pause_ms: int) -> list[DtmfStep]:
    """One step per 20 ms tick: each press's event packets (the end packet sent three
    times, RFC 4733 2.5.1.4), then silence for the pause."""
    steps: list[DtmfStep] = []
    total = duration_ms * 8  # samples at the 8 kHz event clock
    packets = max(1, -(-duration_ms // _MS_PER_TICK))
    for key in keys:
        event = digit_to_event(key)
        for index in range(1, packets + 1):
            end = index == packets
            length = min(index * FRAME, total)
            payload = encode_event(event, end, _EVENT_VOLUME, length)
            steps.append(EventBurst((payload,) * (3 if end else 1), index == 1, total))
        steps.extend([None] * max(1, -(-pause_ms // _MS_PER_TICK)))
    return steps
