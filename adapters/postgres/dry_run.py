"""A database for dry runs: every query of the run on one connection, inside a transaction that is rolled back.

The repositories and the send ledger run their real SQL (claims, suppression checks, enrollment updates) against
it, so a dry run sees what a real run would, and nothing it writes is ever committed. Each job of the run gets a
savepoint of its own (``job_savepoint``): a job that fails leaves nothing behind for the next one, while a job
that succeeds leaves its claims visible to later jobs of the same run, as a real sequence of runs would.

Rows a dry run claims are locked until it ends; ``lock_timeout`` keeps it from waiting long on a live worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from adapters.postgres.errors import translate
from adapters.postgres.pool import PostgresDatabase

LOCK_TIMEOUT = "5s"


class _OneConnection:
    """The part of ``asyncpg.Pool`` that PostgresDatabase uses, over a single connection."""

    def __init__(self, connection: asyncpg.Connection[asyncpg.Record]) -> None:
        self._connection = connection

    @asynccontextmanager
    async def acquire(self, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:  # noqa: ASYNC109  # the pool signature
        yield self._connection

    async def expire_connections(self) -> None:
        return None

    async def close(self) -> None:
        return None


@asynccontextmanager
async def rolled_back_database(dsn: str, connect_timeout: float = 10.0) -> AsyncIterator[DryRunDatabase]:
    """A PostgresDatabase whose every change is rolled back when the block ends (normally or not)."""
    try:
        connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
            dsn,
            timeout=connect_timeout,
            server_settings={
                "application_name": "clientflow-dry-run",
                "timezone": "UTC",
                "lock_timeout": LOCK_TIMEOUT,
            },
        )
    except BaseException as error:
        translated = translate(error)
        if translated is None:
            raise
        raise translated from None
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield DryRunDatabase(connection)
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


class DryRunDatabase:
    """``database`` is the PostgresDatabase to give the repositories; ``job_savepoint`` scopes one job."""

    def __init__(self, connection: asyncpg.Connection[asyncpg.Record]) -> None:
        self._connection = connection
        pool: Any = _OneConnection(connection)
        self.database = PostgresDatabase(pool, 10.0)

    @asynccontextmanager
    async def job_savepoint(self) -> AsyncIterator[None]:
        """Keep the job's changes for the rest of the run if it ends normally; undo them if it raises."""
        async with self._connection.transaction():
            yield
