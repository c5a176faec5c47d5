"""Optional HMAC signature on notifications (spec 2.4), so applications can trust the sender.

Format, for receivers: when a secret is configured every notification carries

    X-Pypbx-Timestamp: <unix time, integer seconds, decimal>
    X-Pypbx-Signature: sha256=<lowercase hex HMAC-SHA256>

where the MAC key is the secret encoded as UTF-8 and the MAC input is the timestamp header value,
a dot, and the exact request body bytes: ``f"{timestamp}.".encode() + body``. A receiver recomputes
the MAC over the raw body it received (before any form decoding), compares in constant time, and
rejects timestamps too far from its own clock; binding the timestamp into the MAC is what makes a
captured request useless for replay once it is outside that window. Retries are signed afresh.

If a 301/302/303 redirect turns the POST into a GET (see `pypbx.notify.client`), the headers are
still sent but there is no body; the signature then covers the empty body.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Pypbx-Signature"
TIMESTAMP_HEADER = "X-Pypbx-Timestamp"
SIGNATURE_PREFIX = "sha256="
# How far a receiver using `verify_signature` lets the timestamp stray from its clock, seconds.
DEFAULT_TOLERANCE = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Pypbx-Signature header value for `body` sent with `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signature_headers(secret: str, now: float, body: bytes) -> dict[str, str]:
    """Both signing headers for a request sent at wall-clock time `now`."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """Receiver side: True if `signature` is ours for this body and the timestamp is fresh."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
