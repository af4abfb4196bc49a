"""Adapters for a dry run: the services run their real code, but nothing leaves the process.

A dry run (``dead-letter replay --dry-run``) wires the same services as a real run, with these senders and this
publisher in place of Twilio/SendGrid/the outbox and BullMQ, and a database whose transaction is rolled back
(adapters/postgres/dry_run.py). So validation, send windows, suppressions and ledger checks all apply as they
would now, and what would have gone out is collected here instead. Reconciliation of an unsettled SMS asks the
real provider (a read: nothing is sent).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from domain.jobs import Job, job_type_of
from domain.messages import EmailMessage, ProviderReceipt, SmsMessage
from domain.ports import SmsSender

DRY_RUN_MESSAGE_ID = "dry-run"


@attrs.frozen
class WouldSend:
    """A message a dry run would hand to a provider; ``to`` is masked."""

    channel: str
    to: str
    ledger_key: str


@attrs.frozen
class WouldQueue:
    """A job a dry run would add (a next nurture step, a scan's reminder)."""

    queue: str
    job_name: str
    job_id: str


@attrs.define
class DryRunEffects:
    """What the services of one dry run tried to do outside the database."""

    sent: list[WouldSend] = attrs.field(factory=list)
    queued: list[WouldQueue] = attrs.field(factory=list)

    def clear(self) -> None:
        self.sent.clear()
        self.queued.clear()


@attrs.define
class DryRunSmsSender:
    """Collects SMS instead of sending; ``find_sent`` asks ``real`` (when configured) so reconciliation is real."""

    effects: DryRunEffects
    real: SmsSender | None = None

    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        """Nothing leaves, so ``deadline`` is not checked."""
        self.effects.sent.append(WouldSend("sms", message.to.masked, message.ledger_key))
        return ProviderReceipt(DRY_RUN_MESSAGE_ID)

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        return await self.real.find_sent(ledger_key, since) if self.real is not None else None


@attrs.define
class DryRunEmailSender:
    effects: DryRunEffects

    async def send(self, message: EmailMessage, deadline: datetime) -> ProviderReceipt:
        """Nothing leaves, so ``deadline`` is not checked."""
        self.effects.sent.append(WouldSend("email", message.to.masked, message.ledger_key))
        return ProviderReceipt(DRY_RUN_MESSAGE_ID)


@attrs.define
class DryRunPublisher:
    """Collects jobs instead of adding them; answers as if none existed yet."""

    effects: DryRunEffects

    async def publish(self, job: Job, job_id: str, run_at: datetime | None = None) -> bool:
        self.effects.queued.append(WouldQueue(str(job_type_of(job).queue), str(job_type_of(job).name), job_id))
        return True
