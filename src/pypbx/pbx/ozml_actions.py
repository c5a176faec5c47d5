"""OzML verbs carried out on live calls: the PBX's implementation of `CallActions`.

Every verb maps onto the operation the HTTP command of the same name uses (PbxControl and
CallMedia), so a script and an application calling the API get identical behaviour. What
OzML adds is waiting: a Speak or Play verb returns when the prompt has been heard, a
UserInput waits for keys. Each wait ends early, with `CallGone`, when the call ends, and
cancelling it (a key pressed during a prompt) silences the prompt at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from pypbx.media.dtmf import DtmfDigit
from pypbx.media.player import Pcm
from pypbx.messaging.email import EmailSender
from pypbx.ozml import (
    ActionFailed,
    AlarmMessage,
    CallGone,
    LegName,
    PartyName,
    RecordingResult,
    RecordOptions,
    RejectReason,
)
from pypbx.pbx.agent import AgentCalls, ApiAgent
from pypbx.pbx.alarm import Alarms
from pypbx.pbx.b2bua import B2BUA
from pypbx.pbx.call import Call, Leg
from pypbx.pbx.call_media import CallMedia
from pypbx.pbx.control import (
    AlarmRequest,
    AlarmRequestError,
    ApiExtensionError,
    CallNotFoundError,
    InappropriateStateError,
    InvalidMediaRequestError,
    RecordRequest,
    UnroutableDestinationError,
)
from pypbx.pbx.messages import MessageRouter
from pypbx.pbx.states import CallState

__all__ = ["CallEvents", "PbxCallActions"]

log = logging.getLogger(__name__)

T = TypeVar("T")


_BEEP = (0.3 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(1600) / 8000)).astype(np.int16)


class CallEvents:
    """Per-call signals scripts wait on: the call's end, and the keys its phone pressed."""

    def __init__(self, b2bua: B2BUA, media: CallMedia) -> None:
        self._ended: dict[str, asyncio.Event] = {}
        self._digits: dict[str, asyncio.Queue[str]] = {}
        self._listening: dict[str, Leg] = {}  # call id -> the leg whose keys count
        b2bua.on_call_ended.append(self._call_ended)
        media.digit_listeners.append(self._digit)

    def ended(self, call_id: str) -> asyncio.Event:
        return self._ended.setdefault(call_id, asyncio.Event())

    def listen(self, call: Call, leg: Leg | None) -> asyncio.Queue[str]:
        """Collect the keys pressed on `leg` (None: on any leg) of `call`."""
        if leg is not None:
            self._listening[call.id] = leg
        return self._digits.setdefault(call.id, asyncio.Queue())

    def _digit(self, call: Call, leg: Leg, digit: DtmfDigit) -> None:
        wanted = self._listening.get(call.id)
        queue = self._digits.get(call.id)
        if queue is not None and (wanted is None or wanted is leg):
            queue.put_nowait(digit.digit)

    def _call_ended(self, call: Call) -> None:
        self.ended(call.id).set()
        self._digits.pop(call.id, None)
        self._listening.pop(call.id, None)
        # forget the event a little later: a script may still be looking at it
        asyncio.get_running_loop().call_later(60, self._ended.pop, call.id, None)


class PbxCallActions:
    """`pypbx.ozml.CallActions` on the running PBX, for one script."""

    def __init__(
        self,
        b2bua: B2BUA,
        media: CallMedia,
        events: CallEvents,
        agent: ApiAgent,
        *,
        agent_calls: AgentCalls,
        alarms: Alarms,
        api_extension: str | None = None,
        originate: Callable[..., Awaitable[str]],
        email: Callable[[], EmailSender | None],
        recordings_dir: Path,
        sms: Callable[[], MessageRouter | None] = lambda: None,
    ) -> None:
        self.b2bua = b2bua
        self.media = media
        self.events = events
        self.agent = agent
        self.agent_calls = agent_calls
        self.api_extension = api_extension  # whose script this is (None: 3PCC)
        self._alarms = alarms
        self._originate = originate
        self._email = email
        self._sms = sms
        self._recordings = recordings_dir.resolve()

    # ---------------------------------------------------------------- helpers
    def _call(self, call_id: str) -> Call:
        call = self.b2bua.calls.get(call_id)
        if call is None or call.is_over:
            raise CallGone(call_id)
        return call

    async def _until_gone(self, call_id: str, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, or raise CallGone as soon as the call ends."""
        ended = self.events.ended(call_id)
        work = asyncio.ensure_future(awaitable)
        watch = asyncio.ensure_future(ended.wait())
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            raise
        finally:
            watch.cancel()
        if not work.done():
            work.cancel()
            raise CallGone(call_id)
        return work.result()

    async def prompt(self, call_id: str, party: PartyName, pcm: Pcm, **kw: object) -> None:
        """Play `pcm` to the party and wait until it has been heard."""
        call = self._call(call_id)
        done = asyncio.get_running_loop().create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        legs = CallMedia.legs(call, party)
        if not legs:
            raise ActionFailed(f"no {party} to play to")
        self.media.start_prompt(call, party, pcm, on_done=finished, **kw)  # type: ignore[arg-type]
        try:
            await self._until_gone(call_id, done)
        except asyncio.CancelledError:  # barge-in: silence the prompt now
            for leg in legs:
                if leg.output is not None:
                    leg.output.stop_playback()
            if not call.is_over:
                self.b2bua.apply_media(call)
            raise

    # ---------------------------------------------------------------- answering
    async def answer(self, call_id: str) -> None:
        agent_call = self.agent_calls.get(call_id, api_extension=self.api_extension, incoming=True)
        if agent_call is None:
            raise CallGone(call_id)
        self.agent.answer(agent_call)
        # the B2BUA answers the phone when the agent's 200 arrives (a loopback hop)
        for _ in range(250):
            call = self._call(call_id)
            if call.state is CallState.IN_CALL:
                return
            await asyncio.sleep(0.02)
        raise CallGone(call_id)

    async def reject(self, call_id: str, reason: RejectReason) -> None:
        agent_call = self.agent_calls.get(call_id, api_extension=self.api_extension, incoming=True)
        if agent_call is None:
            raise CallGone(call_id)
        if reason == "busy":
            self.agent.reject(agent_call, 486, "Busy Here")
        else:
            self.agent.reject(agent_call, 480, "Temporarily Unavailable")

    async def hangup(self, call_id: str) -> None:
        try:
            self.b2bua.hangup(call_id)
        except (CallNotFoundError, InappropriateStateError) as exc:
            raise CallGone(call_id) from exc

    # ---------------------------------------------------------------- prompts
    async def speak(
        self, call_id: str, party: PartyName, text: str, *, language: str | None, voice: str | None
    ) -> None:
        self._call(call_id)
        try:
            pcm = await self.media.synthesize(text, language=language, voice=voice)
        except InvalidMediaRequestError as exc:
            raise ActionFailed(f"Speak: {exc.reason}") from exc
        await self.prompt(call_id, party, pcm)

    async def play(
        self,
        call_id: str,
        party: PartyName,
        audio_file: str,
        *,
        repeat: bool,
        timeout: float | None,
        wait: bool,
    ) -> None:
        self._call(call_id)
        try:
            pcm = await self.media.load_audio(audio_file)
        except InvalidMediaRequestError as exc:
            raise ActionFailed(f"Play {audio_file}: {exc.reason}") from exc
        if wait:
            await self.prompt(call_id, party, pcm, repeat=repeat, limit=timeout)
        else:
            call = self._call(call_id)
            self.media.start_prompt(call, party, pcm, repeat=repeat, limit=timeout)

    async def beep(self, call_id: str, party: PartyName) -> None:
        await self.prompt(call_id, party, _BEEP)

    async def delay(self, call_id: str | None, seconds: float) -> None:
        if call_id is None:
            await asyncio.sleep(seconds)
            return
        self._call(call_id)
        await self._until_gone(call_id, asyncio.sleep(seconds))

    # ---------------------------------------------------------------- recording
    async def record(self, call_id: str, party: LegName, options: RecordOptions) -> RecordingResult:
        request = self._record_request(options, finished_url=None)
        try:
            recording = await self.media.record(call_id, request, parties=(party,))
        except (CallNotFoundError, InappropriateStateError) as exc:
            raise CallGone(call_id) from exc
        except InvalidMediaRequestError as exc:
            raise ActionFailed(f"Record: {exc.reason}") from exc
        result, url = await recording.done  # a hang-up stops it too (reason Hangup)
        return RecordingResult(
            record_url=url,
            format=result.format,
            duration=result.duration,
            reason=result.reason,
            finish_digit=result.finish_digit,
        )

    async def start_recording(self, call_id: str, options: RecordOptions) -> None:
        request = self._record_request(options, finished_url=options.finished_url)
        try:
            await self.media.record(call_id, request)
        except CallNotFoundError as exc:
            raise CallGone(call_id) from exc
        except InappropriateStateError as exc:
            raise ActionFailed("Record: the call cannot be recorded now") from exc
        except InvalidMediaRequestError as exc:
            raise ActionFailed(f"Record: {exc.reason}") from exc

    @staticmethod
    def _record_request(options: RecordOptions, *, finished_url: str | None) -> RecordRequest:
        return RecordRequest(
            format=options.format,
            finished_url=finished_url,
            duration=round(options.duration) if options.duration else None,
            inactivity=round(options.inactivity) if options.inactivity else None,
            finish_digits=options.finish_digits,
            record_path=options.record_path,
        )

    # ---------------------------------------------------------------- keys
    def clear_digits(self, call_id: str) -> None:
        queue = self.events.listen(self._call(call_id), None)
        while not queue.empty():
            queue.get_nowait()

    async def next_digit(self, call_id: str, timeout: float | None) -> str | None:
        queue = self.events.listen(self._call(call_id), None)
        if timeout == 0:
            return None if queue.empty() else queue.get_nowait()
        try:
            return await self._until_gone(call_id, asyncio.wait_for(queue.get(), timeout))
        except TimeoutError:
            return None

    async def send_dtmf(self, call_id: str, party: PartyName, keys: str) -> None:
        call = self._call(call_id)
        for leg in CallMedia.legs(call, party):
            self.media.send_keys(leg, keys)
        per_key = (self.media.options.dtmf_duration_ms + self.media.options.dtmf_pause_ms) / 1000
        await self._until_gone(call_id, asyncio.sleep(per_key * len(keys)))

    # ---------------------------------------------------------------- call control
    async def blind_transfer(
        self,
        call_id: str,
        target: str,
        transferor_party: LegName,
        *,
        finished_url: str | None,
        timeout: float | None,
    ) -> bool:
        transfer = self.b2bua.blind_transfer(call_id, target, transferor_party)
        await self._control(call_id, _discard(transfer))
        return True

    async def attended_transfer(
        self, transferred_call_id: str, target_call_id: str, transferor_party: LegName | None
    ) -> None:
        await self._control(
            transferred_call_id,
            self.b2bua.attended_transfer(transferred_call_id, target_call_id),
        )

    async def forward(self, call_id: str, destination: str) -> None:
        await self._control(call_id, self.b2bua.forward(call_id, destination))

    async def hold(self, call_id: str) -> None:
        await self._control(call_id, _now(self.b2bua.hold, call_id))

    async def unhold(self, call_id: str) -> None:
        await self._control(call_id, _now(self.b2bua.unhold, call_id))

    async def _control(self, call_id: str, action: Awaitable[None]) -> None:
        try:
            await action
        except CallNotFoundError as exc:
            raise CallGone(str(exc.args[0]) if exc.args else call_id) from exc
        except InappropriateStateError as exc:
            raise ActionFailed("the call is not in a state that allows this") from exc
        except UnroutableDestinationError as exc:
            raise ActionFailed("the destination cannot be reached") from exc

    async def call(
        self,
        *,
        dialed: str,
        api_extension: str,
        caller_id: str | None,
        caller_display_name: str | None,
        url: str | None,
        error_url: str | None,
        response_ozml: str | None,
        finished_url: str | None,
        ring_time: int,
    ) -> None:
        try:
            await self._originate(
                api_extension=api_extension,
                dialed=dialed,
                caller_id=caller_id,
                caller_display_name=caller_display_name,
                url=url,
                error_url=error_url,
                response_ozml=response_ozml,
                finished_url=finished_url,
                ring_time=ring_time,
            )
        except Exception as exc:  # the originate errors carry the reason
            raise ActionFailed(f"Call {dialed}: {exc}") from exc

    # ---------------------------------------------------------------- messages and files
    async def send_sms(
        self,
        *,
        recipient: str,
        message: str,
        sender: str | None,
        api_extension: str | None,
        delivery_report_url: str | None,
    ) -> None:
        router = self._sms()
        if router is None or not api_extension:
            raise ActionFailed("SendSms: no API extension or message router to send it")
        try:
            await router.send_sms(api_extension, sender, recipient, message, delivery_report_url)
        except (LookupError, ValueError) as exc:  # unknown recipient or extension, too long
            raise ActionFailed(f"SendSms to {recipient}: {exc}") from exc

    async def send_email(
        self,
        *,
        recipient: str,
        subject: str,
        message: str,
        sender: str | None,
        api_extension: str | None,
    ) -> None:
        email = self._email()
        if email is None:
            raise ActionFailed("SendEmail: no SMTP server is configured")
        task = asyncio.get_running_loop().create_task(
            email.send([recipient], subject, message, sender=sender)
        )
        task.add_done_callback(_log_failure)

    async def route(
        self, *, destination: str, ring_time: int, caller_id: str | None, dialed_number: str | None
    ) -> None:
        raise ActionFailed("Route is only meaningful in a RoutingInterception reply")

    async def delete_file(self, path: str) -> None:
        try:
            self._recording_path(path).unlink()
        except OSError as exc:
            raise ActionFailed(f"DeleteFile {path}: {exc.strerror}") from exc

    async def move_file(self, source: str, target: str) -> None:
        try:
            self._recording_path(source).rename(self._recording_path(target))
        except OSError as exc:
            raise ActionFailed(f"MoveFile {source}: {exc.strerror}") from exc

    def _recording_path(self, path: str) -> Path:
        candidate = Path(path)
        resolved = (
            candidate if candidate.is_absolute() else self._recordings / candidate
        ).resolve()
        if "\x00" in path or not resolved.is_relative_to(self._recordings):
            raise ActionFailed(f"{path} is outside the recordings directory")
        return resolved

    async def send_alarm(
        self,
        *,
        phone_number: str,
        account_number: str,
        event_qualifier: str,
        event_code: str,
        partition_number: str,
        zone_number: str,
        api_extension: str | None,
        result_url: str | None,
    ) -> None:
        request = AlarmRequest(
            phone_number=phone_number,
            account_number=account_number,
            event_code=event_code,
            partition_number=partition_number,
            zone_number=zone_number,
            event_qualifier=event_qualifier,
            api_extension=api_extension,
            result_url=result_url,
        )
        try:
            await self._alarms.send(request)
        except AlarmRequestError as exc:
            raise ActionFailed(f"SendAlarmNotification: {exc}") from exc
        except ApiExtensionError as exc:
            raise ActionFailed(f"SendAlarmNotification: API extension {exc} cannot call") from exc

    async def receive_alarm(self, call_id: str) -> AlarmMessage | None:
        call = self._call(call_id)
        try:
            message = await self._alarms.receive(call_id, self.api_extension)
        except CallNotFoundError as exc:
            raise CallGone(call_id) from exc
        except LookupError as exc:
            raise ActionFailed(f"ReceiveAlarmNotification: {exc}") from exc
        if message is None:
            if call.is_over:
                raise CallGone(call_id)
            return None
        return AlarmMessage(
            account=message.account,
            event_qualifier=message.qualifier_name,
            event_code=message.event_code,
            event_name=message.event_name,
            partition=message.partition,
            zone=message.zone,
        )


async def _discard(action: Awaitable[object]) -> None:
    await action


async def _now(action: Callable[[str], None], call_id: str) -> None:
    action(call_id)


def _log_failure(task: asyncio.Task[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("OzML SendEmail failed: %s", task.exception())
