"""Faults of the worker process itself, each through real worker processes, the real PostgreSQL ledger and the fake
Twilio: a job longer than its lock, a send past its time bound, an event loop blocked past the lock, and a job that
kills its worker every time.

The locks, stalled checks and settle period run as in production, shortened through the environment to the least the
settings accept: ``LOCK_DURATION_MS`` 4000 (production 30000), ``STALLED_INTERVAL_MS`` 2000 (30000),
``SEND_SETTLE_SECONDS`` 16 (60). Each test has a BullMQ prefix of its own, so its job reaches only its own workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from adapters.health.probe import HealthProbe
from domain.jobs import ReminderKind
from domain.reminder_scan import reminder_ledger_key
from domain.values import AppointmentId, Channel
from tests.support.crm import create_appointment, create_contact, create_org, reminder_start, unique_phone
from tests.support.fakeservers.scripted import Delay, Stall
from tests.support.processes import (
    ROOT,
    Providers,
    WorkerProcess,
    add_jobs,
    delete_keys,
    js_date,
    run_cli,
    system_env,
    token,
    wait_for_state,
)

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
LOCK_MS = 4000
SETTLE_SECONDS = 16
FAST_RECOVERY = {"SEND_SETTLE_SECONDS": str(SETTLE_SECONDS), "STALLED_INTERVAL_MS": "2000"}
READY_WITHIN_S = 120
TWILIO_TIMEOUT_S = 10  # adapters/twilio_sms.py: the hard per-request timeout


@pytest.fixture
async def own_prefix() -> AsyncIterator[str]:
    name = f"test-faults-{token()}"
    yield name
    await delete_keys(f"{name}:*")


@contextlib.contextmanager
def running(
    env: Mapping[str, str], log_dir: pathlib.Path, count: int = 1, fault: bool = False
) -> Iterator[list[WorkerProcess]]:
    """``count`` reminders worker processes (with the injected fault when ``fault``), ready; each must leave with
    exit 0 on SIGTERM afterwards. A shared machine may take a minute to start one."""
    started = [FaultWorker(env, log_dir) if fault else WorkerProcess("reminders", env, log_dir) for _ in range(count)]
    try:
        for worker in started:
            worker.wait_ready(within=READY_WITHIN_S)
        yield started
    finally:
        codes = [worker.stop() for worker in started]
    assert codes == [0] * count, [w.output()[-3000:] for w in started]


class FaultWorker(WorkerProcess):
    """``python -m tests.integration.system.fault_worker --queue reminders``: the production worker whose Twilio
    sender blocks the loop or segfaults before sending to ``FAULT_PHONE`` (see that module)."""

    def __init__(self, env: Mapping[str, str], log_dir: pathlib.Path) -> None:
        self.queue = "reminders"
        self.log_path = log_dir / f"fault-worker-{token()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.system.fault_worker", "--queue", "reminders"],
            cwd=ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )


async def reminder(db: Any, phone: str | None = None) -> tuple[dict[str, Any], str, str]:
    """A seeded appointment's reminder job data, the contact's phone and the SMS ledger key."""
    org = await create_org(db)
    phone = phone or unique_phone()
    contact = await create_contact(db, org, "Ada", phone=phone)
    starts_at = reminder_start()
    appointment = await create_appointment(db, org, contact, starts_at)
    data = {
        "orgId": org.id,
        "contactId": contact,
        "appointmentId": appointment,
        "message": f"Hi Ada, see you soon ({org.tag}).",
        "scheduledFor": js_date(starts_at),
        "reminderType": "3h",
    }
    key = reminder_ledger_key(AppointmentId(appointment), ReminderKind.THREE_HOURS, starts_at, Channel.SMS)
    return data, phone, key


async def ledger_row(db: Any, key: str) -> tuple[str, str | None] | None:
    row = await db.fetchrow("select state, provider_message_id from send_ledger where key = $1", key)
    return None if row is None else (row["state"], row["provider_message_id"])


async def claimed_at(db: Any, key: str) -> datetime:
    """When the ledger entry of ``key`` was last claimed (a claim given back and taken afresh moves it)."""
    found: datetime = await db.fetchval("select claimed_at from send_ledger where key = $1", key)
    return found


async def job_field(prefix: str, job_id: str, field: str) -> str | None:
    """One field of the job's hash in Redis, read directly (cheaper than a Node round trip for polling)."""
    client = redis_asyncio.Redis(decode_responses=True)
    try:
        value = await client.hget(f"{prefix}:reminders:{job_id}", field)
        return None if value is None else str(value)
    finally:
        await client.aclose()


async def stalled_counter(prefix: str, job_id: str) -> int:
    """bullmq's count of the job's stalls (``stc``): how often a stalled check took it back."""
    return int(await job_field(prefix, job_id, "stc") or 0)


def events(worker: WorkerProcess, name: str, job_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in worker.log_events() if e.get("event") == name and job_id in (None, e.get("job_id"))]


@pytest.mark.slow
async def test_a_send_longer_than_the_lock_keeps_its_lock_and_goes_out_once(
    providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """Twilio answers after 7 s (the lock lasts 4 s, two workers check for stalled jobs every 2 s): the worker running
    the job keeps renewing its lock, the other never takes the job, one message goes out and the job completes at its
    first attempt, never counted as stalled."""
    env = system_env(providers, database_url, own_prefix, **FAST_RECOVERY)
    data, phone, key = await reminder(db)
    providers.twilio.script(Delay(7.0))
    client = redis_asyncio.Redis(decode_responses=True)
    try:
        with running(env, log_dir, count=2) as pair:
            [job_id] = await add_jobs(
                own_prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}]
            )
            lock = f"{own_prefix}:reminders:{job_id}:lock"
            for _ in range(100):
                if providers.sms_posts_to(phone):
                    break
                await asyncio.sleep(0.05)
            first_token = await client.get(lock)
            assert first_token is not None
            await asyncio.sleep(LOCK_MS / 1000 + 1.5)  # past the lock's first expiry, Twilio still holding its answer
            assert providers.sms_to(phone) == []
            assert await client.get(lock) == first_token  # renewed by its worker, not expired nor taken over
            job = await wait_for_state(own_prefix, "reminders", job_id, ("completed", "failed"), within=20)
    finally:
        await client.aclose()

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 1
    assert await stalled_counter(own_prefix, job_id) == 0
    assert [len(events(w, "job_started", job_id)) for w in pair] in ([1, 0], [0, 1])
    assert providers.sms_posts_to(phone) == 1
    [message] = providers.sms_to(phone)
    assert await ledger_row(db, key) == ("sent", message["sid"])


@pytest.mark.slow
async def test_a_send_past_its_time_bound_fails_the_attempt_clearly_and_is_reconciled_not_sent_again(
    providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """Twilio creates the message but holds its answer past the sender's 10 s bound: the attempt ends as an unknown
    outcome with a reason saying so, the ledger entry is UNKNOWN, and the retry, once the entry has settled, finds the
    message at Twilio instead of sending it again."""
    env = system_env(providers, database_url, own_prefix, **FAST_RECOVERY)
    data, phone, key = await reminder(db)
    providers.twilio.script(Stall(TWILIO_TIMEOUT_S + 5))
    with running(env, log_dir, count=2) as pair:
        [job_id] = await add_jobs(own_prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
        started = time.monotonic()
        while not await job_field(own_prefix, job_id, "atm"):  # attemptsMade, counted once the attempt has ended
            assert time.monotonic() - started < TWILIO_TIMEOUT_S + 30, "the attempt never ended"
            await asyncio.sleep(0.1)
        assert time.monotonic() - started >= TWILIO_TIMEOUT_S - 1  # it lasted its bound, more than twice the lock
        reason = await job_field(own_prefix, job_id, "failedReason")
        assert reason == "DeliveryOutcomeUnknown: no complete answer from twilio (TimeoutError)"
        assert await ledger_row(db, key) == ("unknown", None)
        assert len(providers.sms_to(phone)) == 1  # Twilio has it; the worker cannot know
        assert await stalled_counter(own_prefix, job_id) == 0  # its lock was renewed while it waited

        job = await wait_for_state(own_prefix, "reminders", job_id, ("completed", "failed"), within=SETTLE_SECONDS + 30)

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert job["attemptsMade"] == 2
    assert providers.sms_posts_to(phone) == 1
    [message] = providers.sms_to(phone)
    assert await ledger_row(db, key) == ("sent", message["sid"])
    assert [e["reason"] for w in pair for e in events(w, "job_attempt_failed", job_id)] == [reason]


BLOCK_S = 12  # longer than the lock (4 s) plus two stalled checks (2 s each): the job is taken back meanwhile


@pytest.mark.slow
async def test_a_loop_blocked_past_the_lock_loses_the_job_to_another_worker_and_the_message_goes_out_once(
    providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """The worker sending a reminder blocks its event loop for 12 s between its ledger claim and the Twilio request:
    its lock expires unrenewed, the other worker's stalled check takes the job back (one stall) and finds the claim
    unsettled, so it defers; the blocked worker wakes and warns, and as its request (10 s bound) could no longer be
    over before the claim may be treated as abandoned (16 s settle, less 1 s), it sends nothing and gives the claim
    back; the deferred job then claims afresh and sends. One message, neither lost nor sent twice; both workers keep
    running."""
    data, phone, key = await reminder(db)
    env = system_env(
        providers,
        database_url,
        own_prefix,
        FAULT=f"block:{BLOCK_S}",
        FAULT_PHONE=phone,
        FAULT_MARK=str(log_dir / token()),
        **FAST_RECOVERY,
    )
    with running(env, log_dir, count=2, fault=True) as pair:
        [job_id] = await add_jobs(own_prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
        job = await wait_for_state(own_prefix, "reminders", job_id, ("completed", "failed"), within=BLOCK_S + 60)
        assert all(w.process.poll() is None for w in pair)

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert await stalled_counter(own_prefix, job_id) == 1
    assert providers.sms_posts_to(phone) == 1
    [message] = providers.sms_to(phone)
    assert await ledger_row(db, key) == ("sent", message["sid"])
    [blocked] = [w for w in pair if events(w, "event_loop_blocked")]
    assert [e["lag_ms"] >= (BLOCK_S - 1) * 1000 for e in events(blocked, "event_loop_blocked")] == [True]
    assert events(blocked, "job_started", job_id)[0]["stalled_counter"] == 0  # it had the job first
    first_start = datetime.fromisoformat(events(blocked, "job_started", job_id)[0]["timestamp"])
    assert await claimed_at(db, key) >= first_start + timedelta(seconds=BLOCK_S - 1)  # not sent under the first claim
    deferrals = {e["reason"] for w in pair for e in events(w, "job_deferred", job_id)}
    assert deferrals == {"earlier_send_unsettled"}  # taken back while blocked, the job waited for the claim


LONG_BLOCK_S = 35  # past the settle period (16 s) plus the deferral's jitter (5 s), with a wide margin


@pytest.mark.slow
async def test_a_loop_blocked_past_the_settle_period_does_not_send_twice(
    providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """The same block as above, but longer than the settle period: the other worker reconciles the claim, finds
    nothing at Twilio, re-claims and sends; the blocked worker wakes past its claim's deadline and sends nothing. One
    message, recorded SENT under its SID."""
    data, phone, key = await reminder(db)
    env = system_env(
        providers,
        database_url,
        own_prefix,
        FAULT=f"block:{LONG_BLOCK_S}",
        FAULT_PHONE=phone,
        FAULT_MARK=str(log_dir / token()),
        **FAST_RECOVERY,
    )
    with running(env, log_dir, count=2, fault=True) as pair:
        [job_id] = await add_jobs(own_prefix, "reminders", [{"name": "process-reminder", "data": data, "opts": RETRY}])
        job = await wait_for_state(own_prefix, "reminders", job_id, ("completed", "failed"), within=LONG_BLOCK_S + 60)
        await asyncio.sleep(5)  # the blocked worker's request, if it sends one, has long been answered (or it is
        # still blocked, and stopping it below lets it finish that job first)

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert providers.sms_posts_to(phone) == 1
    [message] = providers.sms_to(phone)
    assert await ledger_row(db, key) == ("sent", message["sid"])
    [blocked] = [w for w in pair if events(w, "event_loop_blocked")]
    assert events(blocked, "provider_request") == []


MAX_STALLS = 2


@pytest.mark.slow
async def test_a_job_that_kills_its_worker_every_time_is_dead_lettered_as_owed_while_other_jobs_flow(
    providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """A reminder whose send segfaults its worker each time it is tried, two workers restarted as the supervisor
    would: after MAX_STALLED_COUNT (2) stalls the next one fails it ("stalled more than allowable limit") and it is
    dead-lettered, listed as owed, its ledger entry left CLAIMED and counted; the process died three times and never
    again; the other reminders, added before and between the crashes, each went out once."""
    data, phone, key = await reminder(db)
    env = system_env(
        providers, database_url, own_prefix, FAULT="segfault", FAULT_PHONE=phone, MAX_STALLED_COUNT=str(MAX_STALLS),
        **FAST_RECOVERY,
    )  # fmt: skip
    others = [await reminder(db) for _ in range(6)]
    deaths: list[int] = []
    with running(env, log_dir, count=2, fault=True) as pair:
        ids = await add_jobs(
            own_prefix,
            "reminders",
            [{"name": "process-reminder", "data": d, "opts": RETRY} for d in [data] + [o[0] for o in others[:3]]],
        )
        job_id = ids[0]
        deadline = time.monotonic() + 4 * (SETTLE_SECONDS + 20)
        while (await wait_for_state(own_prefix, "reminders", job_id, STATES))["state"] != "failed":
            assert time.monotonic() < deadline, f"not failed after {len(deaths)} worker deaths"
            for index, worker in enumerate(pair):
                if worker.process.poll() is not None:  # restarted as supervisord's autorestart does
                    deaths.append(worker.process.returncode)
                    worker.stop()
                    pair[index] = FaultWorker(env, log_dir)
                    if len(deaths) == 1:
                        ids += await add_jobs(
                            own_prefix,
                            "reminders",
                            [{"name": "process-reminder", "data": o[0], "opts": RETRY} for o in others[3:]],
                        )
            await asyncio.sleep(0.2)
        failed = await wait_for_state(own_prefix, "reminders", job_id, ("failed",))
        for other_id in ids[1:]:
            job = await wait_for_state(own_prefix, "reminders", other_id, ("completed",), within=SETTLE_SECONDS + 30)
            assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
        listed = await dead_letters(env)
        for worker in pair:
            worker.wait_ready(within=READY_WITHIN_S)  # started after the last crash: it must be able to stop cleanly

    assert deaths == [-signal.SIGSEGV] * (MAX_STALLS + 1)
    assert failed["failedReason"] == "job stalled more than allowable limit"
    assert await stalled_counter(own_prefix, job_id) == MAX_STALLS + 1
    assert [(j["jobId"], j["reasonKind"], j["owed"]) for j in listed["jobs"]] == [(job_id, "stalled", True)]
    assert providers.sms_posts_to(phone) == 0
    assert await ledger_row(db, key) == ("claimed", None)
    assert [providers.sms_posts_to(p) for _, p, _ in others] == [1] * len(others)
    assert [(await ledger_row(db, k) or ("?",))[0] for _, _, k in others] == ["sent"] * len(others)
    client = redis_asyncio.Redis()
    try:
        probe = HealthProbe(client, database_url, own_prefix, ["reminders"], ["reminders"], owed_after=timedelta(0))
        report = await probe.owed()
    finally:
        await client.aclose()
    assert report is not None
    assert report.dead_letter_owed == 1
    assert report.stuck_ledger["claimed"] >= 1  # this one; the module's database is shared with the other tests


STATES = ("waiting", "active", "delayed", "completed", "failed")


async def dead_letters(env: Mapping[str, str]) -> dict[str, Any]:
    """``dead-letter list --json``, as an operator runs it."""
    code, out, err = await run_cli(env, "dead-letter", "list", "--json")
    assert code == 0, err
    listed: dict[str, Any] = json.loads(out)
    return listed


@pytest.mark.slow
@pytest.mark.parametrize("collector", ["refusing", "silent"])
async def test_with_the_otlp_collector_down_jobs_flow_and_the_outage_is_one_log_line(
    collector: str, providers: Providers, database_url: str, own_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """Traces go to an OTLP endpoint that refuses connections, or accepts them and never answers: 20 reminders go
    out once each meanwhile, the worker says so in one ``tracing_export_failed`` line (none of the exporter's own
    lines per retry or per batch), keeps running, and stops cleanly on SIGTERM without waiting on the collector."""
    with socket.socket() as endpoint:
        endpoint.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        if collector == "silent":
            endpoint.listen(128)  # the kernel accepts the connections; nothing ever reads or answers
        url = f"http://127.0.0.1:{endpoint.getsockname()[1]}"
        env = system_env(providers, database_url, own_prefix, OTEL_EXPORTER_OTLP_ENDPOINT=url, **FAST_RECOVERY)
        sends = [await reminder(db) for _ in range(20)]
        with running(env, log_dir) as [worker]:
            ids = await add_jobs(
                own_prefix, "reminders", [{"name": "process-reminder", "data": d, "opts": RETRY} for d, _, _ in sends]
            )
            for job_id in ids:
                job = await wait_for_state(own_prefix, "reminders", job_id, ("completed", "failed"), within=60)
                assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
            deadline = time.monotonic() + 60  # spans leave every 5 s; a silent collector takes the 10 s timeout
            while not events(worker, "tracing_export_failed"):
                assert time.monotonic() < deadline, worker.output()[-3000:]
                await asyncio.sleep(0.5)
            assert worker.process.poll() is None

    [outage] = events(worker, "tracing_export_failed")
    assert outage["endpoint"] == url
    assert [e for e in worker.log_events() if str(e.get("logger", "")).startswith("opentelemetry")] == []
    assert [providers.sms_posts_to(phone) for _, phone, _ in sends] == [1] * len(sends)
