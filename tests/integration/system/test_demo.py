"""The quick start's demo against real worker processes with the embedded outbox (no provider accounts)."""

from __future__ import annotations

import pathlib
from contextlib import ExitStack

import pytest

from tests.support.processes import Providers, run_cli, system_env, workers

pytestmark = pytest.mark.slow  # the demo against real workers: ~48 s measured on the shared machine

QUEUES = ("reminders", "nurture", "dunning", "snapshots")
NO_ACCOUNTS = {
    name: None
    for name in (
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_FROM_NUMBER",
        "TWILIO_BASE_URL",
        "TWILIO_STATUS_CALLBACK_URL",
        "SENDGRID_API_KEY",
        "SENDGRID_FROM_EMAIL",
        "SENDGRID_HOST",
    )
}


async def test_the_demo_lands_every_kind_of_message_and_a_snapshot_each_time_it_runs(
    providers: Providers, database_url: str, prefix: str, log_dir: pathlib.Path
) -> None:
    """`cli demo` seeds, triggers, and sees reminders, a nurture step, a dunning notice and a snapshot in the outbox;
    a second run (the same ids, the previous run's jobs still kept in Redis) completes as well."""
    env = system_env(providers, database_url, prefix, NODE_ENV="development", **NO_ACCOUNTS)
    with ExitStack() as stack:
        for queue in QUEUES:
            stack.enter_context(workers(queue, env, log_dir))
        for run in (1, 2):
            code, out, err = await run_cli(env, "demo", "--timeout", "40")
            assert code == 0, f"run {run}:\n{out}\n{err}"
            assert "demo complete" in out
            assert "snapshots: 0" not in out.splitlines()[-3]
    assert providers.twilio.messages == []  # nothing reached a provider: the outbox took it all
