"""The KPI facts SQL against a hand-made day: each figure as docs/schema.md defines it."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from adapters.postgres import PostgresDatabase, PostgresKpiFacts
from domain.models import AppointmentStatus, DeliveryStatus, Enrollment, EnrollmentStatus, SequenceStep
from domain.models import Sequence as NurtureSequence
from domain.values import Channel, ContactId, EnrollmentId, Money, OrgId, SequenceId
from tests.support.backends import InvoiceFixture, PostgresSeed
from tests.support.builders import T0, appointment, contact, org

START, END = T0, T0 + timedelta(days=1)
ORG = OrgId("org-1")
HOUR = timedelta(hours=1)


def usd(minor: int) -> Money:
    return Money(minor, "USD")


async def _ledger_row(db: PostgresDatabase, key: str, contact_id: str, channel: str, state: str, at: datetime) -> None:
    await db.execute(
        "insert into send_ledger (key, org_id, contact_id, channel, purpose, state, claimed_at, updated_at)"
        " values ($1, 'org-1', $2, $3, 'transactional', $4, $5, $5)",
        key,
        contact_id,
        channel,
        state,
        at,
    )


async def _seed_day(db: PostgresDatabase, seed: PostgresSeed) -> None:
    await seed.org(org("org-1"))
    await seed.org(org("org-2"))
    await seed.contact(contact("c-1"))
    await seed.contact(contact("c-2"))
    await seed.contact(attrs.evolve(contact("c-new"), created_at=START + HOUR))
    await seed.contact(attrs.evolve(contact("c-late"), created_at=END))
    await seed.contact(contact("c-x", "org-2"))

    s = AppointmentStatus
    await seed.appointment(appointment("a1", START + HOUR, status=s.COMPLETED))
    await seed.appointment(appointment("a2", START + 2 * HOUR, status=s.COMPLETED), created_at=START)
    await seed.appointment(appointment("a3", START + 3 * HOUR, status=s.CANCELLED), created_at=START + HOUR)
    await seed.appointment(appointment("a4", START + 4 * HOUR, status=s.NO_SHOW))
    await seed.appointment(appointment("a5", END + HOUR), created_at=END - timedelta(microseconds=1))
    await seed.appointment(appointment("a6", START - HOUR, status=s.COMPLETED))
    await seed.appointment(appointment("a7", END, status=s.NO_SHOW), created_at=END)
    await seed.appointment(appointment("ax", START + HOUR, org_id="org-2", contact_id="c-x"), created_at=START)

    c1, c2 = ContactId("c-1"), ContactId("c-2")
    # c-1: 10,000 open, 1,000 paid before the window and 2,500 inside it -> 6,500 still owed at the end.
    await seed.invoice(
        InvoiceFixture("inv1", ORG, c1, usd(10_000), payments=(usd(1_000), usd(2_500))),
        paid_at=[START - 2 * HOUR, START + 2 * HOUR],
    )
    # c-2: paid in full inside the window (revenue; after a dunning email 5 days earlier: recovered).
    await seed.invoice(
        InvoiceFixture("inv2", ORG, c2, usd(5_000), "paid", (usd(5_000),)),
        paid_at=[START + 3 * HOUR],
    )
    # c-2: paid only after the window: still owed at its end, not revenue of the day.
    await seed.invoice(InvoiceFixture("inv3", ORG, c2, usd(2_000), "paid", (usd(2_000),)), paid_at=[END + HOUR])
    await seed.invoice(
        InvoiceFixture("inv4", ORG, c1, usd(7_000), "void"), issued_at=START - 3 * HOUR, closed_at=START - HOUR
    )
    await seed.invoice(InvoiceFixture("inv5", ORG, c1, usd(4_000)), issued_at=END)
    await seed.invoice(InvoiceFixture("inv6", ORG, c1, Money(999, "EUR")))

    await _ledger_row(db, "dunning:c-2:7:email", "c-2", "email", "sent", START - timedelta(days=5))
    await _ledger_row(db, "dunning:c-1:30:email", "c-1", "email", "sent", START - timedelta(days=40))
    await _ledger_row(db, "dunning:c-1:14:sms", "c-1", "sms", "failed", START - timedelta(days=1))
    await _ledger_row(db, "reminder:24h:a1:sms", "c-1", "sms", "sent", START)
    await _ledger_row(db, "reminder:3h:a1:sms", "c-1", "sms", "sent", START + HOUR)
    await _ledger_row(db, "reminder:24h:a2:sms", "c-1", "sms", "failed", START + HOUR)
    await _ledger_row(db, "reminder:3h:a2:email", "c-1", "email", "sent", START + 2 * HOUR)
    await _ledger_row(db, "reminder:3h:a3:email", "c-1", "email", "unknown", START + 2 * HOUR)
    await _ledger_row(db, "reminder:3h:a4:email", "c-1", "email", "claimed", START + 2 * HOUR)
    await _ledger_row(db, "reminder:24h:a0:sms", "c-1", "sms", "sent", START - HOUR)

    sequence = NurtureSequence(SequenceId("s"), ORG, (SequenceStep(1, Channel.EMAIL, "t", timedelta(0)),))
    await seed.sequence(sequence)

    def enrollment(eid: str, at: datetime, status: EnrollmentStatus) -> Enrollment:
        return Enrollment(EnrollmentId(eid), ORG, c1, sequence.id, status, 0, at)

    await seed.enrollment(enrollment("e1", START + HOUR, EnrollmentStatus.ACTIVE))
    await seed.enrollment(enrollment("e2", START, EnrollmentStatus.COMPLETED), completed_at=START + 5 * HOUR)
    await seed.enrollment(enrollment("e3", START - timedelta(days=3), EnrollmentStatus.COMPLETED), completed_at=START)
    await seed.enrollment(enrollment("e4", START - HOUR, EnrollmentStatus.COMPLETED), completed_at=END)


async def test_kpi_facts_of_a_day(db: PostgresDatabase, seed: PostgresSeed) -> None:
    """Every figure of one org's day, with rows just outside the window and other orgs' rows left out."""
    await _seed_day(db, seed)
    facts = await PostgresKpiFacts(db).facts(org("org-1"), START, END)
    assert (facts.appointments_booked, facts.appointments_completed) == (3, 2)
    assert (facts.appointments_cancelled, facts.appointments_no_show) == (1, 1)
    assert facts.new_contacts == 1
    assert facts.revenue_collected == usd(7_500)
    assert facts.outstanding_receivables == usd(8_500)
    assert facts.dunning_recovered == usd(5_000)
    assert facts.messages == {
        (Channel.SMS, DeliveryStatus.SENT): 2,
        (Channel.SMS, DeliveryStatus.FAILED): 1,
        (Channel.EMAIL, DeliveryStatus.SENT): 1,
    }
    assert (facts.enrollments_started, facts.enrollments_completed) == (2, 2)


async def test_the_next_day_sees_its_own_rows(db: PostgresDatabase, seed: PostgresSeed) -> None:
    """The day after: the late payment is revenue there, and nothing is outstanding any more."""
    await _seed_day(db, seed)
    facts = await PostgresKpiFacts(db).facts(org("org-1"), END, END + timedelta(days=1))
    assert facts.revenue_collected == usd(2_000)
    assert facts.outstanding_receivables == usd(6_500 + 4_000)
    assert (facts.appointments_booked, facts.appointments_no_show) == (1, 1)
    assert facts.new_contacts == 1
    assert facts.enrollments_completed == 1


async def test_delivery_reports_count_as_delivered_and_failed(db: PostgresDatabase, seed: PostgresSeed) -> None:
    """A sent SMS reported delivered counts sent and delivered; one reported undelivered counts sent and failed."""
    await seed.org(org("org-1"))
    for key, status in (("k-delivered", "delivered"), ("k-undelivered", "undelivered"), ("k-accepted", "accepted")):
        await _ledger_row(db, key, "c-1", "sms", "sent", START + HOUR)
        await db.execute("update send_ledger set delivery_status = $2 where key = $1", key, status)
    facts = await PostgresKpiFacts(db).facts(org("org-1"), START, END)
    assert facts.messages == {
        (Channel.SMS, DeliveryStatus.SENT): 3,
        (Channel.SMS, DeliveryStatus.DELIVERED): 1,
        (Channel.SMS, DeliveryStatus.FAILED): 1,
    }
