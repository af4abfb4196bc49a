"""CRM data for the end-to-end tests, written with plain SQL as the Node CRM would.

Every id starts with ``e2e-`` and carries a unique tag. The org lives in a fixed-offset zone where it is midday now
(``entrypoints.demo.midday_zone``), so every send window is open whatever the hour on the machine.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
import attrs

from entrypoints.demo import midday_zone
from tests.support.fakeservers.providers import now_utc


def whole_millis(moment: datetime) -> datetime:
    """JavaScript dates carry milliseconds: an appointment start the Node producer can name exactly."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@attrs.frozen
class Clinic:
    """One org with a contact for each kind of work."""

    org: str
    ada: str  # SMS reminders
    ada_phone: str
    appointment: str
    starts_at: datetime
    grace: str  # nurture email
    grace_email: str
    alan: str  # dunning (owes an overdue invoice)
    alan_phone: str
    alan_email: str


def run_sql(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
    async def main() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            async with connection.transaction():
                await work(connection)
        finally:
            await connection.close()

    asyncio.run(main())


async def _org(db: asyncpg.Connection, org: str, now: datetime) -> None:
    await db.execute(
        "insert into organizations (id, name, time_zone, currency) values ($1, 'E2E Dental', $2, 'USD')",
        org,
        midday_zone(now),
    )


def seed_clinic(dsn: str) -> Clinic:
    tag = uuid.uuid4().hex[:8]
    now = now_utc()
    clinic = Clinic(
        org=f"e2e-org-{tag}",
        ada=f"e2e-ada-{tag}",
        ada_phone="+15555550111",
        appointment=f"e2e-appt-{tag}",
        starts_at=whole_millis(now + timedelta(hours=3)),
        grace=f"e2e-grace-{tag}",
        grace_email=f"grace-{tag}@example.com",
        alan=f"e2e-alan-{tag}",
        alan_phone="+15555550113",
        alan_email=f"alan-{tag}@example.com",
    )

    async def work(db: asyncpg.Connection) -> None:
        c = clinic
        await _org(db, c.org, now)
        await db.executemany(
            "insert into contacts (org_id, id, first_name, phone, email, preferred_channel, marketing_consent,"
            " created_at) values ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (c.org, c.ada, "Ada", c.ada_phone, None, "sms", False, now - timedelta(days=30)),
                (c.org, c.grace, "Grace", None, c.grace_email, "email", True, now - timedelta(days=1)),
                (c.org, c.alan, "Alan", c.alan_phone, c.alan_email, "email", False, now - timedelta(days=90)),
            ],
        )
        await db.execute(
            "insert into appointments (org_id, id, contact_id, starts_at, status, created_at)"
            " values ($1, $2, $3, $4, 'scheduled', $5)",
            c.org,
            c.appointment,
            c.ada,
            c.starts_at,
            now - timedelta(days=7),
        )
        await db.execute(
            "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, due_at)"
            " values ($1, $2, $3, 12550, 'USD', 'open', $4, $5)",
            c.org,
            f"e2e-invoice-{tag}",
            c.alan,
            now - timedelta(days=38),
            now - timedelta(days=8),
        )
        await db.execute(
            "insert into message_templates (org_id, name, channel, subject, body) values"
            " ($1, 'welcome', 'email', 'Welcome, {{ first_name }}', 'Hi {{ first_name }}, {{ offer }}!')",
            c.org,
        )
        await db.execute("insert into nurture_sequences (org_id, id, name) values ($1, 'welcome', 'Welcome')", c.org)
        await db.execute(
            "insert into nurture_steps (org_id, sequence_id, number, channel, template, delay_seconds)"
            " values ($1, 'welcome', 1, 'email', 'welcome', 0)",
            c.org,
        )
        await db.execute(
            "insert into nurture_enrollments (id, org_id, contact_id, sequence_id, enrolled_at)"
            " values ($1, $2, $3, 'welcome', $4)",
            f"e2e-enrollment-{tag}",
            c.org,
            c.grace,
            now - timedelta(hours=1),
        )

    run_sql(dsn, work)
    return clinic


@attrs.frozen
class Patient:
    contact: str
    phone: str
    appointment: str
    starts_at: datetime


def seed_patients(dsn: str, count: int) -> tuple[str, list[Patient]]:
    """One org with ``count`` SMS contacts, each with an appointment two hours ahead; returns (org id, patients)."""
    tag = uuid.uuid4().hex[:8]
    now = now_utc()
    org = f"e2e-org-{tag}"
    starts_at = whole_millis(now + timedelta(hours=2))
    patients = [
        Patient(f"e2e-p{n}-{tag}", f"+1555{n:07d}", f"e2e-appt{n}-{tag}", starts_at) for n in range(1, count + 1)
    ]

    async def work(db: asyncpg.Connection) -> None:
        await _org(db, org, now)
        await db.executemany(
            "insert into contacts (org_id, id, first_name, phone, preferred_channel, created_at)"
            " values ($1, $2, 'Pat', $3, 'sms', $4)",
            [(org, p.contact, p.phone, now - timedelta(days=30)) for p in patients],
        )
        await db.executemany(
            "insert into appointments (org_id, id, contact_id, starts_at, status, created_at)"
            " values ($1, $2, $3, $4, 'scheduled', $5)",
            [(org, p.appointment, p.contact, p.starts_at, now - timedelta(days=7)) for p in patients],
        )

    run_sql(dsn, work)
    return org, patients
