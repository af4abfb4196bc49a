"""Fixtures of the system tests, one world per test module: a migrated throwaway database, a BullMQ prefix of its
own on the shared Redis, and the fake providers. Worker processes are started once per module by each module."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from tests.support.fakeservers.providers import running
from tests.support.postgres import temporary_database
from tests.support.processes import Providers, delete_keys, system_env, token


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with temporary_database("system") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    with running(Providers()) as found:
        yield found


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    name = f"test-system-{token()}"
    yield name
    asyncio.run(delete_keys(f"{name}:*"))  # the queues, and our own keys (Twilio send records, rate limits)


@pytest.fixture(scope="module")
def env(providers: Providers, database_url: str, prefix: str) -> dict[str, str]:
    return system_env(providers, database_url, prefix)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("system-logs")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    """A connection to the module's database, for seeding the CRM tables and reading what the worker wrote."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
