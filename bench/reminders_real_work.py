"""Real work per second for one worker process: appointment reminders end to end, and where the time goes.

A throwaway migrated database gets one org (in a zone where it is midday, so the send window is open), N contacts
and N appointments two hours ahead; the real npm bullmq adds one ``process-reminder`` job per appointment to a
paused queue; one ``python -m entrypoints.worker --queue reminders`` process (production settings: JSON logs at
info, concurrency ``--concurrency``) is started with the fake Twilio of tests/support/fakeservers answering on loopback;
the queue is resumed. Each job re-reads the appointment in PostgreSQL, claims its send-ledger row, posts the SMS to
the fake Twilio and records the result. ``SMS_PER_SECOND`` is raised to 100,000 so the provider rate limit (10/s
by default) does not bound the figure. Jobs/s is N over first start to last finish, from the job hashes.

Production observability is on (JSON logs at info, every span exported to a local OTLP fake in this process).
Where the time goes: the wall time of each job's span split by its direct child spans (PostgreSQL statements and
transactions, the Twilio send), and, from one more run under cProfile, the worker's own CPU time by the package it
was spent in (start-up imports excluded).

    .venv/bin/python bench/reminders_real_work.py --redis-port 7500 --jobs 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import timedelta

import asyncpg
import redis.asyncio as redis_asyncio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from domain.jobs import QueueName  # noqa: E402
from tests.support.crm import create_org, reminder_start  # noqa: E402
from tests.support.fakeservers.otlp import FakeOtlpCollector  # noqa: E402
from tests.support.fakeservers.providers import now_utc, running  # noqa: E402
from tests.support.postgres import temporary_database  # noqa: E402
from tests.support.processes import READY_LINE, Providers, system_env  # noqa: E402

QUEUE = str(QueueName.REMINDERS)
STAGES = (  # (stage, path fragments of the code the time was spent in); the first match wins
    ("start-up (imports)", ("<frozen importlib", "builtins.compile", "marshal.loads", "io.open_code", "posix.stat")),
    ("PostgreSQL (asyncpg, our repositories, ledger)", ("asyncpg/", "adapters/postgres/")),
    ("Twilio call (twilio client, aiohttp, our sender)", ("twilio/", "aiohttp/", "adapters/twilio", "yarl/")),
    ("BullMQ and Redis (bullmq, redis-py, our runtime)", ("bullmq/", "redis/", "hiredis", "adapters/bullmq/")),
    ("logging (structlog, JSON, redaction)", ("structlog/", "adapters/observability/logging", "redaction")),
    ("tracing, metrics, Sentry", ("opentelemetry/", "adapters/observability/", "sentry_sdk/")),
    ("domain (decode, rules, rendering)", ("/domain/", "adapters/wire", "adapters/template")),
    ("event loop and asyncio", ("asyncio/", "uvloop", "{method 'run_until_complete'", "select")),
)


def node(port: int, op: str, prefix: str, **fields: object) -> object:
    command = {"op": op, "prefix": prefix, "queue": QUEUE, "redis": {"port": port}, **fields}
    argv = ["node", str(ROOT / "tests" / "node" / "bullmq_cli.js"), json.dumps(command)]
    return json.loads(subprocess.run(argv, check=True, capture_output=True).stdout)


async def seed(dsn: str, jobs: int) -> list[dict[str, object]]:
    """One org, ``jobs`` contacts with an appointment each; the jobs' data as the Node CRM writes it."""
    db = await asyncpg.connect(dsn)
    try:
        org = await create_org(db)
        starts_at = reminder_start()
        contacts = [
            (org.id, org.ident(f"c{i}"), f"C{i}", f"+1555{i:07d}", now_utc() - timedelta(days=30)) for i in range(jobs)
        ]
        await db.copy_records_to_table(
            "contacts", records=contacts, columns=["org_id", "id", "first_name", "phone", "created_at"]
        )
        appointments = [
            (org.id, org.ident(f"a{i}"), org.ident(f"c{i}"), starts_at, "scheduled", now_utc()) for i in range(jobs)
        ]
        columns = ["org_id", "id", "contact_id", "starts_at", "status", "created_at"]
        await db.copy_records_to_table("appointments", records=appointments, columns=columns)
    finally:
        await db.close()
    return [
        {
            "orgId": org.id,
            "contactId": org.ident(f"c{i}"),
            "appointmentId": org.ident(f"a{i}"),
            "message": f"Hi C{i}, see you at 2pm. Reply STOP to opt out.",
            "scheduledFor": {"$date": starts_at.isoformat().replace("+00:00", "Z")},
            "reminderType": "3h",
        }
        for i in range(jobs)
    ]


async def one_run(port: int, env: dict[str, str], data: list[dict[str, object]], profile: str | None) -> float:
    """Jobs/s of one worker process draining one job per entry of ``data``."""
    prefix = f"bench-real-{uuid.uuid4().hex}"
    client = redis_asyncio.Redis(port=port, decode_responses=True)
    env = {**env, "BULLMQ_PREFIX": prefix}
    node(port, "pause", prefix)
    for start in range(0, len(data), 200):
        jobs = [{"name": "process-reminder", "data": d} for d in data[start : start + 200]]
        node(port, "add", prefix, jobs=jobs)
    argv = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []), "-m", "entrypoints.worker"]
    with tempfile.TemporaryFile() as log:
        worker = await asyncio.create_subprocess_exec(
            *argv, "--queue", QUEUE, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while READY_LINE.encode() not in (log.seek(0) or log.read()):
                if worker.returncode is not None:
                    raise RuntimeError(f"worker exited {worker.returncode}")
                await asyncio.sleep(0.1)
            node(port, "resume", prefix)
            deadline = time.monotonic() + 600
            while await _finished(client, prefix) < len(data):
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not finish in time")
                await asyncio.sleep(0.1)
        finally:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), 60)
    try:
        failed = await client.zrange(f"{prefix}:{QUEUE}:failed", 0, -1)
        if failed:
            reasons = {await client.hget(f"{prefix}:{QUEUE}:{job_id}", "failedReason") for job_id in failed}
            raise RuntimeError(f"{len(failed)} reminders failed: {reasons}")
        pipe = client.pipeline(transaction=False)
        for job_id in range(1, len(data) + 1):
            pipe.hmget(f"{prefix}:{QUEUE}:{job_id}", "processedOn", "finishedOn")
        times = [(int(p), int(f)) for p, f in await pipe.execute()]
        return len(data) / (max(f for _, f in times) - min(p for p, _ in times)) * 1000
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()


async def _finished(client: redis_asyncio.Redis, prefix: str) -> int:
    return int(await client.zcard(f"{prefix}:{QUEUE}:completed")) + int(await client.zcard(f"{prefix}:{QUEUE}:failed"))


def cpu_shares(profile: str) -> dict[str, float]:
    """The worker's own CPU time per stage (cProfile), as a share of the time outside start-up."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # the raw table: {func: (cc, nc, tt, ct, callers)}
    seconds: dict[str, float] = defaultdict(float)
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.items():
        where = f"{filename}:{name}" if filename != "~" else name
        stage = next((s for s, marks in STAGES if any(m in where for m in marks)), "other (stdlib, attrs, cattrs...)")
        seconds[stage] += own
    seconds.pop(STAGES[0][0], None)
    total = sum(seconds.values())
    return {stage: spent / total for stage, spent in sorted(seconds.items(), key=lambda item: -item[1])}


def wall_shares(collector: FakeOtlpCollector) -> dict[str, float]:
    """Wall time of the job spans ("process reminders") split by their direct child spans (PostgreSQL statements and
    transactions, the Twilio send); the rest is time in the worker between them (decoding, rules, logging, waiting
    for a pool connection or the event loop)."""
    spans = [span for _resource, span in collector.spans()]
    jobs = {span.span_id: span for span in spans if span.name == f"process {QUEUE}"}
    spent: dict[str, float] = defaultdict(float)
    for span in spans:
        if span.parent_span_id in jobs:
            spent[span.name] += span.end_time_unix_nano - span.start_time_unix_nano
    total = sum(span.end_time_unix_nano - span.start_time_unix_nano for span in jobs.values())
    spent["in the worker between calls"] = total - sum(spent.values())
    return {name: nanos / total for name, nanos in sorted(spent.items(), key=lambda item: -item[1])}


async def clear_ledger(dsn: str) -> None:
    """Empty the send ledger before a run, so every reminder is owed again."""
    db = await asyncpg.connect(dsn)
    try:
        await db.execute("truncate send_ledger")
    finally:
        await db.close()


async def bench(args: argparse.Namespace, dsn: str, providers: Providers) -> None:
    data = await seed(dsn, args.jobs)
    collector = FakeOtlpCollector()
    await collector.start()
    env = system_env(providers, dsn, "unused", REDIS_PORT=str(args.redis_port))
    env |= {"WORKER_CONCURRENCY": str(args.concurrency), "SMS_PER_SECOND": "100000", "LOCK_DURATION_MS": "30000"}
    env |= {"WORKER_GRACE_SECONDS": "10", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url}
    rates = []
    try:
        for run in range(args.runs):
            await clear_ledger(dsn)
            collector.exports.clear()
            rates.append(await one_run(args.redis_port, env, data, None))
            print(f"run {run + 1}: {rates[-1]:.0f} reminders/s", flush=True)
        wall = wall_shares(collector)
        with tempfile.TemporaryDirectory() as directory:
            profile = os.path.join(directory, "worker.prof")
            await clear_ledger(dsn)
            profiled = await one_run(args.redis_port, env, data, profile)
            cpu = cpu_shares(profile)
    finally:
        await collector.close()
    rates.sort()
    print(f"\n### real work: {args.jobs} reminders end to end, one process, concurrency {args.concurrency}")
    print(f"reminders/s per process: {', '.join(f'{r:.0f}' for r in rates)} (median {rates[len(rates) // 2]:.0f})")
    print("\nWall time of a job (its span), by direct child span, last run:\n| stage | share |\n|---|---|")
    for stage, share in wall.items():
        print(f"| {stage} | {share:.0%} |")
    print(f"\nThe worker's own CPU time (cProfile run, {profiled:.0f}/s), start-up excluded:")
    print("| stage | share |\n|---|---|")
    for stage, share in cpu.items():
        print(f"| {stage} | {share:.0%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    with temporary_database("bench_real") as dsn, running(Providers()) as providers:
        asyncio.run(bench(args, dsn, providers))
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
