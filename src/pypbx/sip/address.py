"""name-addr / addr-spec values: From, To, Contact, Route, Record-Route, Refer-To (§20, §25.1).

Why the two forms are normalised to one: in addr-spec form (no angle brackets) parameters
after the URI belong to the header, not to the URI (§20.10).  Parsing both into the same
``Address`` and always serialising with ``<>`` removes that trap for every caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from pypbx.sip._lex import (
    MAX_LIST_VALUES,
    PLAIN_PARAM,
    format_params,
    parse_params,
    quote,
    quoted_end,
    split_outside,
    unquote,
)
from pypbx.sip.errors import SipParseError
from pypbx.sip.uri import PLAIN_URI_SHAPE, SipURI

# <plain URI> and plain parameters, no display name: a value of this shape (within the
# parameter count limit) is sure to be one Address.parse accepts.
_PLAIN_NAME_ADDR_RE = re.compile(f"<{PLAIN_URI_SHAPE}>{PLAIN_PARAM}*")


def plain_name_addr(value: str) -> bool:
    """True if ``Address.parse`` accepts ``value`` without a doubt. Why: the parsers check
    From only this far, and parse it when something reads it (most requests never do)."""
    return _PLAIN_NAME_ADDR_RE.fullmatch(value) is not None and value.count(";") <= MAX_LIST_VALUES


@dataclass(slots=True)
class Address:
    """A URI with an optional display name (unquoted, unescaped) and header parameters.

    Parameter values are kept verbatim (quotes included).  Instances returned by message
    properties are shared caches: use ``copy()``/``with_tag()`` rather than mutating them.
    """

    uri: SipURI
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, what: str = "address") -> Address:
        """Parse one name-addr or addr-spec; ``what`` names the header in the error."""
        text = text.strip()
        if not text:
            raise SipParseError(f"Bad {what}")
        display: str | None
        if text[0] == '"':
            end = quoted_end(text, 0)
            if end < 0:
                raise SipParseError(f"Bad {what}")
            display = unquote(text[1 : end - 1])
            rest = text[end:].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"Bad {what}")
        else:
            lt = text.find("<")
            if lt < 0:
                return cls._parse_addr_spec(text, what)
            display = " ".join(text[:lt].split()) or None
            if display is not None and ('"' in display or ">" in display):
                raise SipParseError(f"Bad {what}")
            rest = text[lt:]
        gt = rest.find(">")
        if gt < 0:
            raise SipParseError(f"Bad {what}")
        try:
            uri = SipURI.parse(rest[1:gt])
        except SipParseError:
            raise SipParseError(f"Bad {what}") from None
        return cls(uri, display, parse_params(rest[gt + 1 :], what))

    @classmethod
    def _parse_addr_spec(cls, text: str, what: str) -> Address:
        uri_text, semi, params_text = text.partition(";")
        if "?" in uri_text or "," in uri_text:
            # §20.10: such a URI must be in <>; without them the parse is ambiguous in
            # general, so it is refused rather than guessed (RFC 4475 regbadct).
            raise SipParseError(f"Bad {what}")
        try:
            uri = SipURI.parse(uri_text)
        except SipParseError:
            raise SipParseError(f"Bad {what}") from None
        params = parse_params(";" + params_text, what) if semi else {}
        return cls(uri, None, params)

    @classmethod
    def parse_list(cls, text: str, what: str = "address") -> list[Address]:
        """Parse a comma-separated list (Contact, Route, ...); commas in quotes/<> are kept.

        A Contact of ``*`` is not an address: callers must test for it before calling this.
        """
        items = split_outside(text, ",")
        if len(items) > MAX_LIST_VALUES:
            raise SipParseError(f"Bad {what}")
        return [cls.parse(item, what) for item in items]

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display_name:
            out = f"{quote(self.display_name)} {out}"
        if self.params:
            out += format_params(self.params)
        return out

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str | None) -> Address:
        """A copy carrying ``tag`` (replacing any existing one); None gives a copy without tag.

        None is accepted because a dialog with an RFC 2543 peer may have no remote tag.
        """
        params = dict(self.params)
        if tag is None:
            params.pop("tag", None)
        else:
            params["tag"] = tag
        return Address(self.uri.copy(), self.display_name, params)

    def copy(self, **changes: Any) -> Address:
        changes.setdefault("uri", self.uri.copy())
        changes.setdefault("params", dict(self.params))
        return replace(self, **changes)
