"""Schema migrations: numbered SQL files applied in order, each once, recorded in ``schema_migrations``.

Several processes may start at once: a session advisory lock serializes them, so the second finds the work done.
Files 0001..0099 hold the repositories' tables; 0100 and later belong to other adapters (the outbox).
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import attrs

from adapters.postgres.errors import translate
from domain.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_lock key: the ASCII of "cfmigrat", so it cannot collide with another tool's small integers.
MIGRATION_LOCK_KEY = int.from_bytes(b"cfmigrat", "big") & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@attrs.frozen
class Migration:
    version: str  # the file name without ".sql", e.g. "0001_crm_tables"
    sql: str = attrs.field(repr=False)


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in order of their number; a malformed name or a duplicated number is an error."""
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ConfigurationError(f"migration file name {path.name} is not NNNN_lowercase_words.sql")
        if match.group(1) in found:
            raise ConfigurationError(f"two migration files share the number {match.group(1)}")
        found[match.group(1)] = Migration(path.stem, path.read_text(encoding="utf-8"))
    return [found[number] for number in sorted(found)]


async def migrate(dsn: str, *, connect_timeout: float = 10.0, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return the versions applied now.

    Running it again applies nothing. Database failures arrive as domain errors (TransientError when the server
    cannot be reached).
    """
    migrations = available_migrations(directory)
    try:
        connection = await asyncpg.connect(dsn, timeout=connect_timeout)
        try:
            return await _apply_locked(connection, migrations)
        finally:
            await connection.close()
    except BaseException as error:
        translated = translate(error)
        if translated is None:
            raise
        raise translated from None


async def _apply_locked(connection: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await connection.execute("select pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            "create table if not exists schema_migrations ("
            " version text primary key, applied_at timestamptz not null default now())"
        )
        done = {row["version"] for row in await connection.fetch("select version from schema_migrations")}
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute("insert into schema_migrations (version) values ($1)", migration.version)
            applied.append(migration.version)
        return applied
    finally:
        await connection.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
