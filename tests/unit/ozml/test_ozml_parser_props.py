"""Property tests: whatever arrives, parse_ozml returns a Script or raises OzmlError."""

from __future__ import annotations

from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypbx.ozml import OzmlError, Script, Speak, parse_ozml
from pypbx.ozml.values import collapse_whitespace

FRAGMENTS = [
    "<",
    ">",
    "</",
    "/>",
    "<?xml version='1.0'?>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<!DOCTYPE",
    "Response",
    "OzML",
    "Speak",
    "UserInput",
    "InitialCommands",
    "Inputs",
    "Input",
    "SendDTMF",
    "Array",
    "Item",
    "ForEach",
    "Play",
    "Hangup",
    " Key=",
    " Party=",
    '"',
    "'",
    "=",
    "&",
    "&amp;",
    "&nbsp;",
    "&#0;",
    "&#x41;",
    "text",
    " ",
    "\n",
    "\x00",
    "\ufeff",
    "$item",
    "é",
]


def check(document: str | bytes) -> None:
    try:
        result = parse_ozml(document)
    except OzmlError:
        return
    assert isinstance(result, Script)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes(document: bytes) -> None:
    check(document)


@settings(max_examples=500)
@given(st.text(max_size=2000))
def test_random_text(document: str) -> None:
    check(document)


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join))
def test_random_markup(document: str) -> None:
    check(document)
    check(document.encode("utf-8", errors="surrogatepass"))


@settings(max_examples=300)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_random_markup_inside_a_response(inner: str) -> None:
    check(f"<Response><Speak>{inner}</Speak>{inner}</Response>")


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=200,
)


@given(TEXT)
def test_speak_text_round_trip(text: str) -> None:
    script = parse_ozml(f"<Response><Speak>{escape(text)}</Speak></Response>")
    expected = collapse_whitespace(text)
    assert script.verbs == (Speak(text=expected),)


@given(TEXT)
def test_attribute_round_trip(text: str) -> None:
    quoted = escape(text, {'"': "&quot;"})
    script = parse_ozml(f'<Response><Speak Text="{quoted}">fallback</Speak></Response>')
    # XML normalises whitespace characters inside attribute values to spaces.
    normalised = text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    expected = normalised.strip() or "fallback"
    assert script.verbs == (Speak(text=collapse_whitespace(expected)),)
