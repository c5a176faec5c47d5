"""The response envelope (spec 3.2/3.3), rendered byte-exact.

A tiny node model is used instead of ElementTree because the envelope must match the
shape .NET's XmlSerializer produced for Ozeki (declaration without encoding, xsi before
xsd, two-space indentation, `<Empty />` for empty elements), and ElementTree controls
none of those.

Listings can hold thousands of elements (ListActiveCalls with every call up), so the
model stays lean: a leaf is one slotted object (no per-node child list or attribute dict;
fewer allocations also means fewer garbage collections walking the PBX's live calls), and
text that needs no escaping, nearly all of it, is found with one regex search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pypbx.api.status import Status, format_message

XML_DECLARATION = '<?xml version="1.0"?>'
RESPONSE_OPEN = (
    '<Response xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
)

# Characters XML 1.0 cannot carry at all; network-sourced values (display names) may hold them.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# Anything escape_text changes: the invalid characters plus & < > and CR.
_NEEDS_ESCAPE = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f&<>\ufffe\uffff\ud800-\udfff]")
_PADS = tuple("  " * depth for depth in range(16))


@dataclass(slots=True)
class Node:
    """An element: text for leaves, children for containers (an empty one renders `<X />`)."""

    name: str
    text: str | None = None
    children: Sequence[Node] = ()
    attrs: Mapping[str, str] | None = None


@dataclass(slots=True)
class Records(Node):
    """A container of same-shaped records (a listing): each row holds the texts of the
    `fields` elements, in order, inside one `row_name` element; no node objects per value.

    Renders exactly as `container(name, [container(row_name, [leaf(f, v), ...]), ...])`
    would, at a fraction of the cost and allocations for thousands of rows.
    """

    row_name: str = ""
    fields: Sequence[str] = ()
    rows: Sequence[Sequence[str | None]] = ()


def leaf(name: str, value: str | int | bool | None) -> Node:
    """A scalar element; bools render as `true`/`false`, None as an empty element."""
    if value is None or type(value) is str:
        return Node(name, value)
    if isinstance(value, bool):
        return Node(name, "true" if value else "false")
    return Node(name, str(value))


def container(name: str, children: Iterable[Node]) -> Node:
    return Node(name, None, list(children))


def escape_text(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    text = _INVALID_XML_CHARS.sub("\ufffd", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # A literal CR would be normalised away by any XML parser; keep it as a reference.
    return text.replace("\r", "&#xD;")


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;").replace("\n", "&#xA;").replace("\t", "&#x9;")


def _render_records(node: Records, pad: str, out: list[str]) -> None:
    if not node.rows:
        out.append(f"{pad}<{node.name} />")
        return
    inner, leaf_pad = pad + "  ", pad + "    "
    out.append(f"{pad}<{node.name}>")
    if not node.fields:
        out.extend(f"{inner}<{node.row_name} />" for _ in node.rows)
    else:
        row_open, row_close = f"{inner}<{node.row_name}>", f"{inner}</{node.row_name}>"
        fields = [(f"{leaf_pad}<{f}>", f"</{f}>", f"{leaf_pad}<{f} />") for f in node.fields]
        for row in node.rows:
            out.append(row_open)
            for (opening, closing, empty), value in zip(fields, row, strict=True):
                out.append(f"{opening}{escape_text(value)}{closing}" if value else empty)
            out.append(row_close)
    out.append(f"{pad}</{node.name}>")


def _render(node: Node, depth: int, out: list[str]) -> None:
    pad = _PADS[depth] if depth < len(_PADS) else "  " * depth
    if type(node) is Records:
        _render_records(node, pad, out)
        return
    name = node.name
    attrs = "".join(f' {k}="{escape_attr(v)}"' for k, v in node.attrs.items()) if node.attrs else ""
    if node.children:
        out.append(f"{pad}<{name}{attrs}>")
        for child in node.children:
            if child.children or child.attrs or type(child) is not Node:
                _render(child, depth + 1, out)
            elif child.text:  # the common case, a plain leaf, without a call
                child_name = child.name
                out.append(f"{pad}  <{child_name}>{escape_text(child.text)}</{child_name}>")
            else:
                out.append(f"{pad}  <{child.name} />")
        out.append(f"{pad}</{name}>")
    elif node.text:
        out.append(f"{pad}<{name}{attrs}>{escape_text(node.text)}</{name}>")
    else:
        out.append(f"{pad}<{name}{attrs} />")


def render_response(status: Status, message: str, payload: Iterable[Node] = ()) -> bytes:
    """The whole response document as UTF-8 bytes."""
    lines = [XML_DECLARATION, RESPONSE_OPEN]
    for node in (leaf("Code", int(status)), leaf("Message", message), *payload):
        _render(node, 1, lines)
    lines.append("</Response>")
    return "\n".join(lines).encode("utf-8")


def render_status(status: Status, *args: str) -> bytes:
    """A payload-free response built from the code's template."""
    return render_response(status, format_message(status, *args))
