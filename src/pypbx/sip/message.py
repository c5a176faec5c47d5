"""Public face of the SIP message layer: import everything message-related from here.

Why a facade: the implementation is split by concern (URI, Address, Via, Headers, the message
model, the parser); callers should not need to know that split.
"""

from pypbx.sip.address import Address
from pypbx.sip.errors import SipParseError
from pypbx.sip.headers import Headers, canonical_name
from pypbx.sip.ids import generate_branch, generate_call_id, generate_tag
from pypbx.sip.limits import DEFAULT_LIMITS, Limits
from pypbx.sip.model import Message, Request, Response, make_response, parse_cseq
from pypbx.sip.parser import parse_message
from pypbx.sip.status import reason_phrase
from pypbx.sip.uri import SipURI
from pypbx.sip.via import Via

__all__ = [
    "DEFAULT_LIMITS",
    "Address",
    "Headers",
    "Limits",
    "Message",
    "Request",
    "Response",
    "SipParseError",
    "SipURI",
    "Via",
    "canonical_name",
    "generate_branch",
    "generate_call_id",
    "generate_tag",
    "make_response",
    "parse_cseq",
    "parse_message",
    "reason_phrase",
]
