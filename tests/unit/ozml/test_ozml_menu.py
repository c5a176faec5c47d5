"""The pure rules of UserInput entries, and a property: any key sequence ends the script."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from ozml_support import FakePbx, run

from pypbx.ozml import Ending, Input, Limits, UserInput
from pypbx.ozml.menu import Choice, EntryRules, classify


def rules(verb: UserInput) -> EntryRules:
    return EntryRules.of(verb, tuple(item.key for item in verb.inputs), verb.back_key)


def test_entry_length() -> None:
    assert rules(UserInput()) == EntryRules(count=1, min_count=1, back_key=None, keys=())
    assert rules(UserInput(digits=4)).count == 4
    assert rules(UserInput(digits=1, max_digits=6)).count == 6
    flexible = rules(UserInput(min_digits=2, max_digits=6))
    assert (flexible.count, flexible.min_count, flexible.flexible) == (6, 2, True)
    assert rules(UserInput(min_digits=9, max_digits=3)).min_count == 3
    inferred = rules(UserInput(inputs=(Input(key="1"), Input(key="123"))))
    assert inferred.count == 3


def test_hash_terminates_only_variable_entries_where_it_is_no_key() -> None:
    assert rules(UserInput(min_digits=1, max_digits=4)).terminates("#")
    assert not rules(UserInput(digits=4)).terminates("#")
    assert not rules(UserInput(min_digits=1, max_digits=4, back_key="#")).terminates("#")
    keyed = UserInput(min_digits=1, max_digits=4, inputs=(Input(key="#"),))
    assert not rules(keyed).terminates("#")
    assert not rules(UserInput(min_digits=1, max_digits=4)).terminates("5")


def test_classify() -> None:
    menu = UserInput(back_key="*", inputs=(Input(key="1"), Input(key="b")))
    entry_rules = rules(menu)
    assert classify("*", entry_rules, menu.inputs, None) == (Choice.BACK, -1)
    assert classify("1", entry_rules, menu.inputs, None) == (Choice.INPUT, 0)
    assert classify("B", entry_rules, menu.inputs, None) == (Choice.INPUT, 1)
    assert classify("7", entry_rules, menu.inputs, "http://a/") == (Choice.FORWARD, -1)
    assert classify("7", entry_rules, menu.inputs, None) == (Choice.NO_MATCH, -1)


NESTED = """<UserInput Timeout="4" Repeat="true" BackKey="0">
  <InitialCommands><Speak>top</Speak><Play>p.wav</Play></InitialCommands>
  <Inputs>
    <Input Key="1"><Speak>one</Speak></Input>
    <Input Key="2">
      <UserInput Timeout="2" Repeat="true" Digits="3" BackKey="*" ForwardToUrl="http://app/f">
        <InitialCommands><Speak>inner</Speak></InitialCommands>
        <Input Key="999"><Hangup/></Input>
      </UserInput>
    </Input>
  </Inputs>
</UserInput><Speak>end</Speak>"""

KEYS = st.one_of(st.sampled_from("0123456789*#"), st.none(), st.just("hangup"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(KEYS, max_size=40),
    st.lists(st.sampled_from(["top", "p.wav", "inner"]), max_size=5),
    st.lists(st.sampled_from("0129*#"), max_size=5),
    st.sampled_from([None, "", "<Speak>r</Speak>", "<GoTo>http://app/g</GoTo>"]),
)
def test_any_key_sequence_ends_the_script(
    keys: list[str | None], prompts: list[str], barged: list[str], reply: str | None
) -> None:
    pbx = FakePbx()
    pbx.keys.extend(keys)
    for prompt, key in zip(prompts, barged, strict=False):
        pbx.press_during(prompt, key)
    pbx.reply("http://app/f", *[reply] * 50)
    pbx.reply("http://app/g", *["<Speak>g</Speak>"] * 50)
    outcome = asyncio.run(run(pbx, NESTED, limits=Limits(max_rounds=3)))
    assert outcome.ending in {Ending.COMPLETED, Ending.HUNG_UP, Ending.CALL_GONE}
    if outcome.ending is Ending.COMPLETED:
        assert pbx.log[-1] == ("hangup", "c1")
