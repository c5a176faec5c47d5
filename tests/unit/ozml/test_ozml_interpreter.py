"""Interpreter: execution model (spec 5.3), contexts (5.4), variables (5.5), verbs (6)."""

from __future__ import annotations

import pytest
from ozml_support import OUT, TPCC, FakePbx, run

from pypbx.ozml import (
    AlarmMessage,
    Ending,
    Interpreter,
    Limits,
    RecordingResult,
    RecordOptions,
    Route,
    Session,
    parse_ozml,
)


@pytest.fixture
def pbx() -> FakePbx:
    return FakePbx()


# -- API extension: answer, end of script, Hangup, Reject ------------------------------------------


async def test_spec_5_1_script_on_an_incoming_call(pbx: FakePbx) -> None:
    outcome = await run(
        pbx, "<Response><Speak>Welcome.</Speak><Delay>1</Delay><Hangup></Hangup></Response>"
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("speak", "c1", "caller", "Welcome."),
        ("delay", "c1", 1.0),
        ("hangup", "c1"),
    ]
    assert outcome.ending is Ending.HUNG_UP


async def test_end_of_script_hangs_up(pbx: FakePbx) -> None:
    outcome = await run(
        pbx,
        '<?xml version="1.0"?>\n<Response>\n  <Delay>1</Delay>\n  <Speak>Your call will be hanged '
        "up in 5 seconds.</Speak>\n  <Delay>5</Delay>\n</Response>",
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("delay", "c1", 1.0),
        ("speak", "c1", "caller", "Your call will be hanged up in 5 seconds."),
        ("delay", "c1", 5.0),
        ("hangup", "c1"),
    ]
    assert outcome.ending is Ending.COMPLETED


async def test_hangup_stops_the_script(pbx: FakePbx) -> None:
    await run(pbx, "<Response><Speak>a</Speak><Hangup/><Speak>never</Speak></Response>")
    assert pbx.actions("speak", "hangup") == [("speak", "c1", "caller", "a"), ("hangup", "c1")]


async def test_call_connected_talks_to_the_callee_and_does_not_answer(pbx: FakePbx) -> None:
    await run(pbx, "<Response><Speak>Happy birthday</Speak></Response>", OUT)
    assert pbx.log == [("speak", "c1", "callee", "Happy birthday"), ("hangup", "c1")]


async def test_reject_as_first_verb(pbx: FakePbx) -> None:
    outcome = await run(pbx, "<Response><Reject></Reject><Speak>never</Speak></Response>")
    assert pbx.log == [("reject", "c1", "busy")]
    assert outcome.ending is Ending.REJECTED


async def test_reject_elsewhere_is_ignored(pbx: FakePbx) -> None:
    outcome = await run(pbx, "<Response><Speak>Hi</Speak><Reject/></Response>")
    assert pbx.log == [("answer", "c1"), ("speak", "c1", "caller", "Hi"), ("hangup", "c1")]
    assert outcome.ending is Ending.COMPLETED
    placed = FakePbx()
    await run(placed, "<Response><Reject/></Response>", OUT)
    assert placed.log == [("hangup", "c1")]


async def test_empty_incoming_call_reply_rejects_unavailable(pbx: FakePbx) -> None:
    outcome = await run(pbx, "")
    assert pbx.log == [("reject", "c1", "unavailable")]
    assert outcome.ending is Ending.REJECTED


async def test_empty_call_connected_reply_hangs_up(pbx: FakePbx) -> None:
    assert (await run(pbx, "   ", OUT)).ending is Ending.COMPLETED
    assert pbx.log == [("hangup", "c1")]


async def test_far_party_hang_up_stops_the_script(pbx: FakePbx) -> None:
    pbx.end_when = lambda entry: entry[:1] == ("speak",) and entry[3] == "Second"
    outcome = await run(
        pbx, "<Response><Speak>First</Speak><Speak>Second</Speak><Speak>Third</Speak></Response>"
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("speak", "c1", "caller", "First"),
        ("speak", "c1", "caller", "Second"),
    ]
    assert outcome.ending is Ending.CALL_GONE


async def test_caller_gone_before_answer(pbx: FakePbx) -> None:
    pbx.end_when = lambda entry: entry[0] == "answer"
    outcome = await run(pbx, "<Speak>Hi</Speak>")
    assert outcome.ending is Ending.CALL_GONE
    assert pbx.log == [("answer", "c1")]


async def test_call_id_and_party_are_ignored_for_an_api_extension(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Response><Speak Party="callee" CallId="other" Language="en-GB" Voice="Anna">Hi</Speak>'
        '<Play CallId="x" Party="all">a.wav</Play><Hangup CallId="other"/></Response>',
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("speak", "c1", "caller", "Hi", "en-GB", "Anna"),
        ("play", "c1", "caller", "a.wav", False, None, True),
        ("hangup", "c1"),
    ]


async def test_verbs_outside_the_api_extension_context(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Response><Hold/><Forward Destination="500"/><Route Destination="1"/>'
        '<AttendedTransfer TargetCallId="b"/><SendDTMF Keys="12#"/><Unhold/></Response>',
    )
    assert pbx.log == [("answer", "c1"), ("send_dtmf", "c1", "caller", "12#"), ("hangup", "c1")]


async def test_failed_action_is_logged_and_the_script_goes_on(pbx: FakePbx) -> None:
    pbx.fail["play"] = "AudioFile: no such file"
    await run(pbx, "<Response><Play>missing.wav</Play><Speak>Still here</Speak></Response>")
    assert pbx.actions("play", "speak") == [
        ("play", "c1", "caller", "missing.wav", False, None, True),
        ("speak", "c1", "caller", "Still here"),
    ]


async def test_verbs_with_empty_mandatory_values_are_skipped(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Response><Var id="empty"></Var><Speak>$empty</Speak><Speak/><Play/><GoTo></GoTo>'
        "<Speak>after</Speak></Response>",
    )
    # The GoTo without a URL ends the script; nothing was said before it.
    assert pbx.log == [("answer", "c1"), ("hangup", "c1")]


async def test_play_repeat_and_timeout(pbx: FakePbx) -> None:
    await run(
        pbx, '<Response><Play Repeat="true" Timeout="30">music/hold.mp3</Play></Response>', OUT
    )
    assert pbx.log[0] == ("play", "c1", "callee", "music/hold.mp3", True, 30.0, True)


async def test_beep_and_files(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Response><Beep/><DeleteFile Path="old.mp3"/><MoveFile Source="a.wav" Target="b/a.wav"/>'
        '<MoveFile Source="a.wav"/></Response>',
        OUT,
    )
    assert pbx.log == [
        ("beep", "c1", "callee"),
        ("delete_file", "old.mp3"),
        ("move_file", "a.wav", "b/a.wav"),
        ("hangup", "c1"),
    ]


# -- variables -------------------------------------------------------------------------------------


async def test_var_and_speak(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Response><Var id="balance">42</Var><Var ID="line">Your balance is $balance</Var>'
        '<Speak Language="en-GB">$line dollars, $$5 fee.</Speak></Response>',
    )
    assert pbx.log[1] == (
        "speak",
        "c1",
        "caller",
        "Your balance is 42 dollars, $5 fee.",
        "en-GB",
        None,
    )


async def test_array_and_foreach(pbx: FakePbx) -> None:
    outcome = await run(
        pbx,
        '<Response><array id="menu"><item>Sales</item><item>Support</item></array>'
        '<Array id="n"><Item>1</Item><Item>2</Item></Array>'
        '<ForEach source="menu"><Speak>$item</Speak>'
        '<ForEach source="n"><Speak>$item</Speak></ForEach><Speak>back to $item</Speak></ForEach>'
        '<ForEach source="nothing"><Speak>never</Speak></ForEach><Speak>$item</Speak></Response>',
        OUT,
    )
    said = [entry[3] for entry in pbx.actions("speak")]
    assert said == [
        "Sales",
        "1",
        "2",
        "back to Sales",
        "Support",
        "1",
        "2",
        "back to Support",
        "$item",
    ]
    assert "item" not in outcome.variables


async def test_variables_survive_goto(pbx: FakePbx) -> None:
    pbx.reply("http://app/next", "<Response><Speak>Hello $name</Speak></Response>")
    outcome = await run(pbx, '<Var id="name">Ann</Var><GoTo>http://app/next</GoTo>', OUT)
    assert pbx.actions("speak") == [("speak", "c1", "callee", "Hello Ann")]
    assert outcome.variables == {"name": "Ann"}


async def test_initial_variables_and_length_cap(pbx: FakePbx) -> None:
    interpreter = Interpreter(
        pbx, pbx, OUT, limits=Limits(max_variable_chars=5), variables={"Who": "Bob"}
    )
    await interpreter.run(parse_ozml('<Var id="long">abcdefgh</Var><Speak>$who $long</Speak>'))
    assert pbx.actions("speak") == [("speak", "c1", "callee", "Bob abcde")]


# -- GoTo ------------------------------------------------------------------------------------------


async def test_goto_replaces_the_rest_of_the_script(pbx: FakePbx) -> None:
    pbx.reply("http://app/menu.php?level=2", "<Response><Speak>Level two</Speak></Response>")
    outcome = await run(
        pbx, "<Response><GoTo>http://app/menu.php?level=2</GoTo><Speak>never</Speak></Response>"
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("fetch", "GoTo", "http://app/menu.php?level=2"),
        ("speak", "c1", "caller", "Level two"),
        ("hangup", "c1"),
    ]
    assert pbx.fetches[0][2] == (("CallId", "c1"), ("ApiExtension", "9994"), ("Caller", "1442"))
    assert outcome.gotos == 1


@pytest.mark.parametrize("reply", [None, "", "not xml at all"])
async def test_goto_failure_ends_the_script(pbx: FakePbx, reply: str | None) -> None:
    pbx.reply("http://app/x", reply)
    outcome = await run(pbx, "<GoTo Url='http://app/x'/><Speak>never</Speak>", OUT)
    assert pbx.log == [("fetch", "GoTo", "http://app/x"), ("hangup", "c1")]
    assert outcome.ending is Ending.COMPLETED


async def test_goto_without_http_url_ends_the_script(pbx: FakePbx) -> None:
    await run(pbx, "<GoTo>SELECT ozml FROM scripts</GoTo><Speak>never</Speak>", OUT)
    assert pbx.log == [("hangup", "c1")]


async def test_goto_limit(pbx: FakePbx) -> None:
    pbx.reply("http://app/loop", *["<GoTo>http://app/loop</GoTo>"] * 200)
    outcome = await run(pbx, "<GoTo>http://app/loop</GoTo>", OUT, limits=Limits(max_gotos=100))
    assert outcome.ending is Ending.LIMIT
    assert outcome.gotos == 100
    assert len(pbx.fetches) == 100
    assert pbx.log[-1] == ("hangup", "c1")


async def test_nesting_limit(pbx: FakePbx) -> None:
    depth = 70
    document = (
        '<Array id="one"><Item>x</Item></Array>'
        + '<ForEach source="one">' * depth
        + "<Speak>deep</Speak>"
        + "</ForEach>" * depth
    )
    outcome = await run(pbx, document, OUT)
    assert outcome.ending is Ending.LIMIT
    assert pbx.log == [("hangup", "c1")]
    roomy = FakePbx()
    outcome = await run(roomy, document, OUT, limits=Limits(max_depth=100))
    assert outcome.ending is Ending.COMPLETED
    assert roomy.log == [("speak", "c1", "callee", "deep"), ("hangup", "c1")]


# -- Record ----------------------------------------------------------------------------------------


async def test_api_extension_record_with_inline_record_completed(pbx: FakePbx) -> None:
    pbx.record_result = RecordingResult(
        record_url="http://pbx:7780/recordings/c1.wav",
        format="wav",
        duration=12.6,
        reason="FinishDigit",
        finish_digit="#",
    )
    pbx.reply("http://app.example/vm_done.php", "<Response><Speak>Saved.</Speak></Response>")
    await run(
        pbx,
        "<Response>\n  <Speak>Leave a message after the tone, press hash to finish.</Speak>\n"
        '  <Record FinishedUrl="http://app.example/vm_done.php" Format="wav" Duration="120" '
        'Inactivity="5" FinishDigits="#"></Record>\n  <Speak>Thank you, goodbye.</Speak>\n'
        "</Response>",
    )
    options = RecordOptions(
        format="wav",
        finished_url="http://app.example/vm_done.php",
        duration=120.0,
        inactivity=5.0,
        finish_digits="#",
    )
    assert pbx.log == [
        ("answer", "c1"),
        ("speak", "c1", "caller", "Leave a message after the tone, press hash to finish."),
        ("record", "c1", "caller", options),
        ("fetch", "RecordCompleted", "http://app.example/vm_done.php"),
        ("speak", "c1", "caller", "Saved."),
        ("speak", "c1", "caller", "Thank you, goodbye."),
        ("hangup", "c1"),
    ]
    assert pbx.fetches[0][2] == (
        ("RecordURL", "http://pbx:7780/recordings/c1.wav"),
        ("CallId", "c1"),
        ("Format", "wav"),
        ("Duration", "13"),
        ("ApiExtension", "9994"),
        ("Reason", "FinishDigit"),
        ("FinishDigit", "#"),
    )


async def test_record_without_duration_gets_the_safety_cap(pbx: FakePbx) -> None:
    await run(pbx, "<Record/>", OUT)
    assert pbx.log[0] == ("record", "c1", "callee", RecordOptions(duration=3600.0))
    assert pbx.fetches == []


async def test_record_ended_by_hang_up_runs_only_call_less_verbs_of_the_reply(pbx: FakePbx) -> None:
    pbx.record_result = RecordingResult(
        record_url="http://pbx/r.mp3", format="mp3", duration=3.0, reason="Hangup"
    )
    pbx.reply(
        "http://app/done",
        '<Response><Speak>gone</Speak><SendSms Recipient="+3630">New voicemail</SendSms>'
        "</Response>",
    )
    outcome = await run(pbx, '<Record FinishedUrl="http://app/done"/><Speak>never</Speak>', OUT)
    assert outcome.ending is Ending.CALL_GONE
    assert [entry[0] for entry in pbx.log] == ["record", "fetch", "send_sms"]


async def test_third_party_record_starts_in_the_background(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Record CallId="x9" Format="wav" FinishedUrl="http://app/r"/>'
        '<Speak Party="all">On</Speak>',
        TPCC,
    )
    assert pbx.log == [
        ("start_recording", "x9", RecordOptions(format="wav", finished_url="http://app/r")),
        ("speak", "c1", "all", "On"),
    ]


# -- transfers and calls ---------------------------------------------------------------------------


BLIND = (
    "<Response>\n  <Speak>Please hold, transferring you to the help desk.</Speak>\n"
    "  <BlindTransfer>1001</BlindTransfer>\n"
    "  <Speak>Sorry, the help desk is not available.</Speak>\n"
    "</Response>"
)


async def test_blind_transfer_success_ends_the_script_without_hang_up(pbx: FakePbx) -> None:
    outcome = await run(pbx, BLIND)
    assert pbx.log[2:] == [("blind_transfer", "c1", "1001", "callee", None, 30.0)]
    assert outcome.ending is Ending.TRANSFERRED


async def test_blind_transfer_failure_continues(pbx: FakePbx) -> None:
    pbx.transfer_ok = False
    outcome = await run(pbx, BLIND)
    assert pbx.log[2:] == [
        ("blind_transfer", "c1", "1001", "callee", None, 30.0),
        ("speak", "c1", "caller", "Sorry, the help desk is not available."),
        ("hangup", "c1"),
    ]
    assert outcome.ending is Ending.COMPLETED


async def test_blind_transfer_from_a_placed_call_transfers_the_callee(pbx: FakePbx) -> None:
    await run(pbx, '<BlindTransfer Target="2000"/>', OUT)
    assert pbx.log == [("blind_transfer", "c1", "2000", "caller", None, 30.0)]


async def test_call_is_non_blocking_with_defaults(pbx: FakePbx) -> None:
    await run(
        pbx,
        "<Response><Speak>We will now call your friend.</Speak>"
        '<Call Url="http://app.example/gift.php" CallerId="3000" CallerDisplayName="Gift Line">2310'
        "</Call><Speak>The call has been started. Goodbye.</Speak></Response>",
    )
    assert pbx.log[2] == (
        "call",
        {
            "dialed": "2310",
            "api_extension": "9994",
            "caller_id": "3000",
            "caller_display_name": "Gift Line",
            "url": "http://app.example/gift.php",
            "error_url": None,
            "response_ozml": None,
            "finished_url": None,
            "ring_time": 90,
        },
    )
    assert pbx.log[3] == ("speak", "c1", "caller", "The call has been started. Goodbye.")


async def test_messages_default_to_the_api_extension(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<SendSms Recipient="+062554670" DeliveryReportURL="http://app/dr">Hi $who</SendSms>'
        '<SendEmail Recipient="ops@example.com" Subject="Missed call">A caller hung up.</SendEmail>'
        '<SendSms Recipient="1"/>',
        Session.call_connected(call_id="c1", api_extension="9994", dialed="1"),
    )
    assert pbx.log[:2] == [
        (
            "send_sms",
            {
                "recipient": "+062554670",
                "message": "Hi $who",
                "sender": None,
                "api_extension": "9994",
                "delivery_report_url": "http://app/dr",
            },
        ),
        (
            "send_email",
            {
                "recipient": "ops@example.com",
                "subject": "Missed call",
                "message": "A caller hung up.",
                "sender": None,
                "api_extension": "9994",
            },
        ),
    ]
    assert pbx.log[2] == ("hangup", "c1")


# -- alarms ----------------------------------------------------------------------------------------


async def test_receive_alarm_sets_variables_for_received(pbx: FakePbx) -> None:
    pbx.alarm = AlarmMessage(
        account="1234",
        event_qualifier="NewEvent",
        event_code="110",
        event_name="Fire",
        partition="01",
        zone="010",
    )
    await run(
        pbx,
        '<OzML> <ReceiveAlarmNotification> <Received> <SendEmail Recipient="r@mail.com" '
        'Message="Account $account, Event name $eventname, Zone $zone" Subject="alarmTest"> '
        "</SendEmail> </Received> </ReceiveAlarmNotification> </OzML>",
    )
    assert pbx.log[2] == (
        "send_email",
        {
            "recipient": "r@mail.com",
            "subject": "alarmTest",
            "message": "Account 1234, Event name Fire, Zone 010",
            "sender": None,
            "api_extension": "9994",
        },
    )


async def test_no_alarm_received_skips_received(pbx: FakePbx) -> None:
    await run(
        pbx,
        "<ReceiveAlarmNotification><Received><Speak>x</Speak></Received></ReceiveAlarmNotification>",
    )
    assert pbx.log == [("answer", "c1"), ("receive_alarm", "c1"), ("hangup", "c1")]


async def test_send_alarm(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<OzML><SendAlarmNotification PhoneNumber="1000" AccountNumber="1234" EventCode="110" '
        'PartitionNumber="1" ZoneNumber="10" ResultUrl="http://yourapp.com/alarm.php"/>'
        '<SendAlarmNotification PhoneNumber="1000"/></OzML>',
        Session.call_less(notification="IncomingSMS", api_extension="9994"),
    )
    assert pbx.log == [
        (
            "send_alarm",
            {
                "phone_number": "1000",
                "account_number": "1234",
                "event_qualifier": "NewEvent",
                "event_code": "110",
                "partition_number": "1",
                "zone_number": "10",
                "api_extension": "9994",
                "result_url": "http://yourapp.com/alarm.php",
            },
        )
    ]


# -- 3PCC ------------------------------------------------------------------------------------------


async def test_ozeki_3pcc_hangup_example(pbx: FakePbx) -> None:
    outcome = await run(
        pbx,
        '<?xml version="1.0"?>\n<Response>\n'
        '  <Speak Party="all">Call ID 23Xdz7 and your call will be hanged up.</Speak>\n'
        '  <Speak Party="all" CallId=23Xdz7>This call will be hanged up.</Speak>\n'
        '  <Hangup CallId="23Xdz7"></Hangup>\n  <Hangup></Hangup>\n</Response>',
        TPCC,
    )
    assert pbx.log == [
        ("speak", "c1", "all", "Call ID 23Xdz7 and your call will be hanged up."),
        ("speak", "23Xdz7", "all", "This call will be hanged up."),
        ("hangup", "23Xdz7"),
        ("hangup", "c1"),
    ]
    assert outcome.ending is Ending.COMPLETED


async def test_3pcc_after_hangup_only_other_calls_are_served(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Hangup/><Speak Party="all">skipped</Speak><Speak Party="caller" CallId="b2">runs</Speak>'
        "<Hold/>",
        TPCC,
    )
    assert pbx.log == [("hangup", "c1"), ("speak", "b2", "caller", "runs")]


async def test_3pcc_call_gone_skips_only_that_verb(pbx: FakePbx) -> None:
    pbx.ended.add("b2")
    await run(
        pbx,
        '<Speak Party="all" CallId="b2">a</Speak><Hold CallId="b2"/>'
        '<Speak Party="callee">b</Speak>',
        TPCC,
    )
    # The first CallGone tells the interpreter; the Hold is skipped without asking the PBX.
    assert pbx.log == [("gone", "speak", "b2"), ("speak", "c1", "callee", "b")]


async def test_3pcc_party_rules(pbx: FakePbx) -> None:
    await run(
        pbx,
        "<Speak>no party</Speak><Play>a.wav</Play><SendDTMF Keys='1'/>"
        '<SendDTMF Party="caller" Keys="01234#"/><Beep Party="callee"/>',
        TPCC,
    )
    assert pbx.log == [
        ("speak", "c1", "all", "no party"),
        ("play", "c1", "all", "a.wav", False, None, True),
        ("send_dtmf", "c1", "caller", "01234#"),
        ("beep", "c1", "callee"),
    ]


async def test_3pcc_repeating_play_runs_in_the_background(pbx: FakePbx) -> None:
    await run(pbx, '<Play Party="caller" Repeat="true">moh.mp3</Play>', TPCC)
    assert pbx.log == [("play", "c1", "caller", "moh.mp3", True, None, False)]


async def test_3pcc_call_control_verbs(pbx: FakePbx) -> None:
    await run(
        pbx,
        '<Hold/><Unhold CallId="x"/><Forward Destination="500"/><Forward/>'
        '<AttendedTransfer TargetCallId="HL1bE" TransferorParty="caller"/>'
        '<AttendedTransfer TransferredCallId="270Okv" TargetCallId="HL1bE"/>'
        '<BlindTransfer TransferorParty="callee" Target="1001" FinishedUrl="http://app/f"/>'
        '<BlindTransfer Target="1001"/>',
        TPCC,
    )
    assert pbx.log == [
        ("hold", "c1"),
        ("unhold", "x"),
        ("forward", "c1", "500"),
        ("attended_transfer", "c1", "HL1bE", "caller"),
        ("attended_transfer", "270Okv", "HL1bE", None),
        ("blind_transfer", "c1", "1001", "callee", "http://app/f", None),
    ]


async def test_3pcc_verbs_outside_the_context(pbx: FakePbx) -> None:
    outcome = await run(
        pbx,
        '<Delay>2</Delay><Var id="x">1</Var><UserInput/><GoTo>http://app/</GoTo><Reject/>'
        '<Route Destination="1"/><Call>100</Call><Call ApiExtension="9994">100</Call>'
        '<SendSms Recipient="+1">m $x</SendSms>',
        TPCC,
    )
    assert [entry[0] for entry in pbx.log] == ["delay", "call", "send_sms"]
    assert pbx.log[0] == ("delay", None, 2.0)
    assert pbx.log[2][1]["message"] == "m 1"
    assert outcome.ending is Ending.COMPLETED


# -- routing and call-less replies -----------------------------------------------------------------


async def test_routing_reply_uses_the_first_route(pbx: FakePbx) -> None:
    outcome = await run(
        pbx,
        '<Response><Speak>x</Speak><Route Destination="voipservice1" DialedNumber="234567" '
        'CallerId="3612222222" RingTime="30"/><Route>1000</Route></Response>',
        Session.routing(call_id="c1"),
    )
    assert pbx.log == [
        (
            "route",
            {
                "destination": "voipservice1",
                "ring_time": 30,
                "caller_id": "3612222222",
                "dialed_number": "234567",
            },
        )
    ]
    assert outcome.route == Route(
        destination="voipservice1", ring_time=30, caller_id="3612222222", dialed_number="234567"
    )


async def test_routing_reply_without_route(pbx: FakePbx) -> None:
    outcome = await run(pbx, "", Session.routing())
    assert outcome.route is None and pbx.log == []
    outcome = await run(pbx, "<Route/>", Session.routing())
    assert outcome.route == Route(destination="")


async def test_call_less_reply_runs_only_call_less_verbs(pbx: FakePbx) -> None:
    outcome = await run(
        pbx,
        '<Speak>x</Speak><Hangup/><SendSms Recipient="+1">Got it</SendSms><Delay>1</Delay>',
        Session.call_less(notification="IncomingSMS", api_extension="9994"),
    )
    assert [entry[0] for entry in pbx.log] == ["send_sms", "delay"]
    assert pbx.log[1] == ("delay", None, 1.0)
    assert outcome.ending is Ending.COMPLETED


async def test_script_for_a_call_that_already_ended(pbx: FakePbx) -> None:
    pbx.ended.add("c1")
    outcome = await Interpreter(pbx, pbx, OUT).run(parse_ozml("<Speak>x</Speak><Speak>y</Speak>"))
    assert outcome.ending is Ending.CALL_GONE
    assert pbx.log == [("gone", "speak", "c1")]
