"""Size bounds for untrusted SIP input.

Why: every buffer the network can grow must have a ceiling, or one peer can exhaust memory.
The defaults fit a UDP datagram; stream transports use the same numbers so behaviour does not
depend on the transport.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Byte and count ceilings applied by ``parse_message`` and ``StreamFramer``."""

    max_message: int = 65535
    max_line: int = 8192
    max_headers: int = 128
    max_body: int = 65535


DEFAULT_LIMITS = Limits()
