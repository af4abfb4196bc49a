"""The two sides a contract suite runs against, each with a seed that writes the same fixture data into it.

``FakeBackend`` wires the in-memory fakes of tests/support/fakes; ``PostgresBackend`` wires the asyncpg adapters over a
migrated test database. Tests speak only to the ports and to ``seed``, so one test body checks both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import attrs

from adapters.postgres import (
    PostgresAppointments,
    PostgresContacts,
    PostgresDatabase,
    PostgresInvoices,
    PostgresKpiFacts,
    PostgresNurtureEnrollments,
    PostgresOrganizations,
    PostgresSendLedger,
    PostgresSnapshotStore,
    PostgresTemplates,
)
from adapters.postgres.feedback import PostgresDeliveryFeedback
from adapters.postgres.personalization import PostgresPersonalizationBudgets, PostgresPersonalizedCopies
from adapters.postgres.rows import dunning_policy_json
from domain.models import Appointment, Contact, Enrollment, Organization, Template
from domain.models import Sequence as NurtureSequence
from domain.personalization import PersonalizationBudgets, PersonalizedCopies
from domain.ports import (
    Appointments,
    Contacts,
    Invoices,
    KpiFactsSource,
    NurtureEnrollments,
    Organizations,
    SendLedger,
    SnapshotStore,
    Templates,
)
from domain.values import ContactId, Money, OrgId
from tests.support.fakes.crm import (
    InMemoryAppointments,
    InMemoryContacts,
    InMemoryInvoices,
    InMemoryOrganizations,
    InMemoryTemplates,
)
from tests.support.fakes.feedback import InMemoryDeliveryFeedback
from tests.support.fakes.ledger import InMemorySendLedger
from tests.support.fakes.nurture import InMemoryNurtureEnrollments
from tests.support.fakes.personalization import InMemoryPersonalizationBudgets, InMemoryPersonalizedCopies
from tests.support.fakes.snapshots import FakeKpiFactsSource, InMemorySnapshotStore

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@attrs.frozen
class InvoiceFixture:
    """An invoice with the payments made on it; ``status`` is open, paid, void or written_off."""

    id: str
    org_id: OrgId
    contact_id: ContactId
    amount: Money
    status: str = "open"
    payments: tuple[Money, ...] = ()


class FakeSeed:
    def __init__(self, backend: FakeBackend) -> None:
        self._b = backend
        self._invoices: list[InvoiceFixture] = []

    async def org(self, org: Organization) -> Organization:
        return self._b.organizations.add(org)

    async def contact(self, contact: Contact) -> Contact:
        return self._b.contacts.add(contact)

    async def appointment(self, appointment: Appointment, created_at: datetime = LONG_AGO) -> Appointment:
        return self._b.appointments.add(appointment, created_at)

    async def invoice(self, invoice: InvoiceFixture) -> None:
        """The fake keeps one balance per contact: recompute it by the port's rule from every invoice seeded."""
        self._invoices.append(invoice)
        owed = sum(
            max(0, i.amount.minor - sum(p.minor for p in i.payments))
            for i in self._invoices
            if (i.org_id, i.contact_id) == (invoice.org_id, invoice.contact_id) and i.status == "open"
        )
        self._b.invoices.owe(invoice.org_id, invoice.contact_id, owed)

    async def template(self, template: Template) -> Template:
        return self._b.templates.add(template)

    async def sequence(self, sequence: NurtureSequence) -> NurtureSequence:
        return self._b.enrollments.add_sequence(sequence)

    async def enrollment(self, enrollment: Enrollment) -> Enrollment:
        return self._b.enrollments.add(enrollment)


@attrs.define
class FakeBackend:
    name: str = "fake"
    ledger: InMemorySendLedger = attrs.Factory(InMemorySendLedger)
    organizations: InMemoryOrganizations = attrs.Factory(InMemoryOrganizations)
    contacts: InMemoryContacts = attrs.Factory(InMemoryContacts)
    appointments: InMemoryAppointments = attrs.field(init=False)
    invoices: InMemoryInvoices = attrs.Factory(InMemoryInvoices)
    templates: InMemoryTemplates = attrs.Factory(InMemoryTemplates)
    enrollments: InMemoryNurtureEnrollments = attrs.Factory(InMemoryNurtureEnrollments)
    kpi: FakeKpiFactsSource = attrs.Factory(FakeKpiFactsSource)
    snapshots: InMemorySnapshotStore = attrs.Factory(InMemorySnapshotStore)
    feedback: InMemoryDeliveryFeedback = attrs.field(init=False)
    copies: InMemoryPersonalizedCopies = attrs.Factory(InMemoryPersonalizedCopies)
    budgets: InMemoryPersonalizationBudgets = attrs.Factory(InMemoryPersonalizationBudgets)
    seed: FakeSeed = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.appointments = InMemoryAppointments(self.organizations, self.contacts)
        self.feedback = InMemoryDeliveryFeedback(self.ledger)
        self.seed = FakeSeed(self)


class PostgresSeed:
    """Writes fixture rows as the CRM would; extra keyword arguments reach columns the fakes do not model."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def org(self, org: Organization) -> Organization:
        await self.db.execute(
            "insert into organizations (id, name, time_zone, currency, active, transactional_window_start,"
            " transactional_window_end, marketing_window_start, marketing_window_end, dunning_policy)"
            " values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
            org.id,
            org.name,
            org.zone.key,
            org.currency,
            org.active,
            org.transactional_window.start,
            org.transactional_window.end,
            org.marketing_window.start,
            org.marketing_window.end,
            dunning_policy_json(org.dunning_policy),
        )
        return org

    async def contact(self, contact: Contact, *, zone_name: str | None = None) -> Contact:
        """``zone_name`` overrides the stored zone text (to store one the domain does not know)."""
        await self.db.execute(
            "insert into contacts (org_id, id, first_name, phone, email, time_zone, preferred_channel,"
            " sms_consent, email_consent, marketing_consent, created_at)"
            " values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            contact.org_id,
            contact.id,
            contact.first_name,
            contact.phone.e164 if contact.phone else None,
            contact.email.address if contact.email else None,
            zone_name or (contact.zone.key if contact.zone else None),
            contact.preferred_channel.value,
            contact.sms_consent,
            contact.email_consent,
            contact.marketing_consent,
            contact.created_at or LONG_AGO,
        )
        return contact

    async def appointment(self, appointment: Appointment, created_at: datetime = LONG_AGO) -> Appointment:
        await self.db.execute(
            "insert into appointments (org_id, id, contact_id, starts_at, status, created_at)"
            " values ($1, $2, $3, $4, $5, $6)",
            appointment.org_id,
            appointment.id,
            appointment.contact_id,
            appointment.starts_at,
            appointment.status.value,
            created_at,
        )
        return appointment

    async def invoice(
        self,
        invoice: InvoiceFixture,
        *,
        issued_at: datetime = LONG_AGO,
        closed_at: datetime | None = None,
        paid_at: Sequence[datetime] = (),
    ) -> None:
        """``paid_at`` gives each payment its time (default: a day after issue); ``closed_at`` defaults to the
        last payment for a closed invoice."""
        times = list(paid_at) or [issued_at + timedelta(days=1)] * len(invoice.payments)
        if invoice.status != "open" and closed_at is None:
            closed_at = max(times, default=issued_at)
        await self.db.execute(
            "insert into invoices (org_id, id, contact_id, amount_minor, currency, status, issued_at, closed_at)"
            " values ($1, $2, $3, $4, $5, $6, $7, $8)",
            invoice.org_id,
            invoice.id,
            invoice.contact_id,
            invoice.amount.minor,
            invoice.amount.currency,
            invoice.status,
            issued_at,
            closed_at,
        )
        for number, (payment, at) in enumerate(zip(invoice.payments, times, strict=True)):
            await self.db.execute(
                "insert into payments (org_id, id, invoice_id, amount_minor, currency, received_at)"
                " values ($1, $2, $3, $4, $5, $6)",
                invoice.org_id,
                f"{invoice.id}-p{number}",
                invoice.id,
                payment.minor,
                payment.currency,
                at,
            )

    async def template(self, template: Template) -> Template:
        await self.db.execute(
            "insert into message_templates (org_id, name, channel, subject, body, ai_instruction,"
            " ai_required_literals) values ($1, $2, $3, $4, $5, $6, $7)",
            template.org_id,
            template.name,
            template.channel.value,
            template.subject,
            template.body,
            template.ai_instruction,
            list(template.ai_required_literals),
        )
        return template

    async def sequence(self, sequence: NurtureSequence) -> NurtureSequence:
        await self.db.execute(
            "insert into nurture_sequences (org_id, id) values ($1, $2)", sequence.org_id, sequence.id
        )
        for step in sequence.steps:
            await self.db.execute(
                "insert into nurture_steps (org_id, sequence_id, number, channel, template, delay_seconds)"
                " values ($1, $2, $3, $4, $5, $6)",
                sequence.org_id,
                sequence.id,
                step.number,
                step.channel.value,
                step.template,
                int(step.delay.total_seconds()),
            )
        return sequence

    async def enrollment(self, enrollment: Enrollment, *, completed_at: datetime | None = None) -> Enrollment:
        await self.db.execute(
            "insert into nurture_enrollments (id, org_id, contact_id, sequence_id, status, last_step_done,"
            " enrolled_at, completed_at, exit_reason) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            enrollment.id,
            enrollment.org_id,
            enrollment.contact_id,
            enrollment.sequence_id,
            enrollment.status.value,
            enrollment.last_step_done,
            enrollment.enrolled_at,
            completed_at,
            enrollment.exit_reason.value if enrollment.exit_reason else None,
        )
        return enrollment


@attrs.define
class PostgresBackend:
    db: PostgresDatabase
    name: str = "postgres"
    ledger: SendLedger = attrs.field(init=False)
    organizations: Organizations = attrs.field(init=False)
    contacts: Contacts = attrs.field(init=False)
    appointments: Appointments = attrs.field(init=False)
    invoices: Invoices = attrs.field(init=False)
    templates: Templates = attrs.field(init=False)
    enrollments: NurtureEnrollments = attrs.field(init=False)
    kpi: KpiFactsSource = attrs.field(init=False)
    snapshots: SnapshotStore = attrs.field(init=False)
    feedback: PostgresDeliveryFeedback = attrs.field(init=False)
    copies: PersonalizedCopies = attrs.field(init=False)
    budgets: PersonalizationBudgets = attrs.field(init=False)
    seed: PostgresSeed = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.ledger = PostgresSendLedger(self.db)
        self.organizations = PostgresOrganizations(self.db)
        self.contacts = PostgresContacts(self.db)
        self.appointments = PostgresAppointments(self.db)
        self.invoices = PostgresInvoices(self.db)
        self.templates = PostgresTemplates(self.db)
        self.enrollments = PostgresNurtureEnrollments(self.db)
        self.kpi = PostgresKpiFacts(self.db)
        self.snapshots = PostgresSnapshotStore(self.db)
        self.feedback = PostgresDeliveryFeedback(self.db)
        self.copies = PostgresPersonalizedCopies(self.db)
        self.budgets = PostgresPersonalizationBudgets(self.db)
        self.seed = PostgresSeed(self.db)


Backend = FakeBackend | PostgresBackend
