"""Throughput of one worker process on a Redis Cluster against the same process on a single Redis, same run.

The bench starts both servers itself on loopback ports 7630 and 7640-7645 (never the shared 6379): a 6-node Cluster
(3 masters, 3 replicas; tests/support/redis_topologies.py) and one redis-server, both without persistence. Each
run: npm bullmq adds N no-op snapshot jobs under a hash-tagged prefix (over an ioredis Cluster, or a plain client),
then one worker process (the real runtime, a no-op handler) drains them; throughput is N over first start to last
finish, read from the job hashes. Runs alternate single/cluster in pairs (the order flips each pair); the report
gives medians and the cluster/single ratio of each pair.

    .venv/bin/python bench/cluster_throughput.py --jobs 5000 --concurrency 50 --pairs 3
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
import tempfile
import time
import uuid
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.bullmq.connection import RedisSettings, close_redis, open_client  # noqa: E402  # after sys.path
from domain.jobs import QueueName  # noqa: E402
from tests.support.redis_topologies import Servers, redis_cluster  # noqa: E402

SINGLE_PORT = 7630
CLUSTER_PORTS = tuple(range(7640, 7646))  # apart from the tests' cluster, so both can run at once
QUEUE = str(QueueName.SNAPSHOTS)
JOB = {"name": "process-snapshots", "data": {"orgId": "org-bench", "date": "2025-07-01"}}
TOPOLOGIES: dict[str, dict[str, Any]] = {
    "single": {"node": {"host": "127.0.0.1", "port": SINGLE_PORT}, "python": {"port": SINGLE_PORT}},
    "cluster": {
        "node": {"cluster": [{"host": "127.0.0.1", "port": port} for port in CLUSTER_PORTS[:3]]},
        "python": {"cluster_nodes": [["127.0.0.1", port] for port in CLUSTER_PORTS]},
    },
}


def redis_settings(python: dict[str, Any]) -> RedisSettings:
    nodes = tuple((host, int(port)) for host, port in python.get("cluster_nodes", ()))
    return RedisSettings(port=int(python.get("port", 6379)), cluster_nodes=nodes)


def add_jobs(topology: str, prefix: str, count: int) -> None:
    command = {
        "op": "add-noop",
        "prefix": prefix,
        "queue": QUEUE,
        "count": count,
        "redis": TOPOLOGIES[topology]["node"],
    }
    subprocess.run(
        ["node", str(ROOT / "tests" / "node" / "bullmq_cli.js"), json.dumps({**command, **JOB})],
        check=True,
        capture_output=True,
    )


def start_worker(config: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--serve", config], cwd=ROOT)


async def one_run(topology: str, jobs: int, concurrency: int) -> float:
    """Jobs per second of one worker process draining ``jobs`` no-op jobs."""
    prefix = "{bench-" + uuid.uuid4().hex[:12] + "}"
    settings = redis_settings(TOPOLOGIES[topology]["python"])
    client = open_client(settings, max_connections=4, socket_timeout_s=30.0)
    try:
        add_jobs(topology, prefix, jobs)
        config = json.dumps({"prefix": prefix, "concurrency": concurrency, "python": TOPOLOGIES[topology]["python"]})
        worker = start_worker(config)
        try:
            deadline = time.monotonic() + 600
            while await client.zcard(f"{prefix}:{QUEUE}:completed") < jobs:
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not finish in time")
                await asyncio.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        async with client.pipeline(transaction=False) as pipe:
            for job_id in range(1, jobs + 1):
                pipe.hmget(f"{prefix}:{QUEUE}:{job_id}", "processedOn", "finishedOn")
            times = [(int(p), int(f)) for p, f in await pipe.execute()]
        return jobs / (max(f for _, f in times) - min(p for p, _ in times)) * 1000
    finally:
        await close_redis(client)


async def bench(jobs: int, concurrency: int, pairs: int) -> None:
    results: dict[str, list[float]] = {"single": [], "cluster": []}
    ratios = []
    for pair in range(pairs):
        for topology in ("single", "cluster") if pair % 2 == 0 else ("cluster", "single"):
            results[topology].append(await one_run(topology, jobs, concurrency))
            print(f"pair {pair + 1} {topology:8}: {results[topology][-1]:,.0f} jobs/s", flush=True)
        ratios.append(results["cluster"][-1] / results["single"][-1])
    print(f"\n{jobs} no-op jobs, concurrency {concurrency}, {pairs} pairs, one worker process")
    print("| Redis | jobs/s (median) |\n|---|---|")
    for topology, rates in results.items():
        print(f"| {topology} | {statistics.median(rates):,.0f} |")
    per_pair = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    print(f"\ncluster/single per pair: {per_pair}; median {statistics.median(ratios):.2f}")


def serve(config: dict[str, Any]) -> int:
    """The worker process: the real runtime on the given topology with a no-op snapshot handler."""
    import structlog
    import uvloop

    from adapters.bullmq.router import Handler
    from adapters.bullmq.worker_config import WorkerConfig
    from domain.jobs import Job, JobName, QueueName
    from domain.outcomes import Outcome, Published, SnapshotStored
    from entrypoints.worker import run_worker

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    stored = SnapshotStored("2025-07-01")

    async def noop(_job: Job) -> Outcome:
        return stored

    async def fan_out(_job: Job) -> Outcome:
        return Published(0)

    handlers: dict[JobName, Handler] = {JobName.SNAPSHOT: noop, JobName.FAN_OUT_SNAPSHOTS: fan_out}
    worker_config = WorkerConfig(
        queue=QueueName.SNAPSHOTS,
        redis=redis_settings(config["python"]),
        prefix=config["prefix"],
        concurrency=int(config["concurrency"]),
    )
    return int(uvloop.run(run_worker(worker_config, handlers)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(json.loads(args.serve))
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as directory:
        single = Servers(pathlib.Path(directory) / "single")
        single.directory.mkdir()
        single.start(SINGLE_PORT, "--port", str(SINGLE_PORT), "--appendonly", "no")
        try:
            (pathlib.Path(directory) / "cluster").mkdir()
            with redis_cluster(pathlib.Path(directory) / "cluster", CLUSTER_PORTS):
                asyncio.run(bench(args.jobs, args.concurrency, args.pairs))
        finally:
            single.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
