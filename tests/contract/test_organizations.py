"""Organizations and Contacts contracts: lookups by id, active orgs in id order, settings round-trip."""

from __future__ import annotations

from datetime import time

import attrs

from domain.models import DunningStage, DunningTone, SendWindow
from domain.values import Channel, ContactId, OrgId
from tests.support.backends import Backend
from tests.support.builders import contact, org


async def test_get_returns_the_org_with_its_settings(backend: Backend) -> None:
    """An org comes back equal to what was stored: zone, currency, send windows and dunning policy."""
    custom = attrs.evolve(
        org("org-1", zone_name="Australia/Sydney"),
        currency="AUD",
        transactional_window=SendWindow(time(8, 30), time(20, 0)),
        marketing_window=SendWindow(time(9, 0), time(18, 45)),
        dunning_policy=(
            DunningStage(3, DunningTone.FRIENDLY, frozenset({Channel.EMAIL})),
            DunningStage(10, DunningTone.FINAL, frozenset({Channel.EMAIL, Channel.SMS})),
        ),
    )
    await backend.seed.org(custom)
    assert await backend.organizations.get(OrgId("org-1")) == custom


async def test_default_settings_round_trip(backend: Backend) -> None:
    """An org with the default windows and policy comes back with them."""
    await backend.seed.org(org("org-1"))
    assert await backend.organizations.get(OrgId("org-1")) == org("org-1")


async def test_get_unknown_org_is_none(backend: Backend) -> None:
    """An id nobody stored gives None."""
    assert await backend.organizations.get(OrgId("missing")) is None


async def test_active_lists_active_orgs_in_id_order(backend: Backend) -> None:
    """Inactive orgs are left out; ids sort by code point (upper case before lower, '-' before digits)."""
    for org_id in ["b", "a-2", "B", "a10", "zz"]:
        await backend.seed.org(org(org_id))
    await backend.seed.org(org("inactive", active=False))
    assert [o.id for o in await backend.organizations.active()] == ["B", "a-2", "a10", "b", "zz"]


async def test_contact_get_round_trips(backend: Backend) -> None:
    """A contact comes back equal to what was stored, consents and preferred channel included."""
    await backend.seed.org(org("org-1"))
    stored = await backend.seed.contact(contact("c-1"))
    assert await backend.contacts.get(OrgId("org-1"), ContactId("c-1")) == stored


async def test_contact_without_zone_phone_or_email(backend: Backend) -> None:
    """Missing zone, phone and email come back as None."""
    await backend.seed.org(org("org-1"))
    stored = await backend.seed.contact(contact("c-1", zone_name=None, phone=None, email=None))
    found = await backend.contacts.get(OrgId("org-1"), ContactId("c-1"))
    assert found == stored
    assert found is not None
    assert (found.zone, found.phone, found.email) == (None, None, None)


async def test_contact_of_another_org_is_none(backend: Backend) -> None:
    """A contact is reached only through its own org."""
    await backend.seed.org(org("org-1"))
    await backend.seed.org(org("org-2"))
    await backend.seed.contact(contact("c-1", "org-1"))
    assert await backend.contacts.get(OrgId("org-2"), ContactId("c-1")) is None
    assert await backend.contacts.get(OrgId("org-1"), ContactId("c-404")) is None
