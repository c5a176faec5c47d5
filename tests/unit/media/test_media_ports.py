from __future__ import annotations

import pytest

from pypbx.media.ports import PortAllocator, PortsExhaustedError


def test_even_ports_with_room_for_rtcp() -> None:
    allocator = PortAllocator(31001, 31008)  # odd low is rounded up; 31008 has no 31009
    assert allocator.capacity == 3
    assert [allocator.allocate() for _ in range(3)] == [31002, 31004, 31006]
    assert allocator.in_use == 3


def test_exhaustion() -> None:
    allocator = PortAllocator(31000, 31003)
    assert allocator.allocate() == 31000
    assert allocator.allocate() == 31002
    with pytest.raises(PortsExhaustedError) as info:
        allocator.allocate()
    assert str(info.value) == "no free RTP port in 31000-31003"


def test_released_ports_are_reused_last() -> None:
    allocator = PortAllocator(31000, 31005)
    first = allocator.allocate()
    allocator.release(first)
    assert allocator.in_use == 0
    assert allocator.allocate() == 31002  # not the one just released
    assert allocator.allocate() == 31004
    assert allocator.allocate() == first


def test_reuse_after_exhaustion() -> None:
    allocator = PortAllocator(31000, 31001)
    port = allocator.allocate()
    with pytest.raises(PortsExhaustedError):
        allocator.allocate()
    allocator.release(port)
    assert allocator.allocate() == port


def test_release_of_unallocated_port() -> None:
    allocator = PortAllocator(31000, 31009)
    with pytest.raises(ValueError) as info:
        allocator.release(31000)
    assert str(info.value) == "RTP port 31000 is not allocated"
    port = allocator.allocate()
    allocator.release(port)
    with pytest.raises(ValueError):
        allocator.release(port)


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (31000, 30999, "invalid RTP port range 31000-30999"),
        (0, 100, "invalid RTP port range 0-100"),
        (65534, 65536, "invalid RTP port range 65534-65536"),
        (31000, 31000, "RTP port range 31000-31000 holds no even/odd port pair"),
        (31001, 31002, "RTP port range 31001-31002 holds no even/odd port pair"),
    ],
)
def test_invalid_ranges(low: int, high: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        PortAllocator(low, high)
    assert str(info.value) == message


def test_exhausted_is_runtime_error() -> None:
    assert issubclass(PortsExhaustedError, RuntimeError)
