"""Done-when of issue 12: on a fresh clone, the README's install step and the user's own bare command
`supervisord -c supervisord.conf` run the whole system; supervisorctl scales, restarts and shuts it down."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from entrypoints.settings import declared
from tests.e2e.test_system import node_jobs, snapshot_count
from tests.support.clinic import seed_clinic
from tests.support.supervised import (
    ROOT,
    WORKER_PROGRAMS,
    Providers,
    alive,
    enqueue,
    eventually,
    free_port,
    job_counts,
    launched_from,
    system_env,
)

pytestmark = pytest.mark.slow


def fresh_clone(into: pathlib.Path) -> pathlib.Path:
    """A git clone of this checkout's committed HEAD, nothing else (no .venv, no var/ contents, no .env)."""
    clone = into / "clientflow"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "fetch", "-q", str(ROOT), "HEAD"], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "--detach", "FETCH_HEAD"], check=True)
    return clone


def user_shell_env() -> dict[str, str]:
    """What a user's shell has: no variable of the system (they are in .env)."""
    return {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}


def run(clone: pathlib.Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=clone, env=user_shell_env(), capture_output=True, text=True, timeout=300, check=False
    )


def daemon_pid(clone: pathlib.Path) -> int:
    """The pid of the daemonized supervisord, once its pid file holds it (supervisord creates the file, then writes
    the pid: a read in between finds it empty)."""
    pidfile = clone / "var/run/supervisord.pid"

    def written() -> bool:
        return pidfile.exists() and pidfile.read_text().strip().isdigit()

    eventually(written, 30, f"supervisord's pid file (log: {read(clone / 'var/log/supervisord.log')})")
    return int(pidfile.read_text())


def read(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=3) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_a_fresh_clone_runs_with_the_bare_supervisord_command(
    tmp_path: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    clone = fresh_clone(tmp_path)
    uv = shutil.which("uv") or str(pathlib.Path.home() / ".local/bin/uv")
    installed = run(clone, uv, "sync", "--frozen")
    assert installed.returncode == 0, installed.stderr
    port = free_port()
    settings = system_env(providers, database_url, prefix, HEALTH_PORT=str(port), NODE_ENV="development")
    wanted = {variable: settings[variable] for variable, _, _ in declared() if variable in settings}
    (clone / ".env").write_text("".join(f"{k}={v}\n" for k, v in wanted.items()), encoding="utf-8")
    ctl = (str(clone / ".venv/bin/supervisorctl"), "-c", "supervisord.conf")
    clinic = seed_clinic(database_url)

    started = run(clone, ".venv/bin/supervisord", "-c", "supervisord.conf")
    assert started.returncode == 0, started.stdout + started.stderr
    supervisord_pid = daemon_pid(clone)
    try:
        eventually(lambda: ready(port), 120, "/health/ready answers 200 (every queue has a worker)")
        for queue, job in node_jobs(clinic).items():
            enqueue(prefix, queue, [job])
        eventually(lambda: len(providers.sms_to(clinic.ada_phone)) == 1, 60, "the reminder SMS at the fake Twilio")
        eventually(lambda: len(providers.mail_to(clinic.grace_email)) == 1, 60, "the nurture email at SendGrid")
        eventually(lambda: len(providers.mail_to(clinic.alan_email)) == 1, 60, "the dunning email at SendGrid")
        eventually(lambda: snapshot_count(database_url, clinic.org) == 1, 60, "the snapshot row in Postgres")
        assert all(job_counts(prefix, queue).get("completed") == 1 for queue in node_jobs(clinic))

        # Scale the reminders to two processes the README's way: an override file, reread, update.
        others = {name: pid_of(clone, name) for name in ("health", "worker-dunning:worker-dunning-00")}
        (clone / "supervisord.d/scale.conf").write_text("[program:worker-reminders]\nnumprocs = 2\n")
        assert "worker-reminders: changed" in run(clone, *ctl, "reread").stdout
        assert run(clone, *ctl, "update").returncode == 0
        eventually(lambda: state(clone, "worker-reminders:worker-reminders-01") == "RUNNING", 60, "a second worker")
        assert {name: pid_of(clone, name) for name in others} == others, "update restarted other programs"

        before = pid_of(clone, "worker-nurture:worker-nurture-00")
        assert run(clone, *ctl, "restart", "worker-nurture:*").returncode == 0
        assert state(clone, "worker-nurture:worker-nurture-00") == "RUNNING"
        assert pid_of(clone, "worker-nurture:worker-nurture-00") != before
        assert "queue=dunning" in run(clone, *ctl, "tail", "worker-dunning:worker-dunning-00").stdout
        assert run(clone, *ctl, "stop", "health").returncode == 0
        assert state(clone, "health") == "STOPPED"
    finally:
        run(clone, *ctl, "shutdown")
        eventually(lambda: not alive(supervisord_pid), 90, "supervisord exited")
    assert launched_from(clone) == []
    log = (clone / "var/log/supervisord.log").read_text()
    for program in (*WORKER_PROGRAMS, "health"):
        assert "not expected" not in "".join(line for line in log.splitlines() if program in line), program


def state(clone: pathlib.Path, process: str) -> str:
    found = run(clone, ".venv/bin/supervisorctl", "-c", "supervisord.conf", "status", process).stdout.split()
    return found[1] if len(found) > 1 else "?"


def pid_of(clone: pathlib.Path, process: str) -> int:
    return int(run(clone, ".venv/bin/supervisorctl", "-c", "supervisord.conf", "pid", process).stdout.strip())
