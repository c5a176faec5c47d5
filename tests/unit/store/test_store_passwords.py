"""Office-user password hashes."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from pypbx.store.passwords import hash_password, verify_password

FORMAT = re.compile(r"^\$scrypt\$n=16384,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")


@pytest.mark.parametrize("password", ["mypassword12", "", "ünïcødé pässwörd", "a" * 1000])
def test_round_trip(password: str) -> None:
    stored = hash_password(password)
    assert FORMAT.match(stored), stored
    assert verify_password(password, stored)


def test_wrong_password_refused() -> None:
    stored = hash_password("abc123")
    for wrong in ["abc1234", "ABC123", "abc12", "", " abc123"]:
        assert not verify_password(wrong, stored)


def test_salt_is_fresh_each_time() -> None:
    assert hash_password("same") != hash_password("same")


def b64(data: bytes) -> str:
    """Unpadded standard base64, as in the stored format."""
    return base64.b64encode(data).decode().rstrip("=")


def test_stored_parameters_are_honoured() -> None:
    """The string describes itself: a hash made with other costs still verifies."""
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=1024, r=4, p=2, dklen=32)
    stored = f"$scrypt$n=1024,r=4,p=2${b64(salt)}${b64(key)}"
    assert verify_password("pw", stored)
    assert not verify_password("pw2", stored)


# A fixed vector (not hash_password's random salt): test ids must be identical in every
# pytest-xdist worker, and a failure must be reproducible.
GOOD = "$scrypt$n=16384,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + b64(
    hashlib.scrypt(b"pw", salt=b"0123456789abcdef", n=16384, r=8, p=1, dklen=32)
)
_, _, PARAMS, SALT, KEY = GOOD.split("$")


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("", id="empty"),
        pytest.param("pw", id="plaintext"),
        pytest.param("$pbkdf2$n=16384,r=8,p=1$abc$def", id="other-scheme"),
        pytest.param(f"scrypt${PARAMS}${SALT}${KEY}", id="no-leading-dollar"),
        pytest.param(f"$scrypt${PARAMS}${SALT}", id="no-key"),
        pytest.param(f"$scrypt${PARAMS}${SALT}${KEY}$extra", id="extra-field"),
        pytest.param(f"$scrypt$n=16384,r=8${SALT}${KEY}", id="missing-p"),
        pytest.param(f"$scrypt$n=16384,r=8,p=1,x=2${SALT}${KEY}", id="unknown-param"),
        pytest.param(f"$scrypt$n=1000,r=8,p=1${SALT}${KEY}", id="n-not-power-of-two"),
        pytest.param(f"$scrypt$n=1,r=8,p=1${SALT}${KEY}", id="n-1"),
        pytest.param(f"$scrypt$n=16384,r=0,p=1${SALT}${KEY}", id="r-0"),
        pytest.param(f"$scrypt$n=abc,r=8,p=1${SALT}${KEY}", id="n-not-a-number"),
        # 1 GiB of memory: refused, not attempted
        pytest.param(f"$scrypt$n=1048576,r=8,p=1${SALT}${KEY}", id="n-too-costly"),
        pytest.param(f"$scrypt$n=16384,r=8,p=99${SALT}${KEY}", id="p-too-costly"),
        pytest.param(f"$scrypt${PARAMS}$!!!${KEY}", id="salt-bad-base64"),
        pytest.param(f"$scrypt${PARAMS}${SALT}$@@@", id="key-bad-base64"),
        pytest.param(f"$scrypt${PARAMS}$${KEY}", id="empty-salt"),
        pytest.param(f"$scrypt${PARAMS}${SALT}$QUJD", id="key-too-short"),
        pytest.param(f"$scrypt${PARAMS}${SALT}${'A' * 200}", id="key-too-long"),
    ],
)
def test_malformed_stored_never_matches(stored: str) -> None:
    assert verify_password("pw", stored) is False


def test_good_vector_sanity() -> None:
    """The fixed vector is what hash_password makes, so the malformed cases are near misses."""
    assert FORMAT.match(GOOD), GOOD
    assert verify_password("pw", GOOD)
    assert b64(b"0123456789abcdef") == SALT
