"""SMS text coding vectors: GSM-7/UCS-2 choice, splitting with UDH, decoding, receipts."""

from __future__ import annotations

import pytest

from pypbx.messaging.sms_text import (
    DC_GSM7,
    DC_UCS2,
    Concat,
    Receipt,
    SmsTooLongError,
    decode_sms,
    encode_sms,
    gsm7_decode,
    gsm7_encode,
    parse_receipt,
    receipt_state,
)


def test_gsm7_basic_and_extension_vectors() -> None:
    assert gsm7_encode("@£$") == b"\x00\x01\x02"
    assert gsm7_encode("Hi §¿") == b"Hi \x5f\x60"
    assert gsm7_encode("€[") == b"\x1b\x65\x1b\x3c"
    assert gsm7_encode("a`b") is None  # backquote has no GSM-7 form
    assert gsm7_encode("żółw") is None


def test_gsm7_round_trip_and_bad_escapes() -> None:
    text = "Hello {world} ~ |x| € ^\\ Ωß\n"
    encoded = gsm7_encode(text)
    assert encoded is not None
    assert gsm7_decode(encoded) == text
    assert gsm7_decode(b"\x1b\x41") == "A"  # unknown escape: the basic character
    assert gsm7_decode(b"ab\x1b") == "ab"  # trailing lone escape dropped


def test_single_part_limits() -> None:
    [part] = encode_sms("x" * 160, 7)
    assert (part.data_coding, part.udhi, part.data) == (DC_GSM7, False, b"x" * 160)
    [part] = encode_sms("ж" * 70, 7)
    assert (part.data_coding, part.udhi, len(part.data)) == (DC_UCS2, False, 140)


def test_gsm7_split_with_udh() -> None:
    parts = encode_sms("y" * 161, 0x1FF)  # the reference wraps to one octet
    assert [len(p.data) for p in parts] == [6 + 153, 6 + 8]
    assert all(p.udhi and p.data_coding == DC_GSM7 for p in parts)
    assert parts[0].data[:6] == bytes([5, 0, 3, 0xFF, 2, 1])
    assert parts[1].data[:6] == bytes([5, 0, 3, 0xFF, 2, 2])


def test_split_never_cuts_an_escape_pair() -> None:
    parts = encode_sms("a" * 152 + "€" + "b" * 10, 1)
    assert len(parts[0].data) == 6 + 152  # the euro's two septets moved to part 2
    assert parts[1].data[6:8] == b"\x1b\x65"


def test_ucs2_split_never_cuts_a_surrogate_pair() -> None:
    text = "ж" * 66 + "😀" + "ж" * 10
    parts = encode_sms(text, 3)
    assert parts[0].data_coding == DC_UCS2
    assert len(parts[0].data) == 6 + 132
    joined = b"".join(p.data[6:] for p in parts).decode("utf-16-be")
    assert joined == text


def test_too_long_message() -> None:
    with pytest.raises(SmsTooLongError, match=r"^message too long: 256 parts \(at most 255\)$"):
        encode_sms("z" * 153 * 256, 0)


def test_decode_with_udh_vectors() -> None:
    eight = bytes([5, 0, 3, 9, 3, 2]) + b"Hi"
    assert decode_sms(eight, 0, udhi=True) == ("Hi", Concat(9, 3, 2))
    sixteen = bytes([6, 8, 4, 0x12, 0x34, 2, 1]) + "ж".encode("utf-16-be")
    assert decode_sms(sixteen, 8, udhi=True) == ("ж", Concat(0x1234, 2, 1))
    assert decode_sms(b"caf\xe9", 3, udhi=False) == ("café", None)
    assert decode_sms(b"abc", 1, udhi=False) == ("abc", None)
    assert decode_sms(b"\x00A", 0xF0, udhi=False) == ("@A", None)
    assert decode_sms(bytes([2, 0x70, 0]) + b"A", 0, udhi=True) == ("A", None)  # no concat IE


def test_parse_receipt_from_text_and_tlvs() -> None:
    text = (
        "id:1a2b sub:001 dlvrd:001 submit date:2401011200 done date:2401011201"
        " stat:DELIVRD err:000 text:hi"
    )
    assert parse_receipt(text) == Receipt("1a2b", "DELIVRD", "000")
    assert parse_receipt(text).state == "delivered"  # type: ignore[union-attr]
    assert parse_receipt("id:x stat:undeliv err:034") == Receipt("x", "UNDELIV", "034")
    assert parse_receipt("garbage") is None
    assert parse_receipt("stat:DELIVRD", receipted_id="77") == Receipt("77", "DELIVRD")
    assert parse_receipt("id:1 stat:DELIVRD", message_state=3) == Receipt("1", "EXPIRED")


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", "delivered"),
        ("ACCEPTD", "delivered"),
        ("EXPIRED", "expired"),
        ("UNDELIV", "failed"),
        ("REJECTD", "failed"),
        ("DELETED", "failed"),
        ("UNKNOWN", "failed"),
        ("ENROUTE", None),
        ("bogus", None),
    ],
)
def test_receipt_states(stat: str, state: str | None) -> None:
    assert receipt_state(stat) == state
