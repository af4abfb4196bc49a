"""``cli backfill`` over several orgs shows progress and, interrupted (SIGINT), resumes without recomputing the days
it had finished."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from tests.support.crm import create_org
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import ROOT, run_cli

DAYS = 400


def _interruptible() -> None:
    """Ctrl-C as at a terminal: a suite started in the background (``cmd &``) inherits SIGINT ignored, and a Python
    child keeps an ignored SIGINT ignored, so the interruption would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
async def test_an_interrupted_backfill_resumes_where_it_stopped(env: dict[str, str], db: Any, prefix: str) -> None:
    """SIGINT stops a two-org backfill part way (it says how to resume); the same command then computes only the
    days left: the checkpointed days keep their snapshots, only the day in flight may be computed twice."""
    orgs = [await create_org(db), await create_org(db)]
    last = now_utc().date() - timedelta(days=2)
    first = last - timedelta(days=DAYS - 1)
    args = [o.id for o in orgs] + [first.isoformat(), last.isoformat()]
    client = redis_asyncio.Redis()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "entrypoints.cli", "backfill", *args,
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )  # fmt: skip
    try:
        while not [key async for key in client.scan_iter(match=f"{prefix}:cf:backfill:*")]:
            assert process.returncode is None, "the backfill ended before it could be interrupted"
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(process.communicate(), 30)
        [checkpoint] = [key async for key in client.scan_iter(match=f"{prefix}:cf:backfill:*")]
        finished = await client.smembers(checkpoint)
    finally:
        await client.aclose()
    computed_before = await db.fetch(
        "select org_id, date, computed_at from daily_snapshots where org_id = any($1::text[])", [o.id for o in orgs]
    )

    code, out, resumed_err = await run_cli(env, "backfill", *args)

    assert process.returncode != 0
    assert "run the same command to resume" in err.decode()
    assert 0 < len(finished) < 2 * DAYS
    assert code == 0, resumed_err
    summary = json.loads(out)
    assert (summary["days"], summary["resumed_days"]) == (2 * DAYS, len(finished))
    assert summary["snapshots_stored"] == 2 * DAYS - len(finished)
    after = {
        (r["org_id"], r["date"]): r["computed_at"]
        for r in await db.fetch(
            "select org_id, date, computed_at from daily_snapshots where org_id = any($1::text[])", [o.id for o in orgs]
        )
    }
    assert len(after) == 2 * DAYS
    checkpointed = {tuple(member.decode().rsplit("|", 1)) for member in finished}
    for row in computed_before:
        if (row["org_id"], row["date"].isoformat()) in checkpointed:
            assert after[(row["org_id"], row["date"])] == row["computed_at"]  # not recomputed
    assert len(computed_before) - len(checkpointed) <= 1  # at most the day in flight is computed again
