"""The embedded default senders: with no provider credentials, messages go to a Postgres outbox table instead.

The worker then runs end to end on a fresh machine with no accounts; each message is stored once per ledger key
(a repeated key returns the first receipt) and logged with its key and masked recipient only.

The claim's deadline (``SmsSender.send``) is checked with no await between it and the insert, and with no time
bound of its own: the insert is idempotent per ledger key, so even one written after the deadline cannot store a
message twice. The window left between the check and the write is the wait for a pooled connection.
"""

from __future__ import annotations

from datetime import datetime

import attrs
import structlog

from adapters.observability.metrics import MetricsRecorder
from adapters.observability.provider_calls import provider_call
from adapters.postgres.pool import PostgresDatabase
from domain.errors import refuse_after
from domain.messages import EmailMessage, ProviderReceipt, SmsMessage
from domain.ports import Clock
from domain.sms import sms_length
from domain.values import Channel

_log = structlog.get_logger("clientflow.outbox")

# Insert once per ledger key; on a repeat, the first row's id (the CTE sees the row the insert skipped over).
_RECORD = """
with inserted as (
    insert into outbox_messages (ledger_key, channel, recipient, subject, body, html, created_at)
    values ($1, $2, $3, $4, $5, $6, $7)
    on conflict (ledger_key) do nothing
    returning id
)
select id from inserted
union all
select id from outbox_messages where ledger_key = $1
limit 1
"""


def _receipt(channel: Channel, row_id: int) -> ProviderReceipt:
    return ProviderReceipt(f"outbox-{channel.value}-{row_id}")


async def _record(database: PostgresDatabase, channel: Channel, ledger_key: str, *values: object) -> ProviderReceipt:
    row_id = await database.fetchval(_RECORD, ledger_key, channel.value, *values)
    if row_id is None:  # a concurrent insert of the key committed after this statement's snapshot was taken
        row_id = await database.fetchval("select id from outbox_messages where ledger_key = $1", ledger_key)
    return _receipt(channel, row_id)


@attrs.define
class OutboxSmsSender:
    database: PostgresDatabase
    clock: Clock
    recorder: MetricsRecorder | None = None

    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        refuse_after(deadline, self.clock.now())
        with provider_call("outbox", "sms", self.recorder, message.ledger_key, sms=sms_length(message.body)) as answer:
            receipt = await _record(
                self.database,
                Channel.SMS,
                message.ledger_key,
                message.to.e164,
                None,
                message.body,
                None,
                self.clock.now(),
            )
            answer.provider_message_id = receipt.provider_message_id
        _log.info("outbox.sms_recorded", ledger_key=message.ledger_key, recipient=message.to.masked)
        return receipt

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        row_id = await self.database.fetchval(
            "select id from outbox_messages where ledger_key = $1 and channel = 'sms' and created_at >= $2",
            ledger_key,
            since,
        )
        return None if row_id is None else _receipt(Channel.SMS, row_id)


@attrs.define
class OutboxEmailSender:
    database: PostgresDatabase
    clock: Clock
    recorder: MetricsRecorder | None = None

    async def send(self, message: EmailMessage, deadline: datetime) -> ProviderReceipt:
        refuse_after(deadline, self.clock.now())
        with provider_call("outbox", "email", self.recorder, message.ledger_key) as answer:
            receipt = await _record(
                self.database,
                Channel.EMAIL,
                message.ledger_key,
                message.to.address,
                message.subject,
                message.text,
                message.html,
                self.clock.now(),
            )
            answer.provider_message_id = receipt.provider_message_id
        _log.info("outbox.email_recorded", ledger_key=message.ledger_key, recipient=message.to.masked)
        return receipt
