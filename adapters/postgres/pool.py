"""The asyncpg pool behind every repository: where connections are opened and database errors translated.

asyncpg replaces a pooled connection it has seen die on the next acquire; after a connection loss we also expire
the others, so a restarted server costs one failed call (retried by the job's backoff), not one per connection.

Each query through ``fetch*``/``execute`` (and each ``transaction``) is a CLIENT span named by its operation
(``SELECT``, ``INSERT`` ...), with ``db.system.name`` and ``db.operation.name`` only: never the SQL text or its
parameters.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import attrs

from adapters.observability.tracing import child_span
from adapters.postgres.errors import is_connection_loss, translate

if TYPE_CHECKING:  # generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]


_FIRST_WORD = re.compile(r"\s*(\w+)")
_OPERATIONS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "MERGE", "CALL", "LOCK", "TRUNCATE"})


def operation_name(query: str) -> str:
    """The statement's leading keyword, from a fixed list (anything else is ``OTHER``): a bounded span name."""
    found = _FIRST_WORD.match(query)
    word = found.group(1).upper() if found else ""
    return word if word in _OPERATIONS else "OTHER"


async def _keep_session(_connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """A pool ``reset`` that sends nothing: asyncpg has already rolled back any transaction left open."""


def _span(operation: str) -> AbstractContextManager[object]:
    return child_span(operation, attributes={"db.system.name": "postgresql", "db.operation.name": operation})


@attrs.define
class PostgresDatabase:
    """A pool of connections to one database, with the domain's error classes at its edge."""

    _pool: asyncpg.Pool[asyncpg.Record]
    _acquire_timeout: float

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        acquire_timeout: float = 10.0,
        application_name: str = "clientflow-worker",
        idle_lifetime: float = 300.0,
        reset_session: bool = True,
        init: Callable[[asyncpg.Connection[asyncpg.Record]], Coroutine[Any, Any, None]] | None = None,
    ) -> PostgresDatabase:
        """Open the pool (``min_size`` connections at once); TransientError when the server cannot be reached.

        ``idle_lifetime``: seconds after which an idle connection is closed (0: never). ``reset_session`` False:
        a released connection skips asyncpg's reset statement (``RESET ALL``, ``UNLISTEN *``, advisory locks; one
        round trip per release) for a pool whose code sets no session state; an open transaction is still rolled
        back. ``init``: awaited on each new connection (to prepare statements).
        """
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                command_timeout=command_timeout,
                max_inactive_connection_lifetime=idle_lifetime,
                server_settings={"application_name": application_name, "timezone": "UTC"},
                reset=None if reset_session else _keep_session,
                init=init,
            )
        except BaseException as error:
            translated = translate(error)
            if translated is None:
                raise
            raise translated from None
        return cls(pool, acquire_timeout)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; any database failure inside the block leaves it as a domain error."""
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
                yield connection
        except BaseException as error:
            translated = translate(error)
            if translated is None:
                raise
            if is_connection_loss(error):
                await self._pool.expire_connections()
            raise translated from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction, committed when the block ends normally."""
        with _span("TRANSACTION"):
            async with self.connection() as connection, connection.transaction():
                yield connection

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        with _span(operation_name(query)):
            async with self.connection() as connection:
                return await connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        with _span(operation_name(query)):
            async with self.connection() as connection:
                return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with _span(operation_name(query)):
            async with self.connection() as connection:
                return await connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        """Run a statement; returns its status tag (``UPDATE 1``)."""
        with _span(operation_name(query)):
            async with self.connection() as connection:
                return await connection.execute(query, *args)
