"""What a service returns for a job: the shell logs, counts and stores it as the job's return value.

``summary()`` is the JSON the Node side reads back (``job.returnvalue``): codes and counts only, never PII.
"""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from domain.errors import SuppressionReason
from domain.values import Channel


@attrs.frozen
class Sent:
    channels: tuple[Channel, ...]

    def summary(self) -> dict[str, object]:
        return {"outcome": "sent", "channels": [str(c) for c in self.channels]}


@attrs.frozen
class Skipped:
    """Nothing to send, on purpose. ``reason`` is a short snake_case code (``appointment_cancelled``)."""

    reason: str

    def summary(self) -> dict[str, object]:
        return {"outcome": "skipped", "reason": self.reason}


@attrs.frozen
class Deferred:
    """Run the same job again at ``until`` without spending an attempt (a closed send window, a rate limit)."""

    until: datetime
    reason: str

    def summary(self) -> dict[str, object]:
        return {"outcome": "deferred", "reason": self.reason, "until": _iso(self.until)}


@attrs.frozen
class Undeliverable:
    """Permanently refused by the provider or impossible (no reachable channel); recorded, not retried.

    ``code`` is the provider's error code; ``suppressed`` is set when the refusal also withdrew the address (an
    opted-out or invalid number): the dispatcher's answer carries it, a job's outcome never does."""

    reason: str
    code: str | None = None
    suppressed: SuppressionReason | None = None

    def summary(self) -> dict[str, object]:
        return {"outcome": "undeliverable", "reason": self.reason, "code": self.code}


@attrs.frozen
class Published:
    """A scan or fan-out queued ``count`` jobs (``already_queued`` were there from an earlier run)."""

    count: int
    already_queued: int = 0

    def summary(self) -> dict[str, object]:
        return {"outcome": "published", "count": self.count, "alreadyQueued": self.already_queued}


@attrs.frozen
class SnapshotStored:
    date: str  # ISO date of the local day

    def summary(self) -> dict[str, object]:
        return {"outcome": "snapshot_stored", "date": self.date}


@attrs.frozen
class Cleaned:
    """A maintenance run removed these many items, by ``<queue>:<kind>`` (``reminders:completed``)."""

    removed: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.removed)

    def summary(self) -> dict[str, object]:
        return {"outcome": "cleaned", "removed": dict(self.removed), "total": self.total}


Outcome = Sent | Skipped | Deferred | Undeliverable | Published | SnapshotStored | Cleaned


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``, as JavaScript's ``Date.toJSON`` writes it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
