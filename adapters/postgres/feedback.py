"""Delivery feedback in Postgres: the ledger's forward-only delivery progress, address-wide suppressions with their
consent history, and reconciliation's view of unsettled sends (migration 0020).

Every ledger move here is one conditional statement naming what it may leave (compare-and-set), separate from the
send path's own moves in ``ledger.py``: a report raises ``delivery_status`` only to a higher rank, and settles a
CLAIMED/UNKNOWN entry to SENT; giving up matches the entry exactly as read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import attrs

from adapters.postgres.ledger import ledger_entry, suppression_address
from adapters.postgres.pool import PostgresDatabase
from domain.errors import SuppressionReason
from domain.feedback import ConsentAction, ConsentChange, DeliveryProgress, DeliveryReport, FeedbackApplied
from domain.messages import LedgerEntry
from domain.reconciliation import FAILED_UNCONFIRMED
from domain.values import Channel, EmailAddress, PhoneNumber

if TYPE_CHECKING:
    from adapters.postgres.pool import Connection

_STATUS_RANK_SQL = (
    "case l.delivery_status when 'accepted' then 1 when 'sent' then 2"
    " when 'delivered' then 3 when 'undelivered' then 3 when 'failed' then 3 else 0 end"
)
_SETTLES_SQL = f"(l.state in ('claimed', 'unknown') or (l.state = 'failed' and l.reason = '{FAILED_UNCONFIRMED}'))"

# One report, the webhooks' common case ($1 key, $2 channel, $3 status, $4 rank, $5 at, $6 message id, $7 error
# code): the batch statement below without the unnest, so the primary key finds the row and the plan stays cached.
_APPLY_REPORT_SQL = f"""
update send_ledger l
   set delivery_status = $3,
       delivery_error_code = $7,
       delivery_reported_at = $5,
       state = case when {_SETTLES_SQL} then 'sent' else l.state end,
       updated_at = case when {_SETTLES_SQL} then $5 else l.updated_at end,
       version = case when {_SETTLES_SQL} then nextval('send_ledger_version') else l.version end,
       provider_message_id = coalesce(l.provider_message_id, $6)
 where l.key = $1
   and l.channel = $2
   and (l.state <> 'failed' or l.reason = '{FAILED_UNCONFIRMED}')
   and (l.provider_message_id is null or $6::text is null or l.provider_message_id = $6)
   and {_STATUS_RANK_SQL} < $4
returning true
"""  # noqa: S608  # fixed SQL fragments, every value a parameter
# PostgreSQL plans a prepared statement afresh for its first five executions, then keeps a generic plan.
_PLANNED_AFTER = 6

# $1..$7: parallel arrays of the reports. Of several reports for one key in a batch the highest rank wins (the
# first of equals), so a batch moves each entry once, exactly as the reports applied one by one would.
_APPLY_REPORTS_SQL = f"""
with incoming as (
    select distinct on (key) key, channel, status, rank, at, message_id, error_code
      from unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[], $7::text[])
           with ordinality as i(key, channel, status, rank, at, message_id, error_code, n)
     order by key, rank desc, n
)
update send_ledger l
   set delivery_status = i.status,
       delivery_error_code = i.error_code,
       delivery_reported_at = i.at,
       state = case when {_SETTLES_SQL} then 'sent' else l.state end,
       updated_at = case when {_SETTLES_SQL} then i.at else l.updated_at end,
       version = case when {_SETTLES_SQL} then nextval('send_ledger_version') else l.version end,
       provider_message_id = coalesce(l.provider_message_id, i.message_id)
  from incoming i
 where l.key = i.key
   and l.channel = i.channel
   and (l.state <> 'failed' or l.reason = '{FAILED_UNCONFIRMED}')
   and (l.provider_message_id is null or i.message_id is null or l.provider_message_id = i.message_id)
   and {_STATUS_RANK_SQL} < i.rank
returning l.key
"""  # noqa: S608  # fixed SQL fragments, every value a parameter

_ENTRY_COLUMNS = "key, channel, state, claimed_at, updated_at, provider_message_id, reason, version"


def _report_arguments(report: DeliveryReport) -> tuple[object, ...]:
    """``_APPLY_REPORT_SQL``'s parameters, $1..$7."""
    return (
        report.ledger_key,
        report.channel.value,
        report.progress.value,
        report.progress.rank,
        report.at,
        report.provider_message_id,
        report.error_code,
    )


async def open_acknowledging_database(dsn: str, size: int = 10) -> PostgresDatabase:
    """A pool for the webhooks program, so that a callback's answer waits for its one statement only: all ``size``
    connections opened at start and kept (no idle close), the callback statement prepared and planned on each, and
    no reset statement on release (nothing in that program sets session state; asyncpg still rolls back a
    transaction left open). TransientError when the server cannot be reached."""
    return await PostgresDatabase.connect(
        dsn, min_size=size, max_size=size, idle_lifetime=0, reset_session=False, init=_prepare_connection
    )


async def _prepare_connection(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """Prepare the one-report statement on a new connection (asyncpg keeps it per connection) and run it until
    PostgreSQL keeps its plan, so no callback pays parsing or planning. The runs name an empty key, which no entry
    has: nothing changes."""
    for _ in range(_PLANNED_AFTER):
        await connection.fetchval(_APPLY_REPORT_SQL, "", Channel.SMS.value, "sent", 0, None, None, None)


@attrs.define
class PostgresDeliveryFeedback:
    """Implements ``SuppressionList``, ``DeliveryFeedback`` and ``UnsettledSends`` on one database."""

    db: PostgresDatabase

    async def suppression(self, channel: Channel, recipient: PhoneNumber | EmailAddress) -> SuppressionReason | None:
        reason = await self.db.fetchval(
            "select reason from address_suppressions where channel = $1 and address = $2",
            channel.value,
            suppression_address(recipient),
        )
        return SuppressionReason(reason) if reason is not None else None

    async def apply(self, reports: Sequence[DeliveryReport], changes: Sequence[ConsentChange]) -> FeedbackApplied:
        """One statement, so one round trip, when there are no consent changes (a statement is its own
        transaction: no BEGIN/COMMIT); a lone report, a status callback, is the prepared one-report statement."""
        if not changes:
            async with self.db.connection() as connection:
                if len(reports) == 1:
                    moved = await connection.fetchval(_APPLY_REPORT_SQL, *_report_arguments(reports[0]))
                    return FeedbackApplied(reports=1 if moved else 0, consent_changes=0)
                return FeedbackApplied(
                    reports=await self._apply_reports(connection, reports) if reports else 0, consent_changes=0
                )
        async with self.db.transaction() as connection:
            moved = await self._apply_reports(connection, reports) if reports else 0
            applied = 0
            for change in changes:
                applied += await self._apply_change(connection, change)
        return FeedbackApplied(reports=moved, consent_changes=applied)

    @staticmethod
    async def _apply_reports(connection: Connection, reports: Sequence[DeliveryReport]) -> int:
        rows = await connection.fetch(
            _APPLY_REPORTS_SQL,
            [r.ledger_key for r in reports],
            [r.channel.value for r in reports],
            [r.progress.value for r in reports],
            [r.progress.rank for r in reports],
            [r.at for r in reports],
            [r.provider_message_id for r in reports],
            [r.error_code for r in reports],
        )
        return len(rows)

    @staticmethod
    async def _apply_change(connection: Connection, change: ConsentChange) -> int:
        address = suppression_address(change.recipient)
        recorded = await connection.fetchval(
            "insert into consent_changes (channel, address, action, reason, source, event_id, changed_at)"
            " values ($1, $2, $3, $4, $5, $6, $7) on conflict (source, event_id) do nothing returning true",
            change.channel.value,
            address,
            change.action.value,
            change.reason.value if change.reason else None,
            change.source,
            change.event_id,
            change.at,
        )
        if not recorded:
            return 0
        if change.action is ConsentAction.WITHDRAWN:
            assert change.reason is not None  # ConsentChange's rule: a withdrawal names its reason
            await connection.execute(
                "insert into address_suppressions (channel, address, reason, source, suppressed_at)"
                " values ($1, $2, $3, $4, $5) on conflict (channel, address) do nothing",
                change.channel.value,
                address,
                change.reason.value,
                change.source,
                change.at,
            )
        else:
            for table in ("address_suppressions", "suppressions"):
                await connection.execute(
                    f"delete from {table} where channel = $1 and address = $2 and reason = $3",  # noqa: S608
                    change.channel.value,
                    address,
                    SuppressionReason.OPTED_OUT.value,
                )
        return 1

    async def progress(self, key: str) -> DeliveryProgress | None:
        status = await self.db.fetchval("select delivery_status from send_ledger where key = $1", key)
        return DeliveryProgress(status) if status is not None else None

    async def unsettled(
        self, updated_before: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> Sequence[LedgerEntry]:
        rows = await self.db.fetch(
            f"select {_ENTRY_COLUMNS} from send_ledger"  # noqa: S608  # fixed column list
            " where state in ('claimed', 'unknown') and updated_at < $1"
            "   and ($3::timestamptz is null or (updated_at, key) > ($3::timestamptz, $4::text))"
            " order by updated_at, key limit $2",
            updated_before,
            limit,
            after[0] if after else None,
            after[1] if after else None,
        )
        return [ledger_entry(row) for row in rows]

    async def give_up(self, entry: LedgerEntry, at: datetime) -> bool:
        moved = await self.db.fetchval(
            "update send_ledger set state = 'failed', reason = $3, updated_at = $4,"
            " version = nextval('send_ledger_version')"
            " where key = $1 and version = $2 and state in ('claimed', 'unknown') returning true",
            entry.key,
            entry.version,
            FAILED_UNCONFIRMED,
            at,
        )
        return bool(moved)

    async def unsettled_by_age(
        self, now: datetime, ages: Sequence[timedelta]
    ) -> Mapping[tuple[Channel, timedelta], int]:
        rows = await self.db.fetch(
            "select l.channel, a.n as age_index, count(*) as count"
            "  from send_ledger l, unnest($2::float8[]) with ordinality as a(seconds, n)"
            " where l.state in ('claimed', 'unknown')"
            "   and l.updated_at < $1::timestamptz - make_interval(secs => a.seconds)"
            " group by l.channel, a.n",
            now,
            [age.total_seconds() for age in ages],
        )
        counts = {(channel, age): 0 for channel in Channel for age in ages}
        for row in rows:
            counts[(Channel(row["channel"]), ages[row["age_index"] - 1])] = row["count"]
        return counts
