"""SmppGateway against the test SMSC (tests/peers/smsc.py): bind, submit, encodings, long
messages, receipts, incoming SMS, reconnects, refused binds and submits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from peers.smsc import BIND_TRANSCEIVER, Smsc
from pypbx.messaging.smpp import (
    SmppClosedError,
    SmppGateway,
    SmppRejectedError,
    SmppSettings,
)


class Events:
    """What the gateway called back with, and a way to wait for it."""

    def __init__(self) -> None:
        self.receipts: list[tuple[str, str]] = []
        self.incoming: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()

    def on_receipt(self, message_id: str, state: str) -> None:
        self.receipts.append((message_id, state))
        self.changed.set()

    def on_incoming(self, sender: str, recipient: str, text: str) -> None:
        self.incoming.append((sender, recipient, text))
        self.changed.set()

    async def wait(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; receipts={self.receipts} incoming={self.incoming}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    server = Smsc()
    await server.start()
    yield server
    await server.stop()


def settings_for(smsc: Smsc, **changes: object) -> SmppSettings:
    base = SmppSettings(
        host="127.0.0.1",
        port=smsc.port,
        system_id="pypbx",
        password="secret",
        system_type="PBX",
        source_addr="+3612345678",
        response_timeout=2.0,
        reconnect_min=0.1,
        reconnect_max=0.4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def gateway(smsc: Smsc, events: Events) -> AsyncIterator[SmppGateway]:
    gw = SmppGateway(settings_for(smsc), events.on_receipt, events.on_incoming)
    gw.start()
    yield gw
    await gw.stop()


async def test_binds_as_transceiver(smsc: Smsc, gateway: SmppGateway) -> None:
    await smsc.wait_bound()
    [bind] = smsc.binds
    assert (bind.command, bind.system_id, bind.password, bind.system_type, bind.accepted) == (
        BIND_TRANSCEIVER,
        "pypbx",
        "secret",
        "PBX",
        True,
    )
    for _ in range(100):
        if gateway.bound:
            break
        await asyncio.sleep(0.01)
    assert gateway.bound and gateway.last_error is None


async def test_submit_gsm7_returns_the_smsc_id_and_reports_delivery(
    smsc: Smsc, gateway: SmppGateway, events: Events
) -> None:
    message_id = await gateway.submit(None, "+36301234567", "Hello {world} €5")
    [part] = smsc.parts
    assert message_id == part.message_id
    assert (part.source_ton, part.source_npi, part.source) == (1, 1, "3612345678")
    assert (part.dest_ton, part.dest_npi, part.destination) == (1, 1, "36301234567")
    assert (part.data_coding, part.esm_class, part.registered_delivery) == (0, 0, 1)
    assert smsc.messages[0].text == "Hello {world} €5"
    await events.wait(lambda: events.receipts)
    assert events.receipts == [(message_id, "delivered")]
    assert gateway.queued == 0


async def test_ucs2_chosen_for_non_gsm_text(smsc: Smsc, gateway: SmppGateway) -> None:
    await gateway.submit("ACME", "06301234567", "Árvíztűrő tükörfúrógép 😀")
    [part] = smsc.parts
    assert part.data_coding == 8
    assert (part.source_ton, part.source_npi, part.source) == (5, 0, "ACME")  # alphanumeric
    assert (part.dest_ton, part.destination) == (1, "06301234567")  # configured TON
    assert smsc.messages[0].text == "Árvíztűrő tükörfúrógép 😀"


async def test_long_messages_are_split_and_reassemble(
    smsc: Smsc, gateway: SmppGateway, events: Events
) -> None:
    gsm_text = "".join(f"{i:03d} " for i in range(100))  # 400 septets: 3 parts
    ucs_text = "Привет, мир! " * 12  # 156 UCS-2 characters: 3 parts
    first = await gateway.submit(None, "+361", gsm_text)
    second = await gateway.submit(None, "+362", ucs_text)
    assert len(smsc.parts) == 6
    assert all(p.esm_class & 0x40 for p in smsc.parts)
    assert [m.text for m in smsc.messages] == [gsm_text, ucs_text]
    assert [m.data_coding for m in smsc.messages] == [0, 8]
    assert first == smsc.messages[0].parts[0].message_id
    # one report per message, once every part has its receipt
    await events.wait(lambda: len(events.receipts) == 2)
    await asyncio.sleep(0.2)
    assert sorted(events.receipts) == sorted([(first, "delivered"), (second, "delivered")])


async def test_failed_part_fails_the_message(
    smsc: Smsc, gateway: SmppGateway, events: Events
) -> None:
    smsc.receipt_for["36309999999"] = "UNDELIV"
    single = await gateway.submit(None, "+36309999999", "nobody home")
    await events.wait(lambda: events.receipts)
    assert events.receipts == [(single, "failed")]
    smsc.receipt_for["36308888888"] = "EXPIRED"
    expired = await gateway.submit(None, "+36308888888", "too late")
    await events.wait(lambda: len(events.receipts) == 2)
    assert events.receipts[1] == (expired, "expired")


async def test_intermediate_receipt_is_not_reported(
    smsc: Smsc, gateway: SmppGateway, events: Events
) -> None:
    smsc.receipt_stat = None
    message_id = await gateway.submit(None, "+361", "hi")
    await smsc.send_receipt(message_id, "ENROUTE")
    await smsc.send_receipt(message_id, "DELIVRD")
    await events.wait(lambda: events.receipts)
    assert events.receipts == [(message_id, "delivered")]
    assert smsc.delivered_resp == [0, 0]


async def test_incoming_sms_reaches_the_callback(
    smsc: Smsc, gateway: SmppGateway, events: Events
) -> None:
    await smsc.wait_bound()
    await smsc.deliver("36301234567", "3612345678", "Hi [there]")
    long_text = "Ünnepi üdvözlet 🎄 " * 10  # UCS-2, 3 parts
    await smsc.deliver("ACME", "3612345678", long_text, source_ton=5)
    await events.wait(lambda: len(events.incoming) == 2)
    assert events.incoming == [
        ("+36301234567", "3612345678", "Hi [there]"),
        ("ACME", "3612345678", long_text),
    ]
    assert smsc.delivered_resp == [0, 0, 0, 0]


async def test_submit_while_smsc_down_is_sent_after_restart(smsc: Smsc, events: Events) -> None:
    await smsc.stop()
    gw = SmppGateway(settings_for(smsc), events.on_receipt, events.on_incoming)
    gw.start()
    try:
        sending = asyncio.create_task(gw.submit(None, "+361", "queued while down"))
        await asyncio.sleep(0.5)
        assert not sending.done() and gw.queued == 1 and not gw.bound
        assert gw.last_error is not None
        assert gw.last_error.startswith(f"cannot connect to SMSC 127.0.0.1:{smsc.port}: ")
        await smsc.start()
        message_id = await asyncio.wait_for(sending, 5.0)
        assert [m.text for m in smsc.messages] == ["queued while down"]
        await events.wait(lambda: events.receipts == [(message_id, "delivered")])
    finally:
        await gw.stop()


async def test_reconnects_after_the_smsc_drops_the_link(
    smsc: Smsc, gateway: SmppGateway, events: Events
) -> None:
    await smsc.wait_bound()
    await smsc.stop()
    await asyncio.sleep(0.3)
    assert not gateway.bound
    assert gateway.last_error is not None
    sending = asyncio.create_task(gateway.submit(None, "+362", "after the outage"))
    await smsc.start()
    await asyncio.wait_for(sending, 5.0)
    assert sum(b.accepted for b in smsc.binds) == 2
    assert [m.text for m in smsc.messages] == ["after the outage"]


async def test_bad_credentials_give_a_clear_error_and_back_off(smsc: Smsc, events: Events) -> None:
    gw = SmppGateway(settings_for(smsc, password="wrong"), events.on_receipt)
    gw.start()
    try:
        await smsc.wait_for(lambda: len(smsc.binds) >= 4, timeout=5.0)
        assert gw.last_error == (
            f"bind_transceiver refused by 127.0.0.1:{smsc.port}: 0x0000000e Invalid Password"
        )
        assert not gw.bound and not any(b.accepted for b in smsc.binds)
        gaps = [b.at - a.at for a, b in zip(smsc.binds, smsc.binds[1:], strict=False)]
        assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.35  # 0.1, 0.2, 0.4 (max)
    finally:
        await gw.stop()


async def test_rejected_submit_raises(smsc: Smsc, gateway: SmppGateway) -> None:
    smsc.reject_status = 0x0B
    with pytest.raises(SmppRejectedError) as caught:
        await gateway.submit(None, "+36", "x")
    assert str(caught.value) == (
        "SMSC rejected the message: 0x0000000b Invalid Destination Address"
    )
    assert caught.value.status == 0x0B
    # the session is still usable
    smsc.reject_status = 0
    await gateway.submit(None, "+361", "fine")


async def test_stop_fails_what_is_still_queued(smsc: Smsc, events: Events) -> None:
    await smsc.stop()
    gw = SmppGateway(settings_for(smsc), events.on_receipt)
    gw.start()
    sending = asyncio.create_task(gw.submit(None, "+361", "never sent"))
    await asyncio.sleep(0.2)
    await gw.stop()
    with pytest.raises(SmppClosedError, match="stopped before the SMSC took the message"):
        await sending
    with pytest.raises(SmppClosedError, match="not running"):
        await gw.submit(None, "+361", "too late")


async def test_enquire_link_when_idle_and_reconnect_when_unanswered(
    smsc: Smsc, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pypbx.messaging.smpp")
    gw = SmppGateway(
        settings_for(smsc, enquire_link_interval=0.2, response_timeout=0.3), events.on_receipt
    )
    gw.start()
    try:
        await smsc.wait_for(lambda: smsc.enquire_links >= 2, timeout=3.0)
        assert len(smsc.binds) == 1
        smsc.answer_enquire_link = False
        await smsc.wait_for(lambda: len(smsc.binds) >= 2, timeout=3.0)
        assert "SMPP: SMSC did not answer enquire_link" in caplog.messages
    finally:
        await gw.stop()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^host must be set$"):
        SmppSettings(host="")
    with pytest.raises(ValueError, match=r"^port out of range: 0$"):
        SmppSettings(host="h", port=0)
    with pytest.raises(ValueError, match=r"^reconnect_max must not be less than reconnect_min$"):
        SmppSettings(host="h", reconnect_min=5, reconnect_max=1)
