"""Contract fixtures: every test taking ``backend`` runs twice, on the in-memory fake and on Postgres.

The Postgres side uses one migrated database per session (created and dropped here) and empties the
repositories' tables before each test. ``TEST_DATABASE_URL`` overrides the admin DSN.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.backends import Backend, FakeBackend, PostgresBackend
from tests.support.postgres import emptied_database, temporary_database


@pytest.fixture(scope="session")
def contract_database() -> Iterator[str]:
    """The DSN of this session's migrated contract database."""
    with temporary_database("contract") as dsn:
        yield dsn


@pytest.fixture
async def postgres_backend(contract_database: str) -> AsyncIterator[PostgresBackend]:
    async with emptied_database(contract_database, max_size=4) as db:
        yield PostgresBackend(db)


@pytest.fixture(params=["fake", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The port implementations under test, with a seed for fixture data."""
    if request.param == "fake":
        return FakeBackend()
    found: PostgresBackend = request.getfixturevalue("postgres_backend")
    return found
