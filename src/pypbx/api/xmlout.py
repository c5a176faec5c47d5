"""The response envelope (spec 3.2/3.3), rendered byte-exact.

A tiny node model is used instead of ElementTree because the envelope must match the
shape .NET's XmlSerializer produced for Ozeki (declaration without encoding, xsi before
xsd, two-space indentation, `<Empty />` for empty elements), and ElementTree controls
none of those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pypbx.api.status import Status, format_message

XML_DECLARATION = '<?xml version="1.0"?>'
RESPONSE_OPEN = (
    '<Response xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
)

# Characters XML 1.0 cannot carry at all; network-sourced values (display names) may hold them.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(slots=True)
class Node:
    """An element: text for leaves, children for containers (an empty one renders `<X />`)."""

    name: str
    text: str | None = None
    children: list[Node] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)


def leaf(name: str, value: str | int | bool | None) -> Node:
    """A scalar element; bools render as `true`/`false`, None as an empty element."""
    if value is None:
        return Node(name)
    if isinstance(value, bool):
        return Node(name, "true" if value else "false")
    return Node(name, str(value))


def container(name: str, children: Iterable[Node]) -> Node:
    return Node(name, children=list(children))


def escape_text(text: str) -> str:
    text = _INVALID_XML_CHARS.sub("\ufffd", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # A literal CR would be normalised away by any XML parser; keep it as a reference.
    return text.replace("\r", "&#xD;")


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;").replace("\n", "&#xA;").replace("\t", "&#x9;")


def _render(node: Node, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    attrs = "".join(f' {k}="{escape_attr(v)}"' for k, v in node.attrs.items())
    if node.children:
        out.append(f"{pad}<{node.name}{attrs}>")
        for child in node.children:
            _render(child, depth + 1, out)
        out.append(f"{pad}</{node.name}>")
    elif node.text:
        out.append(f"{pad}<{node.name}{attrs}>{escape_text(node.text)}</{node.name}>")
    else:
        out.append(f"{pad}<{node.name}{attrs} />")


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
