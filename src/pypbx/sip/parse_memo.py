"""Parsed header values remembered by their text, for the REGISTER fast path.

Why: a phone re-registers with the same Request-URI, To and CSeq texts every interval (a
registration storm sends each phone's twice in a row, the second with CSeq one higher), and
each parse builds a few objects from scratch: the three were a quarter of a REGISTER's parse.
The parses are pure functions of the text, so a hit is the very value a parse would give.
A Via differs from the phone's last one in its branch alone: it is remembered without the
branch's value, and a hit is that Via with this branch (see ``via``).
The values are shared between requests, like every cached view of a message: read them,
never change them in place (``copy()`` first). Bounded: past ``size`` texts of one kind,
that kind is forgotten at once, so hostile variety costs memory only up to the bound.

Owned by whoever owns the parser calls (the stack), never module state: sans-I/O.
"""

from __future__ import annotations

from pypbx.sip._lex import TOKEN_RE
from pypbx.sip.address import Address
from pypbx.sip.model import parse_cseq
from pypbx.sip.uri import SipURI
from pypbx.sip.via import Via

DEFAULT_SIZE = 10_000
# What stands for the branch value in a remembered Via: a token no phone sends.
_PLACEHOLDER = "z9hG4bK.pypbx.memo"


class ParseMemo:
    """Request-URIs, To and CSeq values parsed by their exact text, Vias by theirs less the
    branch value."""

    __slots__ = ("_cseqs", "_size", "_tos", "_uris", "_vias")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._uris: dict[str, SipURI] = {}
        self._tos: dict[str, Address] = {}
        self._cseqs: dict[str, tuple[int, str]] = {}
        self._vias: dict[str, Via | None] = {}  # None: not a Via to remember this way

    def __len__(self) -> int:
        return len(self._uris) + len(self._tos) + len(self._cseqs) + len(self._vias)

    def uri(self, text: str) -> SipURI:
        """``SipURI.parse(text)``; raises what it raises (a failure is not remembered)."""
        found = self._uris.get(text)
        if found is None:
            found = SipURI.parse(text)
            if len(self._uris) >= self._size:
                self._uris.clear()
            self._uris[text] = found
        return found

    def to(self, text: str) -> Address:
        """``Address.parse(text, "To")``; raises what it raises."""
        found = self._tos.get(text)
        if found is None:
            found = Address.parse(text, "To")
            if len(self._tos) >= self._size:
                self._tos.clear()
            self._tos[text] = found
        return found

    def cseq(self, text: str) -> tuple[int, str]:
        """``parse_cseq(text)``; raises what it raises."""
        found = self._cseqs.get(text)
        if found is None:
            found = parse_cseq(text)
            if len(self._cseqs) >= self._size:
                self._cseqs.clear()
            self._cseqs[text] = found
        return found

    def via(self, text: str) -> Via:
        """``Via.parse(text)``, a new Via each time; raises what it raises.

        Remembered by the text with the value of its first ``;branch=`` parameter cut out
        (the template parsed with a placeholder there), when that value is a token and the
        text has no quotes (a ``;branch=`` in quotes is no parameter). A
        template whose branch is not the placeholder (another spelling of the parameter
        came after it, and won) or that does not parse is remembered as None: such texts
        are parsed in full.
        """
        start = text.find(";branch=") + 8
        if start < 8 or '"' in text or _PLACEHOLDER in text:
            return Via.parse(text)  # no branch, or one that could be inside quotes
        end = text.find(";", start)
        if end < 0:
            end = len(text)
        branch = text[start:end]
        if not TOKEN_RE.fullmatch(branch):
            # A token parses the same as any other in its place (its characters are ones
            # every way of parsing a parameter value takes); anything else: in full.
            return Via.parse(text)
        key = text[:start] + text[end:]
        vias = self._vias
        if key in vias:
            template = vias[key]
        else:
            template = self._template(text[:start] + _PLACEHOLDER + text[end:])
            if len(vias) >= self._size:
                vias.clear()
            vias[key] = template
        if template is None:
            return Via.parse(text)
        params = dict(template.params)
        params["branch"] = branch
        return Via(template.transport, template.host, template.port, params)

    @staticmethod
    def _template(text: str) -> Via | None:
        try:
            via = Via.parse(text)
        except ValueError:
            return None
        return via if via.params.get("branch") == _PLACEHOLDER else None
