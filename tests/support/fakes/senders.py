"""Fakes of the SmsSender and EmailSender ports: record what was sent, raise what a test scripts.

Each passes tests/contract/test_senders.py with the real adapter (Twilio, SendGrid, the outbox). A request takes no
time here: past the claim's deadline (on ``clock``) a send raises ClaimLapsed before anything else."""

from __future__ import annotations

from datetime import datetime

import attrs

from domain.errors import DeliveryOutcomeUnknown, refuse_after
from domain.messages import EmailMessage, ProviderReceipt, SmsMessage
from domain.ports import Clock


@attrs.define
class FakeSmsSender:
    """Records accepted messages; ``fail_with`` makes the next sends raise that error instead."""

    clock: Clock
    sent: list[SmsMessage] = attrs.Factory(list)
    fail_with: list[Exception] = attrs.Factory(list)
    provider_log: dict[str, tuple[datetime, ProviderReceipt]] = attrs.Factory(dict)
    accepted_but_lost: bool = False  # the provider accepts, but the answer never reaches us

    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        refuse_after(deadline, self.clock.now())
        if self.fail_with:
            raise self.fail_with.pop(0)
        receipt = ProviderReceipt(f"SM{len(self.sent) + 1:032d}")
        self.sent.append(message)
        self.provider_log[message.ledger_key] = (self.clock.now(), receipt)
        if self.accepted_but_lost:
            self.accepted_but_lost = False
            raise DeliveryOutcomeUnknown("provider did not answer in time")
        return receipt

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        found = self.provider_log.get(ledger_key)
        if found and found[0] >= since:
            return found[1]
        return None


@attrs.define
class FakeEmailSender:
    clock: Clock
    sent: list[EmailMessage] = attrs.Factory(list)
    fail_with: list[Exception] = attrs.Factory(list)

    async def send(self, message: EmailMessage, deadline: datetime) -> ProviderReceipt:
        refuse_after(deadline, self.clock.now())
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.append(message)
        return ProviderReceipt(f"sg-{len(self.sent)}")
