"""supervisord event listener: raise an alert when a program goes FATAL (it gave up restarting it).

Speaks supervisor's event-listener protocol on stdin/stdout (stdout belongs to the protocol: the alert goes to
stderr as one JSON line, and to Sentry when SENTRY_DSN is set).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from supervisor import childutils

from adapters.clock import SystemClock
from adapters.observability.sentry import flush_sentry, init_sentry, report_alert
from entrypoints.settings import Settings, SettingsError

Alert = Callable[[str, str], object]  # (message, program)


def alert_line(program: str, process: str, from_state: str, stream: TextIO) -> None:
    """Write the alert as one JSON line, in the same shape as the workers' production logs."""
    record = {
        "timestamp": SystemClock().now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": "critical",
        "event": "program_fatal",
        "program": program,
        "process": process,
        "from_state": from_state,
        "hint": f"supervisorctl -c supervisord.conf tail {process} stderr; then start it again",
    }
    stream.write(json.dumps(record) + "\n")
    stream.flush()


def listen(stdin: TextIO, stdout: TextIO, stderr: TextIO, extra_alert: Alert | None) -> None:
    """Serve events for ever: each PROCESS_STATE_FATAL becomes one alert."""
    while True:
        headers, payload = childutils.listener.wait(stdin, stdout)
        if headers.get("eventname") == "PROCESS_STATE_FATAL":
            fields = dict(token.split(":", 1) for token in payload.split())
            program = fields.get("groupname", "?")
            process = f"{program}:{fields.get('processname', '?')}"
            alert_line(program, process, fields.get("from_state", "?"), stderr)
            if extra_alert is not None:
                try:
                    extra_alert(f"supervisord program {process} is FATAL", program)
                except Exception as error:  # the listener must survive a broken alert channel
                    stderr.write(json.dumps({"event": "alert_channel_failed", "error": type(error).__name__}) + "\n")
        childutils.listener.ok(stdout)


def sentry_alert(message: str, program: str) -> None:
    """Report the alert to Sentry and wait (briefly) until it is sent; the SDK stays open for the next one."""
    report_alert(message, program=program)
    flush_sentry()


def _stop(_signum: int, _frame: object) -> None:
    """supervisord stops its listeners with SIGTERM at shutdown: that is a normal end, not a crash."""
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    extra_alert: Alert | None = None
    try:
        settings: Settings | None = Settings.from_env()
    except SettingsError as error:
        # The workers refuse these settings too and are about to go FATAL: that alert must still be raised.
        sys.stderr.write(json.dumps({"event": "settings_refused_alerting_to_log_only", "error": str(error)}) + "\n")
        settings = None
    if settings is not None and settings.sentry_dsn:
        init_sentry(settings.sentry_dsn, environment=settings.node_env, release=settings.release)
        extra_alert = sentry_alert
    listen(sys.stdin, sys.stdout, sys.stderr, extra_alert)


if __name__ == "__main__":
    main()
