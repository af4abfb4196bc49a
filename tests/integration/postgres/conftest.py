"""Postgres integration fixtures: one migrated database per session, emptied before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from adapters.postgres import PostgresDatabase
from tests.support.backends import PostgresSeed
from tests.support.postgres import emptied_database, temporary_database


@pytest.fixture(scope="session")
def integration_database() -> Iterator[str]:
    """The DSN of this session's migrated integration database."""
    with temporary_database("integration") as dsn:
        yield dsn


@pytest.fixture
async def db(integration_database: str) -> AsyncIterator[PostgresDatabase]:
    """A pool on the integration database (room for 25 concurrent connections), tables emptied."""
    async with emptied_database(integration_database, max_size=25) as database:
        yield database


@pytest.fixture
def seed(db: PostgresDatabase) -> PostgresSeed:
    return PostgresSeed(db)


@pytest.fixture
def closed_port_dsn() -> str:
    """A DSN on a loopback port that was free a moment ago (nothing listens there)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"
