"""Fixtures shared by the SIP core's tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

BestOf = Callable[[Callable[[], object]], float]


@pytest.fixture
def best_of() -> BestOf:
    """The shortest of five timings of a call, in this thread's CPU time. Linearity tests
    compare two such figures rather than assert a time. CPU time, not wall time: on a
    loaded machine (make test runs four workers on two cores) every run of a 10 ms call
    could be preempted, which once made 8x the input look 37x as slow; the best run is
    then the one the caches disturbed least."""

    def measure(call: Callable[[], object]) -> float:
        times = []
        for _ in range(5):
            started = time.thread_time()
            call()
            times.append(time.thread_time() - started)
        return min(times)

    return measure
