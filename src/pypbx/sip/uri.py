"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1).

Why components stay in their escaped form: the same object must serialise back byte for byte
to what a peer sent (Route sets and Contact URIs are echoed verbatim), and equality checks of
user parts are done by the callers that need them.  Other schemes (tel:, urn:, ...) are kept
opaque: the PBX only needs to recognise and reject them (416), not to understand them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from pypbx.sip._lex import format_host, split_hostport
from pypbx.sip.errors import SipParseError

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# Characters that may never appear unescaped anywhere in a URI.
_URI_BAD_RE = re.compile(r'[\x00-\x20\x7f<>"]')
# The usual shape, sip[s]:[user@]host[:port][;params] with a plain user (no password, no
# ';', '?' or '/'), a name or IPv4 host and no URI headers: a match gives the same URI as the
# general parse below, in one C-level pass.  Anything else takes the general parse.
_SCHEME = r"[sS][iI][pP][sS]?"
_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,%]+"
_HOST = r"[A-Za-z0-9_][A-Za-z0-9_\-.]*"
_PARAMS = r'(?:;[^;=?@<>"\s\x00-\x1f\x7f]+(?:=[^;?@<>"\s\x00-\x1f\x7f]*)?)*'
_PLAIN_URI_RE = re.compile(rf"({_SCHEME}):(?:({_USER})@)?({_HOST})(?::([0-9]{{1,5}}))?({_PARAMS})")
# The same shape without groups and with ports below 10000, which no range check rejects: a
# match is sure to be a URI SipURI.parse accepts (the parser vouches for From values with it).
PLAIN_URI_SHAPE = rf"{_SCHEME}:(?:{_USER}@)?{_HOST}(?::[0-9]{{1,4}})?{_PARAMS}"
# The same shape with ports of up to five digits captured in its one group: a match is a URI
# SipURI.parse accepts if that port is absent or below 65536.
PLAIN_URI_PORT_SHAPE = rf"{_SCHEME}:(?:{_USER}@)?{_HOST}(?::([0-9]{{1,5}}))?{_PARAMS}"


@dataclass(slots=True)
class SipURI:
    """A parsed ``sip:``/``sips:`` URI; ``host`` is stored without IPv6 brackets.

    For any other scheme only ``scheme`` and ``opaque`` (everything after the colon) are set.
    A '?' before the '@' starts the URI headers when what precedes it is a valid hostport
    (raw '@' in URI headers, Replaces=id@host, is common); otherwise it belongs to the user
    part, where §25.1 allows it (RFC 4475 intmeth).
    Instances returned by message properties are shared caches: use ``copy()`` to modify.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipURI:
        """Parse a URI; raises ``SipParseError("Bad URI")`` on anything malformed."""
        text = text.strip()
        plain = _PLAIN_URI_RE.fullmatch(text)
        if plain is not None:
            scheme, user, host, port_text, params_text = plain.groups()
            port = int(port_text) if port_text is not None else None
            if port is None or port <= 65535:
                params: dict[str, str | None] = {}
                if params_text:
                    for piece in params_text[1:].split(";"):
                        name, eq, value = piece.partition("=")
                        params[name.lower()] = value if eq else None
                return cls(scheme.lower(), user, None, host, port, params, {})
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> SipURI:
        """Every URI ``parse`` accepts, the plain ones included (tests compare the two)."""
        scheme, colon, rest = text.partition(":")
        if not colon or not rest or not _SCHEME_RE.fullmatch(scheme) or _URI_BAD_RE.search(rest):
            raise SipParseError("Bad URI")
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            return cls(scheme=scheme, opaque=rest)

        # '@' cannot appear unescaped after the userinfo, but peers do put raw '@' in URI
        # headers (Replaces=callid@host): when a complete hostport precedes the first '?', a
        # later '@' is not a userinfo end.
        at = rest.find("@")
        question = rest.find("?")
        if 0 <= question < at and _is_hostport(rest[:question]):
            at = -1
        user: str | None = None
        password: str | None = None
        if at >= 0:
            user, has_password, pw = rest[:at].partition(":")
            if not user:
                raise SipParseError("Bad URI")
            password = pw if has_password else None
            rest = rest[at + 1 :]

        rest, has_headers, headers_text = rest.partition("?")
        hostport, has_params, params_text = rest.partition(";")
        try:
            host, port = split_hostport(hostport, "URI")
        except SipParseError:
            raise SipParseError("Bad URI") from None
        params: dict[str, str | None] = {}
        if has_params:
            for piece in params_text.split(";"):
                if piece:
                    name, eq, value = piece.partition("=")
                    if not name:
                        raise SipParseError("Bad URI")
                    params[name.lower()] = value if eq else None
        headers: dict[str, str] = {}
        if has_headers:
            for piece in headers_text.split("&"):
                if piece:
                    name, _, value = piece.partition("=")
                    headers[name] = value
        return cls(scheme, user, password, host, port, params, headers)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = self.scheme + ":"
        if self.user is not None:
            out += self.user if self.password is None else f"{self.user}:{self.password}"
            out += "@"
        out += format_host(self.host)
        if self.port is not None:
            out += f":{self.port}"
        for name, value in self.params.items():
            out += f";{name}" if value is None else f";{name}={value}"
        if self.headers:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return out

    @property
    def transport(self) -> str:
        """The ``transport`` parameter lowercased; 'tls' for sips and 'udp' otherwise."""
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def copy(self, **changes: Any) -> SipURI:
        """A deep-enough copy (fresh params/headers dicts) with ``changes`` applied."""
        changes.setdefault("params", dict(self.params))
        changes.setdefault("headers", dict(self.headers))
        return replace(self, **changes)


def _is_hostport(text: str) -> bool:
    """Whether ``text`` reads as ``host[:port][;params]`` (the rare '?'-before-'@' case only)."""
    try:
        split_hostport(text.partition(";")[0], "URI")
    except SipParseError:
        return False
    return True
