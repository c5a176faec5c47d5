"""X-Pypbx-Signature: the documented format, a fixed vector, and receiver-side verification."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pypbx.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify_signature
from pypbx.notify.signing import signature_headers

SECRET = "top secret"
BODY = b"NotificationName=CallChanged&CallId=uteom"
# Computed independently: printf '1700000000.<body>' | openssl dgst -sha256 -hmac 'top secret'
VECTOR = "sha256=46a2e4a6179894e4043ef2470594a0ffbab53bf3f7adae6f7a2eedc710a2ebd2"


def test_sign_matches_openssl_vector() -> None:
    assert sign(SECRET, "1700000000", BODY) == VECTOR


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(b"top secret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", BODY) == "sha256=" + expected


def test_secret_is_utf8() -> None:
    expected = hmac.new("clé".encode(), b"1.", hashlib.sha256).hexdigest()
    assert sign("clé", "1", b"") == "sha256=" + expected


def test_signature_headers_use_integer_seconds() -> None:
    headers = signature_headers(SECRET, 1700000000.987, BODY)
    assert headers == {TIMESTAMP_HEADER: "1700000000", SIGNATURE_HEADER: VECTOR}
    assert (TIMESTAMP_HEADER, SIGNATURE_HEADER) == ("X-Pypbx-Timestamp", "X-Pypbx-Signature")


def test_verify_accepts_fresh_signature() -> None:
    assert verify_signature(SECRET, "1700000000", BODY, VECTOR, now=1700000000.0)
    assert verify_signature(SECRET, "1700000000", BODY, VECTOR, now=1700000300.0)
    assert verify_signature(SECRET, "1700000000", BODY, VECTOR, now=1699999700.0)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "signature", "now"),
    [
        ("other", "1700000000", BODY, VECTOR, 1700000000.0),  # wrong key
        (SECRET, "1700000000", BODY + b"&x=1", VECTOR, 1700000000.0),  # body changed
        (SECRET, "1700000001", BODY, VECTOR, 1700000001.0),  # timestamp changed
        (SECRET, "1700000000", BODY, VECTOR, 1700000301.0),  # replayed too late
        (SECRET, "1700000000", BODY, VECTOR, 1699999699.0),  # from the future
        (SECRET, "1700000000", BODY, VECTOR.upper(), 1700000000.0),  # not our spelling
        (SECRET, "1700000000", BODY, VECTOR.removeprefix("sha256="), 1700000000.0),
        (SECRET, "-1700000000", BODY, VECTOR, 1700000000.0),
        (SECRET, "", BODY, VECTOR, 1700000000.0),
        (SECRET, "\u0661\u0667", BODY, VECTOR, 17.0),  # Arabic-Indic digits
    ],
)
def test_verify_rejects(
    secret: str, timestamp: str, body: bytes, signature: str, now: float
) -> None:
    assert not verify_signature(secret, timestamp, body, signature, now=now)


def test_verify_tolerance_is_configurable() -> None:
    assert not verify_signature(SECRET, "1700000000", BODY, VECTOR, now=1700000011.0, tolerance=10)
    assert verify_signature(SECRET, "1700000000", BODY, VECTOR, now=1700000010.0, tolerance=10)
