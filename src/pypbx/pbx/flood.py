"""Per-source request rate limits: token buckets that stop INVITE/REGISTER floods early.

A scanner or a broken phone can send thousands of requests a second, and every REGISTER
or INVITE costs a store lookup and a digest check. Each source address gets one bucket per
request class (INVITE, REGISTER, anything else out of dialog); a request takes a token,
tokens come back at the class's rate up to its burst. An empty bucket means the request
is refused before any store access or authentication: INVITE and REGISTER get 503 with
Retry-After (a phone that honours it backs off), other requests are dropped (answering a
flood only feeds it). ACK and CANCEL are never limited: they finish transactions already
paid for. In-dialog requests never get here.

A source refused for `ban_after` seconds on end is banned outright (`FailureBans.ban`),
so a flood eventually costs one dictionary lookup per packet. Refusals are logged when a
flood starts and then at most once a minute per source, with a count, never per request.

Sans-I/O: the clock comes in as `now`. `check` runs for every request, so its fast path
is a dictionary lookup and a few float operations (about a microsecond).
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pypbx.pbx.abuse import FailureBans

__all__ = ["FloodLimits", "Rate", "refill", "retry_after", "take"]

log = logging.getLogger(__name__)

INVITE, REGISTER, OTHER = 0, 1, 2
_CLASS = {"INVITE": INVITE, "REGISTER": REGISTER}
_NAMES = ("INVITE", "REGISTER", "other request")
_EXEMPT = frozenset({"ACK", "CANCEL"})


@dataclass(frozen=True, slots=True)
class Rate:
    """Tokens per second and bucket size; a burst of 0 means no limit for the class."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 0:
            raise ValueError(f"invalid rate {self.per_second}/s, burst {self.burst}")


def refill(tokens: float, elapsed: float, rate: float, burst: float) -> float:
    """The tokens a bucket holds `elapsed` seconds after it held `tokens`."""
    if elapsed > 0:
        tokens += elapsed * rate
    return burst if tokens > burst else tokens


def take(tokens: float, last: float, now: float, rate: float, burst: float) -> tuple[bool, float]:
    """One request at `now` against a bucket that held `tokens` at `last`: whether it may
    pass, and the tokens left (a refused request takes nothing)."""
    tokens = refill(tokens, now - last, rate, burst)
    if tokens >= 1.0:
        return True, tokens - 1.0
    return False, tokens


def retry_after(tokens: float, rate: float) -> int:
    """Whole seconds until the bucket holds a token again (at least 1, as Retry-After)."""
    return max(1, math.ceil((1.0 - tokens) / rate))


class _Source:
    """One address's buckets and flood episode (slots: there may be many of these)."""

    __slots__ = ("ignored", "last_refused", "logged", "refused", "since", "stamps", "tokens")

    def __init__(self, ignored: bool, now: float, bursts: Sequence[float]) -> None:
        self.ignored = ignored
        self.tokens = list(bursts)  # a new source starts with full buckets
        self.stamps = [now, now, now]
        self.since: float | None = None  # first refusal of the current flood
        self.last_refused = 0.0
        self.logged = 0.0
        self.refused = 0  # refusals since the last log line


class FloodLimits:
    def __init__(
        self,
        *,
        invite: Rate = Rate(10.0, 50),
        register: Rate = Rate(20.0, 200),
        other: Rate = Rate(50.0, 200),
        ignore: Sequence[str] = ("127.0.0.0/8", "::1/128"),
        bans: FailureBans | None = None,
        ban_after: float = 30.0,
        ban_seconds: float = 600.0,
        quiet: float = 10.0,
        log_every: float = 60.0,
        max_sources: int = 100_000,
    ) -> None:
        """`ignore` lists networks never limited (the ban ignore list); a source refused
        for `ban_after` seconds, with no pause longer than `quiet`, is banned in `bans` for
        `ban_seconds` (0 or no `bans`: never)."""
        self._rates = (invite.per_second, register.per_second, other.per_second)
        self._bursts = (float(invite.burst), float(register.burst), float(other.burst))
        self._ignore = [ipaddress.ip_network(net, strict=False) for net in ignore]
        self.bans = bans
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.quiet = quiet
        self.log_every = log_every
        self.max_sources = max_sources
        self._sources: dict[str, _Source] = {}

    def check(self, address: str, method: str, now: float) -> int | None:
        """None lets the request through; otherwise it is over its limit and the value is
        the Retry-After (seconds) to answer with."""
        if method in _EXEMPT:
            return None
        source = self._sources.get(address)
        if source is None:
            source = self._add(address, now)
        if source.ignored:
            return None
        kind = _CLASS.get(method, OTHER)
        burst = self._bursts[kind]
        if not burst:
            return None
        rate = self._rates[kind]
        allowed, tokens = take(source.tokens[kind], source.stamps[kind], now, rate, burst)
        source.tokens[kind] = tokens
        source.stamps[kind] = now
        if allowed:
            return None
        self._refused(address, source, kind, now)
        return retry_after(tokens, rate)

    def _refused(self, address: str, source: _Source, kind: int, now: float) -> None:
        if source.since is None or now - source.last_refused > self.quiet:
            source.since = now
            source.logged = now
            source.refused = 0
            log.warning(
                "flood from %s: more than %g %ss/s (burst %.0f), refusing them",
                address,
                self._rates[kind],
                _NAMES[kind],
                self._bursts[kind],
            )
        source.last_refused = now
        source.refused += 1
        if now - source.logged >= self.log_every:
            log.warning(
                "flood from %s goes on: %d requests refused in the last %.0f s",
                address,
                source.refused,
                now - source.logged,
            )
            source.logged = now
            source.refused = 0
        if self.bans is not None and self.ban_after > 0 and now - source.since >= self.ban_after:
            self.bans.ban(
                address, now, self.ban_seconds, f"flooding for {now - source.since:.0f} s"
            )
            source.since = None

    def _add(self, address: str, now: float) -> _Source:
        if len(self._sources) >= self.max_sources:
            self._prune(now)
        source = _Source(self._ignored(address), now, self._bursts)
        self._sources[address] = source
        return source

    def _prune(self, now: float) -> None:
        """Forget sources whose buckets are full again; a spoofed-source flood that leaves
        too many behind clears the table (per-source limits cannot stop that one anyway)."""
        idle = [
            address
            for address, source in self._sources.items()
            if source.since is None
            and all(
                refill(source.tokens[k], now - source.stamps[k], self._rates[k], self._bursts[k])
                >= self._bursts[k]
                for k in (INVITE, REGISTER, OTHER)
            )
        ]
        for address in idle:
            del self._sources[address]
        if len(self._sources) > self.max_sources // 2:
            log.warning("%d flooding sources: forgetting all of them", len(self._sources))
            self._sources.clear()

    def _ignored(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return True  # not an address (a host name): nothing to key a limit on
        return any(ip in net for net in self._ignore)
