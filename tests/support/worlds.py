"""The in-memory world every messaging service (reminders, nurture, dunning) is wired to in the unit tests.

One fake clock; the organization, contact and template stores; the send ledger, both fake senders and the Dispatcher
over them, wired as production wires them. Each capability's world subclasses ``MessagingWorld`` with its own stores
and builds its service in ``__attrs_post_init__``; its builders (orgs, contacts, enrollments ...) stay with its tests.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs

from domain.delivery import Dispatcher
from domain.values import ContactId, OrgId
from tests.support.fakes.clock import FakeClock
from tests.support.fakes.crm import InMemoryContacts, InMemoryOrganizations, InMemoryTemplates
from tests.support.fakes.ledger import InMemorySendLedger
from tests.support.fakes.senders import FakeEmailSender, FakeSmsSender

ORG = OrgId("org-1")
CONTACT = ContactId("c-1")


def _sms_on_world_clock(world: MessagingWorld) -> FakeSmsSender:
    return FakeSmsSender(clock=world.clock)


@attrs.define(kw_only=True)
class MessagingWorld:
    """Fakes sharing one clock; ``dispatcher()`` sends through this world's ledger and senders."""

    clock: FakeClock
    orgs: InMemoryOrganizations = attrs.Factory(InMemoryOrganizations)
    contacts: InMemoryContacts = attrs.Factory(InMemoryContacts)
    templates: InMemoryTemplates = attrs.Factory(InMemoryTemplates)
    ledger: InMemorySendLedger = attrs.Factory(InMemorySendLedger)
    sms: FakeSmsSender = attrs.Factory(_sms_on_world_clock, takes_self=True)
    email: FakeEmailSender = attrs.Factory(FakeEmailSender)

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.ledger, self.sms, self.email, self.clock, jitter=timedelta(0))

    def change_contact(self, **changes: Any) -> None:
        """Replace fields of the stored contact ``CONTACT`` of ``ORG``."""
        self.contacts.add(attrs.evolve(self.contacts.contacts[(ORG, CONTACT)], **changes))
