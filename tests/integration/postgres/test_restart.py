"""The pool survives the server going away: a failed call is transient, later calls succeed, no process restart."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import asyncpg
import attrs
import pytest

from adapters.postgres import PostgresDatabase
from domain.errors import TransientError
from tests.support.postgres import ADMIN_DSN

PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")


async def _backends(application_name: str) -> list[int]:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        rows = await admin.fetch("select pid from pg_stat_activity where application_name = $1", application_name)
        return [r["pid"] for r in rows]
    finally:
        await admin.close()


async def _wait_for_query(application_name: str, query: str) -> list[int]:
    """The pids of this application's backends once one of them runs ``query``."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        for _ in range(200):
            pids = await admin.fetch(
                "select pid from pg_stat_activity where application_name = $1 and query = $2", application_name, query
            )
            if pids:
                return [r["pid"] for r in pids]
            await asyncio.sleep(0.05)
        raise AssertionError("the query never showed up in pg_stat_activity")
    finally:
        await admin.close()


async def _terminate(pids: list[int]) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute("select pg_terminate_backend(pid) from unnest($1::int[]) as pid", pids)
    finally:
        await admin.close()


async def test_a_terminated_backend_fails_its_call_as_transient_then_the_pool_recovers(
    integration_database: str,
) -> None:
    """pg_terminate_backend on a connection mid-query: that call raises TransientError, the next ones succeed."""
    name = f"cf-restart-{uuid.uuid4().hex[:8]}"
    db = await PostgresDatabase.connect(integration_database, min_size=2, max_size=2, application_name=name)
    try:
        running = asyncio.create_task(db.fetchval("select pg_sleep(60)"))
        pids = await _wait_for_query(name, "select pg_sleep(60)")
        await _terminate(pids)
        with pytest.raises(TransientError) as caught:
            await running
        assert "connection" in str(caught.value) or "Shutdown" in str(caught.value)
        assert [await db.fetchval("select 1") for _ in range(3)] == [1, 1, 1]
    finally:
        await db.close()


async def test_idle_connections_killed_are_replaced(integration_database: str) -> None:
    """Every pooled backend terminated while idle: at most one call fails (as transient), then calls succeed on new
    backends."""
    name = f"cf-restart-{uuid.uuid4().hex[:8]}"
    db = await PostgresDatabase.connect(integration_database, min_size=3, max_size=3, application_name=name)
    try:
        before = set(await _backends(name))
        assert len(before) == 3
        await _terminate(sorted(before))
        outcomes: list[object] = []
        for _ in range(4):
            try:
                outcomes.append(await db.fetchval("select pg_backend_pid()"))
            except TransientError as error:
                outcomes.append(error)
        assert sum(isinstance(o, TransientError) for o in outcomes) <= 1
        assert isinstance(outcomes[-1], int)
        assert outcomes[-1] not in before
    finally:
        await db.close()


def _as_postgres(*argv: str) -> list[str]:
    """The command line that runs ``argv`` as the postgres user (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


@attrs.frozen
class Cluster:
    dsn: str
    start: list[str]  # pg_ctl command lines, run as the postgres user
    stop: list[str]


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test only, on a free loopback port."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="cf-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-w"]
    start = _as_postgres(*pg_ctl, "-l", str(base / "log"), "-o", options, "start")
    subprocess.run(start, check=True, capture_output=True)
    try:
        yield Cluster(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", start, _as_postgres(*pg_ctl, "-m", "fast", "stop")
        )
    finally:
        subprocess.run(
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
async def test_server_restart_fails_calls_as_transient_until_it_is_back(
    own_cluster: Cluster,
) -> None:
    """Own cluster stopped: calls raise TransientError; started again: the same pool answers, no new process."""
    db = await PostgresDatabase.connect(own_cluster.dsn, min_size=2, max_size=2, connect_timeout=3)
    try:
        first_pid = await db.fetchval("select pg_backend_pid()")
        stop = await asyncio.create_subprocess_exec(*own_cluster.stop, stdout=asyncio.subprocess.DEVNULL)
        assert await stop.wait() == 0
        with pytest.raises(TransientError):
            await db.fetchval("select 1")
        with pytest.raises(TransientError):
            await db.fetchval("select 1")
        restart = await asyncio.create_subprocess_exec(*own_cluster.start, stdout=asyncio.subprocess.DEVNULL)
        assert await restart.wait() == 0
        assert await db.fetchval("select 1") == 1
        assert await db.fetchval("select pg_backend_pid()") != first_pid
    finally:
        await db.close()
