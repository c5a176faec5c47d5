"""UserInput (spec 6.5): barge-in, digit collection, menus, BackKey, DtmfEntered, limits.

Keys are scripted (ozml_support.FakePbx): `press_during(prompt, key)` presses a key while a
prompt plays; `pbx.keys` feeds the waits after the prompts (None = that wait timed out). Every
wait is logged as ("wait", seconds), which is how these tests check the timeouts used.
"""

from __future__ import annotations

import pytest
from ozml_support import API, OUT, FakePbx, run

from pypbx.ozml import Ending, Limits

MENU = """<Response>
  <UserInput Timeout="8" Repeat="true">
    <InitialCommands>
      <Speak>For sales press 1. For your account press 2.</Speak>
    </InitialCommands>
    <Inputs>
      <Input Key="1"><BlindTransfer>2000</BlindTransfer></Input>
      <Input Key="2">
        <UserInput Timeout="10" Digits="4" BackKey="*" ForwardToUrl="http://app.example/pin.php">
          <InitialCommands>
            <Speak>Enter your four digit PIN, or star to go back.</Speak>
          </InitialCommands>
        </UserInput>
      </Input>
    </Inputs>
  </UserInput>
  <Speak>Goodbye.</Speak>
</Response>"""
TOP = "For sales press 1. For your account press 2."
PIN = "Enter your four digit PIN, or star to go back."


@pytest.fixture
def pbx() -> FakePbx:
    return FakePbx()


async def test_key_during_prompt_interrupts_it_and_selects_an_input(pbx: FakePbx) -> None:
    pbx.transfer_ok = False
    pbx.press_during(TOP, "1")
    await run(pbx, MENU)
    assert pbx.log == [
        ("answer", "c1"),
        ("clear", "c1"),
        ("speak", "c1", "caller", TOP),
        ("interrupted", TOP),
        ("blind_transfer", "c1", "2000", "callee", None, 30.0),
        ("speak", "c1", "caller", "Goodbye."),
        ("hangup", "c1"),
    ]


async def test_key_after_the_prompts_within_timeout(pbx: FakePbx) -> None:
    pbx.keys.extend(["1"])
    outcome = await run(pbx, MENU)
    assert pbx.log == [
        ("answer", "c1"),
        ("clear", "c1"),
        ("speak", "c1", "caller", TOP),
        ("wait", 8.0),
        ("blind_transfer", "c1", "2000", "callee", None, 30.0),
    ]
    assert outcome.ending is Ending.TRANSFERRED


async def test_timeout_with_repeat_replays_the_prompts(pbx: FakePbx) -> None:
    pbx.keys.extend([None, None, "1"])
    await run(pbx, MENU)
    assert [e[0] for e in pbx.log] == [
        "answer",
        "clear",
        "speak",
        "wait",
        "clear",
        "speak",
        "wait",
        "clear",
        "speak",
        "wait",
        "blind_transfer",
    ]


async def test_repeat_is_capped(pbx: FakePbx) -> None:
    await run(pbx, MENU, limits=Limits(max_rounds=3))
    assert [e for e in pbx.log if e[0] == "speak"] == [("speak", "c1", "caller", TOP)] * 3 + [
        ("speak", "c1", "caller", "Goodbye.")
    ]
    default = FakePbx()
    await run(default, MENU)
    assert len(default.actions("wait")) == 10


async def test_timeout_without_repeat_continues_after_the_userinput(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<UserInput Timeout="5"><InitialCommands><Speak>Menu</Speak></InitialCommands>'
        '<Inputs><Input Key="1"><Speak>one</Speak></Input></Inputs></UserInput>'
        "<Speak>After</Speak>",
        OUT,
    )
    assert pbx.log == [
        ("clear", "c1"),
        ("speak", "c1", "callee", "Menu"),
        ("wait", 5.0),
        ("speak", "c1", "callee", "After"),
        ("hangup", "c1"),
    ]


async def test_default_timeout_zero_only_polls(pbx: FakePbx) -> None:
    pbx.keys.extend(["1"])
    await run(
        pbx,
        "<UserInput><InitialCommands><Speak>Menu</Speak></InitialCommands>"
        '<Input Key="1"><Speak>one</Speak></Input></UserInput>',
        OUT,
    )
    assert pbx.actions("wait", "speak") == [
        ("speak", "c1", "callee", "Menu"),
        ("wait", 0.0),
        ("speak", "c1", "callee", "one"),
    ]


async def test_barge_in_on_the_second_prompt_keeps_the_key(pbx: FakePbx) -> None:
    pbx.press_during("Press 2 for support.", "2")
    await run(
        pbx,
        '<UserInput Timeout="5"><InitialCommands><Speak>Press 1 for sales.</Speak>'
        "<Speak>Press 2 for support.</Speak><Speak>Press 3 for billing.</Speak></InitialCommands>"
        '<Inputs><Input Key="2"><Speak>Support</Speak></Input></Inputs></UserInput>',
        OUT,
    )
    assert pbx.actions("speak", "interrupted", "wait") == [
        ("speak", "c1", "callee", "Press 1 for sales."),
        ("speak", "c1", "callee", "Press 2 for support."),
        ("interrupted", "Press 2 for support."),
        ("speak", "c1", "callee", "Support"),
    ]


async def test_barge_in_stops_a_repeating_play(pbx: FakePbx) -> None:
    pbx.press_during("menu.mp3", "3")
    await run(
        pbx,
        '<UserInput><InitialCommands><Play Repeat="true">menu.mp3</Play></InitialCommands>'
        '<Inputs><Input Key="3"><Delay>1</Delay></Input></Inputs></UserInput>',
        OUT,
    )
    assert pbx.log == [
        ("clear", "c1"),
        ("play", "c1", "callee", "menu.mp3", True, None, True),
        ("interrupted", "menu.mp3"),
        ("delay", "c1", 1.0),
        ("hangup", "c1"),
    ]


async def test_pin_entry_goes_to_dtmf_entered_inline(pbx: FakePbx) -> None:
    pbx.keys.extend(["4", "7", "1", "1"])
    pbx.reply("http://app/pin", "<Response><Speak>Thanks</Speak></Response>")
    await run(
        pbx,
        '<UserInput ForwardToUrl="http://app/pin" Digits="4" Timeout="10" Repeat="true">'
        "<InitialCommands><Speak>Please enter your PIN.</Speak></InitialCommands></UserInput>"
        "<Speak>After</Speak>",
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("clear", "c1"),
        ("speak", "c1", "caller", "Please enter your PIN."),
        ("wait", 10.0),
        ("wait", 5.0),
        ("wait", 5.0),
        ("wait", 5.0),
        ("fetch", "DtmfEntered", "http://app/pin"),
        ("speak", "c1", "caller", "Thanks"),
        ("speak", "c1", "caller", "After"),
        ("hangup", "c1"),
    ]
    assert pbx.fetches[0][2] == (
        ("DtmfDigits", "4711"),
        ("CallId", "c1"),
        ("ApiExtension", "9994"),
        ("Caller", "1442"),
    )


@pytest.mark.parametrize("reply", [None, "", "<<<"])
async def test_failed_dtmf_entered_continues_after_the_userinput(
    pbx: FakePbx, reply: str | None
) -> None:
    pbx.keys.extend(["9"])
    pbx.reply("http://app/x", reply)
    await run(
        pbx, '<UserInput ForwardToUrl="http://app/x" Repeat="true"/><Speak>After</Speak>', OUT
    )
    assert [e[0] for e in pbx.log] == ["clear", "wait", "fetch", "speak", "hangup"]


async def test_no_match_without_forward_url_counts_as_a_timeout(pbx: FakePbx) -> None:
    pbx.keys.extend(["9", "1"])
    await run(
        pbx,
        '<UserInput Timeout="3" Repeat="true">'
        "<InitialCommands><Speak>Menu</Speak></InitialCommands>"
        '<Inputs><Input Key="1"><Speak>one</Speak></Input></Inputs></UserInput>',
        OUT,
    )
    assert pbx.actions("speak", "wait") == [
        ("speak", "c1", "callee", "Menu"),
        ("wait", 3.0),
        ("speak", "c1", "callee", "Menu"),
        ("wait", 3.0),
        ("speak", "c1", "callee", "one"),
    ]


async def test_incomplete_entry_counts_as_a_timeout(pbx: FakePbx) -> None:
    pbx.keys.extend(["1", "2", None, "1", "2", "3", "4"])
    pbx.reply("http://app/pin", "<Speak>ok</Speak>")
    await run(
        pbx,
        '<UserInput Digits="4" Timeout="10" Repeat="true" ForwardToUrl="http://app/pin">'
        "<InitialCommands><Speak>PIN?</Speak></InitialCommands></UserInput>",
        OUT,
    )
    assert pbx.fetches[0][2][0] == ("DtmfDigits", "1234")
    assert len(pbx.actions("clear")) == 2


async def test_back_key_returns_to_the_enclosing_menu(pbx: FakePbx) -> None:
    pbx.press_during(TOP, "2", "1")
    pbx.press_during(PIN, "*")
    pbx.transfer_ok = False
    await run(pbx, MENU)
    assert pbx.actions("speak", "interrupted", "blind_transfer", "clear") == [
        ("clear", "c1"),
        ("speak", "c1", "caller", TOP),
        ("interrupted", TOP),
        ("clear", "c1"),
        ("speak", "c1", "caller", PIN),
        ("interrupted", PIN),
        ("clear", "c1"),
        ("speak", "c1", "caller", TOP),
        ("interrupted", TOP),
        ("blind_transfer", "c1", "2000", "callee", None, 30.0),
        ("speak", "c1", "caller", "Goodbye."),
    ]


async def test_back_key_ends_a_pin_entry_early(pbx: FakePbx) -> None:
    pbx.press_during(TOP, "2")
    pbx.keys.extend(["*", None])
    await run(pbx, MENU, limits=Limits(max_rounds=1))
    assert pbx.actions("speak", "wait") == [
        ("speak", "c1", "caller", TOP),
        ("speak", "c1", "caller", PIN),
        ("wait", 10.0),
        ("speak", "c1", "caller", TOP),
        ("wait", 8.0),
        ("speak", "c1", "caller", "Goodbye."),
    ]
    assert pbx.fetches == []


async def test_back_key_of_a_top_level_menu_leaves_it(pbx: FakePbx) -> None:
    pbx.keys.extend(["#"])
    await run(
        pbx,
        '<UserInput BackKey="#" Timeout="4" Repeat="true"><Inputs><Input Key="1"><Hangup/></Input>'
        "</Inputs></UserInput><Speak>Left</Speak>",
        OUT,
    )
    assert pbx.log == [
        ("clear", "c1"),
        ("wait", 4.0),
        ("speak", "c1", "callee", "Left"),
        ("hangup", "c1"),
    ]


async def test_min_and_max_digits_pause_completes_the_entry(pbx: FakePbx) -> None:
    pbx.keys.extend(["1", "2", "3", None])
    pbx.reply("http://app/acct", "")
    await run(
        pbx,
        '<UserInput MinDigits="2" MaxDigits="6" Timeout="7" ForwardToUrl="http://app/acct"/>',
        OUT,
    )
    assert pbx.actions("wait") == [("wait", 7.0), ("wait", 5.0), ("wait", 3.0), ("wait", 3.0)]
    assert pbx.fetches[0][2][0] == ("DtmfDigits", "123")


async def test_hash_terminates_a_variable_length_entry(pbx: FakePbx) -> None:
    pbx.keys.extend(["1", "2", "#"])
    pbx.reply("http://app/acct", "")
    await run(pbx, '<UserInput MinDigits="2" MaxDigits="6" ForwardToUrl="http://app/acct"/>', OUT)
    assert pbx.fetches[0][2][0] == ("DtmfDigits", "12")


async def test_hash_before_min_digits_is_a_timeout(pbx: FakePbx) -> None:
    pbx.keys.extend(["1", "#"])
    await run(
        pbx,
        '<UserInput MinDigits="2" MaxDigits="6" ForwardToUrl="http://app/acct"/><Speak>x</Speak>',
        OUT,
    )
    assert pbx.fetches == []


async def test_max_digits_completes_without_waiting(pbx: FakePbx) -> None:
    pbx.keys.extend(["1", "2", "3"])
    pbx.reply("http://app/acct", "")
    await run(pbx, '<UserInput MaxDigits="3" Digits="1" ForwardToUrl="http://app/acct"/>', OUT)
    assert pbx.fetches[0][2][0] == ("DtmfDigits", "123")


async def test_multi_key_inputs_set_the_entry_length(pbx: FakePbx) -> None:
    pbx.keys.extend(["1", "0"])
    await run(
        pbx,
        '<UserInput><Inputs><Input Key="10"><Speak>ten</Speak></Input>'
        '<Input Key="20"><Speak>twenty</Speak></Input></Inputs></UserInput>',
        OUT,
    )
    assert pbx.actions("speak") == [("speak", "c1", "callee", "ten")]


async def test_input_keys_take_variables_and_letters_match_any_case(pbx: FakePbx) -> None:
    pbx.keys.extend(["a"])
    await run(
        pbx,
        '<Var id="k">A</Var><UserInput><Input Key="$k"><Speak>letter</Speak></Input></UserInput>',
        OUT,
    )
    assert pbx.actions("speak") == [("speak", "c1", "callee", "letter")]


async def test_hang_up_while_waiting_for_keys(pbx: FakePbx) -> None:
    pbx.keys.extend(["hangup"])
    outcome = await run(pbx, MENU)
    assert outcome.ending is Ending.CALL_GONE
    assert pbx.log[-1] == ("wait", 8.0)


async def test_hang_up_during_the_prompts(pbx: FakePbx) -> None:
    pbx.end_when = lambda entry: entry[0] == "speak"
    outcome = await run(pbx, MENU)
    assert outcome.ending is Ending.CALL_GONE
    assert [e[0] for e in pbx.log] == ["answer", "clear", "speak"]


async def test_hangup_inside_an_input(pbx: FakePbx) -> None:
    pbx.keys.extend(["1"])
    outcome = await run(
        pbx,
        '<UserInput timeout="2" repeat="true"><InitialCommands><Speak>Silver 1</Speak>'
        '</InitialCommands><Inputs><Input key="1"><Speak>Congratulation! Goodbye!</Speak>'
        "<Hangup></Hangup></Input></Inputs></UserInput><Speak>never</Speak>",
    )
    assert outcome.ending is Ending.HUNG_UP
    assert pbx.log[-2:] == [("speak", "c1", "caller", "Congratulation! Goodbye!"), ("hangup", "c1")]


async def test_hangup_among_the_prompts(pbx: FakePbx) -> None:
    outcome = await run(
        pbx, "<UserInput><InitialCommands><Hangup/></InitialCommands></UserInput><Speak>x</Speak>"
    )
    assert outcome.ending is Ending.HUNG_UP
    assert pbx.actions("speak") == []


async def test_goto_in_a_dtmf_entered_reply_leaves_every_menu(pbx: FakePbx) -> None:
    pbx.press_during(TOP, "2")
    pbx.keys.extend(["1", "2", "3", "4"])
    pbx.reply("http://app.example/pin.php", "<GoTo>http://app/account</GoTo>")
    pbx.reply("http://app/account", "<Speak>Balance 42</Speak>")
    outcome = await run(pbx, MENU)
    assert [e for e in pbx.log if e[0] in ("fetch", "speak")][-3:] == [
        ("fetch", "DtmfEntered", "http://app.example/pin.php"),
        ("fetch", "GoTo", "http://app/account"),
        ("speak", "c1", "caller", "Balance 42"),
    ]
    assert outcome.gotos == 1
    assert pbx.log[-1] == ("hangup", "c1")


async def test_worked_example_4_13(pbx: FakePbx) -> None:
    pbx.keys.extend(["4", "7", "1", "1"])
    pbx.reply(
        "http://app.example/pin.php",
        "<Response><GoTo>http://app.example/account.php?id=17</GoTo></Response>",
    )
    pbx.reply(
        "http://app.example/account.php?id=17",
        "<Response><Speak>Your balance is 42 dollars.</Speak></Response>",
    )
    await run(
        pbx,
        '<Response><UserInput ForwardToUrl="http://app.example/pin.php" Digits="4" Timeout="10" '
        'Repeat="true">\n<InitialCommands><Speak>Please enter your PIN.</Speak></InitialCommands>'
        "</UserInput></Response>",
    )
    assert pbx.fetches == [
        (
            "http://app.example/pin.php",
            "DtmfEntered",
            (
                ("DtmfDigits", "4711"),
                ("CallId", "c1"),
                ("ApiExtension", "9994"),
                ("Caller", "1442"),
            ),
        ),
        (
            "http://app.example/account.php?id=17",
            "GoTo",
            (("CallId", "c1"), ("ApiExtension", "9994"), ("Caller", "1442")),
        ),
    ]
    assert pbx.log[-2:] == [
        ("speak", "c1", "caller", "Your balance is 42 dollars."),
        ("hangup", "c1"),
    ]


REPROMPT = (
    "<UserInput enteredUrl='http://yourapp.com/dtmf_received.php' digits='4' timeout='10' "
    "repeat='true'><InitialCommands><Speak>The PIN code you entered is invalid.</Speak>"
    "</InitialCommands></UserInput>"
)


async def test_ozeki_pin_example_reprompts_through_dtmf_entered(pbx: FakePbx) -> None:
    pbx.keys.extend(["0000", "1", "2", "3", "4"][1:] * 2)
    pbx.reply(
        "http://yourapp.com/dtmf_received.php", REPROMPT, "<GoTo>http://yourapp.com/m?id=1</GoTo>"
    )
    pbx.reply("http://yourapp.com/m?id=1", "<Speak>Verified</Speak>")
    await run(
        pbx,
        '<Response><UserInput enteredUrl="http://yourapp.com/dtmf_received.php" digits="4" '
        'timeout="10" repeat="true"><InitialCommands><Speak>Please enter your 4 digits PIN code.'
        "</Speak></InitialCommands></UserInput></Response>",
    )
    said = [e[3] for e in pbx.actions("speak")]
    assert said == [
        "Please enter your 4 digits PIN code.",
        "The PIN code you entered is invalid.",
        "Verified",
    ]


async def test_endless_wrong_pins_hit_the_nesting_limit(pbx: FakePbx) -> None:
    pbx.keys.extend(["1"] * 400)
    pbx.reply("http://yourapp.com/dtmf_received.php", *[REPROMPT] * 100)
    outcome = await run(pbx, REPROMPT, limits=Limits(max_depth=10))
    assert outcome.ending is Ending.LIMIT
    assert len(pbx.fetches) == 10  # each re-prompt from a DtmfEntered reply nests one level
    assert pbx.log[-1] == ("hangup", "c1")


async def test_userinput_among_initial_commands_is_skipped(pbx: FakePbx) -> None:
    await run(
        pbx,
        "<UserInput><InitialCommands><Speak>a</Speak><UserInput><InitialCommands><Speak>b</Speak>"
        "</InitialCommands></UserInput></InitialCommands></UserInput>",
        OUT,
    )
    assert pbx.actions("speak") == [("speak", "c1", "callee", "a")]


async def test_execute_sql_is_ignored(pbx: FakePbx) -> None:
    pbx.keys.extend(["1"])
    await run(
        pbx,
        '<UserInput ExecuteSQL="SELECT 1"><Input Key="1"><Speak>one</Speak></Input></UserInput>',
        OUT,
    )
    assert pbx.actions("speak") == [("speak", "c1", "callee", "one")]


async def test_userinput_needs_a_call(pbx: FakePbx) -> None:
    from pypbx.ozml import Session

    await run(pbx, "<UserInput/>", Session.call_less(notification="Error", api_extension="9994"))
    assert pbx.log == []
    assert API.remote_party == "caller"
