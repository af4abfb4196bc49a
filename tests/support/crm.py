"""CRM data for the system tests, written with plain SQL as the Node CRM would, one org per test.

Each org lives in a fixed-offset zone where it is midday now (``entrypoints.demo.midday_zone``), so every send window
is open whatever the hour on the machine. Ids carry a unique tag, so tests sharing a database never meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from entrypoints.demo import midday_zone
from tests.support.fakeservers.providers import now_utc
from tests.support.processes import token


@attrs.frozen
class Org:
    id: str
    zone: str
    tag: str

    def ident(self, name: str) -> str:
        return f"{name}-{self.tag}"


def unique_phone() -> str:
    """An E.164 number no other test uses (the fake Twilio is shared by a module's tests)."""
    return "+1555" + str(int(token(), 16) % 10**7).zfill(7)


async def create_org(db: Any, name: str = "Bright Smiles Dental", dunning_policy: str | None = None) -> Org:
    tag = token()
    org = Org(f"org-{tag}", midday_zone(now_utc()), tag)
    await db.execute(
        "insert into organizations (id, name, time_zone, currency, dunning_policy) values ($1, $2, $3, 'USD', $4)",
        org.id,
        name,
        org.zone,
        dunning_policy,
    )
    return org


async def create_contact(
    db: Any,
    org: Org,
    name: str,
    *,
    phone: str | None = None,
    email: str | None = None,
    preferred: str = "sms",
    marketing_consent: bool = False,
    created_at: datetime | None = None,
) -> str:
    contact_id = org.ident(name.lower())
    await db.execute(
        "insert into contacts (org_id, id, first_name, phone, email, preferred_channel, marketing_consent, created_at)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8)",
        org.id,
        contact_id,
        name,
        phone,
        email,
        preferred,
        marketing_consent,
        created_at or now_utc() - timedelta(days=30),
    )
    return contact_id


async def create_appointment(
    db: Any,
    org: Org,
    contact_id: str,
    starts_at: datetime,
    *,
    status: str = "scheduled",
    created_at: datetime | None = None,
    name: str | None = None,
) -> str:
    appointment_id = org.ident(name or f"appt-{token()}")
    await db.execute(
        "insert into appointments (org_id, id, contact_id, starts_at, status, created_at)"
        " values ($1, $2, $3, $4, $5, $6)",
        org.id,
        appointment_id,
        contact_id,
        starts_at,
        status,
        created_at or now_utc() - timedelta(days=7),
    )
    return appointment_id


def reminder_start() -> datetime:
    """An appointment start two hours from now, at whole milliseconds (JavaScript dates carry no more)."""
    start = now_utc() + timedelta(hours=2)
    return start.replace(microsecond=start.microsecond // 1000 * 1000)


async def enroll_in_sequence(
    db: Any,
    org: Org,
    contact_id: str,
    *,
    channel: str,
    template: str,
    delays_s: Sequence[int] = (0,),
    sequence: str = "seq",
) -> str:
    """A nurture sequence of ``org`` whose step ``n`` sends ``template`` on ``channel`` ``delays_s[n - 1]`` seconds
    after the step before, and the contact enrolled in it an hour ago; returns the enrollment's id."""
    await db.execute("insert into nurture_sequences (org_id, id) values ($1, $2)", org.id, sequence)
    await db.executemany(
        "insert into nurture_steps (org_id, sequence_id, number, channel, template, delay_seconds)"
        " values ($1, $2, $3, $4, $5, $6)",
        [(org.id, sequence, number, channel, template, delay) for number, delay in enumerate(delays_s, start=1)],
    )
    enrollment = org.ident("enrollment")
    await db.execute(
        "insert into nurture_enrollments (id, org_id, contact_id, sequence_id, enrolled_at)"
        " values ($1, $2, $3, $4, $5)",
        enrollment,
        org.id,
        contact_id,
        sequence,
        now_utc() - timedelta(hours=1),
    )
    return enrollment
