"""Fixtures of the system tests, one world per test module: a migrated throwaway database, a BullMQ prefix of its
own on the shared Redis, and the fake providers. Worker processes are started once per module by each module."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from tests.contract.postgres_support import temporary_database
from tests.integration.system.support import Providers, delete_keys, running_providers, system_env, token

# The Twilio sender's reconciliation records live outside the BullMQ prefix (adapters/twilio_sms.py).
TWILIO_RECORDS = "clientflow:twilio:sent:"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with temporary_database("system") as dsn:
        yield dsn
        asyncio.run(_forget_twilio_records(dsn))


async def _forget_twilio_records(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        keys = [row["key"] for row in await connection.fetch("select key from send_ledger")]
    finally:
        await connection.close()
    client = redis_asyncio.Redis()
    try:
        for start in range(0, len(keys), 500):
            await client.delete(*(TWILIO_RECORDS + key for key in keys[start : start + 500]))
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    with running_providers() as found:
        yield found


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    name = f"test-system-{token()}"
    yield name
    asyncio.run(delete_keys(f"{name}:*"))


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
