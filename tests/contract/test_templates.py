"""Templates contract: one template per org, name and channel."""

from __future__ import annotations

from domain.models import Template
from domain.values import Channel, OrgId
from tests.support.backends import Backend
from tests.support.builders import org

ORG = OrgId("org-1")


async def test_get_by_org_name_and_channel(backend: Backend) -> None:
    """Each channel's template of a name comes back as stored, subject included for email."""
    await backend.seed.org(org("org-1"))
    sms = await backend.seed.template(Template(ORG, "reminder", Channel.SMS, "Hi {{ first_name }}"))
    email = await backend.seed.template(Template(ORG, "reminder", Channel.EMAIL, "<p>Hi</p>", "See you soon"))
    assert await backend.templates.get(ORG, "reminder", Channel.SMS) == sms
    assert await backend.templates.get(ORG, "reminder", Channel.EMAIL) == email


async def test_missing_template_is_none(backend: Backend) -> None:
    """Another name, another org, or a channel without a template gives None."""
    await backend.seed.org(org("org-1"))
    await backend.seed.org(org("org-2"))
    await backend.seed.template(Template(ORG, "reminder", Channel.SMS, "Hi"))
    assert await backend.templates.get(ORG, "welcome", Channel.SMS) is None
    assert await backend.templates.get(OrgId("org-2"), "reminder", Channel.SMS) is None
    assert await backend.templates.get(ORG, "reminder", Channel.EMAIL) is None


async def test_opt_in_to_personalization_comes_back_as_stored(backend: Backend) -> None:
    """A template's AI instruction and required literals round-trip; a template without them has none."""
    await backend.seed.org(org("org-1"))
    opted = await backend.seed.template(
        Template(ORG, "tips", Channel.SMS, "Hi", None, "warmer, mention their last visit", ("Reply STOP to opt out",))
    )
    plain = await backend.seed.template(Template(ORG, "plain", Channel.SMS, "Hi"))
    assert await backend.templates.get(ORG, "tips", Channel.SMS) == opted
    found = await backend.templates.get(ORG, "plain", Channel.SMS)
    assert found == plain
    assert found is not None
    assert (found.ai_instruction, found.ai_required_literals) == (None, ())
