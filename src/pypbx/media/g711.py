"""G.711 mu-law and A-law (ITU-T G.711), sans-I/O.

Everything is a table lookup: 256 entries to decode, 65536 entries (one per int16 sample) to
encode, and 256-byte translate tables for mu-law <-> A-law. The tables are computed once at import
from the segment/mantissa definition of G.711 and are read-only afterwards, so the module holds no
mutable state. The results equal the classic Sun reference implementation (and so the stdlib
`audioop` module) bit for bit; the unit tests check every input.

Transcoding goes through linear PCM (decode with one law, encode with the other), which is what
`audioop.lin2alaw(audioop.ulaw2lin(...))` gives; it is not the slightly different direct-conversion
table of G.711 Table 3/4.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

_T = TypeVar("_T", bound=np.generic)
_Int16Array = npt.NDArray[np.int16]
_UInt8Array = npt.NDArray[np.uint8]


def _segments(magnitude: npt.NDArray[np.int32], first_boundary: int) -> npt.NDArray[np.int32]:
    """Segment number 0-7: how many of the boundaries first, 2*first, ... are <= magnitude."""
    boundaries = first_boundary << np.arange(7, dtype=np.int32)
    return np.searchsorted(boundaries, magnitude, side="right").astype(np.int32)


def _ulaw_decode_table() -> _Int16Array:
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    mantissa = inverted & 0x0F
    segment = (inverted >> 4) & 0x07
    # Each segment doubles the step; 0x84 (132) is the bias that makes the curve start at 0.
    magnitude = ((mantissa << 3) + 0x84) << segment
    linear = np.where(inverted & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return _frozen(linear.astype(np.int16))


def _alaw_decode_table() -> _Int16Array:
    toggled = np.arange(256, dtype=np.int32) ^ 0x55  # A-law inverts the even bits on the wire
    mantissa = toggled & 0x0F
    segment = (toggled >> 4) & 0x07
    magnitude = (mantissa << 4) + 8  # +8: the middle of the quantisation step
    magnitude = np.where(segment > 0, (magnitude + 0x100) << np.maximum(segment - 1, 0), magnitude)
    linear = np.where(toggled & 0x80, magnitude, -magnitude)
    return _frozen(linear.astype(np.int16))


def _all_samples() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its bit pattern read as uint16 (the encode-table index)."""
    return np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> _UInt8Array:
    sample = _all_samples() >> 2  # mu-law works on 14 bits
    negative = sample < 0
    magnitude = np.minimum(np.where(negative, -sample, sample), 8158) + 33  # clip, then bias
    segment = _segments(magnitude, 64)
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = ((segment << 4) | mantissa) ^ np.where(negative, 0x7F, 0xFF)
    return _frozen(code.astype(np.uint8))


def _alaw_encode_table() -> _UInt8Array:
    sample = _all_samples() >> 3  # A-law works on 13 bits
    negative = sample < 0
    magnitude = np.where(negative, ~sample, sample)  # -x-1 keeps negatives symmetric to 0..4095
    segment = _segments(magnitude, 32)
    mantissa = (magnitude >> np.maximum(segment, 1)) & 0x0F
    code = ((segment << 4) | mantissa) ^ np.where(negative, 0x55, 0xD5)
    return _frozen(code.astype(np.uint8))


def _frozen(array: npt.NDArray[_T]) -> npt.NDArray[_T]:
    array.flags.writeable = False
    return array


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()

# bytes are immutable: safe as module constants, and bytes.translate() runs at C speed.
ULAW_TO_ALAW: bytes = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tobytes()


def _samples(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    array = np.asarray(pcm)
    if array.dtype != np.int16:
        raise TypeError(f"G.711 encoding needs int16 samples, got {array.dtype}")
    return np.ascontiguousarray(array).reshape(-1).view(np.uint16)


def ulaw_decode(data: bytes) -> _Int16Array:
    """mu-law bytes to int16 samples (a new, writable array)."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> _Int16Array:
    """A-law bytes to int16 samples (a new, writable array)."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 samples (any shape, flattened in C order) to mu-law bytes."""
    return _ULAW_ENCODE[_samples(pcm)].tobytes()


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 samples (any shape, flattened in C order) to A-law bytes."""
    return _ALAW_ENCODE[_samples(pcm)].tobytes()


def ulaw_to_alaw(data: bytes) -> bytes:
    return data.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    return data.translate(ALAW_TO_ULAW)
