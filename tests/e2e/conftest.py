"""Fixtures of the end-to-end tests: fake providers, a BullMQ prefix, a throwaway database, the system's env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakeservers.providers import running
from tests.support.supervised import Providers, bullmq_prefix, throwaway_database


@pytest.fixture
def providers() -> Iterator[Providers]:
    with running(Providers()) as found:
        yield found


@pytest.fixture
def prefix() -> Iterator[str]:
    with bullmq_prefix() as found:
        yield found


@pytest.fixture
def database_url() -> Iterator[str]:
    with throwaway_database() as dsn:
        yield dsn
