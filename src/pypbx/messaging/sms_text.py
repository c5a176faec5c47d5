"""SMS text on the wire (3GPP TS 23.038/23.040 as SMPP 3.4 carries it): the GSM-7 or UCS-2
choice, splitting into concatenated parts with a UDH, decoding what an SMSC delivers, and
reading delivery receipts.

Sans-I/O and kept apart from the SMPP client on purpose: the alphabet tables and the split
rules are where SMS gateways usually go wrong (an escape pair or a surrogate pair cut in two
at a part boundary, '`' sent as '§'), so they are tested here on their own with vectors.
SMPP carries GSM-7 unpacked, one septet per octet, so no bit packing is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DC_GSM7",
    "DC_UCS2",
    "Concat",
    "Receipt",
    "SmsPart",
    "SmsTooLongError",
    "decode_sms",
    "encode_sms",
    "gsm7_decode",
    "gsm7_encode",
    "parse_receipt",
    "receipt_state",
]

DC_GSM7 = 0x00  # SMSC default alphabet, taken as GSM-7 (what SMSCs commonly assume)
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
MAX_PARTS = 255

# Single-part limits and per-part limits once a 6-octet concatenation UDH takes its room.
_GSM_SINGLE, _GSM_PART = 160, 153  # septets (= octets, unpacked)
_UCS2_SINGLE, _UCS2_PART = 140, 134  # octets

_ESC = 0x1B
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_BASIC) if i != _ESC}
_ENCODE.update({ch: bytes([_ESC, code]) for ch, code in _EXTENSION.items()})
_DECODE_EXT = {code: ch for ch, code in _EXTENSION.items()}
assert len(_BASIC) == 128

_RECEIPT_ID = re.compile(r"\bid:(\S+)", re.IGNORECASE)
_RECEIPT_STAT = re.compile(r"\bstat:(\S+)", re.IGNORECASE)
_RECEIPT_ERR = re.compile(r"\berr:(\S+)", re.IGNORECASE)
# Receipt `stat:` words (SMPP 3.4 appendix B) and the message_state TLV values (5.2.28).
_FINAL_STATES = {
    "DELIVRD": "delivered",
    "ACCEPTD": "delivered",  # read on the subscriber's behalf: final, and not a failure
    "EXPIRED": "expired",
    "DELETED": "failed",
    "UNDELIV": "failed",
    "REJECTD": "failed",
    "UNKNOWN": "failed",
}
_MESSAGE_STATE = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}


class SmsTooLongError(ValueError):
    """The text needs more than 255 concatenated parts."""


@dataclass(frozen=True, slots=True)
class SmsPart:
    """One submit_sm's worth of message: `data` is the short_message (UDH included when
    `udhi`, which must then be flagged in esm_class)."""

    data: bytes
    data_coding: int
    udhi: bool


@dataclass(frozen=True, slots=True)
class Concat:
    """Where a received part belongs: reference, number of parts, 1-based sequence."""

    reference: int
    total: int
    sequence: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt: the SMSC's id of the part, its `stat:` word and `err:` code."""

    message_id: str
    stat: str
    error: str = ""

    @property
    def state(self) -> str | None:
        """`delivered`, `expired` or `failed`; None while the message is not final."""
        return receipt_state(self.stat)


def gsm7_encode(text: str) -> bytes | None:
    """Unpacked GSM-7 septets (escape pairs for the extension table); None when a character
    has no GSM-7 form, which is the cue to send UCS-2."""
    out = bytearray()
    for ch in text:
        code = _ENCODE.get(ch)
        if code is None:
            return None
        out += code
    return bytes(out)


def gsm7_decode(data: bytes) -> str:
    """Unpacked GSM-7 to text; an unknown escape gives the basic character, as 23.038 says,
    and a trailing lone escape is dropped."""
    out: list[str] = []
    escaped = False
    for octet in data:
        septet = octet & 0x7F
        if escaped:
            escaped = False
            out.append(_DECODE_EXT.get(septet, _BASIC[septet] if septet != _ESC else " "))
        elif septet == _ESC:
            escaped = True
        else:
            out.append(_BASIC[septet])
    return "".join(out)


def encode_sms(text: str, reference: int) -> list[SmsPart]:
    """The parts to submit for `text`: GSM-7 when every character has a GSM-7 form, UCS-2
    otherwise; more than one part carries a concatenation UDH with `reference` (0-255).
    Parts are cut between characters, never inside an escape or surrogate pair."""
    units = [_ENCODE.get(ch) for ch in text]
    if all(unit is not None for unit in units):
        gsm = [unit for unit in units if unit is not None]
        return _split(gsm, DC_GSM7, _GSM_SINGLE, _GSM_PART, reference)
    ucs2 = [ch.encode("utf-16-be") for ch in text]
    return _split(ucs2, DC_UCS2, _UCS2_SINGLE, _UCS2_PART, reference)


def _split(
    units: list[bytes], coding: int, single: int, per_part: int, reference: int
) -> list[SmsPart]:
    if sum(len(unit) for unit in units) <= single:
        return [SmsPart(b"".join(units), coding, udhi=False)]
    chunks: list[bytes] = []
    current = bytearray()
    for unit in units:
        if len(current) + len(unit) > per_part:
            chunks.append(bytes(current))
            current = bytearray()
        current += unit
    chunks.append(bytes(current))
    if len(chunks) > MAX_PARTS:
        raise SmsTooLongError(f"message too long: {len(chunks)} parts (at most {MAX_PARTS})")
    total = len(chunks)
    return [
        SmsPart(bytes([5, 0x00, 3, reference & 0xFF, total, i]) + chunk, coding, udhi=True)
        for i, chunk in enumerate(chunks, start=1)
    ]


def decode_sms(data: bytes, data_coding: int, udhi: bool) -> tuple[str, Concat | None]:
    """The text of a received short_message and, when its UDH says so, which concatenated
    message it belongs to (8-bit and 16-bit references). Codings other than GSM-7, IA5,
    UCS-2 are read as Latin-1 rather than refused: some text beats none."""
    concat: Concat | None = None
    if udhi and data:
        length = data[0]
        header, data = data[1 : 1 + length], data[1 + length :]
        concat = _concat(header)
    coding = data_coding
    if data_coding & 0xF0 == 0xF0:  # 1111xxxx: bit 2 picks 8-bit data over GSM-7
        coding = DC_LATIN1 if data_coding & 0x04 else DC_GSM7
    if coding == DC_GSM7:
        text = gsm7_decode(data)
    elif coding == DC_IA5:
        text = data.decode("ascii", errors="replace")
    elif coding == DC_UCS2:
        text = data.decode("utf-16-be", errors="replace")
    else:
        text = data.decode("latin-1")
    return text, concat


def _concat(header: bytes) -> Concat | None:
    pos = 0
    while pos + 2 <= len(header):
        tag, size = header[pos], header[pos + 1]
        value = header[pos + 2 : pos + 2 + size]
        pos += 2 + size
        if tag == 0x00 and size == 3 and len(value) == 3:
            return Concat(value[0], value[1], value[2])
        if tag == 0x08 and size == 4 and len(value) == 4:
            return Concat(int.from_bytes(value[:2], "big"), value[2], value[3])
    return None


def parse_receipt(
    text: str, receipted_id: str | None = None, message_state: int | None = None
) -> Receipt | None:
    """A delivery receipt from its short_message text (`id:... stat:... err:...`) and the
    receipted_message_id / message_state TLVs, which win when present; None when neither
    names the message and its state."""
    id_match = _RECEIPT_ID.search(text)
    stat_match = _RECEIPT_STAT.search(text)
    err_match = _RECEIPT_ERR.search(text)
    message_id = receipted_id or (id_match.group(1) if id_match else "")
    stat = _MESSAGE_STATE.get(message_state or 0) or (stat_match.group(1) if stat_match else "")
    if not message_id or not stat:
        return None
    return Receipt(message_id, stat.upper(), err_match.group(1) if err_match else "")


def receipt_state(stat: str) -> str | None:
    """The message state a receipt `stat:` word ends in; None for ENROUTE and other
    intermediate states."""
    return _FINAL_STATES.get(stat.upper())
