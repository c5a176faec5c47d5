"""Small SIP/SDP helpers the B2BUA modules share: codec specs, directions, URIs."""

from __future__ import annotations

import secrets

from pypbx.media.endpoint import CodecSpec
from pypbx.sip.message import SipURI
from pypbx.sip.sdp import PCMA, PCMU, Codec, SessionDescription
from pypbx.sip.session_timer import OPTION_TAG as TIMER

SUPPORTED_CODECS = [PCMU, PCMA]
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, REFER, MESSAGE"
# SIP extensions (option tags) we implement: what Supported lists and Require may name.
SUPPORTED_EXTENSIONS = (TIMER,)
SUPPORTED = ", ".join(SUPPORTED_EXTENSIONS)


def sip_uri(user: str, host: str) -> SipURI:
    return SipURI(
        scheme="sip", user=user, password=None, host=host, port=None, params={}, headers={}
    )


def codec_spec(codec: Codec, event: Codec | None) -> CodecSpec:
    return CodecSpec(
        codec.payload_type, codec.name.upper(), event.payload_type if event is not None else None
    )


def sdp_direction(sdp: SessionDescription) -> str:
    audio = sdp.audio()
    return "sendrecv" if audio is None else sdp.effective_direction(audio)


def new_session_id() -> int:
    return secrets.randbelow(2**31)
