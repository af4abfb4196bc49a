"""Not as root: supervisord started by an unprivileged user runs every program as that user, keeps its socket
0700, and logs none of supervisord's root warnings."""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from entrypoints.settings import declared
from tests.e2e.test_fresh_clone import daemon_pid, fresh_clone, ready
from tests.support.supervised import Providers, alive, eventually, free_port, launched_from, system_env

pytestmark = pytest.mark.slow

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3.11"  # the venv's interpreter must be reachable by that user (not under /root)


@pytest.fixture
def shared_tmp() -> Iterator[pathlib.Path]:
    """A temporary folder other users can enter (pytest's own is 0700 under root)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="cf-unprivileged-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_user(*command: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the unprivileged user (ourselves when we are not root), with a user's plain environment."""
    switch = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(
        [*switch, *command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_an_unprivileged_user_runs_the_system(
    shared_tmp: pathlib.Path, providers: Providers, prefix: str, database_url: str
) -> None:
    if not pathlib.Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} (an interpreter outside /root) is not installed")
    clone = fresh_clone(shared_tmp)
    uv = shutil.which("uv") or str(pathlib.Path.home() / ".local/bin/uv")
    subprocess.run([uv, "sync", "--frozen", "--quiet", "--python", SYSTEM_PYTHON], cwd=clone, check=True)
    port = free_port()
    settings = system_env(providers, database_url, prefix, HEALTH_PORT=str(port))
    env_file = clone / ".env"
    env_file.write_text("".join(f"{v}={settings[v]}\n" for v, _, _ in declared() if v in settings), encoding="utf-8")
    env_file.chmod(0o600)
    if os.geteuid() == 0:
        for path in (clone / "var", clone / "supervisord.d", env_file, *(clone / "var").rglob("*")):
            os.chown(path, NOBODY, NOBODY)

    started = as_user(".venv/bin/supervisord", "-c", "supervisord.conf", cwd=clone)
    assert started.returncode == 0, started.stdout + started.stderr
    supervisord_pid = daemon_pid(clone)
    try:
        eventually(lambda: ready(port), 120, "/health/ready answers 200")
        programs = launched_from(clone)
        assert len(programs) == 6  # four workers, the health and webhooks servers
        assert {uid_of(pid) for pid in (*programs, supervisord_pid)} == {os.geteuid() or NOBODY}
        socket_mode = (clone / "var/run/supervisor.sock").stat()
        assert stat.S_IMODE(socket_mode.st_mode) == 0o700
        assert socket_mode.st_uid == (os.geteuid() or NOBODY)
        status = as_user(".venv/bin/supervisorctl", "-c", "supervisord.conf", "status", cwd=clone)
        assert status.returncode == 0, status.stdout  # 0: every program RUNNING
    finally:
        as_user(".venv/bin/supervisorctl", "-c", "supervisord.conf", "shutdown", cwd=clone)
        eventually(lambda: not alive(supervisord_pid), 90, "supervisord exited")
    log = (clone / "var/log/supervisord.log").read_text()
    assert "running as root" not in log
    assert "Privileges were not dropped" not in log
    assert launched_from(clone) == []


def uid_of(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")
