"""Helpers of the topology tests: the npm bullmq producer on any topology, job states read through our own
connection factory, and reminder jobs whose sends the fake Twilio counts per phone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from adapters.bullmq.connection import RedisSettings, close_redis, open_client
from tests.support.crm import create_appointment, create_contact, create_org, reminder_start, unique_phone
from tests.support.processes import Providers, js_date, system_env
from tests.support.queues import NODE_CLI, ROOT

TERMINAL = ("completed", "failed")
RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}  # the Node CRM's job options


async def node_on(redis: Mapping[str, Any], op: str, prefix: str, queue: str, **fields: Any) -> Any:
    """One command of tests/node/bullmq_cli.js with the given ioredis connection (``{"cluster": [...]}``,
    Sentinel options, or host/port with ``tlsCaFile``)."""
    command = {"op": op, "prefix": prefix, "queue": queue, "redis": dict(redis), **fields}
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_CLI), json.dumps(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def add_from_node(redis: Mapping[str, Any], prefix: str, queue: str, jobs: Sequence[dict[str, Any]]) -> list[str]:
    ids: list[str] = (await node_on(redis, "add", prefix, queue, jobs=list(jobs)))["ids"]
    return ids


async def states(settings: RedisSettings, prefix: str, queue: str, ids: Sequence[str]) -> dict[str, str]:
    """Each job's state (completed, failed or other), read with the workers' own connection factory."""
    client = open_client(settings, max_connections=4, socket_timeout_s=5.0)
    try:
        found = {}
        for job_id in ids:
            if await client.zscore(f"{prefix}:{queue}:completed", job_id) is not None:
                found[job_id] = "completed"
            elif await client.zscore(f"{prefix}:{queue}:failed", job_id) is not None:
                found[job_id] = "failed"
            else:
                found[job_id] = "other"
        return found
    finally:
        await close_redis(client)


async def wait_terminal(
    settings: RedisSettings, prefix: str, queue: str, ids: Sequence[str], within: float = 60.0
) -> dict[str, str]:
    """Poll until every job is completed or failed (Redis errors during a failover are waited out)."""
    deadline = time.monotonic() + within
    found: dict[str, str] = {}
    while True:
        try:
            found = await states(settings, prefix, queue, ids)
        except Exception as error:  # a failover in progress: ask again
            found = {"error": type(error).__name__}
        if found and all(state in TERMINAL for state in found.values()):
            return found
        assert time.monotonic() < deadline, f"jobs not terminal in time: {found}"
        await asyncio.sleep(0.2)


def topology_env(providers: Providers, database_url: str, prefix: str, **redis: str) -> dict[str, str]:
    """Every process's environment on a test topology (``redis``: its REDIS_* variables), with production's
    stalled check and settle period made short (a send cut off by a kill or a failover is reconciled after 16 s)."""
    return system_env(
        providers,
        database_url,
        prefix,
        REDIS_HOST=None,
        REDIS_PORT=None,
        STALLED_INTERVAL_MS="2000",
        SEND_SETTLE_SECONDS="16",
        **redis,
    )


@attrs.frozen
class ReminderJob:
    phone: str
    job: dict[str, Any]


async def reminder_jobs(db: Any, count: int) -> list[ReminderJob]:
    """``count`` process-reminder jobs as the Node CRM queues them, each to a phone of its own."""
    org = await create_org(db)
    made = []
    for index in range(count):
        phone = unique_phone()
        contact = await create_contact(db, org, f"Client{index}", phone=phone)
        starts_at = reminder_start()
        appointment = await create_appointment(db, org, contact, starts_at)
        data = {
            "orgId": org.id,
            "contactId": contact,
            "appointmentId": appointment,
            "message": f"Hi Client{index}, see you soon. Reply STOP to opt out.",
            "scheduledFor": js_date(starts_at),
            "reminderType": "3h",
        }
        made.append(ReminderJob(phone, {"name": "process-reminder", "data": data, "opts": RETRY}))
    return made


@contextlib.contextmanager
def health_server(env: Mapping[str, str]) -> Iterator[Callable[[str], tuple[int, str]]]:
    """``python -m entrypoints.health`` on a free port with ``env``; yields ``get(path) -> (status, body)``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.health", "--port", "0"],
        cwd=ROOT,
        env=dict(env),
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = json.loads(process.stderr.readline())
        assert line["event"] == "health server listening", line
        base = f"http://127.0.0.1:{line['port']}"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=10) as answer:  # noqa: S310  # loopback http
                    return int(answer.status), answer.read().decode()
            except urllib.error.HTTPError as refused:
                return refused.code, refused.read().decode()

        yield get
    finally:
        process.terminate()
        process.wait(15)


def launch_refusal(env: Mapping[str, str], queue: str = "reminders") -> tuple[int, str]:
    """``python -m entrypoints.launch worker --queue <queue>`` expected to refuse: its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.launch", "worker", "--queue", queue],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr
