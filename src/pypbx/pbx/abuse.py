"""Temporary bans for sources that keep failing authentication (fail2ban's view of a PBX).

Scanners try thousands of extension/password pairs against any SIP port they find. Every
failure from an address is counted in a sliding window; past the limit the address is
banned for a while, and every request it sends gets the answer a failed login gets, so
the scanner cannot tell that anything changed. Sources that flood (`pypbx.pbx.flood`) are
banned the same way. One instance serves SIP, another the HTTP API's logins. Bans are
logged, so an operator sees who. Sans-I/O: the clock comes in as `now`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Sequence

__all__ = ["FailureBans"]

log = logging.getLogger(__name__)


class FailureBans:
    def __init__(
        self,
        *,
        max_failures: int = 10,
        window: float = 60.0,
        ban_seconds: float = 600.0,
        ignore: Sequence[str] = ("127.0.0.0/8", "::1/128"),
    ) -> None:
        """`max_failures` 0 turns bans off; `ignore` lists networks never banned (local
        services, an office NAT address shared by many phones)."""
        self._ignore = [ipaddress.ip_network(net, strict=False) for net in ignore]
        self.max_failures = max_failures
        self.window = window
        self.ban_seconds = ban_seconds
        self._failures: dict[str, deque[float]] = {}
        self._banned: dict[str, float] = {}  # address -> until

    def banned(self, address: str, now: float) -> bool:
        until = self._banned.get(address)
        if until is None:
            return False
        if until <= now:
            del self._banned[address]
            log.info("ban on %s lifted", address)
            return False
        return True

    def failed(self, address: str, now: float) -> None:
        """One more failed authentication from `address`; bans it past the limit."""
        if self.max_failures <= 0 or self._ignored(address):
            return
        times = self._failures.setdefault(address, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.max_failures:
            self._failures.pop(address, None)
            self._banned[address] = now + self.ban_seconds
            log.warning(
                "banned %s for %.0f s after %d failed authentications in %.0f s",
                address,
                self.ban_seconds,
                self.max_failures,
                self.window,
            )
        if len(self._failures) > 100_000:  # a spoofed-source flood: keep memory bounded
            self._failures.clear()

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def ban(self, address: str, now: float, seconds: float, reason: str) -> None:
        """Ban `address` outright (a flood, say); ignored networks are never banned."""
        if seconds <= 0 or self._ignored(address):
            return
        self._failures.pop(address, None)
        self._banned[address] = max(self._banned.get(address, 0.0), now + seconds)
        log.warning("banned %s for %.0f s: %s", address, seconds, reason)

    def _ignored(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a host name in Via: not an address we could ban reliably
            return True
        return any(ip in net for net in self._ignore)
