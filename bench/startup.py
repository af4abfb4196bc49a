"""Start-up time of the supervised programs: spawn to checks passed, and spawn to taking jobs / listening.

Each round starts our supervisord.conf from a temporary checkout (the e2e world: the local Redis with a fresh
prefix, a throwaway database, fake providers), every program at once as `supervisord -c supervisord.conf` does,
reads supervisord's ``spawned`` times and each program's ``start_checks_passed`` (its ``seconds_since_spawn``) and
``worker_started`` / ``health server listening`` log lines, then shuts down. The checks must pass well inside
``startsecs`` (a permanent cause must exit within it to reach FATAL); taking jobs is what RUNNING should mean.

    .venv/bin/python bench/startup.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys
import tempfile
from datetime import UTC, datetime

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fakeservers.providers import running  # noqa: E402
from tests.support.supervised import (  # noqa: E402  # the e2e world is the benchmark's world
    Providers,
    bullmq_prefix,
    eventually,
    supervised,
    system_env,
    throwaway_database,
)

SPAWNED = re.compile(r"^(\S+ \S+) INFO spawned: '([\w-]+)'", re.MULTILINE)
READY_EVENTS = ("worker_started", "health server listening")


def one_round(directory: pathlib.Path, env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Each program -> (seconds to checks passed, seconds to taking jobs or listening)."""
    with supervised(directory, env) as system:
        programs = [name for name in system.states() if name != "fatal-alert"]
        logs = {name: f"{name.split(':')[-1]}.log" for name in programs}
        eventually(lambda: all(_event(system.log(log), READY_EVENTS) for log in logs.values()), 180, "all started")
        spawned = {
            name: datetime.strptime(moment, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            for moment, name in SPAWNED.findall(system.log("supervisord.log"))
        }
        found = {}
        for name, log in logs.items():
            text = system.log(log)
            checks = _event(text, ("start_checks_passed",))
            started = _event(text, READY_EVENTS)
            assert checks is not None
            assert started is not None
            taking = (datetime.fromisoformat(started["timestamp"]) - spawned[log.removesuffix(".log")]).total_seconds()
            found[name] = (float(checks["seconds_since_spawn"]), taking)
        system.shutdown()
    return found


def _event(log: str, names: tuple[str, ...]) -> dict[str, str] | None:
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") in names:
                return dict(record)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    checks: list[float] = []
    taking: list[float] = []
    with running(Providers()) as providers, throwaway_database() as dsn, bullmq_prefix() as prefix:
        env = system_env(providers, dsn, prefix)
        for number in range(rounds):
            with tempfile.TemporaryDirectory() as folder:
                figures = one_round(pathlib.Path(folder), env)
            for name, (check, take) in sorted(figures.items()):
                print(f"round {number + 1} {name:38} checks {check:5.1f} s   taking jobs/listening {take:5.1f} s")
                checks.append(check)
                taking.append(take)
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[0]
    print(f"checks: median {statistics.median(checks):.1f} s, max {max(checks):.1f} s")
    print(f"taking jobs: median {statistics.median(taking):.1f} s, max {max(taking):.1f} s (load average {load})")


if __name__ == "__main__":
    main()
