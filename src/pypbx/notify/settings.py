"""Tunables of the notification sender (spec notifications-ozml.md 2.2-2.4).

A plain frozen dataclass so the TOML/CLI layer can map `[notifications]` onto it and tests can
build one directly. Validation happens here, once, so the sender never has to second-guess a value
in the middle of a call.
"""

from __future__ import annotations

from dataclasses import dataclass

from pypbx import __version__


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """How notifications are sent; every default is the spec's recommendation."""

    # Spec 2.3: one bound for the whole exchange (connect, redirects, reading the reply).
    timeout: float = 10.0
    # Spec 2.3: extra attempts for fire-and-forget reports; steering requests never retry.
    retries: int = 1
    # Delay before the first retry; each further retry waits twice as long as the one before.
    retry_delay: float = 2.0
    # Spec 2.4: HMAC-SHA256 key for X-Pypbx-Signature; None sends no signature headers.
    secret: str | None = None
    user_agent: str = f"pypbx/{__version__}"
    # Spec 2.2: at most this many 3xx hops are followed; 0 disables redirects.
    max_redirects: int = 5
    # A reply (OzML) larger than this is a failed notification rather than a memory hazard.
    max_reply_bytes: int = 1024 * 1024
    # Requests on the wire at once, over all calls.
    max_in_flight: int = 100
    # Reports waiting to be sent, over all calls; past this the oldest waiting one is dropped.
    max_queue: int = 10_000

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries!r}")
        if self.retry_delay < 0:
            raise ValueError(f"retry_delay must not be negative, got {self.retry_delay!r}")
        if self.secret == "":
            raise ValueError("secret must not be empty (use None to disable signing)")
        if not self.user_agent or any(c in self.user_agent for c in "\r\n\0"):
            raise ValueError(
                f"user_agent must be a non-empty header value, got {self.user_agent!r}"
            )
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must not be negative, got {self.max_redirects!r}")
        if self.max_reply_bytes < 1:
            raise ValueError(f"max_reply_bytes must be positive, got {self.max_reply_bytes!r}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be positive, got {self.max_in_flight!r}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be positive, got {self.max_queue!r}")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): exponential from retry_delay."""
        return float(self.retry_delay * 2 ** (retry - 1))
