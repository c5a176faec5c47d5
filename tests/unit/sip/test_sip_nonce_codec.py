"""Nonces are base64url as the base64 module writes and reads it (binascii underneath)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.sip.digest import NonceManager

SECRET = b"s" * 32


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4e12, allow_nan=False))
def test_an_issued_nonce_is_the_base64_modules_spelling(now: float) -> None:
    manager = NonceManager(SECRET)
    nonce = manager.issue(now)
    raw = base64.urlsafe_b64decode(nonce + "=")
    assert len(raw) == 32
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == nonce
    assert manager._issued_ms(nonce) == max(0, int(now * 1000))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_a_nonce_is_read_back_as_the_base64_module_reads_it(body: bytes) -> None:
    manager = NonceManager(SECRET)
    nonce = base64.urlsafe_b64encode(body + manager._mac(body)).rstrip(b"=").decode("ascii")
    assert manager._issued_ms(nonce) == int.from_bytes(body[:8], "big")
    forged = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    assert manager._issued_ms(forged) is None
