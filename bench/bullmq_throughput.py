"""Our worker runtime against one npm bullmq 6.7.0 worker process, on the same Redis and jobs, in one run.

Scenarios (``--scenarios``, comma-separated; all by default, ``delayed`` last):

- ``throughput``: N no-op snapshot jobs added to a paused queue, one worker process started, the queue resumed;
  jobs/s is N over first start to last finish (read from the job hashes, so start-up is not counted). Then 200 jobs
  trickled one every 5 ms give the add-to-start latency (``processedOn - timestamp``, whole ms on both sides: the
  median, and the mean, which resolves fractions of a ms over many jobs). Kinds, rotated in order each round:
  ``node`` (tests/node/bench_worker.js), ``python`` (our runtime with a no-op handler, logs at warn as production
  configures them), ``traced`` (the same plus every job's span exported over OTLP/HTTP: what the OpenTelemetry SDK
  alone costs), ``observed`` (our runtime with production observability: JSON logs at info, metrics, Sentry and
  every job's span exported over OTLP/HTTP to local fakes in this process), ``sampled`` (``observed`` with
  ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` keeping ``--sample-ratio`` of the traces). Ratios are per round,
  against that round's Node run.
- ``limits``: Node sets ``setGlobalConcurrency(1)`` or ``setGlobalRateLimit(2, 1000)``; 8 jobs of 20 ms are added
  to an idle worker of concurrency 10; reports the span (first start to last finish) and the largest gap between
  two starts, Node and Python alternating.
- ``fleet``: 1 to 4 of our worker processes on one queue; total jobs/s as a ratio to one Node process of the round.
- ``rss``: resident memory of one worker process (Node and ours) idle, after 50,000 and after 100,000 jobs.
- ``delayed``: a Node and a Python worker sit idle side by side for ``--idle-s``; then one delayed job (2 s) is
  added to each; reports how late each started after its due time.
- ``profile`` (not in the default list): one ``--profile-kind`` worker drains ``--jobs`` jobs under cProfile,
  timed by the main thread's CPU clock (so other processes' load does not inflate it; the span exporter's thread is
  not counted); the profile is written to ``--profile-out`` and its top functions printed.

    .venv/bin/python bench/bullmq_throughput.py --redis-port 7500 --jobs 20000 --pairs 3

The last line is ``python/node ratio: X.XX (median of N pairs)`` (no-op, one process, concurrency 50).
``--kinds`` picks the throughput scenario's workers; ``--baseline CHECKOUT`` adds kind ``baseline``, the no-op
worker of another checkout (its own ``.venv``), for a same-run A/B. Nothing listening on ``--redis-port``: the
bench stops at once, naming the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import pathlib
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis_asyncio
from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NODE_DIR = ROOT / "tests" / "node"

from domain.jobs import QueueName  # noqa: E402  # run from the checkout (sys.path above)

QUEUE = str(QueueName.SNAPSHOTS)
JOB = {"name": "process-snapshots", "data": {"orgId": "org-bench", "date": "2025-07-01"}}
PYTHON_KINDS = ("python", "traced", "observed", "sampled")
"""``python``: logs at warn as production configures them, no tracing; ``traced``: the same plus every job's span
exported over OTLP (the OpenTelemetry SDK's own cost, nothing else); ``observed``: production observability;
``sampled``: the same with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` at ``--sample-ratio``."""
BASELINE = "baseline"
"""The kind running the ``python`` worker of another checkout (``--baseline``), for a same-run A/B."""
LIMITS = {
    "global concurrency 1": {"concurrency": 1},
    "global rate limit 2 / 1000 ms": {"rateMax": 2, "rateDurationMs": 1000},
}


class Bench:
    """One bench run against the Redis on ``port``; every run uses a fresh key prefix, deleted afterwards."""

    def __init__(self, port: int, baseline: pathlib.Path | None = None) -> None:
        self.port = port
        self.client = redis_asyncio.Redis(port=port, decode_responses=True)
        self.observability: dict[str, str] = {}
        self.profile_out: str | None = None
        self.baseline = baseline

    async def check_redis(self) -> None:
        """Fail at once when nothing answers on the port (the Node CLI would retry its connection for ever)."""
        probe = redis_asyncio.Redis(port=self.port, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0))
        try:
            await probe.ping()
        except (redis_exceptions.ConnectionError, redis_exceptions.TimeoutError):
            raise SystemExit(f"no Redis answers on 127.0.0.1:{self.port} (--redis-port)") from None
        finally:
            await probe.aclose()

    # -- plumbing --------------------------------------------------------------------------------------------

    def node(self, op: str, prefix: str, **fields: Any) -> Any:
        command = {"op": op, "prefix": prefix, "queue": QUEUE, "redis": {"port": self.port}, **fields}
        argv = ["node", str(NODE_DIR / "bullmq_cli.js"), json.dumps(command)]
        return json.loads(subprocess.run(argv, check=True, capture_output=True).stdout)

    def start(self, kind: str, prefix: str, concurrency: int, job_ms: int = 0) -> subprocess.Popen[bytes]:
        config = {"prefix": prefix, "queue": QUEUE, "concurrency": concurrency, "jobMs": job_ms, "kind": kind}
        config |= {"redis": {"port": self.port}, "profile": self.profile_out, **self.observability}
        root = ROOT
        if kind == "node":
            argv = ["node", str(NODE_DIR / "bench_worker.js"), json.dumps(config)]
        elif kind == BASELINE:
            assert self.baseline is not None
            root = self.baseline
            config["kind"] = "python"
            python = root / ".venv" / "bin" / "python"
            argv = [str(python), str(root / "bench" / "bullmq_throughput.py"), "--serve", json.dumps(config)]
        else:
            argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--serve", json.dumps(config)]
        return subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE if kind == "node" else subprocess.DEVNULL)

    @contextlib.asynccontextmanager
    async def workers(
        self, kind: str, prefix: str, concurrency: int, count: int = 1, job_ms: int = 0
    ) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
        """``count`` worker processes, ready (Node printed ``ready``; ours beat their heartbeat); SIGTERM on exit."""
        processes = [self.start(kind, prefix, concurrency, job_ms) for _ in range(count)]
        try:
            await self._wait_ready(kind, prefix, processes)
            yield processes
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()

    async def _wait_ready(self, kind: str, prefix: str, processes: list[subprocess.Popen[bytes]]) -> None:
        if kind == "node":
            loop = asyncio.get_running_loop()
            for process in processes:
                assert process.stdout is not None
                await loop.run_in_executor(None, process.stdout.readline)
            return
        deadline = time.monotonic() + 60
        while await self.client.scard(f"{prefix}:cf:heartbeats:{QUEUE}") < len(processes):
            if time.monotonic() > deadline:
                raise RuntimeError("our worker processes did not start")
            await asyncio.sleep(0.05)

    async def wait_completed(self, prefix: str, count: int, within: float = 600) -> None:
        deadline = time.monotonic() + within
        while await self.client.zcard(f"{prefix}:{QUEUE}:completed") < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not finish in time")
            await asyncio.sleep(0.02)

    async def job_times(self, prefix: str, ids: list[str]) -> list[tuple[int, int, int]]:
        """(timestamp, processedOn, finishedOn) of each job."""
        times: list[tuple[int, int, int]] = []
        for start in range(0, len(ids), 2000):
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids[start : start + 2000]:
                pipe.hmget(f"{prefix}:{QUEUE}:{job_id}", "timestamp", "processedOn", "finishedOn")
            times += [(int(t), int(p), int(f)) for t, p, f in await pipe.execute()]
        return times

    async def delete(self, prefix: str) -> None:
        keys = [key async for key in self.client.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 1000):
            await self.client.delete(*keys[start : start + 1000])

    @contextlib.asynccontextmanager
    async def fresh_prefix(self) -> AsyncIterator[str]:
        prefix = f"bench-{uuid.uuid4().hex}"
        try:
            yield prefix
        finally:
            await self.delete(prefix)

    # -- scenarios -------------------------------------------------------------------------------------------

    async def drain(self, kind: str, jobs: int, concurrency: int, processes: int = 1, latency_jobs: int = 0) -> Any:
        """Jobs/s of ``processes`` workers draining ``jobs`` queued no-op jobs; add-to-start latency if asked."""
        async with self.fresh_prefix() as prefix:
            self.node("pause", prefix)
            self.node("add-noop", prefix, count=jobs, **JOB)
            async with self.workers(kind, prefix, concurrency, processes):
                self.node("resume", prefix)
                await self.wait_completed(prefix, jobs)
                trickled = []
                if latency_jobs:
                    trickled = self.node("trickle", prefix, count=latency_jobs, intervalMs=5, **JOB)["ids"]
                    await self.wait_completed(prefix, jobs + latency_jobs)
            bulk = await self.job_times(prefix, [str(i) for i in range(1, jobs + 1)])
            span_ms = max(f for _, _, f in bulk) - min(p for _, p, _ in bulk)
            result = {"jobs_per_s": round(jobs / span_ms * 1000)}
            if trickled:
                latencies = sorted(p - t for t, p, _ in await self.job_times(prefix, trickled))
                result["latency_median_ms"] = statistics.median(latencies)
                result["latency_mean_ms"] = round(statistics.fmean(latencies), 2)
                result["latency_p99_ms"] = latencies[int(len(latencies) * 0.99)]
            return result

    async def throughput(
        self, jobs: int, concurrency: int, pairs: int, latency_jobs: int, kinds: tuple[str, ...]
    ) -> list[float]:
        """Each round runs every kind once, the order rotated by one per round; ratios against the round's Node."""
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        ratios: dict[str, list[float]] = {kind: [] for kind in kinds if kind != "node"}
        for round_ in range(pairs):
            shift = round_ % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                runs[kind].append(await self.drain(kind, jobs, concurrency, latency_jobs=latency_jobs))
                print(f"round {round_ + 1} {kind:8}: {json.dumps(runs[kind][-1])}", flush=True)
            for kind in ratios:
                ratios[kind].append(runs[kind][-1]["jobs_per_s"] / runs["node"][-1]["jobs_per_s"])
        print(f"\n### throughput: {jobs} no-op jobs, one process, concurrency {concurrency}, {pairs} rounds")
        print("| worker | jobs/s (median) | x Node per round (median) | add-to-start median / mean ms | p99 ms |")
        print("|---|---|---|---|---|")
        for kind, results in runs.items():
            per_round = ", ".join(f"{r:.2f}" for r in ratios[kind]) if kind in ratios else "1"
            median = f" ({statistics.median(ratios[kind]):.2f})" if kind in ratios else ""
            rate = statistics.median(r["jobs_per_s"] for r in results)
            latency, p99 = "-", "-"
            if latency_jobs:
                median_ms = statistics.median(r["latency_median_ms"] for r in results)
                latency = f"{median_ms:.1f} / {statistics.median(r['latency_mean_ms'] for r in results):.2f}"
                p99 = f"{statistics.median(r['latency_p99_ms'] for r in results):.0f}"
            print(f"| {kind} | {rate:,.0f} | {per_round}{median} | {latency} | {p99} |")
        if "python" in ratios and BASELINE in ratios:
            ab = [ours / base for ours, base in zip(ratios["python"], ratios[BASELINE], strict=True)]
            print(
                f"\npython/baseline per round: {', '.join(f'{r:.2f}' for r in ab)} (median {statistics.median(ab):.2f})"
            )
        return ratios.get("python", [])

    async def limits(self, pairs: int) -> None:
        rows = []
        for case, limit in LIMITS.items():
            for round_ in range(pairs):
                for kind in ("node", "python") if round_ % 2 == 0 else ("python", "node"):
                    span, gap = await self._limited_run(kind, limit)
                    rows.append((case, kind, span, gap))
                    print(f"{case} {kind}: span {span} ms, largest gap {gap} ms", flush=True)
        print("\n### limits: 8 jobs of 20 ms added to an idle worker of concurrency 10")
        print("| limit | worker | span ms (median) | largest gap between starts ms (median) |\n|---|---|---|---|")
        for case in LIMITS:
            for kind in ("node", "python"):
                spans = [s for c, k, s, _ in rows if (c, k) == (case, kind)]
                gaps = [g for c, k, _, g in rows if (c, k) == (case, kind)]
                print(f"| {case} | {kind} | {statistics.median(spans):.0f} | {statistics.median(gaps):.0f} |")

    async def _limited_run(self, kind: str, limit: dict[str, int]) -> tuple[int, int]:
        async with self.fresh_prefix() as prefix:
            async with self.workers(kind, prefix, 10, job_ms=20):
                self.node("global-limits", prefix, **limit)
                await asyncio.sleep(0.5)  # the worker is idle, blocked on the marker
                self.node("add", prefix, jobs=[JOB] * 8)
                await self.wait_completed(prefix, 8, within=120)
            times = await self.job_times(prefix, [str(i) for i in range(1, 9)])
        starts = sorted(p for _, p, _ in times)
        return max(f for _, _, f in times) - starts[0], max(b - a for a, b in itertools.pairwise(starts))

    async def fleet(self, jobs: int, concurrency: int, pairs: int, max_processes: int) -> None:
        rows: dict[int, list[float]] = {n: [] for n in range(1, max_processes + 1)}
        for round_ in range(pairs):
            node_rate = (await self.drain("node", jobs, concurrency))["jobs_per_s"]
            print(f"fleet round {round_ + 1} node x1: {node_rate} jobs/s", flush=True)
            for processes in rows:
                rate = (await self.drain("python", jobs, concurrency, processes))["jobs_per_s"]
                rows[processes].append(rate / node_rate)
                print(f"fleet round {round_ + 1} python x{processes}: {rate} jobs/s", flush=True)
        print(f"\n### fleet: {jobs} no-op jobs on one queue, concurrency {concurrency} per process")
        print("| our processes | total jobs/s as x one Node process (per round) | median |\n|---|---|---|")
        for processes, ratios in rows.items():
            per_round = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"| {processes} | {per_round} | {statistics.median(ratios):.2f} |")

    async def rss(self, concurrency: int) -> None:
        print("\n### rss: one worker process, MiB resident after N no-op jobs")
        print("| worker | 0 | 50,000 | 100,000 |\n|---|---|---|---|")
        for kind in ("node", "python"):
            async with self.fresh_prefix() as prefix, self.workers(kind, prefix, concurrency) as (process,):
                sizes = [_rss_mib(process.pid)]
                for done in (50_000, 100_000):
                    self.node("add-noop", prefix, count=50_000, **JOB)
                    await self.wait_completed(prefix, done)
                    await asyncio.sleep(1.0)
                    sizes.append(_rss_mib(process.pid))
            print(f"| {kind} | " + " | ".join(f"{size:.1f}" for size in sizes) + " |", flush=True)

    async def profile(self, kind: str, jobs: int, concurrency: int, out: str) -> None:
        import pstats

        self.profile_out = out
        try:
            result = await self.drain(kind, jobs, concurrency)
        finally:
            self.profile_out = None
        print(f"\n### profile: {kind}, {jobs} no-op jobs, concurrency {concurrency} (under cProfile): {result}")
        for order in ("tottime", "cumulative"):
            pstats.Stats(out).sort_stats(order).print_stats(30)

    async def delayed_after_idle(self, idle_s: float, delay_ms: int = 2000) -> None:
        async with (
            self.fresh_prefix() as node_prefix,
            self.fresh_prefix() as python_prefix,
            self.workers("node", node_prefix, 10),
            self.workers("python", python_prefix, 10),
        ):
            await asyncio.sleep(idle_s)
            prefixes = {"node": node_prefix, "python": python_prefix}
            ids = {
                kind: self.node("add", p, jobs=[{**JOB, "opts": {"delay": delay_ms}}])["ids"]
                for kind, p in prefixes.items()
            }
            lateness = {}
            for kind, prefix in prefixes.items():
                await self.wait_completed(prefix, 1, within=60)
                ((timestamp, processed, _),) = await self.job_times(prefix, ids[kind])
                lateness[kind] = processed - timestamp - delay_ms
        print(f"\n### delayed: a {delay_ms} ms delayed job added after {idle_s:.0f} s idle")
        print("| worker | started after its due time, ms |\n|---|---|")
        for kind, late in lateness.items():
            print(f"| {kind} | {late} |")


def _rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def bench(args: argparse.Namespace) -> None:
    from tests.support.fakeservers.otlp import FakeOtlpCollector
    from tests.support.fakeservers.sentry import FakeSentry

    scenarios = args.scenarios.split(",")
    kinds = tuple(args.kinds.split(","))
    if "node" not in kinds or not set(kinds) <= {"node", *PYTHON_KINDS, BASELINE}:
        raise SystemExit(f"--kinds: node and any of {', '.join((*PYTHON_KINDS, BASELINE))}")
    if BASELINE in kinds and args.baseline is None:
        raise SystemExit("--kinds baseline needs --baseline CHECKOUT")
    runner = Bench(args.redis_port, args.baseline)
    await runner.check_redis()
    collector, sentry = FakeOtlpCollector(), FakeSentry()
    await collector.start()
    await sentry.start()
    runner.observability = {"otlp": collector.base_url, "sentry_dsn": sentry.dsn, "sample_ratio": args.sample_ratio}
    ratios: list[float] = []
    try:
        if "throughput" in scenarios:
            ratios = await runner.throughput(args.jobs, args.concurrency, args.pairs, args.latency_jobs, kinds)
            collector.exports.clear()
        if "limits" in scenarios:
            await runner.limits(max(1, args.pairs - 1))
        if "fleet" in scenarios:
            await runner.fleet(args.jobs, args.concurrency, max(1, args.pairs - 1), args.max_processes)
        if "rss" in scenarios:
            await runner.rss(args.concurrency)
        if "delayed" in scenarios:
            await runner.delayed_after_idle(args.idle_s)
        if "profile" in scenarios:
            await runner.profile(args.profile_kind, args.jobs, args.concurrency, args.profile_out)
    finally:
        await collector.close()
        await sentry.close()
        await runner.client.aclose()
    if ratios:
        print(f"\npython/node ratio: {statistics.median(ratios):.2f} (median of {len(ratios)} pairs)")


def _observe(config: dict[str, Any]) -> None:
    """Logging, Sentry and tracing as production sets them up for the kind (stdout is discarded)."""
    from adapters.observability.logging import configure_logging
    from adapters.observability.sentry import init_sentry
    from adapters.observability.tracing import DEFAULT_SAMPLER, init_tracing, sampler_named

    kind = config["kind"]
    production = kind in ("observed", "sampled")
    configure_logging("info" if production else "warn", production=True, stream=sys.stdout)
    if production:
        init_sentry(config["sentry_dsn"], environment="bench", release=None)
    if kind != "python":
        sampler = DEFAULT_SAMPLER
        if kind == "sampled":
            sampler = sampler_named("parentbased_traceidratio", config["sample_ratio"])
        init_tracing("clientflow-worker-bench", endpoint=config["otlp"], sampler=sampler)


def serve(config: dict[str, Any]) -> int:
    """Our worker process: the real runtime (pooled client, uvloop, hiredis) with a snapshot handler taking
    ``jobMs`` (0: a no-op)."""
    import uvloop

    from adapters.bullmq.connection import RedisSettings
    from adapters.bullmq.router import Handler
    from adapters.bullmq.worker_config import WorkerConfig
    from domain.jobs import Job, JobName, QueueName
    from domain.outcomes import Outcome, Published, SnapshotStored
    from entrypoints.worker import run_worker

    _observe(config)
    stored = SnapshotStored("2025-07-01")
    job_s = int(config.get("jobMs", 0)) / 1000

    async def snapshot(_job: Job) -> Outcome:
        if job_s:
            await asyncio.sleep(job_s)
        return stored

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    handlers: dict[JobName, Handler] = {
        JobName.SNAPSHOT: snapshot,
        JobName.FAN_OUT_SNAPSHOTS: fan_out,
        JobName.MAINTAIN_QUEUES: fan_out,
    }
    worker_config = WorkerConfig(
        queue=QueueName.SNAPSHOTS,
        redis=RedisSettings(port=int(config["redis"]["port"])),
        prefix=config["prefix"],
        concurrency=int(config["concurrency"]),
    )
    if not config.get("profile"):
        return int(uvloop.run(run_worker(worker_config, handlers)))
    profiler = cProfile.Profile(time.thread_time)
    try:
        return int(profiler.runcall(uvloop.run, run_worker(worker_config, handlers)))
    finally:
        profiler.dump_stats(config["profile"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-port", type=int, default=6379, help="a Redis of the bench's own is advised")
    parser.add_argument("--scenarios", default="throughput,limits,fleet,rss,delayed")
    parser.add_argument("--kinds", default="node,python,observed", help="workers of the throughput scenario")
    parser.add_argument(
        "--baseline",
        type=pathlib.Path,
        help="another checkout (with its .venv) whose no-op worker runs as the kind 'baseline', e.g. /work/main",
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--sample-ratio", type=float, default=0.1, help="the share of traces kind 'sampled' keeps")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=3, help="rounds of the throughput scenario (others: one less)")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--max-processes", type=int, default=4)
    parser.add_argument("--idle-s", type=float, default=600.0, help="idle period before the delayed job")
    parser.add_argument("--profile-kind", choices=PYTHON_KINDS, default="observed")
    parser.add_argument("--profile-out", default="bullmq_worker.prof", help="where the profile scenario writes")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(json.loads(args.serve))
    asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
