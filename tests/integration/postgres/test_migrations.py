"""Migrations: from an empty database, re-run as a no-op, and several migrators at once."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys

import asyncpg
import pytest

from adapters.postgres import migrate
from adapters.postgres.migrator import available_migrations
from domain.errors import ConfigurationError, TransientError
from tests.support.postgres import fresh_database, temporary_database

ROOT = pathlib.Path(__file__).resolve().parents[3]
ALL_VERSIONS = [m.version for m in available_migrations()]


async def _recorded(dsn: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        return [r["version"] for r in await connection.fetch("select version from schema_migrations order by 1")]
    finally:
        await connection.close()


def test_migrate_from_empty_then_rerun_is_a_no_op() -> None:
    """An empty database gets every migration in order, recorded once; a second run applies nothing."""
    with temporary_database("migrate", migrated=False) as dsn:
        assert asyncio.run(migrate(dsn)) == ALL_VERSIONS
        assert asyncio.run(migrate(dsn)) == []
        assert asyncio.run(_recorded(dsn)) == ALL_VERSIONS
    assert ALL_VERSIONS[:2] == ["0001_crm_tables", "0002_worker_tables"]


def test_two_processes_migrating_at_once_apply_each_migration_once() -> None:
    """Two migrate processes started together both succeed, and between them apply each migration exactly once."""
    script = (
        "import asyncio, json, sys; from adapters.postgres import migrate;"
        " print(json.dumps(asyncio.run(migrate(sys.argv[1]))))"
    )
    with temporary_database("migrate", migrated=False) as dsn:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, dsn], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(2)
        ]
        results = [p.communicate(timeout=120) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], [err.decode()[-2000:] for _, err in results]
        applied = [json.loads(out) for out, _ in results]
        assert sorted(applied[0] + applied[1]) == ALL_VERSIONS
        assert asyncio.run(_recorded(dsn)) == ALL_VERSIONS


async def test_concurrent_migrators_in_one_process_serialize() -> None:
    """Four migrate calls on separate connections at once: no error, each migration applied by one of them."""
    async with fresh_database("migrate", migrated=False) as dsn:
        applied = await asyncio.gather(*(migrate(dsn) for _ in range(4)))
        assert sorted(v for run in applied for v in run) == ALL_VERSIONS


def test_malformed_or_duplicated_file_names_are_refused(tmp_path: pathlib.Path) -> None:
    """A file not named NNNN_words.sql, or two files with one number, stop the migrator before it connects."""
    (tmp_path / "0001_a.sql").write_text("select 1;")
    (tmp_path / "1_b.sql").write_text("select 1;")
    with pytest.raises(ConfigurationError, match=r"1_b\.sql"):
        available_migrations(tmp_path)
    (tmp_path / "1_b.sql").unlink()
    (tmp_path / "0001_c.sql").write_text("select 1;")
    with pytest.raises(ConfigurationError, match="0001"):
        available_migrations(tmp_path)


async def test_unreachable_server_is_transient(closed_port_dsn: str) -> None:
    """migrate against a port nobody listens on raises TransientError, not an OSError."""
    with pytest.raises(TransientError):
        await migrate(closed_port_dsn, connect_timeout=2)
