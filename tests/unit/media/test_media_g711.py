"""G.711 tables against the stdlib `audioop` reference, for every possible input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pypbx.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference, in tests only (gone from the stdlib in 3.13)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_encode_every_sample() -> None:
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_every_sample() -> None:
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decode_every_code() -> None:
    decoded = g711.ulaw_decode(ALL_CODES)
    assert decoded.dtype == np.int16
    assert decoded.tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_decode_every_code() -> None:
    decoded = g711.alaw_decode(ALL_CODES)
    assert decoded.dtype == np.int16
    assert decoded.tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_ulaw_to_alaw_every_code() -> None:
    expected = audioop.lin2alaw(audioop.ulaw2lin(ALL_CODES, 2), 2)
    assert g711.ulaw_to_alaw(ALL_CODES) == expected
    assert expected == g711.ULAW_TO_ALAW


def test_alaw_to_ulaw_every_code() -> None:
    expected = audioop.lin2ulaw(audioop.alaw2lin(ALL_CODES, 2), 2)
    assert g711.alaw_to_ulaw(ALL_CODES) == expected
    assert expected == g711.ALAW_TO_ULAW


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (-1, 0x7E, 0x55), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A)],
)
def test_known_codes(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert g711.ulaw_encode(pcm) == bytes([ulaw])
    assert g711.alaw_encode(pcm) == bytes([alaw])


def test_round_trip_is_stable() -> None:
    # decoding gives the centre of a step, so encoding it again gives the same code back
    # (except mu-law's two zeros: 0x7F, negative zero, comes back as 0xFF)
    ulaw = g711.ulaw_encode(g711.ulaw_decode(ALL_CODES))
    assert ulaw == ALL_CODES.replace(b"\x7f", b"\xff")
    assert g711.alaw_encode(g711.alaw_decode(ALL_CODES)) == ALL_CODES


def test_empty_and_shapes() -> None:
    assert g711.ulaw_encode(np.zeros(0, dtype=np.int16)) == b""
    assert g711.ulaw_decode(b"").shape == (0,)
    stereo = np.array([[1000, -1000], [20000, -20000]], dtype=np.int16)
    assert g711.alaw_encode(stereo) == audioop.lin2alaw(stereo.tobytes(), 2)
    strided = ALL_SAMPLES[::7]
    assert g711.ulaw_encode(strided) == audioop.lin2ulaw(strided.tobytes(), 2)


def test_decoded_arrays_are_writable_copies() -> None:
    decoded = g711.alaw_decode(b"\xd5\xd5")
    decoded[0] = 1  # must not raise, nor change the tables
    assert g711.alaw_decode(b"\xd5").tolist() == [8]


def test_encode_rejects_other_dtypes() -> None:
    with pytest.raises(TypeError) as info:
        g711.ulaw_encode(np.zeros(4, dtype=np.float32))
    assert str(info.value) == "G.711 encoding needs int16 samples, got float32"
    with pytest.raises(TypeError):
        g711.alaw_encode([1, 2, 3])  # a plain list is int64: no silent wrap-around


def test_transcoding_accepts_bytearray_and_memoryview() -> None:
    assert g711.ulaw_to_alaw(bytes(bytearray(b"\xff\x00"))) == b"\xd5\x2a"
