"""SDP (RFC 4566) parsing and serialization, and RFC 3264 offer/answer for one audio stream.

Sans-I/O: text or bytes in, bytes out. Parsing is tolerant where real user agents are sloppy
(LF line ends, missing ``s=``, unknown line types, odd attributes) because refusing a call over a
cosmetic defect helps nobody; it is strict where a mistake would send media to the wrong place
(``m=``, ``c=``, ``o=``) and bounded in size because the body comes from the network.

Codecs, rtpmap/fmtp, ptime and direction are parsed into fields and regenerated on output, so a
description can be edited without keeping raw attribute lines in sync; every other attribute is
kept verbatim and in order.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

logger = logging.getLogger(__name__)

MAX_SDP_SIZE: Final = 65536
MAX_LINES: Final = 1024
MAX_LINE_LENGTH: Final = 4096
MAX_MEDIA: Final = 32

DIRECTIONS: Final = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 tables 4 and 5: payload types usable without an rtpmap line.
STATIC_PAYLOAD_TYPES: Final = MappingProxyType(
    {
        0: ("PCMU", 8000, 1),
        3: ("GSM", 8000, 1),
        4: ("G723", 8000, 1),
        5: ("DVI4", 8000, 1),
        6: ("DVI4", 16000, 1),
        7: ("LPC", 8000, 1),
        8: ("PCMA", 8000, 1),
        9: ("G722", 8000, 1),
        10: ("L16", 44100, 2),
        11: ("L16", 44100, 1),
        12: ("QCELP", 8000, 1),
        13: ("CN", 8000, 1),
        14: ("MPA", 90000, 1),
        15: ("G728", 8000, 1),
        16: ("DVI4", 11025, 1),
        17: ("DVI4", 22050, 1),
        18: ("G729", 8000, 1),
        25: ("CelB", 90000, 1),
        26: ("JPEG", 90000, 1),
        28: ("nv", 90000, 1),
        31: ("H261", 90000, 1),
        32: ("MPV", 90000, 1),
        33: ("MP2T", 90000, 1),
        34: ("H263", 90000, 1),
    }
)

# Transports we can answer with plain RTP; SRTP and DTLS variants must be refused, not faked.
_PLAIN_RTP: Final = frozenset({"RTP/AVP", "RTP/AVPF"})
_HOLD_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})

_LINE_RE: Final = re.compile(r"([A-Za-z])=(.*)", re.DOTALL)
_RTPMAP_RE: Final = re.compile(r"([0-9]{1,3})\s+([^/\s]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?\s*")
_FMTP_RE: Final = re.compile(r"([0-9]{1,3})(?:\s+(.*))?", re.DOTALL)
_ORIGIN_ID_RE: Final = re.compile(r"[0-9]{1,40}")
_HOSTNAME_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?")
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


class SdpError(ValueError):
    """A session description that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class Codec:
    """One RTP payload format. Frozen so the module-level constants cannot be altered."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def matches(self, other: Codec) -> bool:
        """Same encoding, whatever payload type number each side chose for it."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == "telephone-event"


PCMU: Final = Codec(0, "PCMU", 8000)
PCMA: Final = Codec(8, "PCMA", 8000)
TELEPHONE_EVENT: Final = Codec(101, "telephone-event", 8000, fmtp="0-16")


@dataclass
class MediaDescription:
    """One ``m=`` section. ``direction`` is already resolved against the session level."""

    media: str
    port: int
    proto: str
    formats: list[str]
    codecs: list[Codec] = field(default_factory=list)
    connection: str | None = None
    direction: str = "sendrecv"
    ptime: int | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    port_count: int = 1
    info: str | None = None

    @property
    def is_rtp(self) -> bool:
        return _is_rtp(self.proto)

    def codec(self, payload_type: int) -> Codec | None:
        return next((c for c in self.codecs if c.payload_type == payload_type), None)

    def attribute(self, name: str) -> str | None:
        """Value of the first attribute called ``name`` (``""`` for a flag), else None."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None


@dataclass
class SessionDescription:
    """A whole SDP body. ``direction`` is the session-level attribute, None when absent."""

    origin_username: str = "-"
    session_id: int = 0
    session_version: int = 0
    origin_address: str = "0.0.0.0"
    session_name: str = "-"
    connection: str | None = None
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    timing: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    direction: str | None = None
    info: str | None = None

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return _Parser().parse(_split_lines(data))

    def serialize(self) -> bytes:
        lines = [
            "v=0",
            f"o={self.origin_username} {self.session_id} {self.session_version} IN "
            f"{_addrtype(self.origin_address)} {self.origin_address}",
            f"s={self.session_name or '-'}",
        ]
        if self.info is not None:
            lines.append(f"i={self.info}")
        if self.connection is not None:
            lines.append(_connection_line(self.connection))
        lines.extend(f"b={kind}:{value}" for kind, value in self.bandwidths)
        lines.extend(f"t={start} {stop}" for start, stop in self.timing or [(0, 0)])
        lines.extend(_attribute_line(name, value) for name, value in self.attributes)
        if self.direction is not None:
            lines.append(f"a={_checked_direction(self.direction)}")
        inherited = self.direction or "sendrecv"
        for media in self.media:
            lines.extend(_media_lines(media, inherited))
        for number, line in enumerate(lines, 1):
            if any(ch in line for ch in "\r\n\0"):
                raise SdpError(f"Invalid character in SDP line {number}: {line[:60]!r}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def audio(self) -> MediaDescription | None:
        """The stream we handle: the first audio one that was not rejected or disabled."""
        return next((m for m in self.media if m.media == "audio" and m.port != 0), None)

    def audio_endpoint(self) -> tuple[str, int] | None:
        audio = self.audio()
        if audio is None:
            return None
        address = audio.connection or self.connection
        if address is None:
            return None
        return address, audio.port

    def effective_direction(self, media: MediaDescription) -> str:
        """Direction once RFC 2543 hold (``c=0.0.0.0``) is taken into account.

        Old user agents put calls on hold by zeroing the address instead of sending
        ``a=sendonly``; treating that as sendonly makes both styles look alike to call control.
        """
        address = media.connection or self.connection
        if address in _HOLD_ADDRESSES:
            if media.direction == "sendrecv":
                return "sendonly"
            if media.direction == "recvonly":
                return "inactive"
        return media.direction


def negotiate(
    offer: SessionDescription, supported: list[Codec]
) -> tuple[list[Codec], Codec | None]:
    """Choose the answer's codecs as an RFC 3264 answerer.

    The offer's order is kept (the offerer states its preference, and keeping it avoids
    transcoding surprises) and so are its payload type numbers, which the answer must reuse.
    telephone-event is only returned at the clock rate of the first chosen codec, because
    RFC 4733 events share the audio stream's clock.
    """
    audio = offer.audio()
    if audio is None:
        raise SdpError("Offer has no audio stream")
    if audio.proto.upper() not in _PLAIN_RTP:
        raise SdpError(f"Unsupported audio transport {audio.proto!r}")
    chosen: list[Codec] = []
    for offered in audio.codecs:
        if offered.is_telephone_event or any(offered.matches(c) for c in chosen):
            continue
        mine = next((s for s in supported if s.matches(offered)), None)
        if mine is None:
            continue
        if offered.fmtp is None and mine.fmtp is not None:
            offered = Codec(
                offered.payload_type, offered.name, offered.clock_rate, offered.channels, mine.fmtp
            )
        chosen.append(offered)
    if all(c.name.upper() == "CN" for c in chosen):
        raise SdpError("No common codec")
    rate = next(c.clock_rate for c in chosen if c.name.upper() != "CN")
    event = next((c for c in audio.codecs if c.is_telephone_event and c.clock_rate == rate), None)
    return chosen, event


def build_sdp(
    *,
    address: str,
    port: int,
    codecs: list[Codec],
    telephone_event: Codec | None,
    direction: str = "sendrecv",
    session_id: int,
    session_version: int,
    ptime: int = 20,
    username: str = "pypbx",
) -> SessionDescription:
    """A description with one audio stream, as an offer or as the audio part of an answer."""
    if not codecs:
        raise SdpError("At least one codec is required")
    if not 0 <= port <= 65535:
        raise SdpError(f"Invalid port {port}")
    all_codecs = [*codecs, telephone_event] if telephone_event is not None else list(codecs)
    audio = MediaDescription(
        media="audio",
        port=port,
        proto="RTP/AVP",
        formats=[str(c.payload_type) for c in all_codecs],
        codecs=all_codecs,
        direction=_checked_direction(direction),
        ptime=ptime,
    )
    return SessionDescription(
        origin_username=username,
        session_id=session_id,
        session_version=session_version,
        origin_address=address,
        session_name="pypbx",
        connection=address,
        media=[audio],
    )


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    codecs: list[Codec],
    telephone_event: Codec | None,
    want: str = "sendrecv",
    session_id: int,
    session_version: int,
    ptime: int = 20,
    username: str = "pypbx",
) -> SessionDescription:
    """An RFC 3264 answer: one ``m=`` line per offered one, in order, all but our audio rejected.

    ``codecs``/``telephone_event`` normally come from :func:`negotiate`; the direction is
    derived from the offer with :func:`answer_direction` so a hold offer gets a valid answer.
    """
    chosen = offer.audio()
    if chosen is None:
        raise SdpError("Offer has no audio stream")
    direction = answer_direction(offer.effective_direction(chosen), want)
    answer = build_sdp(
        address=address,
        port=port,
        codecs=codecs,
        telephone_event=telephone_event,
        direction=direction,
        session_id=session_id,
        session_version=session_version,
        ptime=ptime,
        username=username,
    )
    ours = answer.media[0]
    if chosen.proto.upper() in _PLAIN_RTP:
        ours.proto = chosen.proto  # RFC 3264 §6.1: the answer keeps the offered transport
    answer.media = [
        ours
        if offered is chosen
        else MediaDescription(offered.media, 0, offered.proto, [*offered.formats])
        for offered in offer.media
    ]
    return answer


def answer_direction(offer_direction: str, want: str = "sendrecv") -> str:
    """RFC 3264 §6.1: the answer may only send if the offerer receives, and vice versa."""
    offer_direction = _checked_direction(offer_direction)
    want = _checked_direction(want)
    send = offer_direction in ("sendrecv", "recvonly") and want in ("sendrecv", "sendonly")
    receive = offer_direction in ("sendrecv", "sendonly") and want in ("sendrecv", "recvonly")
    if send and receive:
        return "sendrecv"
    if send:
        return "sendonly"
    if receive:
        return "recvonly"
    return "inactive"


# --- parsing ---------------------------------------------------------------------------------


def _split_lines(data: bytes | str) -> list[tuple[int, str]]:
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_SDP_SIZE:
            raise SdpError(f"SDP too large ({len(data)} bytes, limit {MAX_SDP_SIZE})")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not valid UTF-8") from None
    else:
        text = data
        if len(text) > MAX_SDP_SIZE:
            raise SdpError(f"SDP too large ({len(text)} characters, limit {MAX_SDP_SIZE})")
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        if len(line) > MAX_LINE_LENGTH:
            raise SdpError(f"SDP line {number} too long ({len(line)} characters)")
        if "\r" in line or "\0" in line:
            raise SdpError(f"Invalid character in SDP line {number}: {line[:60]!r}")
        if len(lines) >= MAX_LINES:
            raise SdpError(f"Too many SDP lines (limit {MAX_LINES})")
        lines.append((number, line))
    if not lines:
        raise SdpError("Empty SDP")
    return lines


@dataclass
class _PendingMedia:
    """A media section while its attributes are still arriving."""

    description: MediaDescription
    direction: str | None = None
    rtpmaps: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    fmtps: dict[int, str] = field(default_factory=dict)


class _Parser:
    def __init__(self) -> None:
        self.session = SessionDescription(timing=[])
        self.media: list[_PendingMedia] = []
        self.seen_version = False
        self.seen_origin = False

    def parse(self, lines: list[tuple[int, str]]) -> SessionDescription:
        for number, line in lines:
            match = _LINE_RE.fullmatch(line)
            if match is None:
                raise SdpError(f"Malformed SDP line {number}: {line[:60]!r}")
            kind, value = match.group(1), match.group(2)
            if self.media:
                self._media_line(kind, value, self.media[-1])
            else:
                self._session_line(kind, value)
        if not self.seen_version:
            raise SdpError("Missing v= line")
        if not self.seen_origin:
            raise SdpError("Missing o= line")
        session = self.session
        if not session.timing:
            session.timing = [(0, 0)]
        session.media = [self._finish(p, session.direction) for p in self.media]
        return session

    def _session_line(self, kind: str, value: str) -> None:
        session = self.session
        if kind == "v":
            if value.strip() != "0":
                raise SdpError(f"Unsupported SDP version {value!r}")
            self.seen_version = True
        elif kind == "o":
            self._origin(value)
        elif kind == "s":
            session.session_name = value if value.strip() else "-"
        elif kind == "i":
            session.info = value
        elif kind == "c":
            session.connection = _parse_connection(value)
        elif kind == "b":
            _append_bandwidth(session.bandwidths, value)
        elif kind == "t":
            self._timing(value)
        elif kind == "a":
            name, attr_value = _split_attribute(value)
            if name.lower() in DIRECTIONS:
                session.direction = name.lower()
            elif name:
                session.attributes.append((name, attr_value))
        elif kind == "m":
            self.media.append(_PendingMedia(_parse_media(value)))
        else:
            logger.debug("ignoring SDP session line %s=", kind)

    def _media_line(self, kind: str, value: str, pending: _PendingMedia) -> None:
        media = pending.description
        if kind == "m":
            if len(self.media) >= MAX_MEDIA:
                raise SdpError(f"Too many media descriptions (limit {MAX_MEDIA})")
            self.media.append(_PendingMedia(_parse_media(value)))
        elif kind == "c":
            address = _parse_connection(value)
            if media.connection is None:
                media.connection = address
        elif kind == "b":
            _append_bandwidth(media.bandwidths, value)
        elif kind == "i":
            media.info = value
        elif kind == "a":
            self._media_attribute(value, pending)
        else:
            logger.debug("ignoring SDP media line %s=", kind)

    def _media_attribute(self, value: str, pending: _PendingMedia) -> None:
        name, attr_value = _split_attribute(value)
        lowered = name.lower()
        media = pending.description
        if not name:
            return
        if lowered in DIRECTIONS:
            pending.direction = lowered
        elif lowered == "ptime":
            media.ptime = _parse_ptime(attr_value)
        elif lowered == "rtpmap" and media.is_rtp:
            _add_rtpmap(pending, attr_value)
        elif lowered == "fmtp" and media.is_rtp:
            match = _FMTP_RE.fullmatch(attr_value or "")
            if match is None:
                logger.debug("ignoring malformed fmtp %r", attr_value)
            else:
                params = (match.group(2) or "").strip()
                if params:
                    pending.fmtps.setdefault(int(match.group(1)), params)
        else:
            media.attributes.append((name, attr_value))

    def _origin(self, value: str) -> None:
        fields = value.split()
        if (
            len(fields) != 6
            or fields[3].upper() != "IN"
            or fields[4].upper() not in ("IP4", "IP6")
            or not _ORIGIN_ID_RE.fullmatch(fields[1])
            or not _ORIGIN_ID_RE.fullmatch(fields[2])
        ):
            raise SdpError(f"Malformed o= line: {value[:80]!r}")
        session = self.session
        session.origin_username = fields[0]
        session.session_id = int(fields[1])
        session.session_version = int(fields[2])
        session.origin_address = fields[5]
        self.seen_origin = True

    def _timing(self, value: str) -> None:
        fields = value.split()
        if len(fields) == 2 and all(_is_digits(f) and len(f) <= 20 for f in fields):
            self.session.timing.append((int(fields[0]), int(fields[1])))
        else:
            logger.debug("ignoring malformed t= line %r", value)

    @staticmethod
    def _finish(pending: _PendingMedia, session_direction: str | None) -> MediaDescription:
        media = pending.description
        media.direction = pending.direction or session_direction or "sendrecv"
        if not media.is_rtp:
            return media
        for fmt in media.formats:
            pt = int(fmt)
            fmtp = pending.fmtps.get(pt)
            if pt in pending.rtpmaps:
                name, rate, channels = pending.rtpmaps[pt]
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
            else:
                logger.debug("payload type %d has no rtpmap", pt)
                continue
            if media.codec(pt) is None:
                media.codecs.append(Codec(pt, name, rate, channels, fmtp))
        return media


def _is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters that int() rejects."""
    return text.isascii() and text.isdigit()


def _is_rtp(proto: str) -> bool:
    return "RTP/" in proto.upper()


def _parse_media(value: str) -> MediaDescription:
    fields = value.split()
    if len(fields) < 4:
        raise SdpError(f"Malformed m= line: {value[:80]!r}")
    media, port_field, proto, formats = fields[0], fields[1], fields[2], fields[3:]
    port_text, _, count_text = port_field.partition("/")
    if not _TOKEN_RE.fullmatch(media) or not _TOKEN_RE.fullmatch(proto.replace("/", "")):
        raise SdpError(f"Malformed m= line: {value[:80]!r}")
    if not _is_digits(port_text) or int(port_text) > 65535:
        raise SdpError(f"Malformed m= line: invalid port {port_text[:20]!r}")
    port_count = 1
    if count_text:
        if not _is_digits(count_text) or not 1 <= int(count_text) <= 65535:
            raise SdpError(f"Malformed m= line: invalid port count {count_text[:20]!r}")
        port_count = int(count_text)
    if _is_rtp(proto):
        for fmt in formats:
            if not _is_digits(fmt) or int(fmt) > 127:
                raise SdpError(f"Malformed m= line: invalid payload type {fmt[:20]!r}")
        formats = [str(int(fmt)) for fmt in formats]
    return MediaDescription(
        media=media, port=int(port_text), proto=proto, formats=formats, port_count=port_count
    )


# A dotted quad as ipaddress.IPv4Address accepts it (no leading zeros), at a tenth of its cost:
# every offer and answer of every call has one.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _parse_connection(value: str) -> str:
    fields = value.split()
    if len(fields) != 3 or fields[0].upper() != "IN" or fields[1].upper() not in ("IP4", "IP6"):
        raise SdpError(f"Malformed c= line: {value[:80]!r}")
    # Multicast addresses carry /ttl and /count suffixes; only the address matters to us.
    address = fields[2].split("/", 1)[0]
    if fields[1].upper() == "IP6":
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise SdpError(f"Malformed c= line: invalid IPv6 address {address[:60]!r}") from None
    elif re.fullmatch(r"[0-9.]+", address):
        if not _IPV4_RE.fullmatch(address):
            raise SdpError(f"Malformed c= line: invalid IPv4 address {address[:60]!r}")
    elif not _HOSTNAME_RE.fullmatch(address):
        raise SdpError(f"Malformed c= line: invalid IPv4 address {address[:60]!r}")
    return address


def _append_bandwidth(target: list[tuple[str, int]], value: str) -> None:
    kind, sep, amount = value.partition(":")
    amount = amount.strip()
    if sep and _TOKEN_RE.fullmatch(kind) and _is_digits(amount) and len(amount) <= 12:
        target.append((kind, int(amount)))
    else:
        logger.debug("ignoring malformed b= line %r", value)


def _split_attribute(value: str) -> tuple[str, str | None]:
    name, sep, attr_value = value.partition(":")
    return name.strip(), (attr_value if sep else None)


def _parse_ptime(value: str | None) -> int | None:
    try:
        ptime = round(float(value or ""))
    except (ValueError, OverflowError):
        logger.debug("ignoring malformed ptime %r", value)
        return None
    return ptime if 1 <= ptime <= 1000 else None


def _add_rtpmap(pending: _PendingMedia, value: str | None) -> None:
    match = _RTPMAP_RE.fullmatch(value or "")
    if match is None or int(match.group(1)) > 127:
        logger.debug("ignoring malformed rtpmap %r", value)
        return
    channels = int(match.group(4)) if match.group(4) else 1
    pending.rtpmaps.setdefault(int(match.group(1)), (match.group(2), int(match.group(3)), channels))


# --- serialization ---------------------------------------------------------------------------


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _connection_line(address: str) -> str:
    return f"c=IN {_addrtype(address)} {address}"


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _checked_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise SdpError(f"Invalid direction {direction!r}")
    return direction


def _media_lines(media: MediaDescription, inherited_direction: str) -> list[str]:
    if not media.formats:
        raise SdpError(f"Media description {media.media!r} has no formats")
    port = f"{media.port}/{media.port_count}" if media.port_count != 1 else str(media.port)
    lines = [f"m={media.media} {port} {media.proto} {' '.join(media.formats)}"]
    if media.info is not None:
        lines.append(f"i={media.info}")
    if media.connection is not None:
        lines.append(_connection_line(media.connection))
    lines.extend(f"b={kind}:{value}" for kind, value in media.bandwidths)
    if media.is_rtp:
        for fmt in media.formats:
            codec = media.codec(int(fmt)) if _is_digits(fmt) else None
            if codec is None:
                continue
            channels = f"/{codec.channels}" if codec.channels != 1 else ""
            lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}")
            if codec.fmtp is not None:
                lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    lines.extend(_attribute_line(name, value) for name, value in media.attributes)
    if media.ptime is not None:
        lines.append(f"a=ptime:{media.ptime}")
    direction = _checked_direction(media.direction)
    # A rejected stream needs no direction unless it differs from what it would inherit.
    if media.port != 0 or direction != inherited_direction:
        lines.append(f"a={direction}")
    return lines
