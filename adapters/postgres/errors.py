"""Database failures as domain errors, decided by exception class and SQLSTATE, never by message text.

Messages name the failure kind, a table or a constraint, never a value: asyncpg's own messages and details may
quote row data (an email in a unique violation), so they are never passed on.
"""

from __future__ import annotations

import asyncpg

from domain.errors import ClientFlowError, ConfigurationError, InvalidValue, TransientError

# The connection is gone or was never made: every pooled connection may be just as dead.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # 08xxx and "connection was closed in the middle of operation"
    asyncpg.AdminShutdownError,  # 57P01 pg_terminate_backend, fast shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03 starting up or shutting down
    # asyncpg's protocol state broke, seen when a query starts on a connection the server has just killed
    # ("cannot switch to state ...; another operation is in progress"): that connection is unusable.
    asyncpg.InternalClientError,
    ConnectionError,  # refused, reset, broken pipe
    OSError,  # unreachable host, DNS failure
)


def is_connection_loss(error: BaseException) -> bool:
    """A lost connection; a timeout (an OSError too) is not one: asyncpg cancels the query and keeps it."""
    return isinstance(error, CONNECTION_LOST) and not isinstance(error, TimeoutError)


def translate(error: BaseException) -> ClientFlowError | None:
    """The domain error for a database failure, or None for what is not one (a bug, a cancellation, a domain
    error raised inside a transaction): those propagate unchanged."""
    if isinstance(error, ClientFlowError):
        return None
    if isinstance(error, TimeoutError | asyncpg.QueryCanceledError):
        return TransientError("postgres did not answer in time")
    if is_connection_loss(error):
        return TransientError(f"postgres connection lost ({type(error).__name__})")
    if isinstance(error, asyncpg.InsufficientResourcesError):  # 53xxx: too many connections, disk full
        return TransientError(f"postgres is out of resources ({type(error).__name__})")
    if isinstance(error, asyncpg.TransactionRollbackError | asyncpg.LockNotAvailableError):  # 40001, 40P01, 55P03
        return TransientError(f"postgres rolled the transaction back ({type(error).__name__})")
    if isinstance(
        error,
        asyncpg.InvalidAuthorizationSpecificationError  # 28xxx: bad user or password
        | asyncpg.InvalidCatalogNameError  # 3D000: no such database
        | asyncpg.InsufficientPrivilegeError,
    ):
        return ConfigurationError(f"postgres refused the worker's access ({type(error).__name__})")
    if isinstance(error, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return ConfigurationError("the database schema is older than this worker: run the migrate command")
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        table = error.table_name or "row"
        return InvalidValue(table, f"violates constraint {error.constraint_name or error.sqlstate}")
    if isinstance(error, asyncpg.DataError):  # 22xxx: out of range, bad format
        return InvalidValue("database value", f"was refused ({error.sqlstate})")
    if isinstance(error, asyncpg.exceptions._base.DataError):  # client side: a value asyncpg cannot encode
        return InvalidValue("database parameter", "cannot be encoded for its column")
    return None
