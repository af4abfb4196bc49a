"""supervisord killed with jobs in flight: its programs drain and exit by themselves (no orphans), a new start
refuses while they drain and then runs exactly one set, and no job is lost or sent twice."""

from __future__ import annotations

import pathlib

import pytest

from tests.e2e.test_restarts import FAST_RECOVERY, assert_each_sent_once, reminder_jobs
from tests.support.clinic import seed_patients
from tests.support.fakeservers.scripted import Stall
from tests.support.supervised import (
    Providers,
    alive,
    enqueue,
    eventually,
    job_counts,
    launched_from,
    supervised,
    system_env,
)

pytestmark = pytest.mark.slow

GRACE_SECONDS = 14.0


def test_killing_supervisord_leaves_no_orphan_and_a_new_start_runs_one_set(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    org, patients = seed_patients(database_url, 30)
    env = system_env(providers, database_url, prefix, WORKER_GRACE_SECONDS=str(GRACE_SECONDS), **FAST_RECOVERY)
    env["LOCK_DURATION_MS"] = "30000"  # above twice the grace period (the settings refuse less)
    with supervised(tmp_path, env) as system:
        system.wait_workers_running()
        system.wait_running("health")
        old = system.program_pids()
        assert set(launched_from(tmp_path)) == {pid for name, pid in old.items() if name != "fatal-alert"}
        providers.twilio.script(*[Stall(12.0)] * 10)  # the first 10 sends take effect, their answers hang 12 s
        enqueue(prefix, "reminders", reminder_jobs(org, patients))
        eventually(lambda: len(providers.twilio.messages) >= 10, 60, "10 sends in flight at the fake Twilio")

        system.crash()
        system.start()  # at once, while the old set drains
        eventually(
            lambda: not any(alive(pid) for pid in old.values()),
            GRACE_SECONDS + 5,
            f"every process of the killed supervisord's set gone (left: {[p for p in old.values() if alive(p)]})",
        )
        system.wait_workers_running(within=90)
        system.wait_running("health", "webhooks", within=60)
        new = system.program_pids()
        assert set(launched_from(tmp_path)) == {pid for name, pid in new.items() if name != "fatal-alert"}
        assert len(launched_from(tmp_path)) == 6  # four workers, the health and webhooks servers: one set
        eventually(lambda: job_counts(prefix, "reminders").get("completed") == 30, 90, "all 30 jobs completed")
        counts = job_counts(prefix, "reminders")
        system.shutdown()
    refusals = [p.name for p in (tmp_path / "var" / "log").glob("*.log") if "an earlier set of this" in p.read_text()]
    assert refusals, "no new program refused while the old set drained"
    assert "(exit status 78; not expected)" in system.log("supervisord.log")
    assert counts.get("failed", 0) == 0
    assert_each_sent_once(providers, patients, database_url)
    assert launched_from(tmp_path) == []
