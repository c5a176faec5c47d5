"""substitute() and resolve(): the variable rules of spec 5.5."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pypbx.ozml import Array, Input, Play, Speak, UserInput, resolve, substitute


def test_substitution_vectors() -> None:
    variables = {"balance": "42", "balance2": "7", "Item": "Sales"}
    assert (
        substitute("Your balance is $balance dollars.", variables) == "Your balance is 42 dollars."
    )
    assert substitute("$balance2 and $balance", variables) == "7 and 42"  # longest name first
    assert substitute("$item/$ITEM", variables) == "Sales/Sales"  # names are case-insensitive
    assert substitute("costs $5 and $unknown", variables) == "costs $5 and $unknown"
    assert substitute("$$balance is literal", variables) == "$balance is literal"
    assert substitute("$$$balance", variables) == "$42"
    assert substitute("trailing $", variables) == "trailing $"
    assert substitute("$balancesheet", variables) == "42sheet"  # no word boundary needed


def test_values_are_not_substituted_again() -> None:
    assert substitute("$a", {"a": "$b", "b": "x"}) == "$b"


def test_no_variables() -> None:
    assert substitute("$a $$", {}) == "$a $"


@given(
    st.text(alphabet=st.characters(blacklist_characters="$")),
    st.dictionaries(st.text(min_size=1), st.text()),
)
def test_text_without_dollar_is_unchanged(text: str, variables: dict[str, str]) -> None:
    assert substitute(text, variables) == text


@given(st.text())
def test_doubled_dollars_survive_as_literals(text: str) -> None:
    assert substitute(text.replace("$", "$$"), {"x": "y"}) == text


def test_resolve_substitutes_string_fields_only() -> None:
    verb = Speak(text="Hi $name", party="all", language="$lang")
    assert resolve(verb, {"name": "Ann", "lang": "en-GB"}) == Speak(
        text="Hi Ann", party="all", language="en-GB"
    )
    assert resolve(Play(audio_file="$f.wav", repeat=True), {"f": "menu"}) == Play(
        audio_file="menu.wav", repeat=True
    )
    assert resolve(Array(id="a", items=("$x", "y")), {"x": "1"}) == Array(id="a", items=("1", "y"))


def test_resolve_leaves_nested_bodies_for_later() -> None:
    menu = UserInput(
        forward_to_url="http://a/$id",
        initial_commands=(Speak(text="$id"),),
        inputs=(Input(key="1", verbs=(Speak(text="$id"),)),),
    )
    resolved = resolve(menu, {"id": "7"})
    assert resolved.forward_to_url == "http://a/7"
    assert resolved.initial_commands == (Speak(text="$id"),)


def test_resolve_returns_the_same_object_when_nothing_changes() -> None:
    verb = Speak(text="plain")
    assert resolve(verb, {"x": "1"}) is verb
    assert resolve(verb, {}) is verb
