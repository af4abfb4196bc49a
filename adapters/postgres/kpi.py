"""KPI facts of one org over one window in one set-based query (docs/schema.md defines each figure).

Every part is an index range on (org_id, <time column>); nothing is fetched row by row into Python.
"""

from __future__ import annotations

import json
from datetime import datetime

import attrs

from adapters.postgres.pool import PostgresDatabase
from domain.models import DeliveryStatus, KpiFacts, Organization
from domain.values import Channel, Money

# $1 org id, $2 window start, $3 window end (exclusive), $4 the org's currency.
KPI_FACTS_SQL = """
with
by_start as (
    select count(*) filter (where status = 'completed') as completed,
           count(*) filter (where status = 'cancelled') as cancelled,
           count(*) filter (where status = 'no_show') as no_show
      from appointments where org_id = $1 and starts_at >= $2 and starts_at < $3
),
booked as (
    select count(*) as n from appointments where org_id = $1 and created_at >= $2 and created_at < $3
),
new_contacts as (
    select count(*) as n from contacts where org_id = $1 and created_at >= $2 and created_at < $3
),
collected as (
    select p.amount_minor, p.received_at, i.contact_id
      from payments p
      join invoices i on i.org_id = p.org_id and i.id = p.invoice_id
     where p.org_id = $1 and p.received_at >= $2 and p.received_at < $3 and p.currency = $4
),
revenue as (
    select coalesce(sum(amount_minor), 0)::bigint as n from collected
),
recovered as (
    select coalesce(sum(c.amount_minor), 0)::bigint as n
      from collected c
     where exists (
           select 1 from send_ledger l
            where l.org_id = $1 and l.contact_id = c.contact_id and l.kind = 'dunning' and l.state = 'sent'
              and l.claimed_at < c.received_at and l.claimed_at >= c.received_at - interval '30 days')
),
outstanding as (
    select coalesce(sum(greatest(i.amount_minor - coalesce(paid.total, 0), 0)), 0)::bigint as n
      from invoices i
      left join lateral (
           select sum(p.amount_minor) as total from payments p
            where p.org_id = i.org_id and p.invoice_id = i.id and p.currency = i.currency and p.received_at < $3
      ) paid on true
     where i.org_id = $1 and i.currency = $4 and i.issued_at < $3
       and (i.closed_at is null or i.closed_at >= $3)
),
messages as (
    -- sent/failed: the send's own outcome (state); delivered/failed: what the provider reported afterwards
    -- (delivery_status, issue 17). A sent message later undelivered counts as sent and as failed.
    select coalesce(jsonb_object_agg(channel || ':' || outcome, n), '{}'::jsonb)::text as counts
      from (select l.channel, o.outcome, count(*) as n
              from send_ledger l,
                   lateral (values (case l.state when 'sent' then 'sent' when 'failed' then 'failed' end),
                                   (case l.delivery_status when 'delivered' then 'delivered'
                                         when 'undelivered' then 'failed' when 'failed' then 'failed' end)) o(outcome)
             where l.org_id = $1 and l.claimed_at >= $2 and l.claimed_at < $3 and o.outcome is not null
             group by l.channel, o.outcome) per_channel
),
enrollments as (
    select count(*) filter (where enrolled_at >= $2 and enrolled_at < $3) as started,
           count(*) filter (where completed_at >= $2 and completed_at < $3) as completed
      from nurture_enrollments
     where org_id = $1
       and ((enrolled_at >= $2 and enrolled_at < $3) or (completed_at >= $2 and completed_at < $3))
)
select by_start.completed, by_start.cancelled, by_start.no_show, booked.n as booked,
       new_contacts.n as new_contacts, revenue.n as revenue, recovered.n as recovered,
       outstanding.n as outstanding, messages.counts as messages,
       enrollments.started as enrollments_started, enrollments.completed as enrollments_completed
  from by_start, booked, new_contacts, revenue, recovered, outstanding, messages, enrollments
"""


@attrs.define
class PostgresKpiFacts:
    db: PostgresDatabase

    async def facts(self, org: Organization, start: datetime, end: datetime) -> KpiFacts:
        row = await self.db.fetchrow(KPI_FACTS_SQL, org.id, start, end, org.currency)
        assert row is not None  # an aggregate over CTEs always yields one row
        messages = {}
        for name, count in json.loads(row["messages"]).items():
            channel, _, state = name.partition(":")
            messages[(Channel(channel), DeliveryStatus(state))] = count
        return KpiFacts(
            appointments_booked=row["booked"],
            appointments_completed=row["completed"],
            appointments_cancelled=row["cancelled"],
            appointments_no_show=row["no_show"],
            new_contacts=row["new_contacts"],
            revenue_collected=Money(row["revenue"], org.currency),
            outstanding_receivables=Money(row["outstanding"], org.currency),
            messages=messages,
            enrollments_started=row["enrollments_started"],
            enrollments_completed=row["enrollments_completed"],
            dunning_recovered=Money(row["recovered"], org.currency),
        )
