"""Turning what applications really send into text an XML parser accepts (spec 5.2).

The parser first tries the document as it is; only a document that fails gets `repair`, so a
well-formed reply is never rewritten. `repair` is a small tag scanner that fixes exactly the
mistakes seen in Ozeki's material and in PHP-generated replies:

* unquoted attribute values (`CallId=23Xdz7`) are quoted;
* `<SendDTMF ...><SendDTMF>` - an attribute-less opening tag of the same element written where
  the closing tag belongs, with nothing in between - becomes the closing tag;
* end tags that differ in case from their start tag (`<Userinput>...</UserInput>`) are
  respelled; an end tag that skips open elements closes them; a stray end tag is dropped;
  elements still open at the end are closed;
* a bare `&`, an HTML entity (`&nbsp;`), a `<` that starts no tag, and characters XML forbids
  are escaped, translated or dropped.

What stays irrecoverable (OzmlError): a DTD or entity declaration (never needed in OzML, and
where entity-expansion attacks live), and markup cut off by the end of the document (an
unterminated tag, comment, CDATA section or quoted value) - guessing there would execute a
half-written verb.
"""

from __future__ import annotations

import bisect
import codecs
import html.entities
import re
from dataclasses import dataclass

from pypbx.ozml.errors import OzmlError

_NAME = re.compile(r"[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?")
_END_TAG = re.compile(r"</\s*([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)\s*>")
_ATTR_NAME = re.compile(r"[^\s=/>\"'<]+")
_BARE_VALUE = re.compile(r"[^\s>]*")
_DECLARATION = re.compile(r"<\?xml(?=[\s?])", re.IGNORECASE)
_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""", re.I)
_REFERENCE = re.compile(
    r"&(?:#[xX]([0-9a-fA-F]{1,8});|#([0-9]{1,10});|([A-Za-z][A-Za-z0-9]{0,31});)?"
)
_FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_MAX_NOTES = 50


def decode(data: bytes) -> str:
    """Bytes to text: BOM first, then the declared encoding, then UTF-8, then Latin-1.

    The last resort never fails, because a PHP page in Latin-1 without a declaration is still
    a readable reply; text that is no XML fails later with a parse error.
    """
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le")):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    if data.startswith(codecs.BOM_UTF16_BE):
        return data[len(codecs.BOM_UTF16_BE) :].decode("utf-16-be", errors="replace")
    declared = _ENCODING.match(data[:200])
    candidates = ["utf-8"]
    if declared is not None:
        candidates.insert(0, declared.group(1).decode("ascii"))
    for codec in candidates:
        try:
            return data.decode(codec)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def strip_prolog(text: str) -> tuple[str, int]:
    """Drop leading whitespace and BOMs and any XML declarations before the first element;
    returns the rest and how many lines were dropped (so messages give document lines).

    PHP pages often emit blank lines before `<?xml ...?>` (spec 5.2), which strict XML
    rejects; the text is already decoded, so the declaration carries nothing we need.
    """
    body = text.lstrip("\ufeff \t\r\n")
    while _DECLARATION.match(body):
        end = body.find("?>")
        if end < 0:
            raise OzmlError("unterminated XML declaration at the start of the document")
        body = body[end + 2 :].lstrip("\ufeff \t\r\n")
    return body, text.count("\n", 0, len(text) - len(body))


@dataclass(slots=True)
class _Open:
    name: str
    line: int
    has_content: bool = False


class _Scanner:
    """One pass over the document, writing a well-formed equivalent to `out`."""

    def __init__(self, text: str, skipped_lines: int) -> None:
        self.text = text
        self._skipped_lines = skipped_lines
        self.out: list[str] = []
        self.notes: list[str] = []
        self.stack: list[_Open] = []
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._dropped_notes = 0

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self._newlines, pos - 1) + 1 + self._skipped_lines

    def note(self, pos: int, message: str) -> None:
        if len(self.notes) < _MAX_NOTES:
            self.notes.append(f"line {self.line(pos)}: {message}")
        else:
            self._dropped_notes += 1

    def run(self) -> tuple[str, list[str]]:
        text, i, n = self.text, 0, len(self.text)
        while i < n:
            lt = text.find("<", i)
            if lt < 0:
                lt = n
            if lt > i:
                self.text_segment(i, lt)
                i = lt
                continue
            i = self.markup(i)
        while self.stack:
            open_ = self.stack.pop()
            self.note(n, f"<{open_.name}> opened on line {open_.line} was never closed; closed")
            self.out.append(f"</{open_.name}>")
        if self._dropped_notes:
            self.notes.append(f"... and {self._dropped_notes} more repairs")
        return "".join(self.out), self.notes

    def text_segment(self, start: int, end: int) -> None:
        segment = self.text[start:end]
        if segment.strip() and self.stack:
            self.stack[-1].has_content = True
        self.out.append(self.escape(segment, start, in_attribute=False))

    def markup(self, i: int) -> int:
        text = self.text
        if text.startswith("<!--", i):
            end = self.find_end(i, "-->", "comment")
            return end + 3  # comments carry nothing for OzML; dropping them avoids "--" errors
        if text.startswith("<![CDATA[", i):
            end = self.find_end(i, "]]>", "CDATA section")
            if self.stack:
                self.stack[-1].has_content = True
            self.out.append(text[i : end + 3])
            return end + 3
        if text.startswith("<!", i):
            raise OzmlError(
                f"line {self.line(i)}: DTDs and entity declarations are not allowed in OzML"
            )
        if text.startswith("<?", i):
            end = self.find_end(i, "?>", "processing instruction")
            self.note(i, "processing instruction dropped")
            return end + 2
        if text.startswith("</", i):
            match = _END_TAG.match(text, i)
            if match is None:
                return self.literal_lt(i)
            self.end_tag(match.group(1), i)
            return match.end()
        name = _NAME.match(text, i + 1)
        if name is None:
            return self.literal_lt(i)
        return self.start_tag(i, name.group(), name.end())

    def find_end(self, start: int, terminator: str, what: str) -> int:
        end = self.text.find(terminator, start + 2)
        if end < 0:
            raise OzmlError(f"line {self.line(start)}: unterminated {what}")
        return end

    def literal_lt(self, i: int) -> int:
        self.note(i, "'<' that starts no tag escaped")
        if self.stack:
            self.stack[-1].has_content = True
        self.out.append("&lt;")
        return i + 1

    def start_tag(self, start: int, name: str, pos: int) -> int:
        attrs, self_closing, end = self.attributes(start, name, pos)
        top = self.stack[-1] if self.stack else None
        if (
            top is not None
            and not self_closing
            and not attrs
            and not top.has_content
            and top.name.casefold() == name.casefold()
        ):
            self.note(start, f"<{name}> read as the closing tag of <{top.name}>")
            self.stack.pop()
            self.out.append(f"</{top.name}>")
            return end
        if top is not None:
            top.has_content = True
        rendered = "".join(f' {key}="{value}"' for key, value in attrs)
        if self_closing:
            self.out.append(f"<{name}{rendered}/>")
        else:
            self.out.append(f"<{name}{rendered}>")
            self.stack.append(_Open(name, self.line(start)))
        return end

    def attributes(
        self, start: int, name: str, pos: int
    ) -> tuple[list[tuple[str, str]], bool, int]:
        text, n = self.text, len(self.text)
        attrs: list[tuple[str, str]] = []
        seen: set[str] = set()
        while True:
            pos = _skip_space(text, pos)
            if pos >= n or text[pos] == "<":
                raise OzmlError(f"line {self.line(start)}: unterminated <{name}> tag")
            if text[pos] == ">":
                return attrs, False, pos + 1
            if text.startswith("/>", pos):
                return attrs, True, pos + 2
            attr = _ATTR_NAME.match(text, pos)
            if attr is None:
                self.note(pos, f"stray {text[pos]!r} in <{name}> dropped")
                pos += 1
                continue
            key, pos = attr.group(), attr.end()
            pos = _skip_space(text, pos)
            value, pos = self.attribute_value(start, name, key, pos)
            if _NAME.fullmatch(key) is None:
                self.note(start, f"invalid attribute name {key!r} in <{name}> dropped")
            elif key in seen:
                self.note(start, f"repeated attribute {key} in <{name}> dropped")
            else:
                seen.add(key)
                attrs.append((key, self.escape(value, start, in_attribute=True)))

    def attribute_value(self, start: int, name: str, key: str, pos: int) -> tuple[str, int]:
        text, n = self.text, len(self.text)
        if pos >= n or text[pos] != "=":
            self.note(start, f"attribute {key} of <{name}> has no value; empty value used")
            return "", pos
        pos = _skip_space(text, pos + 1)
        if pos < n and text[pos] in "\"'":
            close = text.find(text[pos], pos + 1)
            if close < 0:
                raise OzmlError(f"line {self.line(start)}: unterminated value of {key} in <{name}>")
            return text[pos + 1 : close], close + 1
        bare = _BARE_VALUE.match(text, pos)
        assert bare is not None  # the pattern matches the empty string
        value, end = bare.group(), bare.end()
        if value.endswith("/") and text.startswith(">", end) and "://" not in value:
            value, end = value[:-1], end - 1  # `<Hangup CallId=x/>` is self-closing
        self.note(start, f"unquoted value of {key} in <{name}> quoted")
        return value, end

    def end_tag(self, name: str, pos: int) -> None:
        folded = name.casefold()
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].name.casefold() == folded:
                break
        else:
            self.note(pos, f"</{name}> closes nothing; dropped")
            return
        while len(self.stack) > depth + 1:
            inner = self.stack.pop()
            self.note(pos, f"<{inner.name}> closed by </{name}>")
            self.out.append(f"</{inner.name}>")
        open_ = self.stack.pop()
        if open_.name != name:
            self.note(pos, f"</{name}> respelled to match <{open_.name}>")
        self.out.append(f"</{open_.name}>")
        if self.stack:
            self.stack[-1].has_content = True

    def escape(self, segment: str, pos: int, *, in_attribute: bool) -> str:
        if _FORBIDDEN_CHARS.search(segment):
            self.note(pos, "characters not allowed in XML dropped")
            segment = _FORBIDDEN_CHARS.sub("", segment)
        escaped = _REFERENCE.sub(lambda m: self.reference(m, pos), segment)
        escaped = escaped.replace("]]>", "]]&gt;")
        if in_attribute:
            escaped = escaped.replace("<", "&lt;").replace('"', "&quot;")
        return escaped

    def reference(self, match: re.Match[str], pos: int) -> str:
        hex_code, dec_code, name = match.groups()
        if hex_code is not None or dec_code is not None:
            code = int(hex_code, 16) if hex_code is not None else int(dec_code)
            if _allowed_char(code):
                return match.group()
            self.note(pos, f"reference {match.group()} to a character XML forbids escaped")
            return "&amp;" + match.group()[1:]
        if name is not None:
            if name in _XML_ENTITIES:
                return match.group()
            replacement = html.entities.html5.get(name + ";")
            if replacement is not None:
                return "".join(f"&#{ord(c)};" for c in replacement)
            self.note(pos, f"unknown entity &{name}; kept as text")
            return "&amp;" + name + ";"
        self.note(pos, "bare '&' escaped")
        return "&amp;"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _allowed_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def repair(text: str, skipped_lines: int = 0) -> tuple[str, list[str]]:
    """A well-formed rewrite of `text` (a document body without declaration) and the notes
    describing each repair; `skipped_lines` precede `text` in the document. Raises OzmlError
    where no safe rewrite exists."""
    return _Scanner(text, skipped_lines).run()
