"""Shared test setup: the repository root first on sys.path, so our packages win over same-named PyPI ones; and
every test marked with its suite, from its folder (``-m unit``, ``-m "unit or contract"``, ``-m "not e2e"``).

Suites: ``unit`` (tests/unit, and the layout guards in tests/ itself: no service, no network), ``contract``
(tests/contract: each port's fake and real adapter, needs the local PostgreSQL and Redis), ``integration``
(tests/integration: real Redis, PostgreSQL, npm bullmq, processes), ``e2e`` (tests/e2e: our supervisord.conf).
Tests over 10 s carry ``slow`` in their module (``-m "not slow"`` leaves them out).
"""

from __future__ import annotations

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TESTS = ROOT / "tests"
SUITES = {"unit": "unit", "contract": "contract", "integration": "integration", "e2e": "e2e"}
"""Folder under tests/ -> suite marker (registered in pyproject.toml); a test directly in tests/ is a unit test."""


def suite_of(path: pathlib.Path) -> str:
    """The suite marker of a test file, from its folder; a test folder not listed in SUITES is an error."""
    parts = path.resolve().relative_to(TESTS).parts
    if len(parts) == 1:
        return "unit"
    if parts[0] not in SUITES:
        raise pytest.UsageError(f"tests/{parts[0]} is no known suite: add it to SUITES in tests/conftest.py")
    return SUITES[parts[0]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(suite_of(item.path))
