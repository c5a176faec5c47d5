from __future__ import annotations

from pypbx.media.stream import RtpOutputStream


def test_first_writer_starts_at_initial_values() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=100, timestamp=5000)
    writer = object()
    assert stream.handover(writer, now=10.0) == (100, 5000)
    assert stream.writer is writer


def test_handover_follows_wall_clock() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=100, timestamp=5000)
    stream.handover("relay", 10.0)
    stream.advance(100, 5000, 10.0)
    stream.advance(101, 5160, 10.02)
    assert stream.handover("player", 11.02) == (102, 5160 + 8000)


def test_handover_advances_at_least_one_frame() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=1, timestamp=0)
    stream.handover("relay", 0.0)
    stream.advance(1, 0, 0.0)
    assert stream.handover("other", 0.001) == (2, 160)


def test_wraparound() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=0xFFFF, timestamp=0xFFFFFF00)
    assert stream.handover("relay", 0.0) == (0xFFFF, 0xFFFFFF00)
    stream.advance(0xFFFF, 0xFFFFFF00, 0.0)
    assert stream.handover("other", 1.0) == (0, (0xFFFFFF00 + 8000) & 0xFFFFFFFF)


def test_reordered_packets_do_not_move_back() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=10, timestamp=1600)
    stream.handover("relay", 0.0)
    stream.advance(12, 1920, 0.04)
    stream.advance(11, 1760, 0.05)  # late
    assert (stream.sequence, stream.timestamp, stream.sent_at) == (12, 1920, 0.04)


def test_generating_writer_frames() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=10, timestamp=1000)
    stream.handover("relay", 0.0)
    stream.advance(10, 1000, 0.0)
    player = object()
    assert stream.next_frame(player, 160, 0.5) == (11, 1000 + 4000, True)
    assert stream.next_frame(player, 240, 0.52) == (12, 5160, False)
    assert stream.next_frame(player, 160, 0.55) == (13, 5400, False)  # after the 30 ms frame
    # the relay takes back over: continues after the player's newest frame
    assert stream.handover("relay", 0.57) == (14, 5400 + 160)


def test_next_frame_on_fresh_stream() -> None:
    stream = RtpOutputStream(ssrc=7, sequence=0, timestamp=0)
    assert stream.next_frame("player", 160, 3.0) == (0, 0, True)
    assert stream.next_frame("player", 160, 3.02) == (1, 160, False)
