"""Concurrent call limits: for the whole PBX and for each SIP extension.

`max_calls` protects the machine (RTP ports, CPU): a new call beyond it is answered 503
Service Unavailable, the answer for "this server is full, try elsewhere or later".
`per_extension` is Asterisk's call-limit / FreeSWITCH's `limit ... !USER_BUSY`: every call
an extension takes part in counts, ringing or talking, placed or received. A caller at its
limit gets 486 Busy Here (the FreeSWITCH idiom, and what a phone shows as busy; 403 would
read as a bad password). A callee at its limit is busy: its phones are not rung, and when
no one else is left to ring the attempt fails as Busy, so ring groups hunt on and dial plan
OnBusy fallbacks apply exactly as when a phone answers 486 itself.

Calls refused at admission never become calls and write no history, like INVITEs refused
for authentication or SDP; a callee found busy ends a call that exists, which is recorded
as Busy. Usage is counted by scanning the live calls, only when a per-extension limit is
set and once per new call or ring attempt: about 2 us per live call, far below what the
INVITE itself costs, and nothing to keep in step as legs come and go.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from pypbx.pbx.call import Call
from pypbx.pbx.registrar import Binding
from pypbx.store.records import ExtensionRecord

__all__ = ["CallLimits", "Refusal", "usage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The final response that refuses a new call."""

    status: int
    reason: str


PBX_FULL = Refusal(503, "Service Unavailable")
CALLER_BUSY = Refusal(486, "Busy Here")


def usage(calls: Iterable[Call], exclude: Call | None = None) -> Counter[str]:
    """How many live calls each extension takes part in (a call counts once per extension,
    however many of its phones ring). The caller of a call from an outside line is a number,
    not one of ours, so it is not counted."""
    counts: Counter[str] = Counter()
    for call in calls:
        if call is exclude or call.is_over:
            continue
        outside = call.caller if call.direction == "Inbound" else None
        seen = {
            leg.extension_id
            for leg in (call.caller, call.callee, *call.forks)
            if leg is not None and leg is not outside and not leg.terminated
        }
        for extension in seen:
            if extension:
                counts[extension] += 1
    return counts


class CallLimits:
    def __init__(self, max_calls: int = 0, per_extension: int = 0) -> None:
        """0 means unlimited, for either."""
        self.max_calls = max_calls
        self.per_extension = per_extension

    def admit(self, caller: ExtensionRecord, calls: Collection[Call]) -> Refusal | None:
        """Whether a new call from `caller` may start; `calls` are the live calls."""
        if self.max_calls and len(calls) >= self.max_calls:
            log.warning("call from %s refused: all %d calls in use", caller.id, self.max_calls)
            return PBX_FULL
        if (
            self.per_extension
            and caller.type == "SIP"
            and usage(calls)[caller.id] >= self.per_extension
        ):
            log.info("call from %s refused: in %d calls already", caller.id, self.per_extension)
            return CALLER_BUSY
        return None

    def free(
        self,
        call: Call,
        bindings: list[Binding],
        calls: Iterable[Call],
        limited: Callable[[str], bool],
    ) -> list[Binding]:
        """The bindings of `call`'s ring attempt whose extension is not at its limit;
        `limited(extension_id)` says which extensions the limit applies to (SIP phones,
        not API extensions or outside lines, which have their own channel limits)."""
        if not self.per_extension:
            return bindings
        targets = {b.extension_id for b in bindings if limited(b.extension_id)}
        if not targets:
            return bindings
        counts = usage(calls, exclude=call)
        busy = {ext for ext in targets if counts[ext] >= self.per_extension}
        for ext in sorted(busy):
            log.info("call %s: %s is busy (in %d calls)", call.id, ext, counts[ext])
        return [b for b in bindings if b.extension_id not in busy]
