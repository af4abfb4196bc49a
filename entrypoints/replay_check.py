"""What a dead-lettered job would do if it were replayed now, found by running it for real with nothing leaving.

The job goes through the worker's own router and services (the same decoding and validation, send windows,
re-validation against the CRM, suppressions and send-ledger claims), wired by the composition root to the dry-run
adapters (adapters/dry_run.py) and a database whose transaction is rolled back (adapters/postgres/dry_run.py).
The verdict mirrors what the runtime (adapters/bullmq/runtime.py) would do with the job's outcome or error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

from adapters.bullmq.dead_letter_admin import DeadLetterEntry
from adapters.bullmq.router import JobRouter
from adapters.dry_run import DryRunEffects
from adapters.postgres.dry_run import DryRunDatabase
from domain.errors import (
    ConfigurationError,
    DeliveryOutcomeUnknown,
    DeliveryRateLimited,
    DeliveryRejected,
    InvalidJob,
    TransientError,
)
from domain.jobs import QueueName
from domain.outcomes import Deferred, Outcome, Sent
from entrypoints.bootstrap import Services, System, dry_run_handlers, open_dry_run


@attrs.frozen
class Verdict:
    """``verdict`` is one line an operator reads (``would send``, ``would skip: already sent``, ``would fail:
    invalid job: amount ...``); ``action`` its first word pair as a key (send, skip, fail, retry, defer, stop)."""

    id: str
    action: str
    verdict: str
    sends: tuple[dict[str, str], ...] = ()
    queues: tuple[dict[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _outcome_verdict(entry: DeadLetterEntry, outcome: Outcome, effects: DryRunEffects) -> Verdict:
    sends = tuple(attrs.asdict(s) for s in effects.sent)
    queues = tuple(attrs.asdict(q) for q in effects.queued)
    if sends:
        channels = ", ".join(f"{s['channel']} to {s['to']}" for s in sends)
        return Verdict(entry.id, "send", f"would send: {channels}", sends, queues)
    if isinstance(outcome, Sent):
        return Verdict(entry.id, "skip", "would skip: already sent", sends, queues)
    if isinstance(outcome, Deferred):
        return Verdict(entry.id, "defer", f"would defer: {outcome.reason} until {outcome.until.isoformat()}")
    summary = outcome.summary()
    detail = summary.get("reason") or summary.get("outcome")
    if summary.get("outcome") == "undeliverable":
        return Verdict(entry.id, "fail", f"would fail: undeliverable: {detail}")
    if queues:
        return Verdict(entry.id, "queue", f"would queue {len(queues)} jobs", sends, queues)
    return Verdict(entry.id, "skip", f"would skip: {detail}", sends, queues)


def _error_verdict(entry: DeadLetterEntry, error: Exception) -> Verdict:
    if isinstance(error, InvalidJob):
        return Verdict(entry.id, "fail", f"would fail: {error}")
    if isinstance(error, DeliveryRejected):
        return Verdict(entry.id, "fail", f"would fail: rejected by the provider: {error}")
    if isinstance(error, DeliveryRateLimited):
        return Verdict(entry.id, "defer", "would defer: provider_rate_limited")
    if isinstance(error, ConfigurationError):
        return Verdict(entry.id, "stop", f"would stop the worker: configuration: {error}")
    if isinstance(error, TransientError | DeliveryOutcomeUnknown):
        return Verdict(entry.id, "retry", f"would retry: {type(error).__name__}: {error}")
    return Verdict(entry.id, "retry", f"would retry: unexpected {type(error).__name__} in the handler")


@attrs.define
class ReplayCheck:
    """Checks dead-lettered jobs one after the other inside one rolled-back run (open with :func:`replay_check`).

    Jobs checked earlier in the run count for later ones (two copies of one message: the second would skip).
    """

    _database: DryRunDatabase
    _services: Services
    _effects: DryRunEffects

    async def check(self, entry: DeadLetterEntry) -> Verdict:
        self._effects.clear()
        try:
            queue = QueueName(entry.source_queue)
        except ValueError:
            return Verdict(entry.id, "fail", f"would fail: queue {entry.source_queue!r} is not one we consume")
        try:
            async with self._database.job_savepoint():
                routed = JobRouter(queue, dry_run_handlers(self._services, queue)).route(entry.job_name, entry.data)
                outcome = await routed.handler(routed.payload)
        except Exception as error:  # each class is mapped as the runtime maps it
            return _error_verdict(entry, error)
        return _outcome_verdict(entry, outcome, self._effects)


@asynccontextmanager
async def replay_check(system: System) -> AsyncIterator[ReplayCheck]:
    """A ReplayCheck over ``system``'s database and CRM, with nothing sent, queued or committed."""
    async with open_dry_run(system) as dry_run:
        yield ReplayCheck(dry_run.database, dry_run.services, dry_run.effects)
