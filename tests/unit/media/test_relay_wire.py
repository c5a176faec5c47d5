"""The relay worker's control messages: round trips and what is refused."""

from __future__ import annotations

import pytest

from pypbx.media.relay_wire import (
    LegSetup,
    LegState,
    WireError,
    decode,
    encode_control,
    encode_packet,
)

SETUP = LegSetup(
    port=30000,
    source=("192.0.2.10", 4000),
    seen_at=12.5,
    quiet_period=2.0,
    payload_types=(0, 101),
    forward=(101,),
    codec=(0, "PCMU", 101),
    output=(0xDEADBEEF, 65535, 4294967295, None, True),
    direction=(None, 0, 0),
)


def test_leg_setup_round_trips_through_json() -> None:
    control, packet = decode(encode_control({"op": "add", "legs": [SETUP.to_json()]}))
    assert packet is None and control is not None
    assert LegSetup.from_json(control["legs"][0]) == SETUP


def test_an_ipv6_source_keeps_flow_info_and_scope() -> None:
    setup = LegSetup(
        **{**{f: getattr(SETUP, f) for f in SETUP.__slots__}, "source": ("::1", 4000, 0, 0)}
    )
    assert LegSetup.from_json(setup.to_json()).source == ("::1", 4000, 0, 0)


def test_leg_state_round_trips() -> None:
    state = LegState(
        1, 172, 2, 344, 3, 4, 99.5, ("192.0.2.10", 4002), (1, 2, 3, 98.0, False), (7, -5, 1000)
    )
    assert LegState.from_json(state.to_json()) == state


def test_packets_carry_their_port() -> None:
    assert decode(encode_packet(40000, b"\x80\x65rest")) == (None, (40000, b"\x80\x65rest"))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "empty message"),
        (b"X{}", "unknown message kind 0x58"),
        (b"J[1]", "control message without an op"),
        (b"J{nope", "bad control message"),
        (b"P\x01", "truncated packet message"),
    ],
)
def test_malformed_messages_are_refused(message: bytes, error: str) -> None:
    with pytest.raises(WireError, match=error):
        decode(message)


def test_a_leg_with_missing_fields_is_refused() -> None:
    broken = SETUP.to_json()
    del broken["codec"]
    with pytest.raises(WireError, match="bad leg in add"):
        LegSetup.from_json(broken)
    with pytest.raises(WireError, match="bad leg state"):
        LegState.from_json([1, 2, 3])
