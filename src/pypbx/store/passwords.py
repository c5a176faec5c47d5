"""Office-user password hashing.

scrypt is in the standard library and memory-hard, so no extra dependency is needed for a
hash that resists GPU guessing. The stored string names its own parameters
(`$scrypt$n=16384,r=8,p=1$<salt>$<hash>`), so the cost can be raised later without
invalidating existing hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os

logger = logging.getLogger(__name__)

_N = 2**14
_R = 8
_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# Refuse stored parameters that would make one verification cost more than this much
# memory: a tampered row must not be able to exhaust the host.
_MAX_MEMORY = 256 * 1024 * 1024


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _memory_needed(n: int, r: int, p: int) -> int:
    # OpenSSL's accounting: the V array (128*r*(n+2)) plus the B blocks (128*r*p).
    return 128 * r * (n + 2 + p)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=length,
        maxmem=_memory_needed(n, r, p) + 1024 * 1024,
    )


def hash_password(password: str) -> str:
    """Hash with a fresh random salt; the result is self-describing."""
    salt = os.urandom(_SALT_BYTES)
    key = _scrypt(password, salt, _N, _R, _P, _KEY_BYTES)
    return f"$scrypt$n={_N},r={_R},p={_P}${_b64encode(salt)}${_b64encode(key)}"


def _parse_params(text: str) -> tuple[int, int, int]:
    fields = dict(item.split("=", 1) for item in text.split(","))
    if set(fields) != {"n", "r", "p"}:
        raise ValueError("scrypt parameters must be n, r and p")
    n, r, p = (int(fields[name]) for name in ("n", "r", "p"))
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        raise ValueError("scrypt parameters out of range")
    if _memory_needed(n, r, p) > _MAX_MEMORY or p > 16:
        raise ValueError("scrypt parameters too costly")
    return n, r, p


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches `stored`; a malformed `stored` never matches.

    The final comparison is constant-time so the hash cannot be learnt byte by byte.
    """
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "scrypt":
        logger.warning("stored password hash has an unknown format")
        return False
    try:
        n, r, p = _parse_params(parts[2])
        salt = _b64decode(parts[3])
        expected = _b64decode(parts[4])
    except (ValueError, binascii.Error):
        logger.warning("stored password hash is malformed")
        return False
    if not salt or not 16 <= len(expected) <= 64:
        logger.warning("stored password hash is malformed")
        return False
    actual = _scrypt(password, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)
