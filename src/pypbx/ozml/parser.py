"""`parse_ozml`: an application's reply, however it is spelled, to a typed Script (spec 5.1-5.2).

Pure and synchronous: no I/O, no clock, so the notification code can parse a body in place and
tests can feed vectors directly. The XML itself is read by defusedxml with DTDs forbidden
(entity-expansion bombs live there) and the document size capped, because the body comes from
any web server an administrator configured.

Order of work: decode, strip what may precede the root (BOM, blank lines, declaration), wrap in
a private element (so a bare list of verbs and a proper `<Response>` read alike), parse; only
if that fails, `repair` the text and parse again. Names are then matched case-insensitively
and aliases resolved while building the verbs; unknown elements are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from pypbx.ozml import values
from pypbx.ozml.errors import OzmlError
from pypbx.ozml.repair import decode, repair, strip_prolog
from pypbx.ozml.verbs import (
    Array,
    AttendedTransfer,
    Beep,
    BlindTransfer,
    Call,
    Delay,
    DeleteFile,
    ForEach,
    Forward,
    GoTo,
    Hangup,
    Hold,
    Input,
    MoveFile,
    Play,
    ReceiveAlarmNotification,
    Record,
    Reject,
    Route,
    Script,
    SendAlarmNotification,
    SendDtmf,
    SendEmail,
    SendSms,
    Speak,
    Unhold,
    UserInput,
    Var,
    Verb,
)

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_ELEMENT_DEPTH = 200  # far beyond 64 nested UserInputs, far below Python's recursion limit

_WRAPPER = "__pypbx_ozml__"
_ROOTS = {"response": "Response", "ozml": "OzML"}


def parse_ozml(document: str | bytes, *, max_size: int = MAX_DOCUMENT_BYTES) -> Script:
    """Parse an OzML reply. An empty or whitespace-only body is a Script without verbs.

    Raises OzmlError when the document is too large, is not XML even after the leniency rules
    of spec 5.2, or is XML that is not OzML (no Response/OzML root and no known verb).
    """
    if len(document) > max_size:
        raise OzmlError(f"document larger than {max_size} bytes")
    text = decode(document) if isinstance(document, bytes) else document
    body, skipped_lines = strip_prolog(text)
    if not body.strip():
        return Script((), root=None)
    wrapper, notes = _parse_xml(body, skipped_lines)
    _check_depth(wrapper)
    builder = _Builder(notes)
    verbs, root = builder.document(wrapper)
    for warning in builder.warnings:
        logger.info("OzML: %s", warning)
    return Script(verbs, root=root, warnings=tuple(builder.warnings))


def _parse_xml(body: str, skipped_lines: int) -> tuple[Element, list[str]]:
    try:
        return _fromstring(body), []
    except (ParseError, DefusedXmlException, ValueError):
        pass
    repaired, notes = repair(body, skipped_lines)
    try:
        return _fromstring(repaired), notes
    except DefusedXmlException as exc:
        raise OzmlError(f"refused by the XML guard: {exc}") from exc
    except ParseError as exc:
        reason = str(exc).split(":", 1)[0]
        line = exc.position[0] + skipped_lines
        raise OzmlError(f"not well-formed XML ({reason}) at line {line}") from exc
    except ValueError as exc:
        raise OzmlError(f"not well-formed XML ({exc})") from exc


def _fromstring(body: str) -> Element:
    root: Element = fromstring(f"<{_WRAPPER}>{body}</{_WRAPPER}>", forbid_dtd=True)
    return root


def _check_depth(wrapper: Element) -> None:
    stack: list[tuple[Element, int]] = [(wrapper, 0)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_ELEMENT_DEPTH:
            raise OzmlError(f"elements nested deeper than {MAX_ELEMENT_DEPTH} levels")
        stack.extend((child, depth + 1) for child in element)


def _name(element: Element) -> str:
    tag = element.tag if isinstance(element.tag, str) else ""
    return tag.rsplit("}", 1)[-1].casefold()


def _text(element: Element) -> str:
    return "".join(element.itertext()).strip()


def _own_text(element: Element) -> str:
    """Text directly inside `element`, not inside its children."""
    return (element.text or "") + "".join(child.tail or "" for child in element)


def _attributes(element: Element) -> dict[str, str]:
    """Attribute names folded to lower case; of two spellings the first non-empty wins."""
    attrs: dict[str, str] = {}
    for key, value in element.attrib.items():
        name = key.rsplit("}", 1)[-1].casefold()
        if name not in attrs or (not attrs[name].strip() and value.strip()):
            attrs[name] = value
    return attrs


class _Builder:
    """Builds verbs from elements, collecting a warning for everything it skips."""

    def __init__(self, notes: Iterable[str]) -> None:
        self.warnings: list[str] = [f"repaired: {note}" for note in notes]
        self._verbs: dict[str, Callable[[Element], Verb | None]] = {
            "speak": self.speak,
            "play": self.play,
            "delay": self.delay,
            "record": self.record,
            "userinput": self.user_input,
            "goto": self.goto,
            "hangup": self.hangup,
            "call": self.call,
            "blindtransfer": self.blind_transfer,
            "attendedtransfer": self.attended_transfer,
            "forward": self.forward,
            "forwardcall": self.forward,
            "hold": lambda el: Hold(call_id=self.attr(el, "callid")),
            "unhold": lambda el: Unhold(call_id=self.attr(el, "callid")),
            "reject": lambda el: Reject(),
            "senddtmf": self.send_dtmf,
            "sendsms": self.send_sms,
            "sendemail": self.send_email,
            "var": self.var,
            "array": self.array,
            "foreach": self.for_each,
            "route": self.route,
            "deletefile": lambda el: DeleteFile(path=self.attr(el, "path") or ""),
            "movefile": self.move_file,
            "sendalarmnotification": self.send_alarm,
            "receivealarmnotification": self.receive_alarm,
            "beep": self.beep,
        }

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- document and blocks ---------------------------------------------------------------

    def document(self, wrapper: Element) -> tuple[tuple[Verb, ...], str | None]:
        stray = _own_text(wrapper).strip()
        if stray:
            raise OzmlError(f"text outside any element: {stray[:40]!r}")
        top = list(wrapper)
        roots = [el for el in top if _name(el) in _ROOTS]
        if not roots and top and not any(_name(el) in self._verbs for el in top):
            raise OzmlError(f"not OzML: no Response root and no known verb (found <{top[0].tag}>)")
        if len(top) == 1 and roots:
            root = roots[0]
            self.ignore_text(root)
            return self.verbs(list(root)), _ROOTS[_name(root)]
        if roots:
            self.warn("several top-level elements; the verbs of each root are run in order")
        elements: list[Element] = []
        for element in top:
            if _name(element) in _ROOTS:
                self.ignore_text(element)
                elements.extend(element)
            else:
                elements.append(element)
        return self.verbs(elements), None

    def ignore_text(self, container: Element) -> None:
        stray = _own_text(container).strip()
        if stray:
            self.warn(f"text {stray[:40]!r} inside <{container.tag}> ignored")

    def verbs(self, elements: Iterable[Element]) -> tuple[Verb, ...]:
        result: list[Verb] = []
        for element in elements:
            build = self._verbs.get(_name(element))
            if build is None:
                self.warn(f"unknown element <{element.tag}> skipped")
                continue
            verb = build(element)
            if verb is not None:
                result.append(verb)
        return tuple(result)

    def block(self, container: Element) -> tuple[Verb, ...]:
        self.ignore_text(container)
        return self.verbs(container)

    # -- values ------------------------------------------------------------------------------

    def attr(self, element: Element, *names: str) -> str | None:
        """The first non-empty of the named attributes, trimmed; "" if only empty ones exist."""
        attrs = _attributes(element)
        found = [attrs[name].strip() for name in names if name in attrs]
        return next((value for value in found if value), "" if found else None)

    def value(self, element: Element, *names: str) -> str:
        """Attribute-or-text value (spec 5.1): a non-empty attribute wins over the text."""
        return self.attr(element, *names) or _text(element)

    def what(self, element: Element, attribute: str) -> str:
        return f"{element.tag} {attribute}"

    # -- verbs -------------------------------------------------------------------------------

    def speak(self, el: Element) -> Verb:
        return Speak(
            text=values.collapse_whitespace(self.value(el, "text")),
            party=values.parse_party(self.attr(el, "party"), self.what(el, "Party"), self.warn),
            call_id=self.attr(el, "callid") or None,
            language=self.attr(el, "language") or None,
            voice=self.attr(el, "voice") or None,
        )

    def play(self, el: Element) -> Verb:
        return Play(
            audio_file=self.value(el, "audiofile"),
            party=values.parse_party(self.attr(el, "party"), self.what(el, "Party"), self.warn),
            call_id=self.attr(el, "callid") or None,
            repeat=values.parse_bool(self.attr(el, "repeat")),
            timeout=values.parse_seconds(self.attr(el, "timeout"), "Play Timeout", self.warn),
        )

    def delay(self, el: Element) -> Verb:
        raw = self.value(el, "time")
        seconds = values.parse_seconds(raw, "Delay Time", self.warn)
        return Delay(time=seconds or 0.0)

    def record(self, el: Element) -> Verb:
        return Record(
            call_id=self.attr(el, "callid") or None,
            format=values.parse_format(self.attr(el, "format"), self.warn),
            finished_url=self.attr(el, "finishedurl") or None,
            duration=values.parse_seconds(self.attr(el, "duration"), "Record Duration", self.warn),
            inactivity=values.parse_seconds(
                self.attr(el, "inactivity"), "Record Inactivity", self.warn
            ),
            finish_digits=self.attr(el, "finishdigits") or "",
            record_path=self.attr(el, "recordpath") or None,
        )

    def user_input(self, el: Element) -> Verb:
        initial: list[Verb] = []
        inputs: list[Input] = []
        for child in el:
            name = _name(child)
            if name == "initialcommands":
                initial.extend(self.block(child))
            elif name == "inputs":
                self.ignore_text(child)
                for item in child:
                    if _name(item) == "input":
                        inputs.extend(self.input(item))
                    else:
                        self.warn(f"<{item.tag}> inside <{child.tag}> skipped")
            elif name == "input":
                inputs.extend(self.input(child))
            else:
                self.warn(f"<{child.tag}> inside <{el.tag}> skipped")
        warn = self.warn
        return UserInput(
            timeout=values.parse_seconds(self.attr(el, "timeout"), "UserInput Timeout", warn)
            or 0.0,
            repeat=values.parse_bool(self.attr(el, "repeat")),
            back_key=self.attr(el, "backkey") or None,
            digits=values.parse_count(self.attr(el, "digits"), "UserInput Digits", warn),
            min_digits=values.parse_count(self.attr(el, "mindigits"), "UserInput MinDigits", warn),
            max_digits=values.parse_count(self.attr(el, "maxdigits"), "UserInput MaxDigits", warn),
            forward_to_url=self.attr(el, "forwardtourl", "enteredurl") or None,
            execute_sql=self.attr(el, "executesql") or None,
            initial_commands=tuple(initial),
            inputs=tuple(inputs),
        )

    def input(self, el: Element) -> list[Input]:
        key = self.attr(el, "key")
        if not key:
            self.warn(f"<{el.tag}> without Key skipped")
            return []
        return [Input(key=key, verbs=self.block(el))]

    def goto(self, el: Element) -> Verb:
        return GoTo(url=self.value(el, "url"))

    def hangup(self, el: Element) -> Verb:
        return Hangup(call_id=self.attr(el, "callid") or None)

    def call(self, el: Element) -> Verb:
        ring_time = values.parse_count(self.attr(el, "ringtime"), "Call RingTime", self.warn)
        return Call(
            dialled=self.value(el, "dialled", "dialed"),
            api_extension=self.attr(el, "apiextension") or None,
            caller_id=self.attr(el, "callerid") or None,
            caller_display_name=self.attr(el, "callerdisplayname") or None,
            url=self.attr(el, "url") or None,
            error_url=self.attr(el, "errorurl") or None,
            response_ozml=self.attr(el, "responseozml") or None,
            finished_url=self.attr(el, "finishedurl") or None,
            ring_time=ring_time if ring_time is not None else 90,
        )

    def blind_transfer(self, el: Element) -> Verb:
        raw_party = self.attr(el, "transferorparty", "tranferorparty")
        return BlindTransfer(
            target=self.value(el, "target"),
            transferor_party=values.parse_leg(raw_party, "TransferorParty", self.warn),
            call_id=self.attr(el, "callid") or None,
            finished_url=self.attr(el, "finishedurl") or None,
        )

    def attended_transfer(self, el: Element) -> Verb:
        raw_party = self.attr(el, "transferorparty", "tranferorparty")
        return AttendedTransfer(
            target_call_id=self.attr(el, "targetcallid") or "",
            transferred_call_id=self.attr(el, "transferredcallid", "tranferredcallid") or None,
            transferor_party=values.parse_leg(raw_party, "TransferorParty", self.warn),
        )

    def forward(self, el: Element) -> Verb:
        return Forward(
            destination=self.attr(el, "destination") or "",
            call_id=self.attr(el, "callid") or None,
        )

    def send_dtmf(self, el: Element) -> Verb:
        return SendDtmf(
            keys=self.attr(el, "keys") or "",
            party=values.parse_party(self.attr(el, "party"), self.what(el, "Party"), self.warn),
            call_id=self.attr(el, "callid") or None,
        )

    def send_sms(self, el: Element) -> Verb:
        return SendSms(
            recipient=self.attr(el, "recipient") or "",
            message=self.value(el, "message"),
            sender=self.attr(el, "sender") or None,
            api_extension=self.attr(el, "apiextension") or None,
            delivery_report_url=self.attr(el, "deliveryreporturl", "delivaryreporturl") or None,
        )

    def send_email(self, el: Element) -> Verb:
        return SendEmail(
            recipient=self.attr(el, "recipient") or "",
            subject=self.attr(el, "subject") or "",
            message=self.value(el, "message"),
            sender=self.attr(el, "sender") or None,
            api_extension=self.attr(el, "apiextension") or None,
        )

    def var(self, el: Element) -> Verb:
        return Var(id=self.attr(el, "id") or "", value=self.value(el, "value"))

    def array(self, el: Element) -> Verb:
        items: list[str] = []
        self.ignore_text(el)
        for child in el:
            if _name(child) == "item":
                items.append(self.value(child, "value"))
            else:
                self.warn(f"<{child.tag}> inside <{el.tag}> skipped")
        return Array(id=self.attr(el, "id") or "", items=tuple(items))

    def for_each(self, el: Element) -> Verb:
        return ForEach(source=self.attr(el, "source") or "", verbs=self.block(el))

    def route(self, el: Element) -> Verb:
        ring_time = values.parse_count(self.attr(el, "ringtime"), "Route RingTime", self.warn)
        return Route(
            destination=self.value(el, "destination"),
            ring_time=ring_time if ring_time is not None else 90,
            caller_id=self.attr(el, "callerid") or None,
            dialed_number=self.attr(el, "dialednumber") or None,
        )

    def move_file(self, el: Element) -> Verb:
        return MoveFile(source=self.attr(el, "source") or "", target=self.attr(el, "target") or "")

    def send_alarm(self, el: Element) -> Verb:
        return SendAlarmNotification(
            phone_number=self.attr(el, "phonenumber") or "",
            account_number=self.attr(el, "accountnumber") or "",
            event_code=self.attr(el, "eventcode") or "",
            partition_number=self.attr(el, "partitionnumber") or "",
            zone_number=self.attr(el, "zonenumber") or "",
            event_qualifier=self.attr(el, "eventqualifier") or "NewEvent",
            api_extension=self.attr(el, "apiextension") or None,
            result_url=self.attr(el, "resulturl") or None,
        )

    def receive_alarm(self, el: Element) -> Verb:
        received: list[Verb] = []
        for child in el:
            if _name(child) == "received":
                received.extend(self.block(child))
            else:
                self.warn(f"<{child.tag}> inside <{el.tag}> skipped")
        return ReceiveAlarmNotification(received=tuple(received))

    def beep(self, el: Element) -> Verb:
        return Beep(
            party=values.parse_party(self.attr(el, "party"), self.what(el, "Party"), self.warn),
            call_id=self.attr(el, "callid") or None,
        )
