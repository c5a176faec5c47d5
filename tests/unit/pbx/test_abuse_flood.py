"""Per-source flood limits: the token bucket as vectors, then FloodLimits' classes, ignore
list, exemptions, Retry-After, logging once per window, escalation to a ban, memory bound."""

from __future__ import annotations

import logging

import pytest

from pypbx.pbx.abuse import FailureBans
from pypbx.pbx.flood import FloodLimits, Rate, refill, retry_after, take

ATTACKER = "203.0.113.66"
OFFICE = "198.51.100.10"


# ---- the bucket: pure functions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "elapsed", "rate", "burst", "expected"),
    [
        (0.0, 0.0, 10.0, 5.0, 0.0),
        (0.0, 0.1, 10.0, 5.0, 1.0),
        (0.0, 0.25, 10.0, 5.0, 2.5),
        (4.5, 1.0, 10.0, 5.0, 5.0),  # never above the burst
        (5.0, 3600.0, 10.0, 5.0, 5.0),
        (2.0, -1.0, 10.0, 5.0, 2.0),  # a clock that went back adds nothing
        (0.3, 0.5, 0.2, 1.0, 0.4),
    ],
)
def test_refill_vectors(
    tokens: float, elapsed: float, rate: float, burst: float, expected: float
) -> None:
    assert refill(tokens, elapsed, rate, burst) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("tokens", "last", "now", "rate", "burst", "allowed", "left"),
    [
        (5.0, 0.0, 0.0, 1.0, 5.0, True, 4.0),
        (1.0, 0.0, 0.0, 1.0, 5.0, True, 0.0),
        (0.0, 0.0, 0.0, 1.0, 5.0, False, 0.0),
        (0.0, 0.0, 0.5, 1.0, 5.0, False, 0.5),  # refused: takes nothing, keeps the refill
        (0.5, 0.0, 0.5, 1.0, 5.0, True, 0.0),
        (0.0, 10.0, 20.0, 1.0, 5.0, True, 4.0),  # refilled to the burst, then one taken
        (0.99, 0.0, 0.0, 100.0, 200.0, False, 0.99),
    ],
)
def test_take_vectors(
    tokens: float,
    last: float,
    now: float,
    rate: float,
    burst: float,
    allowed: bool,
    left: float,
) -> None:
    ok, remaining = take(tokens, last, now, rate, burst)
    assert ok is allowed
    assert remaining == pytest.approx(left)


@pytest.mark.parametrize(
    ("tokens", "rate", "seconds"),
    [(0.0, 10.0, 1), (0.0, 1.0, 1), (0.0, 0.5, 2), (0.5, 0.1, 5), (0.0, 0.2, 5), (0.99, 50.0, 1)],
)
def test_retry_after_vectors(tokens: float, rate: float, seconds: int) -> None:
    assert retry_after(tokens, rate) == seconds


def test_rate_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        Rate(0.0, 5)
    with pytest.raises(ValueError, match="invalid rate"):
        Rate(1.0, -1)


# ---- FloodLimits ---------------------------------------------------------------------------


def limits(**kwargs: object) -> FloodLimits:
    kwargs.setdefault("invite", Rate(1.0, 3))
    kwargs.setdefault("register", Rate(2.0, 4))
    kwargs.setdefault("other", Rate(5.0, 2))
    kwargs.setdefault("ignore", ())
    return FloodLimits(**kwargs)  # type: ignore[arg-type]


def test_a_burst_passes_then_requests_are_refused_with_retry_after() -> None:
    flood = limits()
    assert [flood.check(ATTACKER, "INVITE", 0.0) for _ in range(3)] == [None, None, None]
    assert flood.check(ATTACKER, "INVITE", 0.0) == 1
    assert flood.check(ATTACKER, "INVITE", 0.5) == 1  # half a token: one more second
    assert flood.check(ATTACKER, "INVITE", 1.0) is None  # refilled at 1/s
    assert flood.check(ATTACKER, "INVITE", 1.0) == 1


def test_retry_after_follows_the_rate() -> None:
    flood = limits(register=Rate(0.2, 1))
    assert flood.check(ATTACKER, "REGISTER", 0.0) is None
    assert flood.check(ATTACKER, "REGISTER", 0.0) == 5
    assert flood.check(ATTACKER, "REGISTER", 3.0) == 2  # 0.6 tokens: 2 s to go


def test_classes_and_sources_have_their_own_buckets() -> None:
    flood = limits()
    for _ in range(3):
        flood.check(ATTACKER, "INVITE", 0.0)
    assert flood.check(ATTACKER, "INVITE", 0.0) is not None
    assert flood.check(ATTACKER, "REGISTER", 0.0) is None  # REGISTER is not INVITE
    assert flood.check(OFFICE, "INVITE", 0.0) is None  # nor is another address
    for method in ("OPTIONS", "MESSAGE"):  # every other method shares one bucket
        assert flood.check(ATTACKER, method, 0.0) is None
    assert flood.check(ATTACKER, "SUBSCRIBE", 0.0) is not None


def test_ack_and_cancel_are_never_limited() -> None:
    flood = limits(other=Rate(1.0, 1))
    flood.check(ATTACKER, "OPTIONS", 0.0)
    assert flood.check(ATTACKER, "OPTIONS", 0.0) is not None
    assert all(flood.check(ATTACKER, m, 0.0) is None for m in ["ACK", "CANCEL"] * 50)


def test_ignored_networks_and_host_names_are_not_limited() -> None:
    flood = limits(ignore=("10.0.0.0/8", "::1/128"))
    for address in ("10.9.8.7", "::1", "phone.example"):
        assert all(flood.check(address, "INVITE", 0.0) is None for _ in range(100)), address
    assert FloodLimits().check("127.0.0.1", "INVITE", 0.0) is None  # loopback by default


def test_a_zero_burst_turns_a_class_off() -> None:
    flood = limits(invite=Rate(1.0, 0))
    assert all(flood.check(ATTACKER, "INVITE", 0.0) is None for _ in range(1000))
    assert flood.check(ATTACKER, "REGISTER", 0.0) is None  # the others still count


def test_the_defaults_let_an_office_behind_one_address_boot() -> None:
    """100 phones behind one NAT address come back after a power cut within 10 s: each
    REGISTERs twice (challenge, answer) and sends an OPTIONS keep-alive; none is refused."""
    flood = FloodLimits(ignore=())
    refused = 0
    for i in range(100):
        now = i * 0.1
        for method in ("REGISTER", "REGISTER", "OPTIONS"):
            refused += flood.check(OFFICE, method, now) is not None
    assert refused == 0


def test_refusals_are_logged_once_per_window_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flood = limits(ban_after=0, log_every=60.0)
    caplog.set_level(logging.WARNING, logger="pypbx.pbx.flood")
    now = 0.0
    while now < 130.0:  # 10 INVITEs a second for 130 s
        flood.check(ATTACKER, "INVITE", now)
        now += 0.1
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (f"flood from {ATTACKER}: more than 1 INVITEs/s (burst 3), refusing them")
    assert len(messages) == 3, messages
    assert all(m.startswith(f"flood from {ATTACKER} goes on: ") for m in messages[1:])
    assert " requests refused in the last 60 s" in messages[1]


def test_a_pause_starts_a_new_flood() -> None:
    flood = limits(ban_after=0, quiet=10.0)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("pypbx.pbx.flood")
    logger.addHandler(handler)
    try:
        for start in (0.0, 100.0):  # two floods 100 s apart: each one is announced
            for i in range(10):
                flood.check(ATTACKER, "INVITE", start + i * 0.01)
    finally:
        logger.removeHandler(handler)
    assert [m.endswith("refusing them") for m in records] == [True, True]


def test_sustained_flooding_escalates_to_a_ban() -> None:
    bans = FailureBans(ignore=())
    flood = limits(bans=bans, ban_after=30.0, ban_seconds=600.0)
    now = 0.0
    while now < 29.9:
        flood.check(ATTACKER, "INVITE", now)
        now += 0.1
    assert not bans.banned(ATTACKER, now)
    while now < 30.5:  # refused since 0.3 s: 30 s of flooding
        flood.check(ATTACKER, "INVITE", now)
        now += 0.1
    assert bans.banned(ATTACKER, 31.0)
    assert bans.banned(ATTACKER, 629.0)
    assert not bans.banned(ATTACKER, 631.0)
    assert not bans.banned(OFFICE, 31.0)


def test_bursts_with_pauses_are_not_sustained_flooding() -> None:
    bans = FailureBans(ignore=())
    flood = limits(bans=bans, ban_after=30.0, quiet=10.0)
    for second in range(0, 120, 15):  # a burst of 10 every 15 s: refused, never banned
        for i in range(10):
            flood.check(ATTACKER, "INVITE", second + i * 0.001)
    assert not bans.banned(ATTACKER, 121.0)


def test_no_ban_without_a_ban_list_or_with_zero_seconds() -> None:
    for flood, bans in (
        (limits(ban_after=1.0), None),
        (limits(ban_after=1.0, ban_seconds=0.0, bans=FailureBans(ignore=())), "zero"),
    ):
        now = 0.0
        while now < 10.0:
            assert flood.check(ATTACKER, "INVITE", now) in (None, 1)
            now += 0.01
        if flood.bans is not None:
            assert not flood.bans.banned(ATTACKER, now), bans


def test_memory_stays_bounded_under_a_spoofed_source_flood() -> None:
    flood = limits(max_sources=1000)
    for i in range(5000):
        flood.check(f"203.0.{i // 250}.{i % 250}", "INVITE", i * 0.0001)
    assert len(flood._sources) <= 1000


def test_idle_sources_are_forgotten_first() -> None:
    flood = limits(max_sources=6)
    for i in range(5):  # full buckets again by the time the table is full
        flood.check(f"192.0.2.{i}", "INVITE", 0.0)
    for _ in range(5):
        flood.check(ATTACKER, "INVITE", 99.0)  # still flooding: kept
    flood.check(OFFICE, "INVITE", 100.0)  # the table is full: prune
    assert set(flood._sources) == {ATTACKER, OFFICE}
