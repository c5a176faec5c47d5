"""Fixtures shared by the SIP core's tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

BestOf = Callable[[Callable[[], object]], float]


@pytest.fixture
def best_of() -> BestOf:
    """The shortest of five timings of a call. Linearity tests compare two such figures
    rather than assert a time: the best run is the one machine load disturbed least."""

    def measure(call: Callable[[], object]) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return min(times)

    return measure
