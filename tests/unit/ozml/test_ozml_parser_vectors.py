"""parse_ozml against the examples of the spec and Ozeki's own material, verbatim."""

from __future__ import annotations

from pypbx.ozml import (
    Array,
    BlindTransfer,
    Call,
    Delay,
    ForEach,
    GoTo,
    Hangup,
    Hold,
    Input,
    Play,
    ReceiveAlarmNotification,
    Record,
    Reject,
    Route,
    Script,
    SendAlarmNotification,
    SendDtmf,
    SendEmail,
    Speak,
    UserInput,
    Var,
    parse_ozml,
)


def verbs(document: str | bytes) -> tuple[object, ...]:
    return parse_ozml(document).verbs


# -- spec examples (notifications-ozml.md) ------------------------------------------------------


def test_spec_5_1_document_shape() -> None:
    script = parse_ozml(
        '<?xml version="1.0"?>\n<Response>\n  <Speak>Welcome.</Speak>\n  <Delay>1</Delay>\n'
        "  <Hangup></Hangup>\n</Response>\n"
    )
    assert script == Script(
        (Speak(text="Welcome."), Delay(time=1.0), Hangup()), root="Response", warnings=()
    )


def test_spec_6_1_speak_with_variable() -> None:
    assert verbs(
        '<Response>\n  <Var id="balance">42</Var>\n'
        '  <Speak Language="en-GB">Your balance is $balance dollars.</Speak>\n</Response>'
    ) == (
        Var(id="balance", value="42"),
        Speak(text="Your balance is $balance dollars.", language="en-GB"),
    )


def test_spec_6_2_play() -> None:
    assert verbs(
        '<Response>\n  <Play Repeat="true" Timeout="30">music/hold.mp3</Play>\n</Response>'
    ) == (Play(audio_file="music/hold.mp3", repeat=True, timeout=30.0),)


def test_spec_6_3_delay() -> None:
    assert verbs(
        "<Response><Speak>One moment.</Speak><Delay>2</Delay><Speak>Thank you.</Speak></Response>"
    ) == (Speak(text="One moment."), Delay(time=2.0), Speak(text="Thank you."))


def test_spec_6_4_record() -> None:
    assert verbs(
        "<Response>\n  <Speak>Leave a message after the tone, press hash to finish.</Speak>\n"
        '  <Record FinishedUrl="http://app.example/vm_done.php" Format="wav" Duration="120" '
        'Inactivity="5" FinishDigits="#"></Record>\n'
        "  <Speak>Thank you, goodbye.</Speak>\n</Response>"
    ) == (
        Speak(text="Leave a message after the tone, press hash to finish."),
        Record(
            format="wav",
            finished_url="http://app.example/vm_done.php",
            duration=120.0,
            inactivity=5.0,
            finish_digits="#",
        ),
        Speak(text="Thank you, goodbye."),
    )


SPEC_MENU = """<Response>
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
</Response>"""


def test_spec_6_5_two_level_menu() -> None:
    pin = UserInput(
        timeout=10.0,
        digits=4,
        back_key="*",
        forward_to_url="http://app.example/pin.php",
        initial_commands=(Speak(text="Enter your four digit PIN, or star to go back."),),
    )
    assert verbs(SPEC_MENU) == (
        UserInput(
            timeout=8.0,
            repeat=True,
            initial_commands=(Speak(text="For sales press 1. For your account press 2."),),
            inputs=(
                Input(key="1", verbs=(BlindTransfer(target="2000"),)),
                Input(key="2", verbs=(pin,)),
            ),
        ),
    )


def test_spec_6_6_goto() -> None:
    assert verbs("<Response><GoTo>http://app.example/menu.php?level=2</GoTo></Response>") == (
        GoTo(url="http://app.example/menu.php?level=2"),
    )


def test_spec_6_7_hangup() -> None:
    assert verbs(
        '<Response><Speak Party="all">This call will now end.</Speak><Hangup></Hangup></Response>'
    ) == (Speak(text="This call will now end.", party="all"), Hangup())


def test_spec_6_8_call() -> None:
    assert verbs(
        "<Response>\n  <Speak>We will now call your friend.</Speak>\n"
        '  <Call Url="http://app.example/gift.php" CallerId="3000" CallerDisplayName="Gift Line">'
        "2310</Call>\n  <Speak>The call has been started. Goodbye.</Speak>\n</Response>"
    ) == (
        Speak(text="We will now call your friend."),
        Call(
            dialled="2310",
            url="http://app.example/gift.php",
            caller_id="3000",
            caller_display_name="Gift Line",
        ),
        Speak(text="The call has been started. Goodbye."),
    )


def test_spec_6_9_blind_transfer() -> None:
    assert verbs(
        "<Response>\n  <Speak>Please hold, transferring you to the help desk.</Speak>\n"
        "  <BlindTransfer>1001</BlindTransfer>\n"
        "  <Speak>Sorry, the help desk is not available.</Speak>\n</Response>"
    )[1] == BlindTransfer(target="1001")


def test_spec_6_12_hold_and_6_14_reject() -> None:
    assert verbs('<Response><Speak Party="all">Please hold.</Speak><Hold></Hold></Response>') == (
        Speak(text="Please hold.", party="all"),
        Hold(),
    )
    assert verbs("<Response><Reject></Reject></Response>") == (Reject(),)


def test_spec_6_17_send_email() -> None:
    assert verbs(
        '<Response><SendEmail Recipient="ops@example.com" Subject="Missed call">'
        "A caller hung up in the night menu.</SendEmail></Response>"
    ) == (
        SendEmail(
            recipient="ops@example.com",
            subject="Missed call",
            message="A caller hung up in the night menu.",
        ),
    )


def test_spec_6_19_array_and_foreach() -> None:
    assert verbs(
        '<Array id="menu"><Item>Sales</Item><Item>Support</Item></Array>\n'
        '<ForEach source="menu"><Speak>$item</Speak></ForEach>'
    ) == (
        Array(id="menu", items=("Sales", "Support")),
        ForEach(source="menu", verbs=(Speak(text="$item"),)),
    )


def test_spec_6_20_route() -> None:
    assert verbs(
        '<Response><Route Destination="voipservice1" DialedNumber="234567" CallerId="3612222222" '
        'RingTime="30"/></Response>'
    ) == (
        Route(
            destination="voipservice1",
            ring_time=30,
            caller_id="3612222222",
            dialed_number="234567",
        ),
    )


def test_spec_4_13_worked_example_replies() -> None:
    assert verbs(
        '<Response><UserInput ForwardToUrl="http://app.example/pin.php" Digits="4" Timeout="10" '
        'Repeat="true">\n          <InitialCommands><Speak>Please enter your PIN.</Speak>'
        "</InitialCommands></UserInput></Response>"
    ) == (
        UserInput(
            timeout=10.0,
            repeat=True,
            digits=4,
            forward_to_url="http://app.example/pin.php",
            initial_commands=(Speak(text="Please enter your PIN."),),
        ),
    )
    assert verbs("<Response><GoTo>http://app.example/account.php?id=17</GoTo></Response>") == (
        GoTo(url="http://app.example/account.php?id=17"),
    )


# -- Ozeki's own material ------------------------------------------------------------------------


def test_ozeki_3pcc_hangup_with_unquoted_call_id() -> None:
    script = parse_ozml(
        '<?xml version="1.0"?>\n<Response>\n'
        '  <Speak Party="all">Call ID 23Xdz7 and your call will be hanged up.</Speak>\n'
        '  <Speak Party="all" CallId=23Xdz7>This call will be hanged up.</Speak>\n'
        '  <Hangup CallId="23Xdz7"></Hangup>\n  <Hangup></Hangup>\n</Response>'
    )
    assert script.verbs == (
        Speak(text="Call ID 23Xdz7 and your call will be hanged up.", party="all"),
        Speak(text="This call will be hanged up.", party="all", call_id="23Xdz7"),
        Hangup(call_id="23Xdz7"),
        Hangup(),
    )
    assert script.warnings == ("repaired: line 4: unquoted value of CallId in <Speak> quoted",)


def test_ozeki_senddtmf_misclosed_inside_response() -> None:
    script = parse_ozml(
        '<?xml version="1.0"?> <Response> <Speak Party="caller">You will get dtmf keys 123.</Speak>'
        ' <SendDTMF Party="caller" Keys="123"><SendDTMF> <Speak Party="callee">You will get dtmf '
        'keys 321.</Speak> <SendDTMF Party="callee" Keys="321"><SendDTMF> </Response>'
    )
    assert script.verbs == (
        Speak(text="You will get dtmf keys 123.", party="caller"),
        SendDtmf(keys="123", party="caller"),
        Speak(text="You will get dtmf keys 321.", party="callee"),
        SendDtmf(keys="321", party="callee"),
    )
    assert script.root == "Response"


def test_ozeki_senddtmf_misclosed_without_root() -> None:
    script = parse_ozml(
        '<?xml version="1.0"?>\n<SendDTMF Party="caller" Keys="01234#"><SendDTMF>\n'
    )
    assert script == Script(
        (SendDtmf(keys="01234#", party="caller"),),
        root=None,
        warnings=("repaired: line 2: <SendDTMF> read as the closing tag of <SendDTMF>",),
    )


def test_ozeki_ivr_incomingcall_php() -> None:
    assert verbs(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n   <UserInput '
        'enteredUrl="http://yourapp.com/dtmf_received.php" digits="4" timeout="10" repeat="true">\n'
        "    \t<InitialCommands> \n       \t\t<Speak>Please enter your 4 digits PIN code.</Speak>\n"
        "\t\t</InitialCommands>\n\t</UserInput>\n</Response>"
    ) == (
        UserInput(
            timeout=10.0,
            repeat=True,
            digits=4,
            forward_to_url="http://yourapp.com/dtmf_received.php",
            initial_commands=(Speak(text="Please enter your 4 digits PIN code."),),
        ),
    )


def test_ozeki_ivr_dtmf_received_php_output() -> None:
    # PHP closing tag, blank lines, then the declaration; single-quoted attributes.
    body = (
        '\n\n<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n\t<UserInput '
        "enteredUrl='http://yourapp.com/dtmf_received.php' digits='4' timeout='10' repeat='true'>"
        "<InitialCommands><Speak>The PIN code you entered is invalid. Please give it again."
        "Please enter your 4 digits PIN code again.</Speak></InitialCommands></UserInput>\n"
        "\t</Response>"
    )
    (menu,) = verbs(body.encode())
    assert isinstance(menu, UserInput)
    assert menu.forward_to_url == "http://yourapp.com/dtmf_received.php"
    assert menu.digits == 4 and menu.repeat and menu.timeout == 10.0
    assert verbs(
        '\n\n<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n\t'
        "<GoTo>http://yourapp.com/dtmf_received.php?accountid=17</GoTo>\n\t</Response>"
    ) == (GoTo(url="http://yourapp.com/dtmf_received.php?accountid=17"),)


def test_ozeki_ivr_members_area_php_output() -> None:
    assert verbs(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n\t<UserInput Timeout="5" '
        'Repeat="true"> \n\t\t<InitialCommands> \n\t\t\t<Speak>\n\t\t\t\tThe pin code you entered '
        "is verified.\n\t\t\t\tAccount balance, press 1.\n\t\t\t\tTo call with our customer "
        "representative, press 2.\n\t\t\t</Speak>\n\t\t</InitialCommands> \n\t\t<Inputs> \n"
        '\t\t\t<Input Key="1"> \n\t\t\t\t<Speak>\n\t\t\t\t\t42\n\t\t\t\t</Speak>\n\t\t\t</Input> \n'
        '\t\t\t<Input Key="2"> \n\t\t\t\t<BlindTransfer>2000</BlindTransfer> \n\t\t\t</Input> \n'
        "\t\t</Inputs> \n\t</UserInput> \n</Response>"
    ) == (
        UserInput(
            timeout=5.0,
            repeat=True,
            initial_commands=(
                Speak(
                    text="The pin code you entered is verified. Account balance, press 1. "
                    "To call with our customer representative, press 2."
                ),
            ),
            inputs=(
                Input(key="1", verbs=(Speak(text="42"),)),
                Input(key="2", verbs=(BlindTransfer(target="2000"),)),
            ),
        ),
    )


def test_ozeki_appointment_reminder_without_declaration() -> None:
    assert verbs(
        "<Response>\n\t   <Speak>You have appointment at Room 5 at 10:30\n\t   </Speak>\n"
        "\t</Response>"
    ) == (Speak(text="You have appointment at Room 5 at 10:30"),)


def test_ozeki_hangup_ivr_example_lowercase_attributes() -> None:
    (menu,) = verbs(
        '<?xml version="1.0"?>\n<Response>\n  <UserInput timeout="2" repeat="true">\n'
        "    <InitialCommands>\n      <Speak>To subscribe to the silver package, press 1.</Speak>\n"
        "      <Speak>To subscribe to the golden package, press 2.</Speak>\n"
        '    </InitialCommands>\n    <Inputs>\n      <Input key="1">\n        <Speak>'
        "Congratulation! You subscribed to the silver package. Goodbye!</Speak>\n"
        '        <Hangup></Hangup>\n      </Input>\n      <Input key="2">\n        <Speak>'
        "Congratulation! You subscribed to the golden package. Goodbye!</Speak>\n"
        "        <Hangup></Hangup>\n      </Input>\n    </Inputs>\n  </UserInput>\n</Response>"
    )
    assert isinstance(menu, UserInput)
    assert (menu.timeout, menu.repeat, len(menu.initial_commands)) == (2.0, True, 2)
    assert [item.key for item in menu.inputs] == ["1", "2"]
    assert menu.inputs[1].verbs[1] == Hangup()


def test_ozeki_array_example_lowercase_elements() -> None:
    assert verbs(
        '<?xml version="1.0"?>\n<Response>\n    <array id="sampleArray">\n'
        "        <item>Hello</item>\n        <item>Welcome</item>\n    </array>\n"
        '    <ForEach source="sampleArray">\n'
        "        <speak>$item</speak>\n    </ForEach>\n</Response>"
    ) == (
        Array(id="sampleArray", items=("Hello", "Welcome")),
        ForEach(source="sampleArray", verbs=(Speak(text="$item"),)),
    )


def test_ozeki_alarm_examples_with_ozml_root() -> None:
    script = parse_ozml(
        '<OzML> <ReceiveAlarmNotification> <Received> <SendEmail Recipient="recepient@mail.com" '
        'Message="Account $account, Event name $eventname, Zone $zone" Subject="alarmTest"> '
        "</SendEmail> </Received> </ReceiveAlarmNotification> </OzML>"
    )
    assert script.root == "OzML"
    assert script.verbs == (
        ReceiveAlarmNotification(
            received=(
                SendEmail(
                    recipient="recepient@mail.com",
                    subject="alarmTest",
                    message="Account $account, Event name $eventname, Zone $zone",
                ),
            )
        ),
    )
    assert verbs(
        '<OzML> <SendAlarmNotification PhoneNumber="1000" AccountNumber="1234" EventCode="110" '
        'PartitionNumber="1" ZoneNumber="10" ResultUrl="http://yourapp.com/alarmnotification.php">'
        " </SendAlarmNotification> </OzML>"
    ) == (
        SendAlarmNotification(
            phone_number="1000",
            account_number="1234",
            event_code="110",
            partition_number="1",
            zone_number="10",
            result_url="http://yourapp.com/alarmnotification.php",
        ),
    )


def test_ozeki_call_simple_example() -> None:
    assert verbs(
        '<?xml version="1.0"?>\n<Response>\n  <Call Url="http://yourdomain.com/ozml_example/'
        'call_connected.php" CallerId="3000">2310</Call>\n</Response>'
    ) == (
        Call(
            dialled="2310",
            url="http://yourdomain.com/ozml_example/call_connected.php",
            caller_id="3000",
        ),
    )
