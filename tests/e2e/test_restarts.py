"""Restarting and killing workers under supervisord loses no job and sends no message twice."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest

from tests.support.clinic import Patient, seed_patients
from tests.support.fakeservers.scripted import Stall
from tests.support.supervised import (
    Providers,
    enqueue,
    eventually,
    job_counts,
    js_date,
    ledger_rows,
    supervised,
    system_env,
)

pytestmark = pytest.mark.slow

# Production's recovery (stalled check, settle period), only with short periods: the lock 5 s,
# the stalled check every 2 s, a claim left alone 16 s before it is reconciled (production: 30 s, 30 s and 60 s).
FAST_RECOVERY = {"LOCK_DURATION_MS": "5000", "STALLED_INTERVAL_MS": "2000", "SEND_SETTLE_SECONDS": "16"}


def reminder_jobs(org: str, patients: list[Patient]) -> list[dict[str, object]]:
    """One README-shaped 3h reminder per patient, each with its own text (the Twilio reconciliation matches bodies)."""
    return [
        {
            "name": "process-reminder",
            "data": {
                "orgId": org,
                "contactId": p.contact,
                "appointmentId": p.appointment,
                "message": f"Hi Pat, your appointment {p.appointment} is in 2 hours.",
                "scheduledFor": js_date(p.starts_at),
                "reminderType": "3h",
            },
        }
        for p in patients
    ]


def assert_each_sent_once(providers: Providers, patients: list[Patient], database_url: str) -> None:
    keys = providers.sms_ledger_keys()
    if len(keys) != len(set(keys)) or len(keys) != len(patients):
        history = "\n".join(["fake Twilio:", *providers.twilio_history(), "send ledger:", *ledger_rows(database_url)])
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise AssertionError(f"{len(keys)} messages for {len(patients)} patients; twice: {twice}\n{history}")
    assert sorted(m["to"] for m in providers.twilio.messages) == sorted(p.phone for p in patients)


def test_restarting_the_reminder_workers_mid_stream_loses_nothing_and_sends_nothing_twice(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    """`supervisorctl restart worker-reminders:*` while 500 reminders stream to Twilio: all 500 jobs complete and
    the fake Twilio holds exactly one message per ledger key."""
    org, patients = seed_patients(database_url, 500)
    env = system_env(providers, database_url, prefix, SMS_PER_SECOND="40")
    with supervised(tmp_path, env, workers={"worker-reminders": 2}) as system:
        system.wait_workers_running({"worker-reminders": 2})
        before = {n: system.pid(f"worker-reminders:worker-reminders-{n:02d}") for n in range(2)}
        enqueue(prefix, "reminders", reminder_jobs(org, patients))
        eventually(lambda: len(providers.twilio.messages) >= 100, 60, "100 reminders sent before the restart")

        sent_at_restart = len(providers.twilio.messages)  # the restart stops the workers at once, then waits
        restarted = system.ctl("restart", "worker-reminders:*")  # for startsecs before it returns
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr

        system.wait_workers_running({"worker-reminders": 2})
        after = {n: system.pid(f"worker-reminders:worker-reminders-{n:02d}") for n in range(2)}
        assert all(before[n] != after[n] for n in range(2))
        eventually(lambda: job_counts(prefix, "reminders").get("completed") == 500, 120, "all 500 jobs completed")
        counts = job_counts(prefix, "reminders")
        system.shutdown()
    assert sent_at_restart < 500, "the restart came after every reminder was sent: it proved nothing"
    assert counts.get("failed", 0) == 0
    assert_each_sent_once(providers, patients, database_url)


def test_a_killed_worker_is_restarted_and_its_jobs_are_recovered_without_sending_twice(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    """SIGKILL a reminder worker while Twilio holds back its answers: supervisord starts a new one, the stalled
    jobs come back after the lock expires, reconciliation finds the messages already sent, each goes out once."""
    org, patients = seed_patients(database_url, 30)
    env = system_env(providers, database_url, prefix, WORKER_GRACE_SECONDS="2", **FAST_RECOVERY)
    with supervised(tmp_path, env) as system:
        system.wait_workers_running()
        victim = system.pid("worker-reminders:worker-reminders-00")
        providers.twilio.script(*[Stall(8.0)] * 10)  # the first 10 sends take effect, their answers hang
        enqueue(prefix, "reminders", reminder_jobs(org, patients))
        eventually(lambda: len(providers.twilio.messages) >= 10, 60, "10 sends in flight at the fake Twilio")

        os.kill(victim, signal.SIGKILL)
        eventually(
            lambda: (
                system.states()["worker-reminders:worker-reminders-00"][0] == "RUNNING"
                and system.pid("worker-reminders:worker-reminders-00") not in (0, victim)
            ),
            60,
            "supervisord restarted the killed worker",
        )
        # The in-flight sends come back at the next stalled check after their lock expired, stay claimed until the
        # settle period has passed, then are reconciled.
        eventually(lambda: job_counts(prefix, "reminders").get("completed") == 30, 90, "all 30 jobs completed")
        counts = job_counts(prefix, "reminders")
        system.shutdown()
    assert "exited: worker-reminders-00 (terminated by SIGKILL; not expected)" in system.log("supervisord.log")
    assert counts.get("failed", 0) == 0
    assert_each_sent_once(providers, patients, database_url)
