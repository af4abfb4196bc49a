"""The system tests' world: fake providers on a thread of their own, real worker and CLI processes, the Node producer.

Every process here is started exactly as in production (``python -m entrypoints.worker --queue <q>``,
``python -m entrypoints.cli ...``) with its configuration in the environment, so settings and the composition root
are exercised as deployed. The fake Twilio and SendGrid servers run on an event loop in a background thread: they
must keep answering while a test blocks on a subprocess, and they outlive a single test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as redis_asyncio

from domain.jobs import CONSUMED_QUEUES
from tests.support.fakeservers.providers import Providers as FakeProviders
from tests.support.queues import node

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE_JOBS = ROOT / "tests" / "node" / "system_jobs.js"

TWILIO_FROM = "+15005550006"
SENDGRID_FROM = "worker@clinic.example.com"
STATUS_CALLBACK = "https://hooks.clinic.example.com/twilio/status"
READY_LINE = "worker_started"


def js_date(moment: datetime) -> dict[str, str]:
    """How tests/node/bullmq_cli.js is told to put a real JavaScript ``Date`` into job data."""
    return {"$date": moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}


def token() -> str:
    """A short unique tag for ids, so nothing a test creates can collide with another test's (or run's) data."""
    return uuid.uuid4().hex[:10]


class Providers(FakeProviders):
    """The fake Twilio and SendGrid on their own thread, and how many create requests reached Twilio per number."""

    def sms_posts_to(self, phone: str) -> int:
        """How many create requests for this number reached the fake Twilio (answered or not)."""
        quoted = phone.replace("+", "%2B").encode()
        return sum(
            1
            for r in list(self.twilio.requests)
            if r.method == "POST" and (b"To=" + quoted in r.body or b"To=" + phone.encode() in r.body)
        )


def system_env(providers: Providers, database_url: str, prefix: str, **overrides: str | None) -> dict[str, str]:
    """The environment of every process of one test world; ``overrides`` set (or, with None, remove) variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "SENDGRID_", "REDIS_", "BULLMQ_", "SENTRY_", "OTEL_"))
    }
    env.update(
        {
            "NODE_ENV": "production",
            "LOG_LEVEL": "info",
            "DATABASE_URL": database_url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": "6379",
            "BULLMQ_PREFIX": prefix,
            "TWILIO_ACCOUNT_SID": providers.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": providers.twilio.auth_token,
            "TWILIO_FROM_NUMBER": TWILIO_FROM,
            "TWILIO_BASE_URL": providers.twilio.base_url,
            "TWILIO_STATUS_CALLBACK_URL": STATUS_CALLBACK,
            "SENDGRID_API_KEY": providers.sendgrid.api_key,
            "SENDGRID_FROM_EMAIL": SENDGRID_FROM,
            "SENDGRID_HOST": providers.sendgrid.base_url,
            "WORKER_CONCURRENCY": "5",
            "LOCK_DURATION_MS": "4000",
            "WORKER_GRACE_SECONDS": "1.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class WorkerProcess:
    """``python -m entrypoints.worker --queue <queue>`` with the given environment, its output in a log file."""

    def __init__(self, queue: str, env: Mapping[str, str], log_dir: pathlib.Path) -> None:
        self.queue = queue
        self.log_path = log_dir / f"worker-{queue}-{token()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.worker", "--queue", queue],
            cwd=ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (production logging writes one JSON object per line)."""
        events = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                found = json.loads(line)
                if isinstance(found, dict):
                    events.append(found)
        return events

    def wait_ready(self, within: float = 30.0) -> WorkerProcess:
        deadline = time.monotonic() + within
        while READY_LINE not in self.output():
            code = self.process.poll()
            assert code is None, f"worker {self.queue} exited {code} before it was ready:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"worker {self.queue} not ready:\n{self.output()[-3000:]}"
            time.sleep(0.05)
        return self

    def wait_exit(self, within: float) -> int:
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.queue} still running:\n{self.output()[-3000:]}") from None

    def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL and fail when it does not leave in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise AssertionError(f"worker {self.queue} ignored SIGTERM:\n{self.output()[-3000:]}") from None
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


@contextlib.contextmanager
def workers(queue: str, env: Mapping[str, str], log_dir: pathlib.Path, count: int = 1) -> Iterator[list[WorkerProcess]]:
    """``count`` worker processes of one queue, ready; each must leave with exit 0 on SIGTERM afterwards."""
    started = [WorkerProcess(queue, env, log_dir) for _ in range(count)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        codes = [worker.stop() for worker in started]
    assert codes == [0] * count, [w.output()[-3000:] for w in started]


@contextlib.contextmanager
def worker_per_queue(env: Mapping[str, str], log_dir: pathlib.Path) -> Iterator[dict[str, WorkerProcess]]:
    """One ready worker process per consumed queue (domain/jobs.py), by queue name; as ``workers`` afterwards."""
    with contextlib.ExitStack() as stack:
        yield {str(queue): stack.enter_context(workers(str(queue), env, log_dir))[0] for queue in CONSUMED_QUEUES}


async def run_cli(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """``python -m entrypoints.cli <args>``: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "entrypoints.cli",
        *args,
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def node_jobs(op: str, prefix: str, queue: str, **fields: Any) -> Any:
    """Run one command of tests/node/system_jobs.js (job control the CRM's tooling does) and return its answer."""
    command = {"op": op, "prefix": prefix, "queue": queue, **fields}
    process = await asyncio.create_subprocess_exec(
        "node", str(NODE_JOBS), json.dumps(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def add_jobs(prefix: str, queue: str, jobs: list[dict[str, Any]]) -> list[str]:
    """Add jobs with the real npm bullmq, as the Node CRM does (``{name, data, opts}`` each)."""
    answer = await node("add", prefix, queue, jobs=jobs)
    ids: list[str] = answer["ids"]
    return ids


async def inspect_jobs(prefix: str, queue: str, ids: list[str]) -> list[dict[str, Any] | None]:
    """``Job.fromId`` for each id, read by npm bullmq."""
    found: list[dict[str, Any] | None] = (await node("inspect", prefix, queue, ids=ids))["jobs"]
    return found


async def wait_for_state(
    prefix: str, queue: str, job_id: str, states: tuple[str, ...], within: float = 20.0
) -> dict[str, Any]:
    """Poll Redis for the job's state, then read it back through Node once it is in one of ``states``."""
    client = redis_asyncio.Redis(decode_responses=True)
    deadline = time.monotonic() + within
    try:
        while True:
            state = await _state(client, f"{prefix}:{queue}", job_id)
            if state in states:
                break
            assert time.monotonic() < deadline, f"job {job_id} still {state}, expected one of {states}"
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    job = (await inspect_jobs(prefix, queue, [job_id]))[0]
    assert job is not None
    assert job["state"] in states, job
    return job


async def _state(client: redis_asyncio.Redis, key: str, job_id: str) -> str:
    for state in ("completed", "failed", "delayed"):
        if await client.zscore(f"{key}:{state}", job_id) is not None:
            return state
    if job_id in await client.lrange(f"{key}:active", 0, -1):
        return "active"
    if job_id in await client.lrange(f"{key}:wait", 0, -1):
        return "waiting"
    return "unknown"


async def delete_keys(*patterns: str) -> None:
    client = redis_asyncio.Redis()
    try:
        for pattern in patterns:
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def connect(database_url: str) -> Any:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
