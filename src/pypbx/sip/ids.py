"""Random identifiers for tags, branches and Call-IDs (RFC 3261 §19.3, §8.1.1.7).

Why the OS's CSPRNG: tags and Call-IDs must be globally unique and unguessable, otherwise a third
party can forge in-dialog requests (BYE injection); ``random`` is predictable. ``os.urandom`` is
what ``secrets.token_hex`` reads too, without its two Python-level calls in between: every
response to a REGISTER takes a tag.
"""

from __future__ import annotations

from os import urandom

MAGIC_COOKIE = "z9hG4bK"


def generate_tag() -> str:
    """A From/To tag with 64 bits of randomness (the RFC asks for at least 32)."""
    return urandom(8).hex()


def generate_branch() -> str:
    """An RFC 3261 Via branch: the magic cookie plus 96 random bits."""
    return MAGIC_COOKIE + urandom(12).hex()


def generate_call_id(host: str) -> str:
    """A Call-ID of the form ``random@host``, unique across restarts and nodes."""
    return f"{urandom(16).hex()}@{host}"
