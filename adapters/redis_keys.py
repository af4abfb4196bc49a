"""Every Redis key name of ours, in one module to grep: they live beside the queues' keys, under ``<prefix>:cf:``.

BullMQ's own key names, which some adapters read directly, are in adapters/bullmq/keys.py.
"""

from __future__ import annotations


def _ours(prefix: str) -> str:
    return f"{prefix}:cf"


def heartbeat_key(prefix: str, queue: str, worker_id: str) -> str:
    """One worker's heartbeat (a JSON payload with a TTL)."""
    return f"{_ours(prefix)}:heartbeat:{queue}:{worker_id}"


def heartbeat_index_key(prefix: str, queue: str) -> str:
    """The set of worker ids that beat for ``queue``."""
    return f"{_ours(prefix)}:heartbeats:{queue}"


def schedule_key(prefix: str, name: str) -> str:
    """One schedule's status hash (adapters/scheduling/status_store.py)."""
    return f"{_ours(prefix)}:schedule:{name}"


def schedules_index_key(prefix: str) -> str:
    """The set of schedule names with a status hash."""
    return f"{_ours(prefix)}:schedules"


def recorded_metrics_key(prefix: str) -> str:
    """The hash every process adds its metric deltas to."""
    return f"{_ours(prefix)}:metrics"


def dead_lettered_key(prefix: str) -> str:
    """The sorted set of dead-letter copy ids ever recorded (score: when, epoch ms); trimmed by the sweeper."""
    return f"{_ours(prefix)}:dead-lettered"


def replay_log_key(prefix: str) -> str:
    """The capped stream of dead-letter replays (who replayed what, when)."""
    return f"{_ours(prefix)}:dead-letter:replays"


def backfill_key(prefix: str, backfill: str) -> str:
    """One backfill's checkpoint set (members ``<org id>|<YYYY-MM-DD>``)."""
    return f"{_ours(prefix)}:backfill:{backfill}"


def rate_limit_key(prefix: str, provider: str) -> str:
    """A provider's shared rate-limit window (``twilio``, ``sendgrid``)."""
    return f"{_ours(prefix)}:ratelimit:{provider}"


def twilio_sent_prefix(prefix: str) -> str:
    """Where the Twilio sender records each message it created, by ledger key (``<this>:<ledger key>``)."""
    return f"{_ours(prefix)}:twilio:sent"
