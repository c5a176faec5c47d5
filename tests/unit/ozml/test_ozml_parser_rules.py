"""parse_ozml: the leniency rules of spec 5.2, values of 5.1, aliases of section 11, errors."""

from __future__ import annotations

import codecs

import pytest

from pypbx.ozml import (
    AttendedTransfer,
    BlindTransfer,
    Call,
    Delay,
    Forward,
    Hangup,
    Input,
    OzmlError,
    Play,
    Record,
    Route,
    Script,
    SendDtmf,
    SendSms,
    Speak,
    UserInput,
    Var,
    parse_ozml,
)
from pypbx.ozml.parser import MAX_DOCUMENT_BYTES


def only(document: str | bytes) -> object:
    (verb,) = parse_ozml(document).verbs
    return verb


# -- document shape ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["", "   ", "\n\r\n\t", "\ufeff  \n"])
def test_empty_reply_means_no_commands(body: str) -> None:
    assert parse_ozml(body) == Script((), root=None)


@pytest.mark.parametrize(
    "document",
    [
        "<Response><Speak>Hi</Speak></Response>",
        '<?xml version="1.0"?><Response><Speak>Hi</Speak></Response>',
        "\n\n\n<?xml version='1.0' encoding='UTF-8'?>\n<Response><Speak>Hi</Speak></Response>",
        "\ufeff<Response><Speak>Hi</Speak></Response>",
        '\ufeff\n  <?xml version="1.0"?><Response><Speak>Hi</Speak></Response>\n\n',
        "<response><speak>Hi</speak></response>",
        "<RESPONSE><SPEAK>Hi</SPEAK></RESPONSE>",
        "<OzML><Speak>Hi</Speak></OzML>",
        "<ozml><Speak>Hi</Speak></ozml>",
        "<Speak>Hi</Speak>",
        "<Response><!-- greeting --><Speak>Hi</Speak></Response>",
        "<Response><?php echo 1; ?><Speak>Hi</Speak></Response>",
        '<Response xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><Speak>Hi</Speak></Response>',
        '<Response xmlns="urn:example"><Speak>Hi</Speak></Response>',
        "<Response><Speak><![CDATA[Hi]]></Speak></Response>",
    ],
)
def test_equivalent_spellings_of_one_document(document: str) -> None:
    assert parse_ozml(document).verbs == (Speak(text="Hi"),)


def test_root_is_reported_in_xe_spelling() -> None:
    assert parse_ozml("<ozml/>").root == "OzML"
    assert parse_ozml("<RESPONSE/>").root == "Response"
    assert parse_ozml("<Hangup/>").root is None


def test_bytes_with_bom_and_declared_encoding() -> None:
    assert only(codecs.BOM_UTF8 + "<Speak>café</Speak>".encode()) == Speak(text="café")
    assert only(codecs.BOM_UTF16_LE + "<Speak>café</Speak>".encode("utf-16-le")) == Speak(
        text="café"
    )
    declared = '<?xml version="1.0" encoding="ISO-8859-2"?><Speak>ő</Speak>'.encode("iso-8859-2")
    assert only(declared) == Speak(text="ő")


def test_undeclared_latin1_bytes_still_read() -> None:
    assert only(b"<Speak>caf\xe9</Speak>") == Speak(text="caf\xe9")


def test_several_roots_and_bare_verbs_run_in_order() -> None:
    script = parse_ozml(
        "<Response><Speak>a</Speak></Response><Hangup/><Response><Delay>1</Delay></Response>"
    )
    assert script.verbs == (Speak(text="a"), Hangup(), Delay(time=1.0))
    assert script.root is None
    assert script.warnings == (
        "several top-level elements; the verbs of each root are run in order",
    )


# -- names and attribute values ------------------------------------------------------------------


def test_element_and_attribute_names_are_case_insensitive() -> None:
    assert only('<SPEAK PARTY="Caller" LANGUAGE="en-us">Hi</SPEAK>') == Speak(
        text="Hi", party="caller", language="en-us"
    )
    assert only(
        '<Userinput TIMEOUT="3" repeat="TRUE" DIGITS="2"><initialcommands/></Userinput>'
    ) == (UserInput(timeout=3.0, repeat=True, digits=2))


def test_end_tag_case_mismatch_is_repaired() -> None:
    script = parse_ozml("<Response><Speak>hi</speak><Hangup/></RESPONSE>")
    assert script.verbs == (Speak(text="hi"), Hangup())
    assert script.warnings == (
        "repaired: line 1: </speak> respelled to match <Speak>",
        "repaired: line 1: </RESPONSE> respelled to match <Response>",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        (" 1 ", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("on", False),
        ("", False),
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert only(f'<Play Repeat="{raw}">a.wav</Play>') == Play(audio_file="a.wav", repeat=expected)


def test_single_quotes_and_unquoted_values() -> None:
    script = parse_ozml(
        "<Response><Play Repeat=true Timeout=5 AudioFile=http://x.example/a.mp3/></Response>"
    )
    assert script.verbs == (Play(audio_file="http://x.example/a.mp3/", repeat=True, timeout=5.0),)
    assert only("<Hangup CallId=23Xdz7/>") == Hangup(call_id="23Xdz7")
    assert only("<Speak Party='callee'>Hi</Speak>") == Speak(text="Hi", party="callee")


def test_attribute_wins_over_text_unless_empty() -> None:
    assert only('<Speak Text="From attribute">From text</Speak>') == Speak(text="From attribute")
    assert only('<Speak Text="  ">From text</Speak>') == Speak(text="From text")
    assert only('<Play AudioFile="a.wav">b.wav</Play>') == Play(audio_file="a.wav")
    assert only('<Call Dialled="100">200</Call>') == Call(dialled="100")
    assert only('<Route Destination="">1000</Route>') == Route(destination="1000")
    assert only('<Var id="x" Value="1">2</Var>') == Var(id="x", value="1")


def test_two_spellings_of_one_attribute_first_non_empty_wins() -> None:
    assert only('<Speak party="" PARTY="all">Hi</Speak>') == Speak(text="Hi", party="all")


def test_text_is_trimmed_and_speak_text_collapsed() -> None:
    assert only("<Speak>\n\t  Hello\n\n   world\t </Speak>") == Speak(text="Hello world")
    assert only('<SendSms Recipient="+36"> line one\n  line two </SendSms>') == SendSms(
        recipient="+36", message="line one\n  line two"
    )
    assert only('<Speak Party=" all ">Hi</Speak>') == Speak(text="Hi", party="all")


def test_aliases_of_section_11() -> None:
    assert only('<Call Dialed="2310" Url="http://a/"/>') == Call(dialled="2310", url="http://a/")
    assert only('<UserInput ForwardToURL="http://a/"/>') == UserInput(forward_to_url="http://a/")
    assert only('<UserInput enteredUrl="http://b/"/>') == UserInput(forward_to_url="http://b/")
    assert only('<SendSms Recipient="1" DelivaryReportURL="http://r/">m</SendSms>') == SendSms(
        recipient="1", message="m", delivery_report_url="http://r/"
    )
    assert only('<AttendedTransfer TranferredCallId="a" TargetCallId="b"/>') == AttendedTransfer(
        transferred_call_id="a", target_call_id="b"
    )
    assert only('<BlindTransfer TranferorParty="callee" Target="1001"/>') == BlindTransfer(
        target="1001", transferor_party="callee"
    )
    assert only('<Record FinishedURL="http://f/"/>') == Record(finished_url="http://f/")
    assert only('<ForwardCall CallId="x" Destination="500"/>') == Forward(
        destination="500", call_id="x"
    )


def test_defaults() -> None:
    assert only("<Call>100</Call>") == Call(dialled="100", ring_time=90)
    assert only("<Route/>") == Route(destination="", ring_time=90)
    assert only("<Record/>") == Record(format="mp3")
    assert only("<UserInput/>") == UserInput(timeout=0.0, repeat=False, digits=None)
    assert only("<Delay/>") == Delay(time=0.0)


def test_numbers_and_enumerations() -> None:
    assert only("<Delay>0.5</Delay>") == Delay(time=0.5)
    assert only('<Record Format="WAV" Duration="60.5"/>') == Record(format="wav", duration=60.5)
    assert only('<UserInput MinDigits="2" MaxDigits="6"/>') == UserInput(min_digits=2, max_digits=6)
    assert only('<BlindTransfer TransferorParty="CALLER">1</BlindTransfer>') == BlindTransfer(
        target="1", transferor_party="caller"
    )


@pytest.mark.parametrize(
    ("document", "verb", "warning"),
    [
        ("<Delay>-3</Delay>", Delay(time=0.0), "Delay Time='-3' is negative; 0 used"),
        ("<Delay>soon</Delay>", Delay(time=0.0), "Delay Time='soon' is not a number; ignored"),
        ("<Delay>nan</Delay>", Delay(time=0.0), "Delay Time='nan' is not a finite number; ignored"),
        (
            '<Record Format="ogg"/>',
            Record(format="mp3"),
            "Format='ogg' is not mp3 or wav; mp3 used",
        ),
        (
            '<Speak Party="both">x</Speak>',
            Speak(text="x"),
            "Speak Party='both' is not caller, callee or all; ignored",
        ),
        (
            '<UserInput Digits="0"/>',
            UserInput(),
            "UserInput Digits='0' is out of range; ignored",
        ),
        (
            '<Call RingTime="$t">1</Call>',
            Call(dialled="1"),
            "Call RingTime='$t' is not a number; ignored",
        ),
        (
            '<BlindTransfer TransferorParty="all">1</BlindTransfer>',
            BlindTransfer(target="1"),
            "TransferorParty='all' is not caller or callee; ignored",
        ),
    ],
)
def test_unreadable_values_fall_back_with_a_warning(
    document: str, verb: object, warning: str
) -> None:
    script = parse_ozml(document)
    assert script.verbs == (verb,)
    assert script.warnings == (warning,)


def test_missing_mandatory_values_are_kept_empty_for_the_interpreter() -> None:
    assert only("<SendDTMF/>") == SendDtmf(keys="")
    assert only("<BlindTransfer/>") == BlindTransfer(target="")


# -- unknown and misplaced elements --------------------------------------------------------------


def test_unknown_elements_are_skipped_with_a_warning() -> None:
    script = parse_ozml("<Response><Beam>x</Beam><Speak>Hi</Speak><SendMsg>y</SendMsg></Response>")
    assert script.verbs == (Speak(text="Hi"),)
    assert script.warnings == (
        "unknown element <Beam> skipped",
        "unknown element <SendMsg> skipped",
    )


def test_userinput_structure_leniency() -> None:
    script = parse_ozml(
        '<UserInput><Input Key="1"><Hangup/></Input><Inputs><Input><Hangup/></Input><Foo/></Inputs>'
        "<Speak>stray</Speak><InitialCommands><Speak>a</Speak></InitialCommands>"
        "<InitialCommands><Speak>b</Speak></InitialCommands></UserInput>"
    )
    assert script.verbs == (
        UserInput(
            initial_commands=(Speak(text="a"), Speak(text="b")),
            inputs=(Input(key="1", verbs=(Hangup(),)),),
        ),
    )
    assert script.warnings == (
        "<Input> without Key skipped",
        "<Foo> inside <Inputs> skipped",
        "<Speak> inside <UserInput> skipped",
    )


def test_stray_text_inside_containers_is_ignored_with_a_warning() -> None:
    script = parse_ozml("<Response>junk<Speak>Hi</Speak></Response>")
    assert script.verbs == (Speak(text="Hi"),)
    assert script.warnings == ("text 'junk' inside <Response> ignored",)


# -- repairs -------------------------------------------------------------------------------------


def test_entities_and_stray_markup_characters() -> None:
    script = parse_ozml("<Speak>AT&T&nbsp;caf&eacute; &lt;ok&gt; a < b &#65;</Speak>")
    assert script.verbs == (Speak(text="AT&T café <ok> a < b A"),)
    assert script.warnings == (
        "repaired: line 1: bare '&' escaped",
        "repaired: line 1: '<' that starts no tag escaped",
    )


def test_unknown_entity_kept_as_text() -> None:
    assert only("<Speak>&bogus; x</Speak>") == Speak(text="&bogus; x")


def test_forbidden_characters_are_dropped() -> None:
    script = parse_ozml("<Speak>\x00Hi\x07</Speak>")
    assert script.verbs == (Speak(text="Hi"),)
    assert script.warnings == ("repaired: line 1: characters not allowed in XML dropped",)


def test_end_tag_mismatches() -> None:
    script = parse_ozml("<Response>\n<Speak>a</Response>")
    assert script.verbs == (Speak(text="a"),)
    assert script.warnings == ("repaired: line 2: <Speak> closed by </Response>",)
    script = parse_ozml("<Response><Speak>a</Speak></Hangup></Response>")
    assert script.warnings == ("repaired: line 1: </Hangup> closes nothing; dropped",)
    script = parse_ozml("<Response>\n<Speak>a</Speak>\n")
    assert script.verbs == (Speak(text="a"),)
    assert script.warnings == (
        "repaired: line 3: <Response> opened on line 1 was never closed; closed",
    )


def test_misclosing_rule_needs_same_name_no_attributes_no_content() -> None:
    # With content in between, a second <Speak> is a (meaningless) child, not a closing tag.
    script = parse_ozml("<Response><Speak>a<Speak>b</Speak></Speak><Hangup/></Response>")
    assert script.verbs == (Speak(text="ab"), Hangup())
    script = parse_ozml('<Response><Play><Play Repeat="1"></Play></Play></Response>')
    assert script.warnings == ()


def test_valueless_and_repeated_attributes() -> None:
    script = parse_ozml('<Response><Play Repeat>a.wav</Play><Speak Text="x" Text="y"/></Response>')
    assert script.verbs == (Play(audio_file="a.wav"), Speak(text="x"))
    assert script.warnings == (
        "repaired: line 1: attribute Repeat of <Play> has no value; empty value used",
        "repaired: line 1: repeated attribute Text in <Speak> dropped",
    )


def test_well_formed_documents_are_not_repaired() -> None:
    document = '<Response><Speak Party="all">a &amp; b</Speak></Response>'
    assert parse_ozml(document).warnings == ()


# -- irrecoverable documents ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("<Response><Speak", "line 1: unterminated <Speak> tag"),
        (
            "<Response>\n<Speak Party='all>hi</Speak>",
            "line 2: unterminated value of Party in <Speak>",
        ),
        ("<Response><!-- hi </Response>", "line 1: unterminated comment"),
        ("<Response><![CDATA[x</Response>", "line 1: unterminated CDATA section"),
        ("<Response><?php echo 1; </Response>", "line 1: unterminated processing instruction"),
        ("<?xml version='1.0'", "unterminated XML declaration at the start of the document"),
        ("hello", "text outside any element: 'hello'"),
        ("<Response></Response> trailing", "text outside any element: 'trailing'"),
        (
            "<html><body>Error 500</body></html>",
            "not OzML: no Response root and no known verb (found <html>)",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>'
            "<Response>&lol;</Response>",
            "line 2: DTDs and entity declarations are not allowed in OzML",
        ),
        ("<oz:Speak>x</oz:Speak>", "not well-formed XML (unbound prefix) at line 1"),
    ],
)
def test_irrecoverable_documents(document: str, message: str) -> None:
    with pytest.raises(OzmlError) as caught:
        parse_ozml(document)
    assert str(caught.value) == message


def test_size_limit() -> None:
    big = "<Response>" + "<Delay>1</Delay>" * (MAX_DOCUMENT_BYTES // 16) + "</Response>"
    with pytest.raises(OzmlError, match=r"^document larger than 262144 bytes$"):
        parse_ozml(big.encode())
    with pytest.raises(OzmlError, match=r"^document larger than 100 bytes$"):
        parse_ozml("<Response>" + " " * 100 + "</Response>", max_size=100)


def test_billion_laughs_is_refused_without_expansion() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Response><Speak>&b;</Speak></Response>'
    )
    with pytest.raises(OzmlError, match="DTDs and entity declarations are not allowed"):
        parse_ozml(bomb)


def test_deep_nesting_is_refused() -> None:
    deep = "<ForEach>" * 250 + "</ForEach>" * 250
    with pytest.raises(OzmlError, match=r"^elements nested deeper than 200 levels$"):
        parse_ozml(deep)
