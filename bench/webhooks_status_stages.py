"""Benchmark: where a Twilio status callback's answer time goes, stage by stage, and what a commit costs here.

The webhooks app runs in a child process as in ``webhooks_status_load.py`` (same database seeding, same signed,
shuffled callbacks), with bench-only timers around each stage: a middleware stamps the handler's entry and exit
(``time.perf_counter``, the system-wide monotonic clock, so the client's and the server's stamps compare) and parses
the form; wrappers time the signature check (the ``twilio`` library's validator), the store call and, inside it, the
pool's acquire and release and the SQL statement. One client sends one request at a time, so the stages add up to
the answer time:

    request in   client sends -> handler entered (client request build, loopback, HTTP parse, routing)
    form         ``await request.post()`` (read and parse the urlencoded body)
    signature    ``TwilioWebhooks.authentic`` (HMAC-SHA1 of URL + sorted form)
    handler      the rest of the handler: the report, the store call's own code, logging, metrics, the 204
    acquire      taking a connection from the pool
    statement    the compare-and-set UPDATE's round trip, commit included (one statement is its own transaction)
    release      giving it back (asyncpg's reset statement, one more round trip, unless the pool skips it)
    response out handler returned -> client has the answer (serialize, write, client parse)

Then the commit alone, on a scratch table of the bench database: N single-row INSERT commits with
``synchronous_commit`` on (the default, what the ledger uses) and, as a measurement only, off for that one session
(the difference is the WAL flush the commit waits for); and ``pg_test_fsync`` on the database's disk if installed.
Baselines in the same run: ``GET /webhooks/live``, and a bench-only POST of the same form that waits as long as the
median database stages took without doing anything (what HTTP costs around an idle wait on this machine).
Run: ``.venv/bin/python bench/webhooks_status_stages.py [--callbacks 2000] [--loop uvloop|asyncio]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg
import uvloop
from aiohttp import web
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from webhooks_status_load import ADMIN_DSN, callbacks, dsn_for, seed

from adapters.clock import SystemClock
from adapters.health.server import running_health_server
from adapters.observability.logging import configure_logging
from adapters.postgres import PostgresDatabase, migrate
from adapters.postgres.feedback import PostgresDeliveryFeedback, open_acknowledging_database
from adapters.webhooks.server import WebhookHandlers, build_webhooks_app
from adapters.webhooks.twilio import TwilioWebhooks
from domain.feedback import ConsentChange, DeliveryReport, FeedbackApplied
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, twilio_headers

if TYPE_CHECKING:
    from adapters.postgres.pool import Connection

STAGES = ("request in", "form", "signature", "handler", "acquire", "statement", "release", "response out")
_timings: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("timings")


def _add(stage: str, seconds: float) -> None:
    timings = _timings.get(None)
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + seconds


class TimedTwilio(TwilioWebhooks):
    def authentic(self, raw_path: str, form: object, signature: str | None) -> bool:  # type: ignore[override]
        started = time.perf_counter()
        try:
            return super().authentic(raw_path, form, signature)  # type: ignore[arg-type]
        finally:
            _add("signature", time.perf_counter() - started)


class TimedConnection:
    """A pooled connection whose statements are timed (``statement``)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def fetch(self, query: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._connection.fetch(query, *args)
        finally:
            _add("statement", time.perf_counter() - started)

    async def fetchval(self, query: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._connection.fetchval(query, *args)
        finally:
            _add("statement", time.perf_counter() - started)


class TimedDatabase:
    """The pool with its acquire and release timed, and its connections' statements."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[TimedConnection]:
        started = time.perf_counter()
        async with self._database.connection() as connection:
            _add("acquire", time.perf_counter() - started)
            yield TimedConnection(connection)
            released = time.perf_counter()
        _add("release", time.perf_counter() - released)


class TimedFeedback(PostgresDeliveryFeedback):
    async def apply(self, reports: Sequence[DeliveryReport], changes: Sequence[ConsentChange]) -> FeedbackApplied:
        started = time.perf_counter()
        try:
            applied = await super().apply(reports, changes)
        finally:
            _add("store", time.perf_counter() - started)
        _add("moved", float(applied.reports))
        return applied


@web.middleware
async def stage_timer(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    entered = time.perf_counter()
    timings: dict[str, float] = {}
    _timings.set(timings)
    if request.method == "POST":
        await request.post()  # cached on the request: the handler's own call costs nothing more
        timings["form"] = time.perf_counter() - entered
    response = await handler(request)
    left = time.perf_counter()
    timings["in_at"], timings["out_at"], timings["total"] = entered, left, left - entered
    response.headers["X-Stages"] = ";".join(f"{k}={v!r}" for k, v in timings.items())
    return response


async def wait(request: web.Request) -> web.Response:
    """Bench-only: the form read, then an idle wait of ``ms`` milliseconds (the loop waits as on the database)."""
    await request.post()
    await asyncio.sleep(float(request.query["ms"]) / 1000)
    return web.Response(status=204)


def serve(dsn: str, port: int, loop: str) -> None:
    """The child process: the instrumented webhooks app on ``port`` until killed."""
    configure_logging("warn", production=True)

    async def main() -> None:
        database = await open_acknowledging_database(dsn)
        handlers = WebhookHandlers(
            feedback=TimedFeedback(TimedDatabase(database)),  # type: ignore[arg-type]
            clock=SystemClock(),
            twilio=TimedTwilio(AUTH_TOKEN, PUBLIC_URL),
            sendgrid=None,
            max_body_bytes=1_048_576,
        )
        app = build_webhooks_app(handlers)
        app.middlewares.append(stage_timer)
        app.router.add_post("/bench/wait", wait)
        async with running_health_server(app, "127.0.0.1", port):
            await asyncio.Event().wait()

    (uvloop.run if loop == "uvloop" else asyncio.run)(main())


def breakdown(sent_at: float, received_at: float, header: str) -> dict[str, float]:
    """Milliseconds per stage of one answer, from the client's stamps and the server's ``X-Stages``."""
    server = {k: float(v) for k, v in (part.split("=") for part in header.split(";"))}
    ms = {
        "request in": server["in_at"] - sent_at,
        "form": server.get("form", 0.0),
        "signature": server.get("signature", 0.0),
        "acquire": server.get("acquire", 0.0),
        "statement": server.get("statement", 0.0),
        "release": server.get("release", 0.0),
        "response out": received_at - server["out_at"],
    }
    ms["handler"] = server["total"] - ms["form"] - ms["signature"] - ms["acquire"] - ms["statement"] - ms["release"]
    result = {stage: seconds * 1000 for stage, seconds in ms.items()}
    result["answer"] = (received_at - sent_at) * 1000
    result["moved"] = server.get("moved", 0.0)
    return result


async def fire_one_at_a_time(
    base: str, requests: Sequence[tuple[str, dict[str, str]] | None]
) -> list[dict[str, float]]:
    signed = [twilio_headers(r[0], r[1]) if r is not None and r[0].startswith("/webhooks/") else {} for r in requests]
    found = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        for request, headers in zip(requests, signed, strict=True):
            sent_at = time.perf_counter()
            if request is None:
                async with http.get(base + "/webhooks/live") as answer:
                    assert answer.status == 200
                    await answer.read()
                    stages = answer.headers["X-Stages"]
            else:
                url = URL(base + request[0], encoded=True)
                async with http.post(url, data=request[1], headers=headers) as answer:
                    assert answer.status == 204, answer.status
                    await answer.read()
                    stages = answer.headers["X-Stages"]
            found.append(breakdown(sent_at, time.perf_counter(), stages))
    return found


def table(title: str, rows: list[dict[str, float]], stages: Sequence[str]) -> None:
    if not rows:
        return
    print(f"\n{title} ({len(rows)} requests): median / p90 / mean ms")
    for stage in (*stages, "answer"):
        values = sorted(row[stage] for row in rows)
        p90 = values[int(len(values) * 0.9)]
        print(f"  {stage:<13} {statistics.median(values):7.3f} {p90:7.3f} {statistics.fmean(values):7.3f}")


async def commit_cost(dsn: str, rounds: int) -> None:
    """Single-row INSERT commits on a scratch table, synchronous_commit on (default) and off (this session only)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("create table bench_commit (n bigint primary key)")
        insert = await connection.prepare("insert into bench_commit values ($1)")
        print(f"\ncommit alone: {rounds} single-row INSERT commits each way, alternated in blocks of 50")
        timings: dict[str, list[float]] = {"on": [], "off": []}
        n = 0
        for block in range(rounds // 50 * 2):
            mode = "on" if block % 2 == 0 else "off"
            await connection.execute(f"set synchronous_commit = {mode}")
            for _ in range(50):
                n += 1
                started = time.perf_counter()
                await insert.fetch(n)
                timings[mode].append((time.perf_counter() - started) * 1000)
        for mode, values in timings.items():
            values.sort()
            print(
                f"  synchronous_commit={mode:<3} median {statistics.median(values):.3f} ms"
                f" p90 {values[int(len(values) * 0.9)]:.3f} ms mean {statistics.fmean(values):.3f} ms"
            )
        flush = statistics.median(timings["on"]) - statistics.median(timings["off"])
        print(f"  the WAL flush a durable commit waits for: {flush:.3f} ms (median on - median off)")
    finally:
        await connection.close()


def fsync_test() -> None:
    """``pg_test_fsync`` for 2 s per method, in a temporary file on the disk PostgreSQL's data directory is on."""
    found = shutil.which("pg_test_fsync") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_test_fsync"))), None
    )
    if found is None:
        print("\npg_test_fsync: not installed")
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        output = subprocess.run(
            [str(found), "-s", "2", "-f", f"{scratch}/pg_test_fsync.out"], capture_output=True, text=True, check=False
        ).stdout
    print("\npg_test_fsync -s 2 (one 8 kB write + flush, as a commit's WAL flush):")
    for line in output.splitlines():
        if "fdatasync" in line or "fsync " in line or "open_datasync" in line:
            print("  " + line.strip())


async def run(args: argparse.Namespace) -> None:
    name = f"cf_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'create database "{name}"')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(dsn_for(name), port, args.loop), daemon=True
    )
    try:
        await migrate(dsn_for(name))
        server.start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):  # a loaded machine may take many seconds to start the child
            try:
                await fire_one_at_a_time(base, [None])
                break
            except aiohttp.ClientError:
                if not server.is_alive():
                    raise SystemExit("the webhooks server process died at start") from None
                await asyncio.sleep(0.1)
        else:
            raise SystemExit("the webhooks server did not answer within 60 s")
        keys = await seed(dsn_for(name), args.callbacks // 4)
        print(f"server loop {args.loop}; load average {os.getloadavg()[0]:.1f}; concurrency 1")
        await fire_one_at_a_time(base, [None] * 200)  # warm both sides
        hooks = await fire_one_at_a_time(base, callbacks(keys, args.callbacks))
        live = await fire_one_at_a_time(base, [None] * args.callbacks)
        wait_ms = statistics.median(r["acquire"] + r["statement"] + r["release"] for r in hooks)
        form = callbacks(keys, 1)[0][1]
        waits = await fire_one_at_a_time(base, [(f"/bench/wait?ms={wait_ms:.3f}", form)] * (args.callbacks // 2))
        table("status callbacks that move the entry", [r for r in hooks if r["moved"]], STAGES)
        table("status callbacks that change nothing", [r for r in hooks if not r["moved"]], STAGES)
        table("GET /webhooks/live (baseline)", live, ("request in", "handler", "response out"))
        table(
            f"POST of the same form, no signature, an idle wait of {wait_ms:.2f} ms for the database (baseline)",
            waits,
            ("request in", "form", "handler", "response out"),
        )
        await commit_cost(dsn_for(name), args.commits)
        if args.fsync:
            fsync_test()
    finally:
        server.kill()
        server.join()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=2_000)
    parser.add_argument("--commits", type=int, default=1_000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="skip pg_test_fsync")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
