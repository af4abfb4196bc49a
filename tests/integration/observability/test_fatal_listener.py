"""The fatal-alert listener as supervisord runs it: the supervisor event protocol on stdin/stdout."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_alerts_even_when_the_settings_are_refused() -> None:
    """With settings the workers refuse (production without providers: they exit 78 and go FATAL), the listener
    still starts and writes the FATAL alert line instead of crashing before it can raise any alert."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "NODE_ENV": "production"}
    listener = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.fatal_listener"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdin is not None
        assert listener.stdout is not None
        assert listener.stderr is not None
        assert listener.stdout.readline() == "READY\n"
        payload = "processname:worker-dunning-00 groupname:worker-dunning from_state:BACKOFF"
        header = "ver:3.0 server:supervisor serial:1 pool:fatal-alert poolserial:1 eventname:PROCESS_STATE_FATAL"
        listener.stdin.write(f"{header} len:{len(payload)}\n{payload}")
        listener.stdin.flush()
        assert listener.stdout.readline() == "RESULT 2\n"
        refused = json.loads(listener.stderr.readline())
        alert = json.loads(listener.stderr.readline())
    finally:
        listener.kill()
        listener.wait(10)
    assert refused["event"] == "settings_refused_alerting_to_log_only"
    assert "SENDGRID_API_KEY" in refused["error"]
    assert (alert["event"], alert["process"]) == ("program_fatal", "worker-dunning:worker-dunning-00")
