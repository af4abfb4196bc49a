"""Validated BullMQ option dicts.

``bullmq`` takes its options as camelCase dict keys and silently ignores a key it does not know
(``lock_duration`` instead of ``lockDuration`` changes nothing). Every option dict we hand to the library goes
through these checks first, so a misspelt or mistyped option stops the process at start-up instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from domain.errors import ConfigurationError


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _non_empty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _bool(value: object) -> bool:
    return isinstance(value, bool)


def _anything(_value: object) -> bool:
    return True


def _keep_jobs(value: object) -> bool:
    """``removeOnComplete``/``removeOnFail``: a bool, a count, or ``{age (s), count}``."""
    if isinstance(value, bool) or _non_negative_int(value):
        return True
    if not isinstance(value, Mapping) or not value or set(value) - {"age", "count"}:
        return False
    return all(_non_negative_int(v) for v in value.values())


def _backoff(value: object) -> bool:
    if _non_negative_int(value):
        return True
    if not isinstance(value, Mapping) or set(value) - {"type", "delay"}:
        return False
    return value.get("type") in ("fixed", "exponential") and _non_negative_int(value.get("delay", 0))


def _metrics(value: object) -> bool:
    """``metrics``: ``{maxDataPoints}``, the minutes of completed/failed counts bullmq keeps per queue."""
    return isinstance(value, Mapping) and set(value) == {"maxDataPoints"} and _positive_int(value["maxDataPoints"])


Check = Callable[[object], bool]

WORKER_OPTIONS: Mapping[str, Check] = {
    "concurrency": _positive_int,
    "lockDuration": _positive_int,
    "lockRenewTime": _positive_int,
    "stalledInterval": _positive_int,
    "maxStalledCount": _non_negative_int,
    "drainDelay": _positive_int,  # seconds, not milliseconds, in bullmq 3.4.4
    "runRetryDelay": _non_negative_int,
    "prefix": _non_empty_str,
    "name": _non_empty_str,
    "autorun": _bool,
    "skipVersionCheck": _bool,
    "removeOnComplete": _keep_jobs,
    "removeOnFail": _keep_jobs,
    "metrics": _metrics,
    "connection": _anything,  # a redis.asyncio.Redis built by adapters.bullmq.connection
}

JOB_OPTIONS: Mapping[str, Check] = {
    "jobId": _non_empty_str,
    "delay": _non_negative_int,
    "attempts": _positive_int,
    "backoff": _backoff,
    "priority": _non_negative_int,
    "lifo": _bool,
    "timestamp": _non_negative_int,
    "stackTraceLimit": _non_negative_int,
    "removeOnComplete": _keep_jobs,
    "removeOnFail": _keep_jobs,
    "tm": _non_empty_str,  # the W3C trace context as a JSON carrier, where npm bullmq's telemetry puts it
}


def _validated(kind: str, options: Mapping[str, Any], known: Mapping[str, Check]) -> dict[str, Any]:
    for key, value in options.items():
        check = known.get(key)
        if check is None:
            close = difflib.get_close_matches(key.replace("_", ""), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"unknown bullmq {kind} option {key!r}{hint}")
        if not check(value):
            raise ConfigurationError(f"bullmq {kind} option {key!r} has an invalid value or type")
    return dict(options)


def worker_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``options`` after checking every key and value; raise ConfigurationError otherwise."""
    return _validated("worker", options, WORKER_OPTIONS)


def job_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``options`` after checking every key and value; raise ConfigurationError otherwise."""
    return _validated("job", options, JOB_OPTIONS)
