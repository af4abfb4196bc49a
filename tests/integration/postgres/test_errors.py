"""Database failures leave the adapter as domain errors whose messages carry no row values."""

from __future__ import annotations

import asyncpg
import pytest

from adapters.postgres import PostgresDatabase, PostgresOrganizations
from adapters.postgres.errors import translate
from domain.errors import ConfigurationError, InvalidValue, TransientError
from domain.values import OrgId
from tests.support.backends import PostgresSeed
from tests.support.builders import contact, org
from tests.support.postgres import fresh_database


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), TransientError),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), TransientError),
        (asyncpg.CannotConnectNowError("the database system is starting up"), TransientError),
        (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), TransientError),
        (asyncpg.SerializationError("could not serialize access"), TransientError),
        (asyncpg.DeadlockDetectedError("deadlock detected"), TransientError),
        (ConnectionRefusedError(111, "Connection refused"), TransientError),
        (TimeoutError(), TransientError),
        (asyncpg.InvalidPasswordError("password authentication failed for user x"), ConfigurationError),
        (asyncpg.InvalidCatalogNameError('database "x" does not exist'), ConfigurationError),
        (asyncpg.UndefinedTableError('relation "contacts" does not exist'), ConfigurationError),
        (asyncpg.CheckViolationError("new row violates check constraint"), InvalidValue),
        (asyncpg.NumericValueOutOfRangeError("value out of range"), InvalidValue),
    ],
)
def test_translation_by_class(error: BaseException, expected: type[Exception]) -> None:
    """Each failure class maps to the domain error the shell acts on, without the driver's message text."""
    translated = translate(error)
    assert isinstance(translated, expected)
    assert not str(error) or str(error) not in str(translated)


def test_bugs_and_cancellations_are_not_translated() -> None:
    """A syntax error (our bug) and a cancellation propagate unchanged."""
    import asyncio

    assert translate(asyncpg.PostgresSyntaxError("syntax error at or near")) is None
    assert translate(asyncio.CancelledError()) is None


async def test_constraint_violation_is_invalid_value_without_the_row(db: PostgresDatabase) -> None:
    """Inserting a duplicate contact raises InvalidValue naming table and constraint, never the email."""
    seed = PostgresSeed(db)
    await seed.org(org("org-1"))
    await seed.contact(contact("c-1", email="secret.person@example.com"))
    with pytest.raises(InvalidValue) as caught:
        await seed.contact(contact("c-1", email="secret.person@example.com"))
    assert str(caught.value) == "contacts violates constraint contacts_pkey"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_check_violation_on_bad_phone(db: PostgresDatabase) -> None:
    """A phone that is not E.164 is refused by the schema, surfacing as InvalidValue without the number."""
    await PostgresSeed(db).org(org("org-1"))
    with pytest.raises(InvalidValue) as caught:
        await db.execute("insert into contacts (org_id, id, phone) values ('org-1', 'c-9', '555-0100')")
    assert "555" not in str(caught.value)


async def test_server_statement_timeout_is_transient(db: PostgresDatabase) -> None:
    """A statement cancelled by statement_timeout raises TransientError."""

    async def sleep_past_the_timeout() -> None:
        async with db.transaction() as connection:
            await connection.execute("set local statement_timeout = 50")
            await connection.execute("select pg_sleep(5)")

    with pytest.raises(TransientError):
        await sleep_past_the_timeout()


async def test_client_command_timeout_is_transient(integration_database: str) -> None:
    """A query outliving the pool's command timeout raises TransientError, and the pool still answers after."""
    db = await PostgresDatabase.connect(integration_database, command_timeout=0.2)
    try:
        with pytest.raises(TransientError):
            await db.fetchval("select pg_sleep(5)")
        assert await db.fetchval("select 1") == 1
    finally:
        await db.close()


async def test_unreachable_server_is_transient(closed_port_dsn: str) -> None:
    """Opening a pool on a port nobody listens on raises TransientError."""
    with pytest.raises(TransientError):
        await PostgresDatabase.connect(closed_port_dsn, connect_timeout=2)


async def test_unmigrated_database_is_a_configuration_error() -> None:
    """Reading from a database without the schema tells the operator to run migrate."""
    async with fresh_database("unmigrated", migrated=False) as dsn:
        db = await PostgresDatabase.connect(dsn)
        try:
            with pytest.raises(ConfigurationError, match="migrate"):
                await PostgresOrganizations(db).get(OrgId("org-1"))
        finally:
            await db.close()
