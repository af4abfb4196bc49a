"""The end-to-end world: our supervisord.conf running the whole system from a temporary checkout.

The temporary directory holds a copy of ``supervisord.conf`` and symlinks to the code and the venv, so ``%(here)s``
(and with it ``var/``: socket, logs, pid file) points into the temporary directory while every program runs exactly
as in the quick start. Redis and PostgreSQL are the machine's own (a unique BullMQ prefix, a throwaway database);
Twilio, SendGrid and Sentry are local fakes served from an event loop on a thread of their own, so they keep
answering while a test blocks on a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import redis

from adapters.postgres.migrator import migrate
from tests.support.fakeservers.providers import Providers as FakeProviders
from tests.support.fakeservers.scripted import ScriptedServer
from tests.support.fakeservers.sentry import FakeSentry
from tests.support.fakeservers.webhook_signing import SendGridKeys

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE_CLI = ROOT / "tests" / "node" / "bullmq_cli.js"
LINKED = (".venv", "domain", "adapters", "entrypoints", "scripts")
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TWILIO_FROM = "+15005550006"
SENDGRID_FROM = "reminders@clinic.example.com"
WEBHOOKS_PUBLIC_URL = "https://hooks.clinic.example.com"
STATUS_CALLBACK = f"{WEBHOOKS_PUBLIC_URL}/webhooks/twilio/status"
SENDGRID_WEBHOOK_KEYS = SendGridKeys()  # the test key pair SendGrid would sign its Event Webhook with
WORKER_PROGRAMS = ("worker-reminders", "worker-nurture", "worker-dunning", "worker-snapshots")


def js_date(moment: datetime) -> dict[str, str]:
    """How tests/node/bullmq_cli.js is told to put a real JavaScript ``Date`` into job data."""
    return {"$date": moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")}


def eventually(check: Callable[[], bool], within: float, what: str, every: float = 0.25) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``within`` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Providers(FakeProviders):
    """The fake Twilio and SendGrid, and the fake Sentry, served from their own event loop on a daemon thread."""

    def __init__(self) -> None:
        super().__init__(thread_name="e2e-fake-providers")
        self.sentry = FakeSentry()

    def servers(self) -> tuple[ScriptedServer, ...]:
        return (*super().servers(), self.sentry)

    def sms_ledger_keys(self) -> list[str]:
        """The ledger key of every message the fake Twilio created (from the StatusCallback URL), duplicates kept."""
        return [parse_qs(urlsplit(url).query)["ledger_key"][0] for url in list(self.twilio.status_callbacks.values())]

    def twilio_history(self) -> list[str]:
        """Every request the fake Twilio received, in order (creates with their recipient and ledger key, look-ups
        with theirs), then every message it created: for the failure message of an exactly-once assertion."""
        lines = []
        for request in list(self.twilio.requests):
            if request.method == "POST":
                form = parse_qs(request.body.decode())
                callback = parse_qs(urlsplit(form.get("StatusCallback", [""])[0]).query)
                lines.append(f"POST to={form.get('To')} ledger_key={callback.get('ledger_key')}")
            else:
                lines.append(f"{request.method} {request.path} to={request.query.get('To')}")
        callbacks = dict(self.twilio.status_callbacks)
        for message in list(self.twilio.messages):
            key = parse_qs(urlsplit(callbacks.get(message["sid"], "")).query).get("ledger_key")
            lines.append(f"created {message['sid']} to={message['to']} at {message['date_created']} ledger_key={key}")
        return lines


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, migrated so tests can seed it first, dropped afterwards."""
    name = f"cf_e2e_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(ADMIN_DSN)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'create database "{name}"'))
    try:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        asyncio.run(admin(f'drop database if exists "{name}" with (force)'))


@contextlib.contextmanager
def bullmq_prefix() -> Iterator[str]:
    """A BullMQ prefix of our own on the shared Redis; its keys (the queues', and ours under ``<prefix>:cf``: Twilio
    send records, rate limits) are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
        finally:
            client.close()


def system_env(providers: Providers, database_url: str, prefix: str, **overrides: str) -> dict[str, str]:
    """The programs' settings (supervisord.conf itself reads none), pointed at the test world."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("CF_", "TWILIO_", "SENDGRID_", "REDIS_", "BULLMQ_", "SENTRY_", "OTEL_", "HEALTH_", "WEBHOOKS_")
        )
    }
    env.update(
        {
            "NODE_ENV": "production",
            "LOG_LEVEL": "info",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": "6379",
            "BULLMQ_PREFIX": prefix,
            "DATABASE_URL": database_url,
            "TWILIO_ACCOUNT_SID": providers.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": providers.twilio.auth_token,
            "TWILIO_FROM_NUMBER": TWILIO_FROM,
            "TWILIO_BASE_URL": providers.twilio.base_url,
            "TWILIO_STATUS_CALLBACK_URL": STATUS_CALLBACK,
            "SENDGRID_API_KEY": providers.sendgrid.api_key,
            "SENDGRID_FROM_EMAIL": SENDGRID_FROM,
            "SENDGRID_HOST": providers.sendgrid.base_url,
            "SMS_PER_SECOND": "200",
            "EMAIL_PER_SECOND": "200",
            "HEALTH_HOST": "127.0.0.1",
            "HEALTH_PORT": str(free_port()),
            "WEBHOOKS_PORT": str(free_port()),
            "WEBHOOKS_PUBLIC_URL": WEBHOOKS_PUBLIC_URL,
            "SENDGRID_WEBHOOK_VERIFICATION_KEY": SENDGRID_WEBHOOK_KEYS.public_key,
            # The hourly scan would add reminder jobs of its own for the seeded appointments when a test spans the
            # hour, and the tests count their jobs: 03:00 UTC on January 1st only (a test needing a scan runs it).
            "SCAN_CRON": "0 3 1 1 *",
        }
    )
    env.update(overrides)
    return env


class SupervisedSystem:
    """supervisord running our supervisord.conf from a temporary checkout; ``ctl`` is supervisorctl on it."""

    def __init__(
        self, directory: pathlib.Path, env: Mapping[str, str], workers: Mapping[str, int] | None = None
    ) -> None:
        self.directory = directory
        self.env = dict(env)
        self.conf = directory / "supervisord.conf"
        self.var = directory / "var"
        self._process: subprocess.Popen[bytes] | None = None
        shutil.copy(ROOT / "supervisord.conf", self.conf)
        for name in LINKED:
            (directory / name).symlink_to(ROOT / name)
        for sub in ("log", "run"):
            (self.var / sub).mkdir(parents=True)
        self.var.joinpath("run").chmod(0o700)
        (directory / "supervisord.d").mkdir()
        if workers:
            self.scale(workers)

    def scale(self, workers: Mapping[str, int]) -> None:
        """Write ``numprocs`` overrides (program -> processes) to supervisord.d/scale.conf, as the README says."""
        text = "".join(f"[program:{program}]\nnumprocs = {count}\n\n" for program, count in workers.items())
        (self.directory / "supervisord.d" / "scale.conf").write_text(text, encoding="utf-8")

    def start(self) -> None:
        self._process = subprocess.Popen(
            [str(ROOT / ".venv/bin/supervisord"), "-n", "-c", str(self.conf)],
            env=self.env,
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually(lambda: self.ctl("pid").returncode == 0, 20, "supervisord answers on its control socket")

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """supervisorctl -c <our conf> ARGS, with no variable of the system in its environment (as a user types it)."""
        plain_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return subprocess.run(
            [str(ROOT / ".venv/bin/supervisorctl"), "-c", str(self.conf), *args],
            env=plain_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def states(self) -> dict[str, tuple[str, str]]:
        """Each process (``group:name``) -> (state, the rest of its status line)."""
        found = {}
        for line in self.ctl("status").stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2:
                found[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
        return found

    def pid(self, process: str) -> int:
        return int(self.ctl("pid", process).stdout.strip())

    def wait_running(self, *processes: str, within: float = 60) -> None:
        eventually(
            lambda: all(self.states().get(p, ("?",))[0] == "RUNNING" for p in processes),
            within,
            f"{', '.join(processes)} RUNNING (now: {self.states()})",
        )

    def wait_workers_running(self, counts: Mapping[str, int] | None = None, within: float = 60) -> None:
        counts = counts or {}
        self.wait_running(
            *(f"{program}:{program}-{n:02d}" for program in WORKER_PROGRAMS for n in range(counts.get(program, 1))),
            within=within,
        )

    def log(self, name: str) -> str:
        path = self.var / "log" / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def shutdown(self) -> int:
        """``supervisorctl shutdown`` and wait for supervisord to exit; return its exit status."""
        assert self._process is not None
        self.ctl("shutdown")
        status = self._process.wait(timeout=90)
        self._process = None
        return status

    def crash(self) -> None:
        """SIGKILL supervisord alone (a crash, an OOM kill): its programs are not told by it."""
        assert self._process is not None
        self._process.kill()
        self._process.wait()
        self._process = None

    @property
    def supervisord_pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def program_pids(self) -> dict[str, int]:
        """Each running program process (``group:name``) and its pid, from supervisorctl."""
        return {name: self.pid(name) for name, (state, _) in self.states().items() if state == "RUNNING"}

    def kill(self) -> None:
        """Teardown after a failed test: stop supervisord and every process group it started."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@contextlib.contextmanager
def supervised(
    directory: pathlib.Path, env: Mapping[str, str], workers: Mapping[str, int] | None = None
) -> Iterator[SupervisedSystem]:
    system = SupervisedSystem(directory, env, workers)
    system.start()
    try:
        yield system
    finally:
        system.kill()


def node(op: str, prefix: str, queue: str, **fields: Any) -> Any:
    """Run one command of tests/node/bullmq_cli.js (the real npm bullmq) and return its JSON answer."""
    command = {"op": op, "prefix": prefix, "queue": queue, "redis": {"host": "127.0.0.1", "port": 6379}, **fields}
    done = subprocess.run(
        ["node", str(NODE_CLI), json.dumps(command)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def enqueue(prefix: str, queue: str, jobs: list[dict[str, Any]], chunk: int = 100) -> list[str]:
    """Add jobs as the Node CRM does (README retry policy unless a job says otherwise); return their ids."""
    ids: list[str] = []
    for start in range(0, len(jobs), chunk):
        batch = [
            {"opts": {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}, **job}
            for job in jobs[start : start + chunk]
        ]
        ids.extend(node("add", prefix, queue, jobs=batch)["ids"])
    return ids


def ledger_rows(database_url: str) -> list[str]:
    """The SMS rows of the send ledger, oldest claim first: for the failure message of an exactly-once assertion."""

    async def read() -> list[str]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "select key, state, claimed_at, updated_at, provider_message_id, reason from send_ledger"
                " where channel = 'sms' order by claimed_at"
            )
        finally:
            await connection.close()
        return [" ".join(f"{name}={value}" for name, value in row.items()) for row in rows]

    return asyncio.run(read())


def job_counts(prefix: str, queue: str) -> dict[str, int]:
    counts: dict[str, int] = node("counts", prefix, queue)["counts"]
    return counts


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (orphans are reparented to an init that may not reap them)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def launched_from(directory: pathlib.Path) -> list[int]:
    """Pids of every ``entrypoints.launch`` process (workers, health server) running from ``directory``."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or not alive(int(proc.name)):
            continue
        try:
            command = proc.joinpath("cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"entrypoints.launch" in command and cwd == str(directory):
            found.append(int(proc.name))
    return found


def stopped_cleanly(supervisord_log: str, process: str) -> bool:
    """supervisord's own record that it stopped ``process`` and the process exited with status 0."""
    return f"stopped: {process} (exit status 0)" in supervisord_log
