"""The in-memory world the domain services are tested in: every port as a fake on one clock, and the services wired
to them by the production wiring (``entrypoints.bootstrap.build_services``), so the wiring under unit test is the
wiring that runs.

Each capability's world subclasses ``MessagingWorld``, picks its service from ``services`` and keeps its builders
(orgs, contacts, enrollments ...) with its tests; ``personalization()`` is the hook for a world with a model.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs

from domain.copy_personalization import CopyPersonalization
from domain.values import ContactId, OrgId
from entrypoints.bootstrap import Ports, Services, build_services
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.crm import (
    InMemoryAppointments,
    InMemoryContacts,
    InMemoryInvoices,
    InMemoryOrganizations,
    InMemoryTemplates,
)
from tests.support.fakes.feedback import InMemoryDeliveryFeedback
from tests.support.fakes.jobs import FakeJobPublisher
from tests.support.fakes.ledger import InMemorySendLedger
from tests.support.fakes.nurture import InMemoryNurtureEnrollments
from tests.support.fakes.rendering import FakeTemplateRenderer
from tests.support.fakes.senders import FakeEmailSender, FakeSmsSender
from tests.support.fakes.snapshots import FakeKpiFactsSource, InMemorySnapshotStore

ORG = OrgId("org-1")
CONTACT = ContactId("c-1")
SETTLE = timedelta(seconds=60)  # the SEND_SETTLE_SECONDS default


def _sms_on_world_clock(world: MessagingWorld) -> FakeSmsSender:
    return FakeSmsSender(clock=world.clock)


def _email_on_world_clock(world: MessagingWorld) -> FakeEmailSender:
    return FakeEmailSender(clock=world.clock)


def _appointments_of_world(world: MessagingWorld) -> InMemoryAppointments:
    return InMemoryAppointments(world.orgs, world.contacts)


def _feedback_on_world_ledger(world: MessagingWorld) -> InMemoryDeliveryFeedback:
    return InMemoryDeliveryFeedback(world.ledger)


@attrs.define(kw_only=True)
class MessagingWorld:
    """Fakes sharing one clock, and ``services`` wired to them as production wires its adapters (no jitter)."""

    clock: FakeClock
    orgs: InMemoryOrganizations = attrs.Factory(InMemoryOrganizations)
    contacts: InMemoryContacts = attrs.Factory(InMemoryContacts)
    appointments: InMemoryAppointments = attrs.Factory(_appointments_of_world, takes_self=True)
    invoices: InMemoryInvoices = attrs.Factory(InMemoryInvoices)
    templates: InMemoryTemplates = attrs.Factory(InMemoryTemplates)
    ledger: InMemorySendLedger = attrs.Factory(InMemorySendLedger)
    feedback: InMemoryDeliveryFeedback = attrs.Factory(_feedback_on_world_ledger, takes_self=True)
    enrollments: InMemoryNurtureEnrollments = attrs.Factory(InMemoryNurtureEnrollments)
    kpi_facts: FakeKpiFactsSource = attrs.Factory(FakeKpiFactsSource)
    snapshots: InMemorySnapshotStore = attrs.Factory(InMemorySnapshotStore)
    sms: FakeSmsSender = attrs.Factory(_sms_on_world_clock, takes_self=True)
    email: FakeEmailSender = attrs.Factory(_email_on_world_clock, takes_self=True)
    publisher: FakeJobPublisher = attrs.Factory(FakeJobPublisher)
    services: Services = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        ports = Ports(
            organizations=self.orgs,
            contacts=self.contacts,
            appointments=self.appointments,
            invoices=self.invoices,
            templates=self.templates,
            renderer=FakeTemplateRenderer(),
            ledger=self.ledger,
            suppressions=self.feedback,
            enrollments=self.enrollments,
            kpi_facts=self.kpi_facts,
            snapshot_store=self.snapshots,
            sms=self.sms,
            email=self.email,
            publisher=self.publisher,
            clock=self.clock,
            personalization=self.personalization(),
        )
        self.services = build_services(ports, SETTLE, jitter=timedelta(0))

    def personalization(self) -> CopyPersonalization | None:
        """The AI copy the nurture service is wired with (None: templates are sent as written)."""
        return None

    def change_contact(self, **changes: Any) -> None:
        """Replace fields of the stored contact ``CONTACT`` of ``ORG``."""
        self.contacts.add(attrs.evolve(self.contacts.contacts[(ORG, CONTACT)], **changes))
