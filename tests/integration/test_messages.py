"""Text messages through pypbx: SIP MESSAGE between phones (RFC 3428), store-and-forward to
phones that are offline or failing, IncomingSMS for API extensions, and the SendSms command.

SIPp plays the phones where the exact messages matter (uac_message.xml sends, uas_message.xml
receives and answers with -key reply); two baresip softphones show it working between real
phones. The receiving SIPp registers with register.xml from the port its scenario then listens
on, as in the call tests.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from peers.baresip import BaresipAccount, BaresipPhone
from peers.flows import SippFactory, register
from peers.pbx import PbxProcess
from peers.ports import PortAllocator
from peers.sipp import Sipp, SippError, SippResult, TracedMessage
from peers.tones import write_tone
from peers.webhook import WebServer

SENDER = ("1000", "pw-1000")
RECIPIENT = ("2000", "pw-2000")
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TEXT_PLAIN = "text/plain;charset=UTF-8"


@pytest.fixture
def pbx(start_pbx: Any, web: WebServer) -> PbxProcess:
    pbx: PbxProcess = start_pbx()
    for ext, password in (SENDER, RECIPIENT, ("3000", "pw-3000")):
        pbx.add_sip_extension(ext, password)
    pbx.add_api_extension("9994", web.url("/sms?app=1"))
    pbx.add_api_extension("9995")  # no URL: takes no messages
    return pbx


def send(
    pbx: PbxProcess, sipp: SippFactory, to: str, text: str, ctype: str = TEXT_PLAIN
) -> SippResult:
    """Extension 1000 sends one MESSAGE to `to`; the run must follow its script."""
    run = sipp(
        "uac_message",
        remote=pbx.sip_address,
        service=to,
        auth=SENDER,
        keys={"caller": SENDER[0], "ctype": ctype, "text": text},
    )
    result = run.run()
    assert result.ok, result.describe()
    return result


def final_status(result: SippResult) -> int:
    finals = [m.status for m in result.received(method="MESSAGE") if (m.status or 0) >= 200]
    assert finals, result.describe()
    return finals[-1]


def sent_message(result: SippResult) -> TracedMessage:
    """The authenticated MESSAGE a sender run sent (its second one)."""
    return [m for m in result.trace() if m.sent and m.method == "MESSAGE"][-1]


def receiver(sipp: SippFactory, port: int, *, busy: bool = False, count: int = 1) -> Sipp:
    """A phone on an already registered `port` answering `count` MESSAGEs 200 (480 if busy)."""
    variables = {"busy": "yes" if busy else "no"}
    run = sipp("uas_message", local_port=port, variables=variables, calls=count, timeout=30)
    run.start()
    try:
        run.wait_until_listening()
    except SippError:
        # A message that waited for this phone may arrive, and be answered, before the probe
        # sees the port bound; only a failed run is an error.
        if run.proc is None or run.proc.wait() != 0:
            raise
    return run


def received(run: Sipp) -> list[TracedMessage]:
    result = run.wait()
    assert result.ok, result.describe()
    return result.received(method="MESSAGE")


def assert_relayed(got: TracedMessage, sent_body: str, sender: str, port: int) -> None:
    """pypbx's own MESSAGE: to the registered contact, from the sender's number at pypbx."""
    assert got.first_line == f"MESSAGE sip:{RECIPIENT[0]}@127.0.0.1:{port};transport=UDP SIP/2.0"
    assert re.fullmatch(
        rf'(".*" )?<sip:{re.escape(sender)}@127\.0\.0\.1>;tag=\w+', got.require("From")
    )
    assert got.require("To") == f"<sip:{RECIPIENT[0]}@127.0.0.1>"
    assert got.require("CSeq") == "1 MESSAGE"
    assert got.require("Date").endswith(" GMT")
    assert got.body == sent_body


# ---- phone to phone ----------------------------------------------------------------------


def test_message_to_a_registered_phone(pbx: PbxProcess, sipp: SippFactory) -> None:
    reg = register(pbx, sipp, *RECIPIENT)
    phone = receiver(sipp, reg.local_port)

    result = send(pbx, sipp, RECIPIENT[0], "Grüße aus Zimmer 1000 ☎")

    assert final_status(result) == 202
    [challenge] = result.received(status=407)
    assert challenge.require("Proxy-Authenticate").startswith("Digest ")
    [got] = received(phone)
    body = sent_message(result).body
    assert "Grüße aus Zimmer 1000 ☎" in body
    assert_relayed(got, body, SENDER[0], reg.local_port)
    assert got.require("From").startswith('"Phone 1000" <sip:1000@')
    assert got.require("Content-Type") == TEXT_PLAIN


def test_other_content_types_are_relayed(pbx: PbxProcess, sipp: SippFactory) -> None:
    reg = register(pbx, sipp, *RECIPIENT)
    phone = receiver(sipp, reg.local_port)
    result = send(pbx, sipp, RECIPIENT[0], '{"t":1}', ctype="application/json")
    assert final_status(result) == 202
    [got] = received(phone)
    assert got.require("Content-Type") == "application/json"
    assert got.body == sent_message(result).body


def test_offline_phone_gets_the_message_when_it_registers_even_after_a_restart(
    pbx: PbxProcess, sipp: SippFactory
) -> None:
    result = send(pbx, sipp, RECIPIENT[0], "while you were out")
    assert final_status(result) == 202

    assert pbx.stop() == 0  # stored, not in memory: a restart keeps it
    pbx.start()

    reg = register(pbx, sipp, *RECIPIENT)
    # pypbx sends as soon as the REGISTER is answered, maybe before this SIPp listens on the
    # port: its retransmission (Timer E) is then what arrives.
    phone = receiver(sipp, reg.local_port)
    [got] = received(phone)
    assert_relayed(got, sent_message(result).body, SENDER[0], reg.local_port)


def test_a_failing_phone_gets_the_message_again_at_its_next_registration(
    pbx: PbxProcess, sipp: SippFactory
) -> None:
    reg = register(pbx, sipp, *RECIPIENT)
    busy = receiver(sipp, reg.local_port, busy=True)
    result = send(pbx, sipp, RECIPIENT[0], "try again later")
    assert final_status(result) == 202
    [first] = received(busy)

    register(pbx, sipp, *RECIPIENT, local_port=reg.local_port)  # the phone's next REGISTER
    phone = receiver(sipp, reg.local_port)
    [again] = received(phone)
    assert again.body == first.body == sent_message(result).body
    assert again.require("Call-ID") != first.require("Call-ID")

    # delivered now: a further registration brings nothing
    register(pbx, sipp, *RECIPIENT, local_port=reg.local_port)
    idle = sipp("uas_message", local_port=reg.local_port, variables={"busy": "no"}, timeout=3)
    idle.start().wait_until_listening()
    assert idle.wait().received(method="MESSAGE") == []


@pytest.mark.parametrize(
    ("to", "status"),
    [("4711", 404), ("9995", 480)],
    ids=["unknown-extension", "api-extension-without-url"],
)
def test_refused_messages(pbx: PbxProcess, sipp: SippFactory, to: str, status: int) -> None:
    assert final_status(send(pbx, sipp, to, "anyone there?")) == status


def test_message_to_an_api_extension_is_incoming_sms(
    pbx: PbxProcess, sipp: SippFactory, web: WebServer
) -> None:
    result = send(pbx, sipp, "9994", "Bitte um Rückruf")
    assert final_status(result) == 202
    note = web.wait_for("IncomingSMS")
    assert note.path == "/sms?app=1"
    assert [name for name, _ in note.fields] == [
        "NotificationName",
        "ApiExtension",
        "SmsId",
        "Sender",
        "Recipient",
        "Message",
        "ReceivedTime",
    ]
    assert (note.field("ApiExtension"), note.field("Sender"), note.field("Recipient")) == (
        "9994",
        "1000",
        "9994",
    )
    assert note.field("Message") == "Bitte um Rückruf\r\n"  # SIPp ends its bodies with CRLF
    assert GUID.fullmatch(note.field("SmsId"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", note.field("ReceivedTime"))


# ---- SendSms -----------------------------------------------------------------------------


def test_send_sms_to_a_phone_with_delivery_report(
    pbx: PbxProcess, sipp: SippFactory, web: WebServer
) -> None:
    reg = register(pbx, sipp, *RECIPIENT)
    phone = receiver(sipp, reg.local_port)

    result = pbx.api(
        "SendSms",
        ApiExtension="9994",
        Recipient=RECIPIENT[0],
        Message="Your code is 4711",
        DeliveryReportURL=web.url("/dlr"),
    )

    assert (result.code, result.message) == (200, "Command successfully executed")
    sms_id = result.root.findtext("SmsId") or ""
    assert GUID.fullmatch(sms_id), result.text
    [got] = received(phone)
    assert_relayed(got, "Your code is 4711", "9994", reg.local_port)
    assert got.require("Content-Type") == TEXT_PLAIN
    report = web.wait_for("SMSDeliveryReport")
    assert report.path == "/dlr"
    assert dict(report.fields) | {"DeliveryTime": ""} == {
        "NotificationName": "SMSDeliveryReport",
        "SmsId": sms_id,
        "Recipient": RECIPIENT[0],
        "Sender": "9994",
        "DeliveryStatus": "Delivered",
        "DeliveryTime": "",
        "ApiExtension": "9994",
    }


def test_send_sms_to_an_offline_phone_is_kept(
    pbx: PbxProcess, sipp: SippFactory, web: WebServer
) -> None:
    result = pbx.api(
        "SendSms",
        ApiExtension="9994",
        Sender="+3612345",
        Recipient="3000",
        Message="call me",
        DeliveryReportURL=web.url("/dlr"),
    )
    assert result.code == 200 and GUID.fullmatch(result.root.findtext("SmsId") or "")
    time.sleep(0.5)
    assert web.received == []  # nothing to report yet: the message waits

    reg = register(pbx, sipp, "3000", "pw-3000")
    phone = receiver(sipp, reg.local_port)
    [got] = received(phone)
    assert got.require("From").startswith("<sip:+3612345@127.0.0.1>")
    assert web.wait_for("SMSDeliveryReport").field("DeliveryStatus") == "Delivered"


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (
            {"ApiExtension": "9994", "Recipient": "+36201234567"},
            501,
            "Destination of the SMS is not found",
        ),
        (
            {"ApiExtension": "9999", "Recipient": "2000"},
            401,
            "API extension '9999' unavailable, please check configuration or permissions",
        ),
        (
            {"ApiExtension": "9994"},
            302,
            "Missing or invalid parameter 'Recipient' for command 'SendSms'",
        ),
    ],
)
def test_send_sms_refused(pbx: PbxProcess, params: dict[str, str], code: int, message: str) -> None:
    result = pbx.api("SendSms", Message="hi", **params)
    assert (result.code, result.message) == (code, message)
    assert result.root.find("SmsId") is None


# ---- real phones -------------------------------------------------------------------------


class MessagingPhone(BaresipPhone):
    """baresip with its contact module: `message` sends to the one contact (the other phone's
    number at pypbx); received messages are printed by the menu module to the cons UI, which
    this class reads over TCP."""

    def __init__(self, *args: Any, peer: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer = peer
        self._console: socket.socket | None = None
        self._output = b""
        self._lock = threading.Lock()

    def write_config(self) -> None:
        super().write_config()
        config = self.workdir / "config"
        config.write_text(
            config.read_text().replace(
                "module_app\t\tmenu.so\n", "module_app\t\tmenu.so\nmodule_app\t\tcontact.so\n"
            )
        )
        (self.workdir / "contacts").write_text(f'"peer" <{self.peer}>\n')

    def listen_console(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.cons_port), timeout=2.0)
        sock.settimeout(None)
        self._console = sock

        def read() -> None:
            try:
                while data := sock.recv(4096):
                    with self._lock:
                        self._output += data
            except OSError:
                pass  # closed by stop()

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.2)  # let cons accept the connection before anything is printed

    def wait_for_output(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                text = self._output.decode(errors="replace")
            if re.search(pattern, text):
                return text
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} on {self.account.user}'s console: {text!r}")

    def stop(self, grace: float = 3.0) -> int | None:
        if self._console is not None:
            self._console.close()
        return super().stop(grace)


@pytest.fixture
def messaging_phones(pbx: PbxProcess, tmp_path: Path, ports: PortAllocator) -> Any:
    phones: list[MessagingPhone] = []
    for (ext, password), (peer, _) in ((SENDER, RECIPIENT), (RECIPIENT, SENDER)):
        workdir = tmp_path / f"phone-{ext}"
        workdir.mkdir()
        rtp = ports.block(10)
        phone = MessagingPhone(
            workdir,
            account=BaresipAccount(user=ext, domain=pbx.sip_address, password=password),
            sip_port=ports.port(),
            ctrl_port=ports.port(),
            cons_port=ports.port(),
            rtp_ports=(rtp, rtp + 9),
            tone_wav=write_tone(workdir / "tone.wav", 440.0, 5.0),
            peer=f"sip:{peer}@{pbx.sip_address}",
        )
        phones.append(phone)
        phone.start()
    yield phones
    for phone in phones:
        phone.stop()


def test_real_phones_exchange_messages(messaging_phones: list[MessagingPhone]) -> None:
    alice, bob = messaging_phones
    bob.listen_console()
    alice.listen_console()

    alice.command("message", "Hallo Bob, grüß dich")
    text = bob.wait_for_output(r'sip:1000@127\.0\.0\.1: "Hallo Bob, grüß dich"')
    assert "Hallo Bob" in text

    bob.command("message", "Hi Alice")
    alice.wait_for_output(r'sip:2000@127\.0\.0\.1: "Hi Alice"')
