"""The messages between pypbx and its relay worker process, sans-I/O.

The worker moves the RTP of plain bridged calls (see `relay_offload`); pypbx hands it the two
sockets of a bridge with what it needs to continue exactly where pypbx's own relay stopped,
and takes them back with what the worker did meanwhile. Three kinds of message travel on one
SOCK_SEQPACKET pair, so each message is one datagram and needs no framing:

* `J` + JSON: control (`add`, `remove` and its `removed` answer, periodic `stats`);
* `P` + port (2 bytes) + an RTP packet: a packet pypbx's taps must see (a key press);
* nothing else: anything else is a bug, reported as `WireError`.

JSON is plenty: control messages come once per call event, never per packet.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BridgeState",
    "LegSetup",
    "LegState",
    "WireError",
    "decode",
    "encode_control",
    "encode_packet",
]

_PORT = struct.Struct("!H")
CONTROL = b"J"[0]
PACKET = b"P"[0]

# (host, port), or (host, port, flow info, scope id) for IPv6, as the socket module has them
Address = tuple[Any, ...]
# (SSRC, newest sequence, newest timestamp, when sent (None: never), fed by the relay)
OutputState = tuple[int, int, int, float | None, bool]
# (input SSRC, sequence offset, timestamp offset) of the direction *from* a leg
DirectionState = tuple[int | None, int, int]


class WireError(ValueError):
    """A message that is not one of ours."""


@dataclass(frozen=True, slots=True)
class LegSetup:
    """One leg as pypbx hands it over: where it sends, what it accepts, where its streams are."""

    port: int
    source: Address  # the latched source: packets from elsewhere go through the latch
    seen_at: float  # when that source last sent (monotonic clock, shared by both processes)
    quiet_period: float  # the latch's re-latch time
    payload_types: tuple[int, ...] | None  # accepted payload types (None: any)
    forward: tuple[int, ...]  # payload types pypbx's taps must still see (telephone-event)
    codec: tuple[int, str, int | None]  # payload type, PCMU/PCMA, telephone-event type
    output: OutputState  # the stream pypbx sends this phone
    direction: DirectionState  # the relay of what this phone sends

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "source": list(self.source),
            "seen_at": self.seen_at,
            "quiet": self.quiet_period,
            "types": None if self.payload_types is None else list(self.payload_types),
            "forward": list(self.forward),
            "codec": list(self.codec),
            "output": list(self.output),
            "direction": list(self.direction),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LegSetup:
        try:
            host, port, *v6 = data["source"]
            types = data["types"]
            pt, name, event = data["codec"]
            ssrc, seq, ts, sent_at, fed = data["output"]
            in_ssrc, seq_off, ts_off = data["direction"]
            return cls(
                port=int(data["port"]),
                source=(str(host), int(port), *(int(n) for n in v6)),
                seen_at=float(data["seen_at"]),
                quiet_period=float(data["quiet"]),
                payload_types=None if types is None else tuple(int(t) for t in types),
                forward=tuple(int(t) for t in data["forward"]),
                codec=(int(pt), str(name), None if event is None else int(event)),
                output=(int(ssrc), int(seq), int(ts), _opt_float(sent_at), bool(fed)),
                direction=(None if in_ssrc is None else int(in_ssrc), int(seq_off), int(ts_off)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad leg in add: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class LegState:
    """What the worker did with one leg: counters since the hand-over, latch, streams."""

    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    rejected: int
    unsent: int
    seen_at: float
    source: Address
    output: OutputState
    direction: DirectionState

    def to_json(self) -> list[Any]:
        return [
            self.packets_in,
            self.bytes_in,
            self.packets_out,
            self.bytes_out,
            self.rejected,
            self.unsent,
            self.seen_at,
            list(self.source),
            list(self.output),
            list(self.direction),
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> LegState:
        try:
            pin, bin_, pout, bout, rejected, unsent, seen_at, source, output, direction = data
            host, port, *v6 = source
            ssrc, seq, ts, sent_at, fed = output
            in_ssrc, seq_off, ts_off = direction
            return cls(
                int(pin),
                int(bin_),
                int(pout),
                int(bout),
                int(rejected),
                int(unsent),
                float(seen_at),
                (str(host), int(port), *(int(n) for n in v6)),
                (int(ssrc), int(seq), int(ts), _opt_float(sent_at), bool(fed)),
                (None if in_ssrc is None else int(in_ssrc), int(seq_off), int(ts_off)),
            )
        except (TypeError, ValueError) as exc:
            raise WireError(f"bad leg state: {exc!r}") from exc


BridgeState = tuple[LegState, LegState]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def encode_control(message: dict[str, Any]) -> bytes:
    return bytes((CONTROL,)) + json.dumps(message, separators=(",", ":")).encode()


def encode_packet(port: int, packet: bytes | bytearray) -> bytes:
    return bytes((PACKET,)) + _PORT.pack(port) + packet


def decode(message: bytes) -> tuple[dict[str, Any], None] | tuple[None, tuple[int, bytes]]:
    """(control message, None) or (None, (port, packet))."""
    if not message:
        raise WireError("empty message")
    kind = message[0]
    if kind == CONTROL:
        try:
            control = json.loads(message[1:])
        except ValueError as exc:
            raise WireError(f"bad control message: {exc}") from exc
        if not isinstance(control, dict) or not isinstance(control.get("op"), str):
            raise WireError("control message without an op")
        return control, None
    if kind == PACKET:
        if len(message) < 3:
            raise WireError("truncated packet message")
        return None, (_PORT.unpack_from(message, 1)[0], message[3:])
    raise WireError(f"unknown message kind {kind:#x}")
