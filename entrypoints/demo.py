"""The demo: seed one organization and trigger each kind of work, then show what lands in the outbox.

The demo org lives in a fixed-offset IANA zone (``Etc/GMT-N``) chosen so that it is midday there now: the send
windows are open whatever the hour on the machine, and a new user sees every message within a minute.
Re-running the demo reseeds the org and forgets what the worker recorded for it (ledger, outbox, snapshots).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs

from adapters.postgres.pool import PostgresDatabase
from adapters.scheduling.schedules import find_schedule, run_now
from domain.jobs import DunningJob, JobName, NurtureJob, SnapshotJob
from domain.values import ContactId, OrgId, zone
from entrypoints.bootstrap import System

ORG = "demo-org"
ADA, GRACE, ALAN = "demo-ada", "demo-grace", "demo-alan"

_PURGE = (
    "delete from outbox_messages where ledger_key in (select key from send_ledger where org_id = $1)",
    "delete from send_ledger where org_id = $1",
    "delete from suppressions where org_id = $1",
    "delete from daily_snapshots where org_id = $1",
    "delete from nurture_enrollments where org_id = $1",
    "delete from nurture_steps where org_id = $1",
    "delete from nurture_sequences where org_id = $1",
    "delete from message_templates where org_id = $1",
    "delete from payments where org_id = $1",
    "delete from invoices where org_id = $1",
    "delete from appointments where org_id = $1",
    "delete from contacts where org_id = $1",
    "delete from organizations where id = $1",
)


def midday_zone(now: datetime) -> str:
    """An IANA zone where the local hour is 12 at ``now`` (``Etc/GMT-N`` is UTC+N: the sign is POSIX's)."""
    offset = 12 - now.astimezone(UTC).hour
    if offset > 12:
        offset -= 24
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


async def seed(database: PostgresDatabase, now: datetime) -> str:
    """Write the demo org and its data; return its zone name."""
    zone = midday_zone(now)
    async with database.transaction() as db:
        for statement in _PURGE:
            await db.execute(statement, ORG)
        await db.execute(
            "insert into organizations (id, name, time_zone, currency) values ($1, 'Demo Dental', $2, 'USD')",
            ORG,
            zone,
        )
        await db.executemany(
            "insert into contacts (org_id, id, first_name, phone, email, preferred_channel, marketing_consent,"
            " created_at) values ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (ORG, ADA, "Ada", "+15555550101", None, "sms", False, now - timedelta(days=30)),
                (ORG, GRACE, "Grace", None, "grace@example.com", "email", True, now - timedelta(days=1)),
                (ORG, ALAN, "Alan", "+15555550103", "alan@example.com", "email", False, now - timedelta(days=90)),
            ],
        )
        await db.executemany(
            "insert into appointments (org_id, id, contact_id, starts_at, status, created_at)"
            " values ($1, $2, $3, $4, $5, $6)",
            [
                (ORG, "demo-appt-3h", ADA, now + timedelta(hours=3), "scheduled", now - timedelta(days=7)),
                (ORG, "demo-appt-24h", ALAN, now + timedelta(hours=24), "confirmed", now - timedelta(days=7)),
                (ORG, "demo-appt-done", ADA, now - timedelta(days=1), "completed", now - timedelta(days=8)),
            ],
        )
        await db.execute(
            "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, due_at)"
            " values ($1, 'demo-invoice', $2, 12550, 'USD', 'open', $3, $4)",
            ORG,
            ALAN,
            now - timedelta(days=38),
            now - timedelta(days=8),
        )
        await db.execute(
            "insert into message_templates (org_id, name, channel, subject, body) values"
            " ($1, 'welcome', 'email', 'Welcome to {{ org_name }}, {{ first_name }}',"
            " 'Hi {{ first_name }}, thanks for stopping by. {{ offer }}!')",
            ORG,
        )
        await db.execute("insert into nurture_sequences (org_id, id, name) values ($1, 'demo-welcome', 'Welcome')", ORG)
        await db.executemany(
            "insert into nurture_steps (org_id, sequence_id, number, channel, template, delay_seconds)"
            " values ($1, 'demo-welcome', $2, $3, $4, $5)",
            [(ORG, 1, "email", "welcome", 0), (ORG, 2, "email", "welcome", 2 * 86400)],
        )
        await db.execute(
            "insert into nurture_enrollments (id, org_id, contact_id, sequence_id, enrolled_at)"
            " values ('demo-enrollment', $1, $2, 'demo-welcome', $3)",
            ORG,
            GRACE,
            now - timedelta(hours=1),
        )
    return zone


async def trigger(system: System, zone_name: str) -> None:
    """Queue the work as the CRM and the schedules would: the appointment scan now, a nurture step, a dunning notice
    and yesterday's snapshot (under run-unique ids: a re-run must not collide with the last run's finished jobs)."""
    publisher, clock = system.publisher, system.clock
    scan = find_schedule(system.schedules, str(JobName.SCAN_APPOINTMENTS))
    await run_now(system.redis, system.settings.queue_prefixes, scan, clock)
    stamp = clock.now().strftime("%Y%m%d%H%M%S")
    yesterday = (clock.now().astimezone(zone(zone_name)) - timedelta(days=1)).date()
    await publisher.publish(SnapshotJob(OrgId(ORG), yesterday), f"demo-snapshot-{stamp}")
    await publisher.publish(
        NurtureJob(
            OrgId(ORG),
            ContactId(GRACE),
            1,
            "welcome",
            {"first_name": "Grace", "org_name": "Demo Dental", "offer": "10% off your first cleaning"},
        ),
        f"demo-nurture-{stamp}",
    )
    await publisher.publish(
        DunningJob(OrgId(ORG), ContactId(ALAN), Decimal("125.5"), 8, "https://pay.example.com/i/demo-invoice"),
        f"demo-dunning-{stamp}",
    )


@attrs.frozen
class Landed:
    reminders: int
    nurture: int
    dunning: int
    snapshots: int

    @property
    def complete(self) -> bool:
        return self.reminders >= 2 and self.nurture >= 1 and self.dunning >= 1 and self.snapshots >= 1


async def landed(database: PostgresDatabase) -> Landed:
    counts = {
        row["kind"]: row["n"]
        for row in await database.fetch(
            "select l.kind, count(*) as n from outbox_messages o join send_ledger l on l.key = o.ledger_key"
            " where l.org_id = $1 group by l.kind",
            ORG,
        )
    }
    snapshots = await database.fetchval("select count(*) from daily_snapshots where org_id = $1", ORG)
    return Landed(counts.get("reminder", 0), counts.get("nurture", 0), counts.get("dunning", 0), snapshots)


async def wait_until_landed(
    database: PostgresDatabase, timeout_s: float, report: Callable[[Landed], Awaitable[None]] | None = None
) -> Landed:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await landed(database)
        if report is not None:
            await report(found)
        if found.complete or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(1.0)
