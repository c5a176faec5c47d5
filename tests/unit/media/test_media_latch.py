from __future__ import annotations

from pypbx.media.latch import Latch

PHONE = ("192.0.2.10", 4000)
NATTED = ("198.51.100.7", 61234)
ATTACKER = ("203.0.113.66", 5555)


def test_latches_on_first_packet() -> None:
    latch = Latch(quiet_period=2.0)
    assert latch.source is None
    assert latch.accept(NATTED, 0.0)
    assert latch.source == NATTED
    assert latch.accept(NATTED, 0.02)


def test_refuses_other_sources_while_latched_source_talks() -> None:
    latch = Latch(quiet_period=2.0)
    latch.accept(PHONE, 0.0)
    assert not latch.accept(ATTACKER, 0.01)
    latch.accept(PHONE, 1.9)
    assert not latch.accept(ATTACKER, 3.8)  # only 1.9 s of silence
    assert latch.source == PHONE


def test_relatches_after_silence() -> None:
    latch = Latch(quiet_period=2.0)
    latch.accept(PHONE, 0.0)
    assert latch.accept(NATTED, 2.0)
    assert latch.source == NATTED
    assert not latch.accept(PHONE, 2.1)


def test_unlock_lets_next_source_latch_once() -> None:
    latch = Latch(quiet_period=2.0)
    latch.accept(PHONE, 0.0)
    latch.unlock()
    assert latch.source == PHONE  # still the best guess until a packet arrives
    assert latch.accept(NATTED, 0.1)
    assert not latch.accept(ATTACKER, 0.2)


def test_unlock_then_same_source_locks_again() -> None:
    latch = Latch(quiet_period=2.0)
    latch.accept(PHONE, 0.0)
    latch.unlock()
    assert latch.accept(PHONE, 0.1)
    assert not latch.accept(ATTACKER, 0.2)


def test_reset() -> None:
    latch = Latch(quiet_period=2.0)
    latch.accept(PHONE, 0.0)
    latch.reset()
    assert latch.source is None
    assert latch.accept(ATTACKER, 0.1)
