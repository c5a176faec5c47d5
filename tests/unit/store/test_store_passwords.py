"""Office-user password hashes."""

from __future__ import annotations

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


def test_stored_parameters_are_honoured() -> None:
    """The string describes itself: a hash made with other costs still verifies."""
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=1024, r=4, p=2, dklen=32)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode().rstrip("=")

    stored = f"$scrypt$n=1024,r=4,p=2${b64(salt)}${b64(key)}"
    assert verify_password("pw", stored)
    assert not verify_password("pw2", stored)


GOOD = hash_password("pw")
_, _, PARAMS, SALT, KEY = GOOD.split("$")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "pw",
        "$pbkdf2$n=16384,r=8,p=1$abc$def",
        f"scrypt${PARAMS}${SALT}${KEY}",  # no leading $
        f"$scrypt${PARAMS}${SALT}",  # no key
        f"$scrypt${PARAMS}${SALT}${KEY}$extra",
        f"$scrypt$n=16384,r=8${SALT}${KEY}",  # missing p
        f"$scrypt$n=16384,r=8,p=1,x=2${SALT}${KEY}",
        f"$scrypt$n=1000,r=8,p=1${SALT}${KEY}",  # n not a power of two
        f"$scrypt$n=1,r=8,p=1${SALT}${KEY}",
        f"$scrypt$n=16384,r=0,p=1${SALT}${KEY}",
        f"$scrypt$n=abc,r=8,p=1${SALT}${KEY}",
        f"$scrypt$n=1048576,r=8,p=1${SALT}${KEY}",  # 1 GiB: refused, not attempted
        f"$scrypt$n=16384,r=8,p=99${SALT}${KEY}",
        f"$scrypt${PARAMS}$!!!${KEY}",  # bad base64
        f"$scrypt${PARAMS}${SALT}$@@@",
        f"$scrypt${PARAMS}$${KEY}",  # empty salt
        f"$scrypt${PARAMS}${SALT}$QUJD",  # key too short
        f"$scrypt${PARAMS}${SALT}${'A' * 200}",  # key too long
    ],
)
def test_malformed_stored_never_matches(stored: str) -> None:
    assert verify_password("pw", stored) is False


def test_good_vector_sanity() -> None:
    assert verify_password("pw", GOOD)
