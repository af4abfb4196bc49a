"""A supervised process's place in its set: it leaves when its supervisor dies, and refuses to join a second set.

Standard library only, imported before anything heavy, so both happen in the process's first milliseconds. It reads
supervisord's own variables (``SUPERVISOR_*``), never a setting of ours (those are entrypoints/settings.py's).

- **Parent death.** Under supervisord (``SUPERVISOR_ENABLED`` in the environment) the kernel is asked to send
  SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``, Linux): the process then drains as on ``supervisorctl
  stop``. A parent that died before the request is noticed by comparing ``getppid()`` with the parent seen at import.
- **One set per checkout.** Each supervised process holds an exclusive ``flock`` on ``<run dir>/processes/<pid>.lock``
  (the run dir is the one of supervisord's socket, ``SUPERVISOR_SERVER_URL``), whose text names its supervisord pid
  and program. A process that finds a locked file of another supervisord (an earlier set still draining after its
  supervisord was killed) refuses to start, naming that set; the kernel drops a dead process's lock, so a file
  whose lock can be taken is stale and removed.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import os
import pathlib
import signal
from urllib.parse import urlsplit

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_AT_IMPORT = os.getppid()
_held: list[int] = []  # the descriptor of this process's own lock file, open for its whole life


class EarlierSetRunning(RuntimeError):
    """Processes of another supervisord of this checkout are still alive; the message names them."""


def supervised() -> bool:
    """True when started by supervisord (it sets ``SUPERVISOR_ENABLED`` for its children)."""
    return os.environ.get("SUPERVISOR_ENABLED") == "1"


def leave_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask the kernel for ``sig`` when the parent dies; send it now when the parent is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != PARENT_AT_IMPORT:
        os.kill(os.getpid(), sig)


def seconds_since_spawn() -> float:
    """How long this process has existed (Linux: its start time in /proc/self/stat against the system uptime)."""
    fields = pathlib.Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat(5): starttime, in clock ticks
    uptime = float(pathlib.Path("/proc/uptime").read_text().split()[0])
    return round(uptime - started, 2)


def run_dir() -> pathlib.Path:
    """The directory of supervisord's control socket (``unix:///…/var/run/supervisor.sock``), else ``var/run``."""
    url = os.environ.get("SUPERVISOR_SERVER_URL", "")
    if url.startswith("unix://"):
        return pathlib.Path(urlsplit(url).path).parent
    return pathlib.Path("var/run")


def claim_place(program: str, directory: pathlib.Path | None = None) -> None:
    """Hold this process's lock file; raise EarlierSetRunning when another supervisord's processes hold theirs."""
    folder = (directory or run_dir()) / "processes"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    own = folder / f"{os.getpid()}.lock"
    draft = folder / f"{os.getpid()}.draft"
    fd = os.open(draft, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{PARENT_AT_IMPORT} {program}\n".encode())
    os.rename(draft, own)  # published only once locked: nobody can take it for stale
    _held.append(fd)
    atexit.register(own.unlink, missing_ok=True)
    earlier = [found for found in map(_holder, sorted(folder.glob("*.lock"))) if found is not None]
    others = [(pid, parent, name) for pid, parent, name in earlier if pid != os.getpid() and parent != PARENT_AT_IMPORT]
    if others:
        parents = sorted({parent for _, parent, _ in others})
        names = ", ".join(f"{name} (pid {pid})" for pid, _, name in others)
        raise EarlierSetRunning(
            f"an earlier set of this checkout is still running (supervisord pid {', '.join(map(str, parents))}, "
            f"{'alive' if any(_alive(p) for p in parents) else 'gone'}): {names}; they drain and exit within "
            "WORKER_GRACE_SECONDS of their supervisord's death, or stop them (kill -TERM <pid>)"
        )


def _holder(path: pathlib.Path) -> tuple[int, int, str] | None:
    """(pid, supervisord pid, program) of a live holder; None (and the file removed) when its lock is free."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            parent, _, program = os.read(fd, 200).decode(errors="replace").strip().partition(" ")
            return int(path.stem), int(parent or 0), program
        path.unlink(missing_ok=True)
        return None
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
