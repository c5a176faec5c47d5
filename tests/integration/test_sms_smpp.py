"""SMS to and from the outside world through a running pypbx and the test SMSC
(tests/peers/smsc.py): SendSms to a number that is no extension goes out over SMPP, its
delivery receipt becomes SMSDeliveryReport, an SMSC outage only delays it, and a
mobile-originated SMS to an API extension's number becomes IncomingSMS.

The SMSC is asyncio code; it runs on an event loop in a thread of its own so that the
synchronous PbxProcess API can be used from the test.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from peers.pbx import PbxProcess
from peers.ports import PortAllocator
from peers.smsc import Smsc
from peers.webhook import WebServer

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
T = TypeVar("T")


class SmscThread:
    """The test SMSC on its own event loop thread."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.smsc = self.run(self._make(port))
        self.running = False

    @staticmethod
    async def _make(port: int) -> Smsc:
        smsc = Smsc()
        smsc.port = port
        return smsc

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.run(self.smsc.start())
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.run(self.smsc.stop())
            self.running = False

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        self.run(self.smsc.wait_for(predicate, timeout), timeout + 1)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def smsc(ports: PortAllocator) -> Iterator[SmscThread]:
    server = SmscThread(ports.port())
    yield server
    server.close()


def smpp_config(smsc: SmscThread, **extra: str) -> dict[str, dict[str, Any]]:
    table = {
        "host": "127.0.0.1",
        "port": smsc.smsc.port,
        "system_id": "pypbx",
        "password": "secret",
        "source_addr": "+3612345678",
    }
    return {"smpp": table | extra}


@pytest.fixture
def pbx(start_pbx: Any, smsc: SmscThread, web: WebServer) -> PbxProcess:
    smsc.start()
    pbx: PbxProcess = start_pbx(config=smpp_config(smsc))
    pbx.add_api_extension("9994", web.url("/sms?app=1"))
    smsc.run(smsc.smsc.wait_bound(15.0), 16.0)
    return pbx


def send_sms(pbx: PbxProcess, web: WebServer, recipient: str, text: str, **extra: str) -> str:
    result = pbx.api(
        "SendSms",
        ApiExtension="9994",
        Recipient=recipient,
        Message=text,
        DeliveryReportURL=web.url("/dlr"),
        **extra,
    )
    assert (result.code, result.message) == (200, "Command successfully executed"), result.text
    sms_id = result.root.findtext("SmsId") or ""
    assert GUID.fullmatch(sms_id), result.text
    return sms_id


def test_send_sms_to_an_outside_number_with_delivery_report(
    pbx: PbxProcess, smsc: SmscThread, web: WebServer
) -> None:
    sms_id = send_sms(pbx, web, "+36201234567", "Your code is 4711")

    smsc.wait_for(lambda: len(smsc.smsc.messages) == 1)
    [message] = smsc.smsc.messages
    # '+' numbers go out as international (TON 1) digits
    assert (message.source, message.destination) == ("3612345678", "36201234567")
    assert (message.parts[0].source_ton, message.parts[0].dest_ton) == (1, 1)
    assert (message.data_coding, message.text) == (0, "Your code is 4711")
    report = web.wait_for("SMSDeliveryReport")
    assert report.path == "/dlr"
    assert dict(report.fields) | {"DeliveryTime": ""} == {
        "NotificationName": "SMSDeliveryReport",
        "SmsId": sms_id,
        "Recipient": "+36201234567",
        "Sender": "+3612345678",
        "DeliveryStatus": "Delivered",
        "DeliveryTime": "",
        "ApiExtension": "9994",
    }


def test_long_and_unicode_sms(pbx: PbxProcess, smsc: SmscThread, web: WebServer) -> None:
    long_text = "".join(f"part {i:03d} of a long message. " for i in range(20))  # 580 chars
    unicode_text = "Привет из офиса ☎"
    send_sms(pbx, web, "+36201234567", long_text, Sender="+3699")
    send_sms(pbx, web, "36309876543", unicode_text)

    smsc.wait_for(lambda: len(smsc.smsc.messages) == 2)
    by_text = {m.text: m for m in smsc.smsc.messages}
    long_message = by_text[long_text]
    assert len(long_message.parts) == 4 and long_message.data_coding == 0
    assert long_message.source == "3699"
    assert by_text[unicode_text].data_coding == 8  # UCS-2
    assert by_text[unicode_text].destination == "36309876543"
    deadline = time.monotonic() + 15
    while len(web.named("SMSDeliveryReport")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    reports = web.named("SMSDeliveryReport")
    assert [r.field("DeliveryStatus") for r in reports] == ["Delivered", "Delivered"]


def test_sms_waits_while_the_smsc_is_down(start_pbx: Any, smsc: SmscThread, web: WebServer) -> None:
    pbx: PbxProcess = start_pbx(config=smpp_config(smsc))  # SMSC not started yet
    pbx.add_api_extension("9994", web.url("/sms"))
    sms_id = send_sms(pbx, web, "+36201234567", "queued while the SMSC is away")
    time.sleep(1.0)
    assert web.named("SMSDeliveryReport") == []

    smsc.start()
    smsc.wait_for(lambda: len(smsc.smsc.messages) == 1, timeout=30.0)
    assert smsc.smsc.messages[0].text == "queued while the SMSC is away"
    report = web.wait_for("SMSDeliveryReport", timeout=15.0)
    assert (report.field("SmsId"), report.field("DeliveryStatus")) == (sms_id, "Delivered")


def test_unsent_sms_is_submitted_after_a_restart(
    start_pbx: Any, smsc: SmscThread, web: WebServer
) -> None:
    pbx: PbxProcess = start_pbx(config=smpp_config(smsc))  # SMSC not started yet
    pbx.add_api_extension("9994", web.url("/sms"))
    sms_id = send_sms(pbx, web, "+36201234567", "survives a restart")
    assert pbx.stop() == 0

    smsc.start()
    pbx.start()
    smsc.wait_for(lambda: len(smsc.smsc.messages) == 1, timeout=30.0)
    assert smsc.smsc.messages[0].text == "survives a restart"
    report = web.wait_for("SMSDeliveryReport", timeout=15.0)
    assert (report.field("SmsId"), report.field("DeliveryStatus")) == (sms_id, "Delivered")


def test_undeliverable_sms_is_reported_failed(
    pbx: PbxProcess, smsc: SmscThread, web: WebServer
) -> None:
    smsc.smsc.receipt_for["36207654321"] = "UNDELIV"  # the SMSC sees digits (TON 1)
    sms_id = send_sms(pbx, web, "+36207654321", "nobody there")
    report = web.wait_for("SMSDeliveryReport")
    assert (report.field("SmsId"), report.field("DeliveryStatus")) == (sms_id, "Failed")


def test_incoming_sms_to_an_api_extension_number(
    pbx: PbxProcess, smsc: SmscThread, web: WebServer
) -> None:
    smsc.run(smsc.smsc.deliver("+36201111111", "9994", "Hello from a mobile ☺"))

    note = web.wait_for("IncomingSMS")
    assert note.path == "/sms?app=1"
    assert GUID.fullmatch(note.field("SmsId"))
    assert dict(note.fields) | {"SmsId": "", "ReceivedTime": ""} == {
        "NotificationName": "IncomingSMS",
        "ApiExtension": "9994",
        "SmsId": "",
        "Sender": "+36201111111",
        "Recipient": "9994",
        "Message": "Hello from a mobile ☺",
        "ReceivedTime": "",
    }


def test_incoming_sms_for_another_number_goes_to_the_catch_all_extension(
    start_pbx: Any, smsc: SmscThread, web: WebServer
) -> None:
    smsc.start()
    pbx: PbxProcess = start_pbx(
        config=smpp_config(smsc, incoming_api_extension="9996"),
    )
    pbx.add_api_extension("9996", web.url("/inbox"))
    smsc.run(smsc.smsc.wait_bound(15.0), 16.0)
    smsc.run(smsc.smsc.deliver("+36201111111", "+3612345678", "to the company number"))

    note = web.wait_for("IncomingSMS")
    assert note.path == "/inbox"
    assert note.field("ApiExtension") == "9996"
    assert note.field("Recipient") == "+3612345678"
    assert note.field("Message") == "to the company number"
