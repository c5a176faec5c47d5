"""Shared test setup: make the `peers` harness package importable, mark integration tests.

`peers` lives in tests/ (test infrastructure, not product code), so tests/ goes on sys.path
here rather than through pyproject's pytest options.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

INTEGRATION_DIR = TESTS_DIR / "integration"


def pytest_report_header() -> str:
    """Whether the tests run the compiled SIP core (see scripts/compile_core.py)."""
    import pypbx

    return f"pypbx SIP core: {pypbx.CORE}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration drives real peers: `-m "not integration"` skips it."""
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Expose each phase's report as item.rep_<phase>, so fixtures can dump logs on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
