"""Fixtures of the topology tests: a migrated throwaway database, the fake providers and a log directory per
module; each module starts its own Redis topology (tests/support/redis_topologies.py)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from tests.support.fakeservers.providers import running
from tests.support.postgres import temporary_database
from tests.support.processes import Providers


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with temporary_database("topology") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    with running(Providers()) as found:
        yield found


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("topology-logs")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
