"""DTMF in SIP INFO bodies: `application/dtmf-relay` and `application/dtmf`, sans-I/O.

Neither format has a real specification: `application/dtmf-relay` is the de facto one from
Cisco (``Signal=5`` and ``Duration=160`` lines, the duration in milliseconds) and
`application/dtmf` carries just the key. So parsing follows what phones actually send: any
case and spacing, LF or CRLF line ends, unknown lines ignored, and the signal either as the key
or as its RFC 4733 event number (some phones send ``Signal=10`` and ``11`` for ``*`` and ``#``).
What we send is the most common form, which every implementation reads.
"""

from __future__ import annotations

from typing import Final

from pypbx.media.dtmf import DIGITS, DtmfError, digit_to_event

__all__ = [
    "DTMF_CONTENT_TYPE",
    "DTMF_INFO_CONTENT_TYPES",
    "DTMF_RELAY_CONTENT_TYPE",
    "DtmfError",
    "build_dtmf_relay",
    "parse_dtmf",
    "parse_dtmf_info",
    "parse_dtmf_relay",
]

DTMF_RELAY_CONTENT_TYPE: Final = "application/dtmf-relay"
DTMF_CONTENT_TYPE: Final = "application/dtmf"
DTMF_INFO_CONTENT_TYPES: Final = frozenset({DTMF_RELAY_CONTENT_TYPE, DTMF_CONTENT_TYPE})

MAX_BODY: Final = 1024  # real bodies are about 25 bytes; anything large is not DTMF
MAX_DURATION_MS: Final = 60_000


def parse_dtmf_info(content_type: str, body: bytes) -> tuple[str, int | None]:
    """(digit, duration in ms or None) from an INFO body, dispatched on its Content-Type.

    `content_type` may carry parameters and any case (``Application/DTMF-Relay; x=1``). Some
    phones label a dtmf-relay body `application/dtmf`; a body with ``=`` is read as one.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == DTMF_RELAY_CONTENT_TYPE or (media_type == DTMF_CONTENT_TYPE and b"=" in body):
        return parse_dtmf_relay(body)
    if media_type == DTMF_CONTENT_TYPE:
        return parse_dtmf(body), None
    raise DtmfError(f"not a DTMF content type: {content_type!r}")


def parse_dtmf_relay(body: bytes) -> tuple[str, int | None]:
    """(digit, duration in ms or None) from an `application/dtmf-relay` body."""
    signal: str | None = None
    duration: int | None = None
    for line in _text(body).splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue  # blank lines and whatever else some phones add
        name, value = name.strip().lower(), value.strip()
        if name == "signal":
            if signal is not None:
                raise DtmfError("dtmf-relay body has more than one Signal line")
            signal = _key(value)
        elif name == "duration":
            duration = _duration(value)
    if signal is None:
        raise DtmfError("dtmf-relay body has no Signal line")
    return signal, duration


def parse_dtmf(body: bytes) -> str:
    """The digit of an `application/dtmf` body: the key itself or its event number."""
    return _key(_text(body).strip())


def build_dtmf_relay(digit: str, duration_ms: int = 250) -> bytes:
    """An `application/dtmf-relay` body: ``Signal=<key>\\r\\nDuration=<ms>\\r\\n``."""
    key = DIGITS[digit_to_event(digit)]
    if not 0 < duration_ms <= MAX_DURATION_MS:
        raise DtmfError(f"dtmf-relay Duration must be 1-{MAX_DURATION_MS} ms, got {duration_ms}")
    return f"Signal={key}\r\nDuration={duration_ms}\r\n".encode("ascii")


def _text(body: bytes) -> str:
    if len(body) > MAX_BODY:
        raise DtmfError(f"DTMF INFO body too large: {len(body)} bytes, at most {MAX_BODY}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DtmfError("DTMF INFO body is not ASCII text") from None
    if not text.strip():
        raise DtmfError("DTMF INFO body is empty")
    return text


def _key(value: str) -> str:
    """A key from ``5``, ``*``, ``a`` or an event number ``10``-``15``."""
    if value.isdigit() and value.isascii():
        event = int(value)
        if event < len(DIGITS):
            return DIGITS[event]
    elif len(value) == 1 and value.upper() in DIGITS:
        return value.upper()
    raise DtmfError(f"invalid DTMF signal {value!r}: expected 0-9 * # A-D or an event 0-15")


def _duration(value: str) -> int:
    if not (value.isdigit() and value.isascii()) or int(value) > MAX_DURATION_MS:
        raise DtmfError(
            f"invalid dtmf-relay Duration {value!r}: expected 0-{MAX_DURATION_MS} milliseconds"
        )
    return int(value)
