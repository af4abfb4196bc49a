"""Throughput of one Python worker process against one Node bullmq worker process, on the same Redis and jobs.

Each run: Node adds N no-op snapshot jobs, then one worker process (Node's bench_worker.js, or ours: the real
runtime with a no-op handler) drains them at the same concurrency; then Node trickles jobs one by one to measure
add-to-start latency (``processedOn - timestamp``). Throughput is N over first start to last finish, both read
from the job hashes, so process start-up is not counted. Runs alternate Node/Python in pairs; the report gives
medians and the Python/Node ratio of each pair.

    .venv/bin/python bench/bullmq_throughput.py --jobs 20000 --concurrency 50 --pairs 3

With ``--observability`` the pairs are two Python runs instead: ``plain`` (our log pipeline at ``warn``, no
Sentry, no tracing) and ``observed`` (log pipeline at ``info``: a JSON line per job; Sentry initialised against a
local fake; spans exported over OTLP/HTTP to a local fake collector), reporting the observed/plain ratio per pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis_asyncio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NODE_DIR = ROOT / "tests" / "node"
QUEUE = "snapshots"
JOB = {"name": "process-snapshots", "data": {"orgId": "org-bench", "date": "2025-07-01"}}


def node(command: dict[str, Any]) -> Any:
    out = subprocess.run(
        ["node", str(NODE_DIR / "bullmq_cli.js"), json.dumps(command)], check=True, capture_output=True
    ).stdout
    return json.loads(out)


def start_worker(kind: str, prefix: str, concurrency: int, extra: dict[str, Any]) -> subprocess.Popen[bytes]:
    config = json.dumps({"prefix": prefix, "queue": QUEUE, "concurrency": concurrency, "kind": kind, **extra})
    if kind == "node":
        argv = ["node", str(NODE_DIR / "bench_worker.js"), config]
    else:
        argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--serve", config]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)


async def wait_completed(client: redis_asyncio.Redis, prefix: str, count: int, within: float = 300) -> None:
    deadline = time.monotonic() + within
    while await client.zcard(f"{prefix}:{QUEUE}:completed") < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish in time")
        await asyncio.sleep(0.05)


async def job_times(client: redis_asyncio.Redis, prefix: str, ids: list[str]) -> list[tuple[int, int, int]]:
    times: list[tuple[int, int, int]] = []
    for start in range(0, len(ids), 2000):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[start : start + 2000]:
            pipe.hmget(f"{prefix}:{QUEUE}:{job_id}", "timestamp", "processedOn", "finishedOn")
        times += [(int(t), int(p), int(f)) for t, p, f in await pipe.execute()]
    return times


async def one_run(
    kind: str, jobs: int, concurrency: int, latency_jobs: int, extra: dict[str, Any] | None = None
) -> dict[str, float]:
    prefix = f"bench-{uuid.uuid4().hex}"
    client = redis_asyncio.Redis(decode_responses=True)
    try:
        node({"op": "add-noop", "prefix": prefix, "queue": QUEUE, "count": jobs, **JOB})
        worker = start_worker(kind, prefix, concurrency, extra or {})
        try:
            await wait_completed(client, prefix, jobs)
            trickled = node(
                {"op": "trickle", "prefix": prefix, "queue": QUEUE, "count": latency_jobs, "intervalMs": 5, **JOB}
            )["ids"]
            await wait_completed(client, prefix, jobs + latency_jobs)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        bulk = await job_times(client, prefix, [str(i) for i in range(1, jobs + 1)])
        latencies = sorted(p - t for t, p, _ in await job_times(client, prefix, trickled))
        span_ms = max(f for _, _, f in bulk) - min(p for _, p, _ in bulk)
        return {
            "jobs_per_s": jobs / span_ms * 1000,
            "latency_median_ms": statistics.median(latencies),
            "latency_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        }
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()


async def alternate(
    kinds: tuple[str, str],
    jobs: int,
    concurrency: int,
    pairs: int,
    latency_jobs: int,
    extra: dict[str, Any],
    before_run: Callable[[], None] = lambda: None,
) -> tuple[dict[str, list[dict[str, float]]], list[float]]:
    """Run the two kinds in pairs, alternating which goes first; the ratio per pair is second kind / first kind."""
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    ratios = []
    for pair in range(pairs):
        for kind in kinds if pair % 2 == 0 else kinds[::-1]:
            before_run()
            results[kind].append(await one_run(kind, jobs, concurrency, latency_jobs, extra))
            print(f"pair {pair + 1} {kind:8}: {json.dumps(results[kind][-1])}", flush=True)
        ratios.append(results[kinds[1]][-1]["jobs_per_s"] / results[kinds[0]][-1]["jobs_per_s"])
    return results, ratios


def report(
    results: dict[str, list[dict[str, float]]], ratios: list[float], jobs: int, concurrency: int, latency_jobs: int
) -> None:
    first, second = results
    print(
        f"\n{jobs} no-op jobs, concurrency {concurrency}, {len(ratios)} pairs;"
        f" latency over {latency_jobs} trickled jobs"
    )
    print("| worker | jobs/s (median) | add-to-start median ms | p99 ms |\n|---|---|---|---|")
    for kind, runs in results.items():
        rate = statistics.median(r["jobs_per_s"] for r in runs)
        median = statistics.median(r["latency_median_ms"] for r in runs)
        p99 = statistics.median(r["latency_p99_ms"] for r in runs)
        print(f"| {kind} | {rate:,.0f} | {median:.0f} | {p99:.0f} |")
    per_pair = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"\n{second}/{first} per pair: {per_pair}; median {statistics.median(ratios):.2f}")


async def bench(jobs: int, concurrency: int, pairs: int, latency_jobs: int) -> None:
    results, ratios = await alternate(("node", "python"), jobs, concurrency, pairs, latency_jobs, {})
    report(results, ratios, jobs, concurrency, latency_jobs)


async def compare_observability(jobs: int, concurrency: int, pairs: int, latency_jobs: int) -> None:
    """Alternate ``plain`` and ``observed`` Python runs; the fakes for Sentry and OTLP run in this process."""
    from tests.fakeservers.otlp import FakeOtlpCollector
    from tests.fakeservers.sentry import FakeSentry

    collector, sentry = FakeOtlpCollector(), FakeSentry()
    await collector.start()
    await sentry.start()
    extra = {"otlp": collector.base_url, "sentry_dsn": sentry.dsn}
    try:
        results, ratios = await alternate(
            ("plain", "observed"), jobs, concurrency, pairs, latency_jobs, extra, collector.exports.clear
        )
    finally:
        await collector.close()
        await sentry.close()
    report(results, ratios, jobs, concurrency, latency_jobs)


def _observe(config: dict[str, Any]) -> None:
    """The logging, Sentry and tracing set-up of the ``plain`` or ``observed`` kind (stdout is discarded)."""
    from adapters.observability.logging import configure_logging
    from adapters.observability.sentry import init_sentry
    from adapters.observability.tracing import init_tracing

    if config["kind"] == "plain":
        configure_logging("warn", production=True, stream=sys.stdout)
        return
    configure_logging("info", production=True, stream=sys.stdout)
    init_sentry(config["sentry_dsn"], environment="bench", release=None)
    init_tracing("clientflow-worker-bench", endpoint=config["otlp"])


def serve(config: dict[str, Any]) -> int:
    """Our worker process: the real runtime (pooled client, uvloop, hiredis) with a no-op snapshot handler."""
    import structlog
    import uvloop

    from adapters.bullmq.router import Handler
    from adapters.bullmq.worker_config import WorkerConfig
    from domain.jobs import Job, JobName, QueueName
    from domain.outcomes import Outcome, Published, SnapshotStored
    from entrypoints.worker import run_worker

    if config.get("kind") in ("plain", "observed"):
        _observe(config)
    else:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    stored = SnapshotStored("2025-07-01")

    async def noop(_job: Job) -> Outcome:
        return stored

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    handlers: dict[JobName, Handler] = {JobName.SNAPSHOT: noop, JobName.FAN_OUT_SNAPSHOTS: fan_out}
    worker_config = WorkerConfig(
        queue=QueueName.SNAPSHOTS, prefix=config["prefix"], concurrency=int(config["concurrency"])
    )
    return int(uvloop.run(run_worker(worker_config, handlers)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--observability", action="store_true", help="compare Python with and without observability")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(json.loads(args.serve))
    run = compare_observability if args.observability else bench
    asyncio.run(run(args.jobs, args.concurrency, args.pairs, args.latency_jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
