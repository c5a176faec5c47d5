"""Via header values (RFC 3261 §18.2, §20.42, RFC 3581 rport).

Why LWS is tolerated inside ``SIP / 2.0 / UDP``: the grammar allows it (SLASH = SWS "/" SWS,
COLON likewise) and torture tests use it; the serialised form is always the compact one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from pypbx.sip._lex import (
    MAX_LIST_VALUES,
    format_params,
    parse_params,
    split_hostport,
)
from pypbx.sip.errors import SipParseError
from pypbx.sip.ids import generate_branch

_SENT_PROTOCOL_RE = re.compile(
    r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(\S(?:[^;]*\S)?)\s*", re.IGNORECASE
)
_COLON_LWS_RE = re.compile(r"\s*:\s*")
# The usual shape, "SIP/2.0/UDP host[:port];params" with a name or IPv4 host: one C-level
# match instead of the general parse (which still decides everything else).
_PLAIN_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9_][A-Za-z0-9_\-.]*)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[^\s,;<>\"]*)?)*)"
)


@dataclass(slots=True)
class Via:
    """One Via value; ``transport`` is uppercase, ``host`` has no IPv6 brackets.

    Instances returned by message properties are shared caches: ``copy()`` before changing.
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma-separated list); raises ``SipParseError``."""
        plain = _PLAIN_VIA_RE.fullmatch(text)
        if plain is not None:
            transport, host, port_text, params_text = plain.groups()
            port = int(port_text) if port_text is not None else None
            if (port is None or port <= 65535) and params_text.count(";") <= MAX_LIST_VALUES:
                params: dict[str, str | None] = {}
                if params_text:
                    for piece in params_text[1:].split(";"):
                        name, eq, value = piece.partition("=")
                        params[name.lower()] = value if eq else None
                return cls(transport.upper(), host, port, params)
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> Via:
        """Every Via ``parse`` accepts, the plain ones included (tests compare the two)."""
        head, semi, params_text = text.partition(";")
        match = _SENT_PROTOCOL_RE.fullmatch(head)
        if match is None:
            raise SipParseError("Bad Via")
        sent_by = _COLON_LWS_RE.sub(":", match.group(2))  # allow "host : port"
        host, port = split_hostport(sent_by, "Via")
        return cls(
            match.group(1).upper(),
            host,
            port,
            parse_params(";" + params_text, "Via") if semi else {},
        )

    @classmethod
    def new(cls, transport: str, host: str, port: int | None) -> Via:
        """A Via for a new client transaction: fresh branch and an empty rport flag."""
        return cls(transport.upper(), host, port, {"branch": generate_branch(), "rport": None})

    def __str__(self) -> str:
        # format_hostport inlined: every response to a request from behind NAT (rport)
        # writes one, and the two calls were a third of it
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        if self.port is not None:
            host = f"{host}:{self.port}"
        return f"SIP/2.0/{self.transport} {host}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The received address; IPv6 brackets, which half the peers add, are removed.

        RFC 5118 §4.5: via-received is a bare IPv6address, but accept it with or without
        "[" "]" (the raw parameter is kept as sent, so it is relayed unchanged).
        """
        value = self.params.get("received")
        if value and value[0] == "[" and value[-1] == "]":
            return value[1:-1]
        return value

    @property
    def has_rport(self) -> bool:
        """True if the rport parameter is present, with or without a value."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The numeric rport value, or None when absent or an empty flag."""
        value = self.params.get("rport")
        if value and value.isascii() and value.isdigit() and len(value) <= 5:
            return int(value)
        return None

    def copy(self, **changes: Any) -> Via:
        changes.setdefault("params", dict(self.params))
        return replace(self, **changes)
