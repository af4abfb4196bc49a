"""``cli backfill`` over several orgs shows progress and, interrupted (SIGINT), resumes without recomputing the days
it had finished."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from tests.support.crm import create_org
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import ROOT, run_cli

DAYS = 30
"""Days per org; the interruption comes at the middle day of the first org, whatever the machine's speed."""

_UNCOMMITTED_SNAPSHOT = """
    insert into daily_snapshots (
        org_id, date, currency, appointments_booked, appointments_completed, appointments_cancelled,
        appointments_no_show, new_contacts, revenue_collected_minor, outstanding_minor, dunning_recovered_minor,
        messages, enrollments_started, enrollments_completed, computed_at)
    values ($1, $2, 'USD', 0, 0, 0, 0, 0, 0, 0, 0, '{}', 0, 0, now())
"""


def _interruptible() -> None:
    """Ctrl-C as at a terminal: a suite started in the background (``cmd &``) inherits SIGINT ignored, and a Python
    child keeps an ignored SIGINT ignored, so the interruption would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.asynccontextmanager
async def _write_held(database_url: str, org_id: str, day: date) -> AsyncIterator[int]:
    """A snapshot row of (org, day) inserted in a transaction left open: the backfill's write of that day waits on
    it (as on a slow statement) until the block ends, which rolls the row back. Yields the holder's server pid."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("begin")
        await connection.execute(_UNCOMMITTED_SNAPSHOT, org_id, day)
        yield connection.get_server_pid()
    finally:
        await connection.close()  # the open transaction ends rolled back


@contextlib.asynccontextmanager
async def _backfill(env: dict[str, str], args: list[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m entrypoints.cli backfill ARGS`` as a terminal starts it; killed if still running at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "entrypoints.cli", "backfill", *args,
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _until_waiting_on(db: Any, holder: int, process: asyncio.subprocess.Process) -> None:
    """Until a statement waits on the holder's row lock: the backfill is provably part way, not over."""
    blocked = "select count(*) from pg_stat_activity where $1 = any(pg_blocking_pids(pid))"
    while not await db.fetchval(blocked, holder):
        if process.returncode is not None:
            _out, err = await process.communicate()
            raise AssertionError(f"the backfill ended (exit {process.returncode}) before the held day: {err.decode()}")
        await asyncio.sleep(0.05)


async def _interrupt(process: asyncio.subprocess.Process) -> str:
    """Ctrl-C: SIGINT, then the standard error of the stopped process."""
    process.send_signal(signal.SIGINT)
    try:
        _out, err = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        raise AssertionError("the backfill went on for 30 s after SIGINT") from None
    return err.decode()


async def _checkpoints(client: redis_asyncio.Redis, prefix: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=f"{prefix}:cf:backfill:*", count=1000)]


def _member_day(member: bytes | str) -> tuple[str, date]:
    """A checkpoint member, ``<org id>|<YYYY-MM-DD>``, as (org id, day)."""
    org_id, day = (member.decode() if isinstance(member, bytes) else member).rsplit("|", 1)
    return org_id, date.fromisoformat(day)


async def _stored(db: Any, org_ids: list[str]) -> dict[tuple[str, date], Any]:
    """(org id, day) -> computed_at of every snapshot of these orgs."""
    rows = await db.fetch("select org_id, date, computed_at from daily_snapshots where org_id = any($1)", org_ids)
    return {(row["org_id"], row["date"]): row["computed_at"] for row in rows}


@pytest.mark.slow
async def test_an_interrupted_backfill_resumes_where_it_stopped(
    env: dict[str, str], db: Any, database_url: str, prefix: str
) -> None:
    """SIGINT while a two-org backfill writes a day (held by an open transaction) stops it with exit 130, saying
    how to resume, and leaves exactly the days written before checkpointed; the same command then computes only
    the days left, without touching the checkpointed ones, and forgets the checkpoint when done."""
    org_ids = [(await create_org(db)).id, (await create_org(db)).id]
    last = now_utc().date() - timedelta(days=2)
    first = last - timedelta(days=DAYS - 1)
    held = (org_ids[0], first + timedelta(days=DAYS // 2))
    args = [*org_ids, first.isoformat(), last.isoformat()]
    client = redis_asyncio.Redis()
    try:
        async with _write_held(database_url, *held) as holder, _backfill(env, args) as process:
            await _until_waiting_on(db, holder, process)
            interrupted = await _interrupt(process)
        assert process.returncode == 130, interrupted
        assert "run the same command to resume" in interrupted
        checkpoints = await _checkpoints(client, prefix)
        assert len(checkpoints) == 1, f"Ctrl-C left {len(checkpoints)} checkpoints of the backfill, not one"
        [checkpoint] = checkpoints
        finished = {_member_day(member) for member in await client.smembers(checkpoint)}
        before = await _stored(db, org_ids)

        code, out, resumed_err = await run_cli(env, "backfill", *args)

        assert code == 0, resumed_err
        assert await _checkpoints(client, prefix) == []
    finally:
        await client.aclose()
    assert held not in finished
    assert 0 < len(finished) < 2 * DAYS
    assert set(before) == finished  # the day in flight was not written: the interrupted statement was cancelled
    summary = json.loads(out)
    assert (summary["days"], summary["resumed_days"]) == (2 * DAYS, len(finished))
    assert summary["snapshots_stored"] == 2 * DAYS - len(finished)
    after = await _stored(db, org_ids)
    assert len(after) == 2 * DAYS
    assert {key: after[key] for key in before} == before  # the checkpointed days were not computed again
