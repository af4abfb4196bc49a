"""Start-up failures a person can act on: one line naming the setting and the cause; permanent ones exit 78 at
once (so supervisord reaches FATAL), transient ones are waited for and recover by themselves."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.supervised import bullmq_prefix, eventually, free_port, throwaway_database

ROOT = pathlib.Path(__file__).resolve().parents[3]
SHARED_DB = "postgresql://postgres@127.0.0.1:5432/test"
PROVIDERS = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "canary-token", "TWILIO_FROM_NUMBER": "+15005550006",
             "SENDGRID_API_KEY": "SG.canary", "SENDGRID_FROM_EMAIL": "ops@example.com"}  # fmt: skip


def clean_env(**settings: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL")
    return {**{k: v for k, v in os.environ.items() if k in keep}, "DATABASE_URL": SHARED_DB, **settings}


def launch(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrypoints.launch", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/cf_no_such_db"}, 'DATABASE_URL names database "cf_'),
        ({"DATABASE_URL": "postgresql://cf_no_role:canary-pw@127.0.0.1:5432/test"}, 'refused role "cf_no_role"'),
        ({"DATABASE_URL": "mysql://app:canary-pw@127.0.0.1/test"}, "DATABASE_URL must be a postgresql:// URL"),
        ({"DATABASE_URL": "postgresql://app:canary-pw@127.0.0.1:54x/test"}, "DATABASE_URL is malformed: the port"),
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY: input should be greater than or equal to 1"),
    ],
)
def test_a_permanent_cause_exits_78_with_one_line(settings: dict[str, str], line: str) -> None:
    done = launch("worker", "--queue", "reminders", env=clean_env(**settings))
    assert done.returncode == 78, done.stderr
    assert done.stdout == ""
    [only] = done.stderr.splitlines()
    assert line in only
    assert "canary-pw" not in only


def test_with_node_env_production_the_refusal_is_a_json_line() -> None:
    env = clean_env(NODE_ENV="production", DATABASE_URL="postgresql://postgres@127.0.0.1:5432/cf_no_such_db")
    done = launch("worker", "--queue", "reminders", env={**env, **PROVIDERS})
    assert done.returncode == 78
    [only] = [json.loads(line) for line in done.stderr.splitlines()]
    assert only["event"] == "start_refused"
    assert only["error"].startswith('DATABASE_URL names database "cf_no_such_db"')


def test_an_uncaught_traceback_is_one_json_line_in_production() -> None:
    """What no refusal foresaw still leaves as JSON: the traceback is a field of one line, not 30 raw lines."""
    program = (
        "from adapters.observability.logging import configure_logging\n"
        "from entrypoints.launch import log_tracebacks_as_lines\n"
        "configure_logging('info', True)\nlog_tracebacks_as_lines()\nraise RuntimeError('unforeseen')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    [only] = [json.loads(line) for line in done.stderr.splitlines()]
    assert only["event"] == "uncaught_exception"
    assert "RuntimeError: unforeseen" in only["exception"]


@pytest.mark.slow
def test_a_taken_health_port_exits_78_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = launch("health", env=clean_env(HEALTH_PORT=str(port)))
    assert done.returncode == 78
    [only] = done.stderr.splitlines()
    assert f"HEALTH_PORT: 127.0.0.1:{port} is taken by another process" in only


@pytest.mark.slow
@pytest.mark.parametrize("command", [["schedules"], ["dead-letter", "list"]])
def test_the_cli_says_redis_is_unreachable_in_one_line(command: list[str]) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", *command],
        cwd=ROOT,
        env=clean_env(REDIS_PORT=str(port)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 69
    [only] = done.stderr.splitlines()
    assert f"REDIS_HOST/REDIS_PORT: no Redis answers at redis://127.0.0.1:{port}/0 (connection refused)" in only


@pytest.fixture
def database_url() -> Iterator[str]:
    with throwaway_database() as dsn:
        yield dsn


@pytest.mark.slow
def test_a_worker_waits_for_redis_then_starts_by_itself(tmp_path: pathlib.Path, database_url: str) -> None:
    """Redis not answering is transient: the worker says so (one line per attempt, naming the setting), waits with
    backoff, and takes its queue once a Redis answers on that port, with no restart."""
    port = free_port()
    log_path = tmp_path / "worker.log"
    with bullmq_prefix() as prefix, log_path.open("w") as log:
        env = clean_env(DATABASE_URL=database_url, REDIS_PORT=str(port), BULLMQ_PREFIX=prefix)
        worker = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.launch", "worker", "--queue", "dunning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        redis = None
        try:
            eventually(lambda: "dependency_unreachable" in log_path.read_text(), 60, "the unreachable line")
            assert worker.poll() is None
            redis = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            eventually(lambda: "worker_started" in log_path.read_text(), 90, "the worker started")
        finally:
            worker.terminate()
            worker.wait(60)
            if redis is not None:
                redis.terminate()
                redis.wait(30)
    text = log_path.read_text()
    assert f"REDIS_HOST/REDIS_PORT: no Redis answers at redis://127.0.0.1:{port}/0 (connection refused)" in text
    assert "Traceback" not in text
    assert worker.returncode == 0


def test_a_database_url_with_a_wrong_port_is_waited_for_with_one_line_per_attempt(tmp_path: pathlib.Path) -> None:
    """Nothing listening at DATABASE_URL's port may be a server still starting: the worker says so, naming the
    setting and the cause, and keeps waiting (not ready) instead of exiting."""
    port = free_port()
    log_path = tmp_path / "worker.log"
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/test")
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.launch", "worker", "--queue", "nurture"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            eventually(lambda: log_path.read_text().count("dependency_unreachable") >= 2, 60, "two attempts")
            assert worker.poll() is None
        finally:
            worker.terminate()
            worker.wait(60)
    lines = log_path.read_text().splitlines()
    assert all(f"DATABASE_URL: no PostgreSQL answers at 127.0.0.1:{port} (connection refused)" in x for x in lines)
