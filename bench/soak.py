"""Chaos soak of the reminders queue: no reminder lost, none sent twice, under process, server and provider faults.

    .venv/bin/python bench/soak.py --reminders 3000 --seed 1              # the chaos run
    .venv/bin/python bench/soak.py --reminders 3000 --seed 2 --race       # every job twice at once, provider 500s

Everything runs on loopback ports of its own (``--base-port``, default 7100: Redis +1, PostgreSQL +2, health +3):
- a Redis with AOF (``appendfsync everysec``, ``noeviction``) and a PostgreSQL cluster in a temporary directory;
- a fake Twilio (tests/support/fakeservers/twilio.py) that records every create and, on a seeded draw, answers 500
  without creating, 500 after creating, or answers after the client's 10 s timeout (after creating);
- the real npm bullmq (tests/node/bullmq_cli.js) adding one 3h reminder per due appointment in chunks, and adding
  ``--duplicates`` of them again from a second connection (another Node process) as a second CRM node would;
- our system under our ``supervisord.conf`` (3 reminder workers; the e2e tests' temporary checkout), with the
  production recovery paths at short periods (lock 5 s, stalled check 2 s, settle 16 s);
- faults on a seeded schedule: SIGKILL of a random reminder worker every 5-15 s, two ``supervisorctl restart``s,
  a Redis restart (SHUTDOWN, start on the same AOF) and a PostgreSQL fast restart. ``--race`` has no process
  faults: every reminder is added twice at once and 10 % of creates answer 500 without creating.

Prints, per run: jobs added, terminal states, messages per due appointment (histogram), lost, duplicates, ledger
states at the end, dead letters (and how many still owe their message), worker RSS at start and end, time. Exits 1
when a reminder was lost or sent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import attrs
from aiohttp import web

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.bullmq.keys import DEAD_LETTER_QUEUE  # noqa: E402  # run from the checkout (see sys.path above)
from adapters.postgres.migrator import migrate  # noqa: E402
from domain.jobs import QueueName  # noqa: E402
from tests.support.clinic import Patient, seed_patients  # noqa: E402
from tests.support.fakeservers.providers import now_utc  # noqa: E402
from tests.support.fakeservers.scripted import RecordedRequest  # noqa: E402
from tests.support.fakeservers.twilio import FakeTwilio, twilio_error  # noqa: E402
from tests.support.supervised import Providers, SupervisedSystem, js_date, system_env  # noqa: E402

NODE_CLI = ROOT / "tests" / "node" / "bullmq_cli.js"
PG_BIN = pathlib.Path(os.environ.get("CF_PG_BIN", "/usr/local/bin"))
REMINDER_WORKERS = 3
REMINDER_PROGRAM = f"worker-{QueueName.REMINDERS}"
"""The supervisord program group of the reminders workers (supervisord.conf)."""
FAST_RECOVERY = {"LOCK_DURATION_MS": "5000", "STALLED_INTERVAL_MS": "2000", "SEND_SETTLE_SECONDS": "16"}
LATE_ANSWER_S = 12.0  # beyond the Twilio client's 10 s timeout


# -- the fake Twilio with seeded faults ---------------------------------------------------------------------------


@attrs.define
class ChaosTwilio(FakeTwilio):
    """The fake Twilio; each create draws from ``rng``: 500 before creating, 500 after creating, a late answer."""

    rng: random.Random = attrs.Factory(random.Random)
    before_rate: float = 0.0
    after_rate: float = 0.0
    late_rate: float = 0.0
    faults: collections.Counter[str] = attrs.Factory(collections.Counter)

    async def _create(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        draw = self.rng.random()
        if draw < self.before_rate:
            self.faults["500_before_create"] += 1
            return _error_500()
        answer = await super()._create(request, recorded)
        if draw < self.before_rate + self.after_rate:
            self.faults["500_after_create"] += 1
            return _error_500()
        if draw < self.before_rate + self.after_rate + self.late_rate:
            self.faults["late_answer"] += 1
            await asyncio.sleep(LATE_ANSWER_S)
        return answer


def _error_500() -> web.Response:
    reply = twilio_error(500, 20500, "Internal Server Error")
    return web.json_response(reply.body, status=500)


class ChaosProviders(Providers):
    def __init__(self, twilio: ChaosTwilio) -> None:
        super().__init__()
        self.twilio = twilio


# -- our own servers ------------------------------------------------------------------------------------------------


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


@attrs.define
class Servers:
    base: pathlib.Path
    redis_port: int
    pg_port: int
    redis: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/clientflow"

    def start_redis(self) -> None:
        data = self.base / "redis"
        data.mkdir(exist_ok=True)
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
             "--logfile", str(data / "redis.log")],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: self._redis_cli("ping").strip() == "PONG", 20, "redis answers")

    def _redis_cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def restart_redis(self) -> None:
        """SHUTDOWN (the AOF is flushed) and start again on the same directory."""
        self._redis_cli("shutdown")
        assert self.redis is not None
        self.redis.wait(timeout=30)
        self.start_redis()

    def stop_redis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self._redis_cli("shutdown", "nosave")
            self.redis.wait(timeout=30)

    def _pg_ctl(self, *args: str) -> list[str]:
        options = f"-p {self.pg_port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=200"
        return _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.base / "pg"), "-w", "-l", str(self.base / "pg.log"),
            "-o", options, *args,
        )  # fmt: skip

    def start_postgres(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        subprocess.run(
            _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.base / "pg"), "-A", "trust", "-U", "postgres"),
            check=True,
            capture_output=True,
        )
        subprocess.run(self._pg_ctl("start"), check=True, capture_output=True)
        admin = f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        asyncio.run(_execute(admin, "create database clientflow"))
        asyncio.run(migrate(self.dsn))

    def restart_postgres(self) -> None:
        subprocess.run(self._pg_ctl("-m", "fast", "restart"), check=True, capture_output=True)

    def stop_postgres(self) -> None:
        subprocess.run(self._pg_ctl("-m", "immediate", "stop"), capture_output=True, check=False)


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


def _wait(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {within:.0f}s: {what}")
        time.sleep(0.25)


# -- the producer -------------------------------------------------------------------------------------------------


def node(command: dict[str, Any], redis_port: int) -> Any:
    """One command of tests/node/bullmq_cli.js (the real npm bullmq, its own connection)."""
    full = {"redis": {"host": "127.0.0.1", "port": redis_port}, **command}
    done = subprocess.run(["node", str(NODE_CLI), json.dumps(full)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"node producer failed: {done.stderr[-500:]}")
    return json.loads(done.stdout)


def reminder_job(org: str, patient: Patient) -> dict[str, Any]:
    return {
        "name": "process-reminder",
        "data": {
            "orgId": org,
            "contactId": patient.contact,
            "appointmentId": patient.appointment,
            "message": f"Hi Pat, your appointment {patient.appointment} is in 2 hours.",
            "scheduledFor": js_date(patient.starts_at),
            "reminderType": "3h",
        },
        "opts": {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}},
    }


@attrs.define
class Producer:
    """Adds the reminders in chunks; a seeded share of each chunk again from a second Node process at once."""

    prefix: str
    redis_port: int
    jobs: list[dict[str, Any]]
    duplicate_share: float
    rng: random.Random
    chunk: int = 150
    pause_s: float = 2.0
    added: int = 0
    duplicates: int = 0
    errors: int = 0

    def _add(self, batch: list[dict[str, Any]]) -> int:
        command = {"op": "add", "prefix": self.prefix, "queue": str(QueueName.REMINDERS), "jobs": batch}
        for _ in range(30):  # Redis may be restarting: the CRM retries
            try:
                return len(node(command, self.redis_port)["ids"])
            except RuntimeError:
                self.errors += 1
                time.sleep(1.0)
        raise RuntimeError("the producer could not add a chunk for 30 s")

    def run(self) -> None:
        for start in range(0, len(self.jobs), self.chunk):
            batch = self.jobs[start : start + self.chunk]
            again = [job for job in batch if self.rng.random() < self.duplicate_share]
            second = threading.Thread(target=self._add_duplicates, args=(again,))
            second.start()
            self.added += self._add(batch)
            second.join()
            time.sleep(self.pause_s)

    def _add_duplicates(self, batch: list[dict[str, Any]]) -> None:
        self.duplicates += self._add(batch) if batch else 0


# -- faults -------------------------------------------------------------------------------------------------------


@attrs.define
class Chaos:
    system: SupervisedSystem
    servers: Servers
    rng: random.Random
    log: list[str] = attrs.Factory(list)
    kills: int = 0

    def _note(self, started: float, what: str) -> None:
        self.log.append(f"{time.monotonic() - started:6.1f}s {what}")

    def run(self, stop: threading.Event, started: float) -> None:
        """SIGKILL a random reminder worker every 5-15 s; restarts of the workers and servers at fixed marks."""
        marks = {20.0: "restart-workers", 35.0: "restart-redis", 50.0: "restart-postgres", 65.0: "restart-workers"}
        next_kill = started + self.rng.uniform(5, 15)
        while not stop.wait(0.5):
            now = time.monotonic()
            for mark, action in sorted(marks.items()):
                if now - started >= mark:
                    del marks[mark]
                    self._do(action, started)
            if now >= next_kill:
                next_kill = now + self.rng.uniform(5, 15)
                self._kill_one(started)

    def _do(self, action: str, started: float) -> None:
        self._note(started, action)
        if action == "restart-workers":
            self.system.ctl("restart", f"{REMINDER_PROGRAM}:*")
        elif action == "restart-redis":
            self.servers.restart_redis()
        elif action == "restart-postgres":
            self.servers.restart_postgres()
        self._note(started, f"{action} done")

    def _kill_one(self, started: float) -> None:
        n = self.rng.randrange(REMINDER_WORKERS)
        name = f"{REMINDER_PROGRAM}:{REMINDER_PROGRAM}-{n:02d}"
        try:
            pid = self.system.pid(name)
            os.kill(pid, signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            self._note(started, f"SIGKILL {name}: not running")
            return
        self.kills += 1
        self._note(started, f"SIGKILL {name} pid {pid}")


def _worker_rss_kib(system: SupervisedSystem) -> list[int]:
    found = []
    for n in range(REMINDER_WORKERS):
        try:
            pid = system.pid(f"{REMINDER_PROGRAM}:{REMINDER_PROGRAM}-{n:02d}")
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
        except (ValueError, OSError):
            continue
        found += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")]
    return found


# -- one run --------------------------------------------------------------------------------------------------------


def _counts(prefix: str, port: int, queue: str) -> dict[str, int]:
    try:
        counts: dict[str, int] = node({"op": "counts", "prefix": prefix, "queue": queue}, port)["counts"]
    except RuntimeError:
        return {}
    return counts


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    base = pathlib.Path(tempfile.mkdtemp(prefix="cf-soak-"))
    servers = Servers(base, args.base_port + 1, args.base_port + 2)
    twilio = ChaosTwilio(now=now_utc, rng=random.Random(rng.random()))
    if args.race:
        twilio.before_rate = 0.10
    else:
        twilio.before_rate = twilio.after_rate = twilio.late_rate = args.provider_fault_rate / 3
    providers = ChaosProviders(twilio)
    prefix = "soak"
    try:
        servers.start_redis()
        servers.start_postgres()
        providers.start()
        org, patients = seed_patients(servers.dsn, args.reminders)
        env = system_env(
            providers,
            servers.dsn,
            prefix,
            REDIS_PORT=str(servers.redis_port),
            HEALTH_PORT=str(args.base_port + 3),
            SMS_PER_SECOND=str(args.sms_per_second),
            WORKER_GRACE_SECONDS="2",
            SCAN_CRON="0 0 1 1 *",  # the hourly scan would add reminders of its own for the same appointments
            **FAST_RECOVERY,
        )
        (base / "system").mkdir()
        system = SupervisedSystem(base / "system", env, workers={REMINDER_PROGRAM: REMINDER_WORKERS})
        system.start()
        try:
            return _soak(args, rng, servers, providers, system, org, patients, prefix)
        finally:
            system.kill()
    finally:
        providers.stop()
        servers.stop_redis()
        servers.stop_postgres()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base}")


def _soak(
    args: argparse.Namespace,
    rng: random.Random,
    servers: Servers,
    providers: ChaosProviders,
    system: SupervisedSystem,
    org: str,
    patients: list[Patient],
    prefix: str,
) -> int:
    system.wait_workers_running({REMINDER_PROGRAM: REMINDER_WORKERS}, within=120)
    rss_start = _worker_rss_kib(system)
    started = time.monotonic()
    jobs = [reminder_job(org, p) for p in patients]
    producer = Producer(
        prefix,
        servers.redis_port,
        jobs,
        1.0 if args.race else args.duplicates,
        random.Random(rng.random()),
        chunk=args.chunk,
        pause_s=0.0 if args.race else args.pause,
    )
    chaos = Chaos(system, servers, random.Random(rng.random()))
    stop = threading.Event()
    chaos_thread = threading.Thread(target=chaos.run, args=(stop, started), daemon=True)
    if not args.race:
        chaos_thread.start()
    producer.run()
    produced_at = time.monotonic() - started
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline:
        counts = _counts(prefix, servers.redis_port, str(QueueName.REMINDERS))
        # The delayed set also holds the scan schedule's next tick (SCAN_CRON is set to a far date): not ours.
        left = sum(counts.get(state, 0) for state in ("waiting", "active", "prioritized", "paused"))
        total = producer.added + producer.duplicates
        if counts and left == 0 and counts.get("completed", 0) + counts.get("failed", 0) >= total:
            break
        time.sleep(2.0)
        if time.monotonic() - started > 80 and not stop.is_set():
            stop.set()  # the fault schedule is over; let the tail drain
    stop.set()
    if chaos_thread.is_alive():
        chaos_thread.join(30)
    elapsed = time.monotonic() - started
    rss_end = _worker_rss_kib(system)
    counts = _counts(prefix, servers.redis_port, str(QueueName.REMINDERS))
    dead = _counts(prefix, servers.redis_port, DEAD_LETTER_QUEUE)
    report = _report(args, providers, servers, patients, producer, chaos, counts, dead, rss_start, rss_end)
    report["time_s"] = {"producer": round(produced_at, 1), "total": round(elapsed, 1)}
    print(json.dumps(report, indent=2))
    return 1 if report["lost"] or report["duplicates"] else 0


def _report(
    args: argparse.Namespace,
    providers: ChaosProviders,
    servers: Servers,
    patients: list[Patient],
    producer: Producer,
    chaos: Chaos,
    counts: dict[str, int],
    dead: dict[str, int],
    rss_start: list[int],
    rss_end: list[int],
) -> dict[str, Any]:
    per_key = collections.Counter(
        parse_qs(urlsplit(url).query)["ledger_key"][0] for url in list(providers.twilio.status_callbacks.values())
    )
    per_phone = collections.Counter(m["to"] for m in list(providers.twilio.messages))
    histogram = collections.Counter(per_phone.get(p.phone, 0) for p in patients)
    ledger = asyncio.run(_fetch(servers.dsn, "select state, count(*) as n from send_ledger group by state"))
    owed = asyncio.run(_owed_dead_letters(servers, "soak"))
    return {
        "run": {
            "reminders": args.reminders,
            "seed": args.seed,
            "race": args.race,
            "workers": REMINDER_WORKERS,
        },
        "jobs_added": {"reminders": producer.added, "duplicates": producer.duplicates, "retried_adds": producer.errors},
        "terminal_states": counts,
        "dead_letter": {**dead, **owed},
        "messages_per_due_appointment": {str(k): v for k, v in sorted(histogram.items())},
        "lost": histogram.get(0, 0),
        "duplicates": sum(1 for n in per_phone.values() if n > 1),
        "keys_created_twice": sum(1 for n in per_key.values() if n > 1),
        "ledger_states": {row["state"]: row["n"] for row in ledger},
        "provider_faults": dict(providers.twilio.faults),
        "process_faults": {"sigkill": chaos.kills, "schedule": chaos.log},
        "worker_rss_mib": {
            "start": [round(k / 1024, 1) for k in rss_start],
            "end": [round(k / 1024, 1) for k in rss_end],
        },
    }


async def _owed_dead_letters(servers: Servers, prefix: str) -> dict[str, Any]:
    """How many dead-letter copies still owe their message, and the copies' failure reasons (counted)."""
    import redis.asyncio as aioredis

    from adapters.health.owed import dead_letter_copies, is_owed

    client = aioredis.Redis(host="127.0.0.1", port=servers.redis_port)
    connection = await asyncpg.connect(servers.dsn)
    try:
        copies = await dead_letter_copies(client, prefix, DEAD_LETTER_QUEUE, 100_000)
        reasons = collections.Counter(str(copy.get("failedReason")) for copy in copies)
        return {"owed": sum([await is_owed(connection, copy) for copy in copies]), "reasons": dict(reasons)}
    finally:
        await connection.close()
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--race", action="store_true", help="every job added twice at once, 10%% 500s, no kills")
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of jobs added again")
    parser.add_argument("--provider-fault-rate", type=float, default=0.05)
    parser.add_argument("--sms-per-second", type=float, default=60.0)
    parser.add_argument("--chunk", type=int, default=150)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between producer chunks")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--base-port", type=int, default=7100)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
