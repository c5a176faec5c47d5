"""An in-memory PBX for the OzML interpreter tests: records every action, scripts the keys.

Keys come from two places, as on a real call:

* `barge`: prompt text (or audio file) -> key pressed while that prompt plays. The prompt then
  never finishes by itself; it waits to be cancelled, as a real prompt is by barge-in.
* `keys`: what each wait *after* the prompts yields, in order: a key, or None for "the timeout
  passed". When the list runs out every further wait times out. Waits are virtual: a timeout
  costs no time, so a test with Timeout="10" runs instantly.

`end_when(entry)` decides when the far party hangs up: the matching action and every later
action on that call raise CallGone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pypbx.ozml import (
    ActionFailed,
    AlarmMessage,
    CallGone,
    Interpreter,
    LegName,
    Limits,
    Outcome,
    PartyName,
    RecordingResult,
    RecordOptions,
    RejectReason,
    Session,
    parse_ozml,
)

Entry = tuple[Any, ...]


class FakePbx:
    def __init__(self) -> None:
        self.log: list[Entry] = []
        self.keys: deque[str | None] = deque()
        self.barge: dict[str, deque[str]] = {}
        self.buffer: deque[str] = deque()
        self._pressed = asyncio.Event()
        self.replies: dict[str, deque[str | None]] = {}
        self.fetches: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
        self.end_when: Callable[[Entry], bool] | None = None
        self.ended: set[str] = set()
        self.fail: dict[str, str] = {}
        self.transfer_ok = True
        self.record_result = RecordingResult(
            record_url="http://pbx:7780/recordings/c1.mp3",
            format="mp3",
            duration=7.4,
            reason="Duration",
        )
        self.alarm: AlarmMessage | None = None

    # -- scripting helpers ---------------------------------------------------------------------

    def press_during(self, prompt: str, *keys: str) -> None:
        self.barge.setdefault(prompt, deque()).extend(keys)

    def reply(self, url: str, *bodies: str | None) -> None:
        self.replies.setdefault(url, deque()).extend(bodies)

    def actions(self, *names: str) -> list[Entry]:
        return [entry for entry in self.log if not names or entry[0] in names]

    # -- recording -----------------------------------------------------------------------------

    def _do(self, *entry: Any, call_id: str | None = None) -> None:
        if call_id is not None and call_id in self.ended:
            self.log.append(("gone", entry[0], call_id))
            raise CallGone(call_id)
        self.log.append(entry)
        if call_id is not None and self.end_when is not None and self.end_when(entry):
            self.ended.add(call_id)
            raise CallGone(call_id)
        if entry[0] in self.fail:
            raise ActionFailed(self.fail[entry[0]])

    async def _prompt(self, name: str) -> None:
        pending = self.barge.get(name)
        if pending:
            self.buffer.append(pending.popleft())
            self._pressed.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.log.append(("interrupted", name))
                raise
        await asyncio.sleep(0)

    # -- CallActions ---------------------------------------------------------------------------

    async def answer(self, call_id: str) -> None:
        self._do("answer", call_id, call_id=call_id)

    async def reject(self, call_id: str, reason: RejectReason) -> None:
        self._do("reject", call_id, reason, call_id=call_id)

    async def hangup(self, call_id: str) -> None:
        self._do("hangup", call_id, call_id=call_id)
        self.ended.add(call_id)

    async def speak(
        self, call_id: str, party: PartyName, text: str, *, language: str | None, voice: str | None
    ) -> None:
        entry: Entry = ("speak", call_id, party, text)
        if language or voice:
            entry += (language, voice)
        self._do(*entry, call_id=call_id)
        await self._prompt(text)

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
        self._do("play", call_id, party, audio_file, repeat, timeout, wait, call_id=call_id)
        await self._prompt(audio_file)

    async def beep(self, call_id: str, party: PartyName) -> None:
        self._do("beep", call_id, party, call_id=call_id)

    async def delay(self, call_id: str | None, seconds: float) -> None:
        self._do("delay", call_id, seconds, call_id=call_id)
        await asyncio.sleep(0)

    async def record(self, call_id: str, party: LegName, options: RecordOptions) -> RecordingResult:
        self._do("record", call_id, party, options, call_id=call_id)
        if self.record_result.call_ended:
            self.ended.add(call_id)
        return self.record_result

    async def start_recording(self, call_id: str, options: RecordOptions) -> None:
        self._do("start_recording", call_id, options, call_id=call_id)

    def clear_digits(self, call_id: str) -> None:
        self.log.append(("clear", call_id))
        self.buffer.clear()

    async def next_digit(self, call_id: str, timeout: float | None) -> str | None:
        if call_id in self.ended:
            raise CallGone(call_id)
        if timeout is None:
            while not self.buffer:
                self._pressed.clear()
                await self._pressed.wait()
            return self.buffer.popleft()
        if self.buffer:
            return self.buffer.popleft()
        self.log.append(("wait", timeout))
        key = self.keys.popleft() if self.keys else None
        if key == "hangup":
            self.ended.add(call_id)
            raise CallGone(call_id)
        return key

    async def send_dtmf(self, call_id: str, party: PartyName, keys: str) -> None:
        self._do("send_dtmf", call_id, party, keys, call_id=call_id)

    async def blind_transfer(
        self,
        call_id: str,
        target: str,
        transferor_party: LegName,
        *,
        finished_url: str | None,
        timeout: float | None,
    ) -> bool:
        self._do(
            "blind_transfer",
            call_id,
            target,
            transferor_party,
            finished_url,
            timeout,
            call_id=call_id,
        )
        return self.transfer_ok

    async def attended_transfer(
        self, transferred_call_id: str, target_call_id: str, transferor_party: LegName | None
    ) -> None:
        self._do(
            "attended_transfer",
            transferred_call_id,
            target_call_id,
            transferor_party,
            call_id=transferred_call_id,
        )

    async def forward(self, call_id: str, destination: str) -> None:
        self._do("forward", call_id, destination, call_id=call_id)

    async def hold(self, call_id: str) -> None:
        self._do("hold", call_id, call_id=call_id)

    async def unhold(self, call_id: str) -> None:
        self._do("unhold", call_id, call_id=call_id)

    async def call(self, **params: Any) -> None:
        self._do("call", params)

    async def send_sms(self, **params: Any) -> None:
        self._do("send_sms", params)

    async def send_email(self, **params: Any) -> None:
        self._do("send_email", params)

    async def route(self, **params: Any) -> None:
        self._do("route", params)

    async def delete_file(self, path: str) -> None:
        self._do("delete_file", path)

    async def move_file(self, source: str, target: str) -> None:
        self._do("move_file", source, target)

    async def send_alarm(self, **params: Any) -> None:
        self._do("send_alarm", params)

    async def receive_alarm(self, call_id: str) -> AlarmMessage | None:
        self._do("receive_alarm", call_id, call_id=call_id)
        return self.alarm

    # -- Notifications -------------------------------------------------------------------------

    async def fetch(self, url: str, name: str, fields: Sequence[tuple[str, str]]) -> str | None:
        self.fetches.append((url, name, tuple(fields)))
        self.log.append(("fetch", name, url))
        await asyncio.sleep(0)
        bodies = self.replies.get(url)
        return bodies.popleft() if bodies else None


API = Session.incoming_call(call_id="c1", api_extension="9994", caller="1442")
OUT = Session.call_connected(call_id="c1", api_extension="9994", dialed="2310")
TPCC = Session.third_party(notification="CallChanged", call_id="c1")


async def run(
    pbx: FakePbx, document: str, session: Session = API, *, limits: Limits | None = None
) -> Outcome:
    interpreter = Interpreter(pbx, pbx, session, limits=limits)
    return await asyncio.wait_for(interpreter.run(parse_ozml(document)), timeout=5)
