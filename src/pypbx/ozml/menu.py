"""The DTMF half of UserInput (spec 6.5): barge-in, collecting an entry, classifying it.

Kept apart from the interpreter because it is the one place where OzML is about timing: the
prompts race the first key, and an entry is complete by count, by pause or by `#`. The rules
are pure (`EntryRules`, `classify`); the two coroutines only talk to `CallActions`, so the
timing is tested with a scripted key source.

Decisions where the spec is silent:

* Without `Digits`/`MaxDigits`, the entry is as long as the longest `Input` key (at least 1):
  the documented default of 1 would make multi-key `Input`s unreachable.
* The BackKey is recognised as soon as the keys so far equal it, before the entry is
  complete, so "enter your PIN or star to go back" works with `Digits="4"`.
* After the first key, each further key is awaited `Limits.inter_digit_timeout` seconds; an
  entry left incomplete counts as a timeout (step 4), as does `#` before `MinDigits` keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import Enum

from pypbx.ozml.actions import CallActions
from pypbx.ozml.session import Limits
from pypbx.ozml.verbs import Input, UserInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EntryRules:
    """When an entry is complete: `count` keys, or with `min_count` < `count` a pause or `#`."""

    count: int
    min_count: int
    back_key: str | None
    keys: tuple[str, ...]

    @property
    def flexible(self) -> bool:
        return self.min_count < self.count

    @classmethod
    def of(cls, verb: UserInput, keys: tuple[str, ...], back_key: str | None) -> EntryRules:
        inferred = max((len(key) for key in keys), default=1)
        count = verb.max_digits or verb.digits or max(inferred, 1)
        min_count = min(verb.min_digits or count, count)
        return cls(count=count, min_count=min_count, back_key=back_key or None, keys=keys)

    def terminates(self, key: str) -> bool:
        """`#` ends a variable-length entry unless it is itself a menu key or the BackKey."""
        return (
            self.flexible
            and key == "#"
            and key not in self.keys
            and key != self.back_key
            and not any(k.startswith("#") for k in self.keys)
        )


class Choice(Enum):
    BACK = "back"
    INPUT = "input"
    FORWARD = "forward"
    NO_MATCH = "no_match"


def classify(
    entry: str, rules: EntryRules, inputs: tuple[Input, ...], forward_url: str | None
) -> tuple[Choice, int]:
    """What a complete entry selects, and the index of the matching Input (else -1).

    `inputs` and `rules.keys` are in the same order; keys compare case-insensitively (`A`-`D`).
    """
    folded = entry.casefold()
    if rules.back_key is not None and folded == rules.back_key.casefold():
        return Choice.BACK, -1
    for index, key in enumerate(rules.keys):
        if key.casefold() == folded and index < len(inputs):
            return Choice.INPUT, index
    if forward_url:
        return Choice.FORWARD, -1
    return Choice.NO_MATCH, -1


async def run_prompts(actions: CallActions, call_id: str, prompts: Awaitable[None]) -> str | None:
    """Run the InitialCommands while listening for a key; a key stops them (barge-in).

    Returns the key that interrupted the prompts or arrived as they ended, else None. An
    exception of the prompts (a Hangup or GoTo among them, CallGone) wins over a key.
    """
    prompt = asyncio.ensure_future(prompts)
    listen = asyncio.ensure_future(actions.next_digit(call_id, None))
    try:
        await asyncio.wait((prompt, listen), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        prompt.cancel()
        listen.cancel()
        raise
    if not prompt.done():
        prompt.cancel()
        await _settle(prompt)
        return listen.result()
    if prompt.exception() is not None:
        listen.cancel()
        await _discard(listen)
        prompt.result()  # re-raises
    if listen.done():
        return listen.result()
    listen.cancel()
    return await _settle(listen)


async def _settle(task: asyncio.Future[str | None] | asyncio.Future[None]) -> str | None:
    """Wait for a cancelled task; its result if it finished before the cancellation took."""
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        return None


async def _discard(task: asyncio.Future[str | None]) -> None:
    """Wait for a listener whose outcome no longer matters (the prompts already failed, e.g.
    with the Hangup that also ended the listener's call)."""
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as exc:  # the prompts' exception is the one that counts
        logger.debug("key listener ended with %r after the prompts failed", exc)


async def collect_entry(
    actions: CallActions,
    call_id: str,
    rules: EntryRules,
    first: str | None,
    first_timeout: float,
    limits: Limits,
) -> str | None:
    """Collect one entry (spec 6.5 step 2), starting with `first` if prompts were interrupted.

    Returns the complete entry, or None when it timed out (no key within `first_timeout` after
    the prompts, or an entry left incomplete).
    """
    key = first if first is not None else await actions.next_digit(call_id, first_timeout)
    entry = ""
    while key is not None:
        if rules.terminates(key):
            return entry if len(entry) >= rules.min_count else None
        entry += key
        if rules.back_key is not None and entry.casefold() == rules.back_key.casefold():
            return entry
        if len(entry) >= rules.count:
            return entry
        enough = rules.flexible and len(entry) >= rules.min_count
        wait = limits.entry_pause if enough else limits.inter_digit_timeout
        key = await actions.next_digit(call_id, wait)
        if key is None and enough:
            return entry
    return None
