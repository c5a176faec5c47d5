"""SDP parsing, serialization and offer/answer, with descriptions shaped like real user agents'."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypbx.sip.sdp import (
    MAX_MEDIA,
    MAX_SDP_SIZE,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    MediaDescription,
    SdpError,
    SessionDescription,
    answer_direction,
    build_answer,
    build_sdp,
    negotiate,
)

G722 = Codec(9, "G722", 8000)
G729 = Codec(18, "G729", 8000)


def crlf(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


BARESIP = crlf("""
v=0
o=- 1608135221 3522411380 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
a=tool:baresip 1.0.0
m=audio 20124 RTP/AVP 96 0 8 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=sendrecv
a=label:1
a=ssrc:3092484353 cname:a5b4c3d2-1111-2222
a=ptime:20
""")

LINPHONE = crlf("""
v=0
o=1000 3456 789 IN IP4 192.168.0.2
s=Talk
c=IN IP4 192.168.0.2
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp:9079
a=rtcp-fb:* trr-int 1000
""")

SIPP = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

ASTERISK = crlf("""
v=0
o=- 1565289342 3 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 14808 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""")

IPV6 = crlf("""
v=0
o=- 20518 0 IN IP6 2001:db8::10
s=-
t=0 0
m=audio 30000 RTP/AVP 9 0 8
c=IN IP6 2001:db8::10
a=rtcp:30001 IN IP6 2001:db8::10
""")

OLD_HOLD = crlf("""
v=0
o=- 1565289342 4 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 0.0.0.0
t=0 0
m=audio 14808 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
""")


def replace_line(sdp: bytes, old: str, new: str) -> bytes:
    assert old.encode() in sdp
    return sdp.replace(old.encode(), new.encode())


# --- parsing real-world descriptions ----------------------------------------------------------


def test_parse_baresip() -> None:
    sdp = SessionDescription.parse(BARESIP)
    assert (sdp.origin_username, sdp.session_id, sdp.session_version) == (
        "-",
        1608135221,
        3522411380,
    )
    assert sdp.origin_address == "127.0.0.1"
    assert sdp.session_name == "-"
    assert sdp.connection == "127.0.0.1"
    assert sdp.timing == [(0, 0)]
    assert sdp.attributes == [("tool", "baresip 1.0.0")]
    audio = sdp.audio()
    assert audio is not None
    assert (audio.media, audio.port, audio.proto) == ("audio", 20124, "RTP/AVP")
    assert audio.formats == ["96", "0", "8", "101"]
    assert audio.codecs == [
        Codec(96, "opus", 48000, 2, "stereo=1;sprop-stereo=1"),
        PCMU,
        PCMA,
        Codec(101, "telephone-event", 8000, fmtp="0-15"),
    ]
    assert audio.bandwidths == [("AS", 128)]
    assert audio.direction == "sendrecv"
    assert audio.ptime == 20
    assert audio.attributes == [
        ("rtcp-rsize", None),
        ("label", "1"),
        ("ssrc", "3092484353 cname:a5b4c3d2-1111-2222"),
    ]
    assert audio.attribute("label") == "1"
    assert audio.attribute("rtcp-rsize") == ""
    assert audio.attribute("mid") is None
    assert sdp.audio_endpoint() == ("127.0.0.1", 20124)


def test_parse_linphone_with_video_and_static_codec_fmtp() -> None:
    sdp = SessionDescription.parse(LINPHONE)
    assert sdp.session_name == "Talk"
    assert [m.media for m in sdp.media] == ["audio", "video"]
    audio = sdp.media[0]
    # PT 0, 8 and 18 have no rtpmap: they come from the RFC 3551 table; 18 keeps its fmtp.
    assert audio.codec(0) == PCMU
    assert audio.codec(8) == PCMA
    assert audio.codec(18) == Codec(18, "G729", 8000, fmtp="annexb=yes")
    assert [c.payload_type for c in audio.codecs] == [96, 97, 98, 0, 8, 18, 101, 99, 100]
    assert audio.attribute("rtcp") == "7079"
    assert audio.ptime is None
    video = sdp.media[1]
    assert video.codecs == [
        Codec(96, "VP8", 90000),
        Codec(97, "H264", 90000, fmtp="profile-level-id=42801F"),
    ]
    assert sdp.audio() is audio


def test_parse_sipp_minimal() -> None:
    sdp = SessionDescription.parse(SIPP)
    assert sdp.audio_endpoint() == ("127.0.0.1", 6000)
    assert sdp.media[0].codecs == [PCMU]


def test_parse_asterisk_keeps_maxptime() -> None:
    sdp = SessionDescription.parse(ASTERISK)
    audio = sdp.media[0]
    assert [c.name for c in audio.codecs] == ["PCMA", "PCMU", "GSM", "telephone-event"]
    assert audio.ptime == 20
    assert audio.attributes == [("maxptime", "150")]


def test_parse_ipv6_media_level_connection() -> None:
    sdp = SessionDescription.parse(IPV6)
    assert sdp.connection is None
    assert sdp.origin_address == "2001:db8::10"
    audio = sdp.media[0]
    assert audio.connection == "2001:db8::10"
    assert audio.codecs == [G722, PCMU, PCMA]
    assert audio.attribute("rtcp") == "30001 IN IP6 2001:db8::10"
    assert sdp.audio_endpoint() == ("2001:db8::10", 30000)
    out = sdp.serialize()
    assert b"o=- 20518 0 IN IP6 2001:db8::10\r\n" in out
    assert b"c=IN IP6 2001:db8::10\r\n" in out


def test_media_connection_overrides_session() -> None:
    data = replace_line(SIPP, "a=rtpmap:0", "c=IN IP4 10.1.1.1\r\na=rtpmap:0")
    assert SessionDescription.parse(data).audio_endpoint() == ("10.1.1.1", 6000)


def test_audio_skips_disabled_streams() -> None:
    data = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 0 RTP/AVP 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 VP8/90000
m=audio 4000 RTP/AVP 8
""")
    sdp = SessionDescription.parse(data)
    assert sdp.audio() is sdp.media[2]
    assert sdp.audio_endpoint() == ("10.0.0.1", 4000)


def test_no_audio_and_no_connection() -> None:
    video_only = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
t=0 0
m=video 5000 RTP/AVP 96
""")
    assert SessionDescription.parse(video_only).audio() is None
    assert SessionDescription.parse(video_only).audio_endpoint() is None
    no_c = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
t=0 0
m=audio 5000 RTP/AVP 0
""")
    assert SessionDescription.parse(no_c).audio_endpoint() is None


# --- directions and hold -------------------------------------------------------------------------


def test_direction_media_level_and_session_level() -> None:
    sendonly = replace_line(SIPP, "t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    sdp = SessionDescription.parse(sendonly)
    assert sdp.direction == "sendonly"
    assert sdp.media[0].direction == "sendonly"
    overridden = replace_line(
        sendonly, "a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\r\na=inactive"
    )
    assert SessionDescription.parse(overridden).media[0].direction == "inactive"


def test_inactive_stream() -> None:
    data = replace_line(ASTERISK, "a=sendrecv", "a=inactive")
    sdp = SessionDescription.parse(data)
    audio = sdp.media[0]
    assert audio.direction == "inactive"
    assert sdp.effective_direction(audio) == "inactive"
    assert answer_direction(audio.direction) == "inactive"


def test_rfc2543_hold_with_zero_address() -> None:
    sdp = SessionDescription.parse(OLD_HOLD)
    audio = sdp.media[0]
    assert audio.direction == "sendrecv"
    assert sdp.audio_endpoint() == ("0.0.0.0", 14808)
    assert sdp.effective_direction(audio) == "sendonly"
    audio.direction = "recvonly"
    assert sdp.effective_direction(audio) == "inactive"
    audio.direction = "sendrecv"
    answer = build_answer(
        sdp,
        address="10.0.0.9",
        port=40000,
        codecs=[PCMA],
        telephone_event=None,
        session_id=7,
        session_version=1,
    )
    assert answer.media[0].direction == "recvonly"


@pytest.mark.parametrize(
    ("offer", "want", "expected"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendrecv", "recvonly"),
        ("sendonly", "sendonly", "inactive"),
        ("sendonly", "recvonly", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("recvonly", "recvonly", "inactive"),
        ("recvonly", "sendonly", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("inactive", "sendonly", "inactive"),
    ],
)
def test_answer_direction(offer: str, want: str, expected: str) -> None:
    assert answer_direction(offer, want) == expected


def test_answer_direction_rejects_unknown() -> None:
    with pytest.raises(SdpError, match=r"^Invalid direction 'sendrcv'$"):
        answer_direction("sendrcv")


# --- tolerance -------------------------------------------------------------------------------


def test_tolerates_lf_endings_unknown_lines_and_missing_session_name() -> None:
    data = (
        "v=0\n"
        "o=- 1 2 IN IP4 10.0.0.1\n"
        "u=http://example.com/\n"
        "e=someone@example.com\n"
        "c=IN IP4 10.0.0.1\n"
        "t=0 0\n"
        "r=604800 3600 0 90000\n"
        "x=whatever\n"
        "\n"
        "m=audio 4000 RTP/AVP 0 101\n"
        "k=prompt\n"
        "a=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-16\n"
    )
    sdp = SessionDescription.parse(data)
    assert sdp.session_name == "-"
    assert sdp.media[0].codecs == [PCMU, TELEPHONE_EVENT]
    assert sdp.audio_endpoint() == ("10.0.0.1", 4000)


def test_tolerates_sloppy_attributes() -> None:
    data = replace_line(
        BARESIP,
        "a=ptime:20",
        "a=ptime:20.0\r\na=rtpmap:bad\r\na=fmtp:x y\r\na=\r\nb=junk\r\na=rtpmap:0 PCMA/8000",
    )
    audio = SessionDescription.parse(data).media[0]
    assert audio.ptime == 20
    assert audio.codec(0) == PCMU  # the first rtpmap for a payload type wins
    assert audio.bandwidths == [("AS", 128)]


def test_dynamic_payload_without_rtpmap_has_no_codec() -> None:
    data = replace_line(SIPP, "RTP/AVP 0", "RTP/AVP 0 98")
    sdp = SessionDescription.parse(data)
    assert sdp.media[0].formats == ["0", "98"]
    assert sdp.media[0].codecs == [PCMU]
    assert b"m=audio 6000 RTP/AVP 0 98\r\n" in sdp.serialize()


def test_non_rtp_media_keeps_its_attributes() -> None:
    data = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 0
m=image 4002 udptl t38
a=T38FaxVersion:0
a=fmtp:t38 foo
""")
    sdp = SessionDescription.parse(data)
    image = sdp.media[1]
    assert image.formats == ["t38"]
    assert image.codecs == []
    assert image.attributes == [("T38FaxVersion", "0"), ("fmtp", "t38 foo")]
    assert SessionDescription.parse(sdp.serialize()) == sdp


def test_multicast_connection_suffixes_are_dropped() -> None:
    data = replace_line(SIPP, "c=IN IP4 127.0.0.1", "c=IN IP4 224.2.1.1/127/3")
    assert SessionDescription.parse(data).connection == "224.2.1.1"


def test_hostname_connection_is_accepted() -> None:
    data = replace_line(SIPP, "c=IN IP4 127.0.0.1", "c=IN IP4 media.example.com")
    assert SessionDescription.parse(data).connection == "media.example.com"


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [BARESIP, LINPHONE, SIPP, ASTERISK, IPV6, OLD_HOLD])
def test_round_trip_preserves_meaning(data: bytes) -> None:
    parsed = SessionDescription.parse(data)
    out = parsed.serialize()
    assert SessionDescription.parse(out) == parsed
    assert SessionDescription.parse(out).serialize() == out


def test_canonical_description_round_trips_byte_for_byte() -> None:
    assert SessionDescription.parse(ASTERISK).serialize() == crlf("""
v=0
o=- 1565289342 3 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 14808 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=maxptime:150
a=ptime:20
a=sendrecv
""")


def test_serialize_static_codecs_get_rtpmap_and_direction_is_explicit() -> None:
    out = SessionDescription.parse(SIPP.replace(b"a=rtpmap:0 PCMU/8000\r\n", b"")).serialize()
    assert out.endswith(b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def test_serialize_rejects_line_injection() -> None:
    sdp = build_sdp(
        address="10.0.0.1",
        port=4000,
        codecs=[PCMU],
        telephone_event=None,
        session_id=1,
        session_version=1,
    )
    sdp.session_name = "evil\r\nm=video 1 RTP/AVP 0"
    with pytest.raises(SdpError, match=r"^Invalid character in SDP line 3: "):
        sdp.serialize()


def test_serialize_rejects_empty_formats_and_bad_direction() -> None:
    sdp = SessionDescription(media=[MediaDescription("audio", 4000, "RTP/AVP", [])])
    with pytest.raises(SdpError, match=r"^Media description 'audio' has no formats$"):
        sdp.serialize()
    sdp = SessionDescription(
        media=[MediaDescription("audio", 4000, "RTP/AVP", ["0"], direction="both")]
    )
    with pytest.raises(SdpError, match=r"^Invalid direction 'both'$"):
        sdp.serialize()


# --- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio abc RTP/AVP 0",
            "Malformed m= line: invalid port 'abc'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio 70000 RTP/AVP 0",
            "Malformed m= line: invalid port '70000'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio 6000 RTP/AVP",
            "Malformed m= line: 'audio 6000 RTP/AVP'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio 6000/0 RTP/AVP 0",
            "Malformed m= line: invalid port count '0'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio 6000 RTP/AVP 0 x",
            "Malformed m= line: invalid payload type 'x'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio 6000 RTP/AVP 128",
            "Malformed m= line: invalid payload type '128'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=audio 6000 RTP/AVP ²",
            "Malformed m= line: invalid payload type '²'",
        ),
        (
            "m=audio 6000 RTP/AVP 0",
            "m=au(dio 6000 RTP/AVP 0",
            "Malformed m= line: 'au(dio 6000 RTP/AVP 0'",
        ),
        ("c=IN IP4 127.0.0.1", "c=IN IP4", "Malformed c= line: 'IN IP4'"),
        ("c=IN IP4 127.0.0.1", "c=IN IP5 1.2.3.4", "Malformed c= line: 'IN IP5 1.2.3.4'"),
        ("c=IN IP4 127.0.0.1", "c=ATM NSAP 47.0091", "Malformed c= line: 'ATM NSAP 47.0091'"),
        (
            "c=IN IP4 127.0.0.1",
            "c=IN IP4 999.1.1.1",
            "Malformed c= line: invalid IPv4 address '999.1.1.1'",
        ),
        (
            "c=IN IP4 127.0.0.1",
            "c=IN IP4 bad_host!",
            "Malformed c= line: invalid IPv4 address 'bad_host!'",
        ),
        (
            "c=IN IP4 127.0.0.1",
            "c=IN IP6 1.2.3.4",
            "Malformed c= line: invalid IPv6 address '1.2.3.4'",
        ),
        ("v=0", "v=1", "Unsupported SDP version '1'"),
        (
            "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
            "o=user1 abc 1 IN IP4 127.0.0.1",
            "Malformed o= line: 'user1 abc 1 IN IP4 127.0.0.1'",
        ),
        (
            "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
            "o=user1 1 1 IN IP4",
            "Malformed o= line: 'user1 1 1 IN IP4'",
        ),
        ("s=-", "garbage", "Malformed SDP line 3: 'garbage'"),
    ],
)
def test_malformed(old: str, new: str, message: str) -> None:
    with pytest.raises(SdpError) as info:
        SessionDescription.parse(replace_line(SIPP, old, new))
    assert str(info.value) == message


def test_malformed_media_level_connection() -> None:
    data = replace_line(SIPP, "a=rtpmap:0", "c=IN IP4 1.2.3\r\na=rtpmap:0")
    with pytest.raises(SdpError, match=r"^Malformed c= line: invalid IPv4 address '1.2.3'$"):
        SessionDescription.parse(data)


@pytest.mark.parametrize("octets", ["0", "9", "01", "10", "99", "199", "249", "255", "256", "010"])
def test_ipv4_connection_addresses_are_checked_as_ipaddress_does(octets: str) -> None:
    """c= takes a dotted quad exactly when ipaddress.IPv4Address would (no leading zeros)."""
    for address in (f"{octets}.1.2.3", f"1.{octets}.2.3", f"1.2.3.{octets}"):
        try:
            ipaddress.IPv4Address(address)
            valid = True
        except ValueError:
            valid = False
        data = replace_line(SIPP, "c=IN IP4 127.0.0.1", f"c=IN IP4 {address}")
        if valid:
            assert SessionDescription.parse(data).connection == address
        else:
            with pytest.raises(SdpError, match="invalid IPv4 address"):
                SessionDescription.parse(data)


def test_missing_version_and_origin() -> None:
    with pytest.raises(SdpError, match=r"^Missing v= line$"):
        SessionDescription.parse(SIPP.replace(b"v=0\r\n", b""))
    with pytest.raises(SdpError, match=r"^Missing o= line$"):
        SessionDescription.parse(SIPP.split(b"\r\n", 2)[0] + b"\r\nt=0 0\r\n")


def test_bare_carriage_return_and_nul_are_refused() -> None:
    with pytest.raises(SdpError, match=r"^Invalid character in SDP line 8: "):
        SessionDescription.parse(SIPP + b"a=x\ry\r\n")
    with pytest.raises(SdpError, match=r"^Invalid character in SDP line 8: "):
        SessionDescription.parse(SIPP + b"a=x\0y\r\n")


def test_empty_and_not_utf8() -> None:
    with pytest.raises(SdpError, match=r"^Empty SDP$"):
        SessionDescription.parse(b"\r\n\r\n")
    with pytest.raises(SdpError, match=r"^SDP is not valid UTF-8$"):
        SessionDescription.parse(SIPP + b"a=x:\xff\r\n")


def test_size_limits() -> None:
    with pytest.raises(SdpError, match=rf"^SDP too large \(65537 bytes, limit {MAX_SDP_SIZE}\)$"):
        SessionDescription.parse(SIPP + b"a" * (MAX_SDP_SIZE + 1 - len(SIPP)))
    with pytest.raises(SdpError, match=r"^SDP line 8 too long \(5002 characters\)$"):
        SessionDescription.parse(SIPP + b"a=" + b"x" * 5000 + b"\r\n")
    with pytest.raises(SdpError, match=r"^Too many SDP lines \(limit 1024\)$"):
        SessionDescription.parse(SIPP + b"a=x\r\n" * 1100)
    many = SIPP + b"m=audio 0 RTP/AVP 0\r\n" * MAX_MEDIA
    with pytest.raises(SdpError, match=rf"^Too many media descriptions \(limit {MAX_MEDIA}\)$"):
        SessionDescription.parse(many)


@given(st.binary(max_size=400))
def test_fuzz_only_sdp_errors(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + data)


@given(
    st.lists(
        st.sampled_from(
            [
                "m=audio 4000 RTP/AVP 0 8 96",
                "m=video 0 RTP/AVP 31",
                "c=IN IP4 10.0.0.1",
                "c=IN IP6 ::1",
                "a=rtpmap:96 opus/48000/2",
                "a=fmtp:96 x=1",
                "a=sendonly",
                "a=inactive",
                "a=ptime:30",
                "a=rtcp:4001",
                "b=AS:64",
                "s=",
                "i=info",
                "t=1 2",
            ]
        ),
        max_size=25,
    )
)
def test_fuzz_round_trip(lines: list[str]) -> None:
    text = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + "".join(f"{line}\r\n" for line in lines)
    parsed = SessionDescription.parse(text)
    out = parsed.serialize()
    assert SessionDescription.parse(out) == parsed


# --- offer/answer ------------------------------------------------------------------------------


def test_negotiate_keeps_offer_order_and_payload_types() -> None:
    offer = SessionDescription.parse(LINPHONE)
    codecs, event = negotiate(offer, [PCMA, PCMU, G729, TELEPHONE_EVENT])
    assert codecs == [PCMU, PCMA, Codec(18, "G729", 8000, fmtp="annexb=yes")]
    assert event == Codec(100, "telephone-event", 8000)


def test_negotiate_uses_offered_dynamic_payload_type() -> None:
    offer = SessionDescription.parse(ASTERISK.replace(b"101", b"96"))
    codecs, event = negotiate(offer, [PCMU])
    assert codecs == [PCMU]
    assert event == Codec(96, "telephone-event", 8000, fmtp="0-16")


def test_negotiate_fills_in_our_fmtp() -> None:
    offer = SessionDescription.parse(replace_line(SIPP, "RTP/AVP 0", "RTP/AVP 18"))
    codecs, event = negotiate(offer, [Codec(18, "G729", 8000, fmtp="annexb=no")])
    assert codecs == [Codec(18, "G729", 8000, fmtp="annexb=no")]
    assert event is None


def test_negotiate_matches_names_case_insensitively() -> None:
    offer = SessionDescription.parse(replace_line(SIPP, "PCMU/8000", "pcmu/8000"))
    assert negotiate(offer, [PCMU])[0] == [Codec(0, "pcmu", 8000)]


def test_negotiate_no_common_codec() -> None:
    offer = SessionDescription.parse(BARESIP)
    with pytest.raises(SdpError, match=r"^No common codec$"):
        negotiate(offer, [G722])
    comfort_noise_only = SessionDescription.parse(replace_line(SIPP, "RTP/AVP 0", "RTP/AVP 13"))
    with pytest.raises(SdpError, match=r"^No common codec$"):
        negotiate(comfort_noise_only, [PCMU, Codec(13, "CN", 8000)])


def test_negotiate_skips_event_at_other_clock_rate() -> None:
    offer = SessionDescription.parse(
        replace_line(ASTERISK, "telephone-event/8000", "telephone-event/16000")
    )
    codecs, event = negotiate(offer, [PCMU])
    assert codecs == [PCMU]
    assert event is None


def test_negotiate_without_audio_or_with_srtp() -> None:
    video_only = replace_line(SIPP, "m=audio 6000", "m=video 6000")
    with pytest.raises(SdpError, match=r"^Offer has no audio stream$"):
        negotiate(SessionDescription.parse(video_only), [PCMU])
    srtp = replace_line(SIPP, "RTP/AVP", "RTP/SAVP")
    with pytest.raises(SdpError, match=r"^Unsupported audio transport 'RTP/SAVP'$"):
        negotiate(SessionDescription.parse(srtp), [PCMU])


def test_build_sdp_offer() -> None:
    sdp = build_sdp(
        address="192.0.2.10",
        port=40000,
        codecs=[PCMU, PCMA],
        telephone_event=TELEPHONE_EVENT,
        session_id=1234,
        session_version=1,
    )
    assert sdp.serialize() == crlf("""
v=0
o=pypbx 1234 1 IN IP4 192.0.2.10
s=pypbx
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")
    assert SessionDescription.parse(sdp.serialize()) == sdp


def test_build_sdp_ipv6_hold() -> None:
    sdp = build_sdp(
        address="2001:db8::1",
        port=40000,
        codecs=[PCMA],
        telephone_event=None,
        direction="sendonly",
        session_id=1,
        session_version=2,
        ptime=30,
        username="alice",
    )
    out = sdp.serialize()
    assert b"o=alice 1 2 IN IP6 2001:db8::1\r\n" in out
    assert b"c=IN IP6 2001:db8::1\r\n" in out
    assert out.endswith(b"a=ptime:30\r\na=sendonly\r\n")


def test_build_sdp_rejects_bad_input() -> None:
    def build(port: int, codecs: list[Codec], direction: str = "sendrecv") -> SessionDescription:
        return build_sdp(
            address="10.0.0.1",
            port=port,
            codecs=codecs,
            telephone_event=None,
            direction=direction,
            session_id=1,
            session_version=1,
        )

    with pytest.raises(SdpError, match=r"^At least one codec is required$"):
        build(4000, [])
    with pytest.raises(SdpError, match=r"^Invalid port 70000$"):
        build(70000, [PCMU])
    with pytest.raises(SdpError, match=r"^Invalid direction 'hold'$"):
        build(4000, [PCMU], "hold")


def test_answer_rejects_video_with_port_zero() -> None:
    offer = SessionDescription.parse(LINPHONE)
    codecs, event = negotiate(offer, [PCMU, PCMA])
    answer = build_answer(
        offer,
        address="192.0.2.10",
        port=40000,
        codecs=codecs,
        telephone_event=event,
        session_id=99,
        session_version=1,
    )
    assert answer.serialize() == crlf("""
v=0
o=pypbx 99 1 IN IP4 192.0.2.10
s=pypbx
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 100
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:100 telephone-event/8000
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 96 97
""")
    reparsed = SessionDescription.parse(answer.serialize())
    assert [m.port for m in reparsed.media] == [40000, 0]
    assert reparsed.audio_endpoint() == ("192.0.2.10", 40000)


def test_answer_keeps_stream_order_and_rejects_extra_audio() -> None:
    offer = SessionDescription.parse(
        crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=video 5000 RTP/AVP 31
m=audio 0 RTP/AVP 0
m=audio 4000 RTP/AVP 8 0
a=sendonly
m=audio 4002 RTP/AVP 0
""")
    )
    codecs, event = negotiate(offer, [PCMU, PCMA])
    assert codecs == [PCMA, PCMU]
    answer = build_answer(
        offer,
        address="10.0.0.2",
        port=30000,
        codecs=codecs,
        telephone_event=event,
        session_id=5,
        session_version=5,
    )
    assert [(m.media, m.port) for m in answer.media] == [
        ("video", 0),
        ("audio", 0),
        ("audio", 30000),
        ("audio", 0),
    ]
    assert answer.media[2].direction == "recvonly"
    assert answer.media[0].formats == ["31"]


def test_answer_keeps_avpf_transport() -> None:
    offer = SessionDescription.parse(replace_line(SIPP, "RTP/AVP", "RTP/AVPF"))
    codecs, event = negotiate(offer, [PCMU])
    answer = build_answer(
        offer,
        address="10.0.0.2",
        port=30000,
        codecs=codecs,
        telephone_event=event,
        session_id=5,
        session_version=6,
    )
    assert answer.media[0].proto == "RTP/AVPF"


def test_answer_to_inactive_offer() -> None:
    offer = SessionDescription.parse(replace_line(ASTERISK, "a=sendrecv", "a=inactive"))
    codecs, event = negotiate(offer, [PCMU, PCMA])
    answer = build_answer(
        offer,
        address="10.0.0.2",
        port=30000,
        codecs=codecs,
        telephone_event=event,
        session_id=5,
        session_version=6,
    )
    assert answer.media[0].direction == "inactive"
    assert answer.serialize().endswith(b"a=inactive\r\n")


def test_answer_without_audio() -> None:
    offer = SessionDescription.parse(replace_line(SIPP, "m=audio 6000", "m=audio 0"))
    with pytest.raises(SdpError, match=r"^Offer has no audio stream$"):
        build_answer(
            offer,
            address="10.0.0.2",
            port=30000,
            codecs=[PCMU],
            telephone_event=None,
            session_id=1,
            session_version=1,
        )
