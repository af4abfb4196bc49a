"""Compose outgoing messages: where a contact can be reached, and a body that is safe to hand to a provider.

The renderer port substitutes the values; this module adds what every channel needs on top: HTML escaping for the
email's HTML part only, one-line subjects (no CR/LF, so no header injection), and the SMS length limit. A template
that cannot render (malformed, a missing variable, too long) is an invalid job: retrying cannot fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from domain.errors import InvalidJob, InvalidValue
from domain.models import Contact, Template
from domain.ports import TemplateRenderer
from domain.sms import SMS_MAX_CHARS, utf16_length
from domain.values import Channel, EmailAddress, PhoneNumber

_LINE_BREAKS = re.compile(r"[\r\n]+")


@attrs.frozen
class RenderedEmail:
    subject: str = attrs.field(repr=False)
    text: str = attrs.field(repr=False)
    html: str = attrs.field(repr=False)


def reachable_address(contact: Contact, channel: Channel) -> PhoneNumber | EmailAddress | None:
    """The contact's address on ``channel`` when it has one and consents to the channel, else None."""
    if channel is Channel.SMS:
        return contact.phone if contact.sms_consent else None
    return contact.email if contact.email_consent else None


def _render(renderer: TemplateRenderer, text: str, variables: Mapping[str, Any], *, html: bool) -> str:
    try:
        return renderer.render(text, variables, html=html)
    except InvalidValue as malformed:
        raise InvalidJob("template", malformed.problem) from None


def one_line(subject: str) -> str:
    """The subject with every run of CR/LF replaced by one space, trimmed."""
    return _LINE_BREAKS.sub(" ", subject).strip()


def render_sms(renderer: TemplateRenderer, template: Template, variables: Mapping[str, Any]) -> str:
    """The SMS body; InvalidJob("template") when it renders longer than the SMS body limit (domain/sms.py)."""
    body = _render(renderer, template.body, variables, html=False)
    if utf16_length(body) > SMS_MAX_CHARS:
        raise InvalidJob("template", f"renders an SMS longer than {SMS_MAX_CHARS} characters")
    return body


def render_email(renderer: TemplateRenderer, template: Template, variables: Mapping[str, Any]) -> RenderedEmail:
    """Subject (one line) and text from plain substitution; the HTML part with values HTML-escaped."""
    if template.subject is None:
        raise InvalidJob("template", "has no subject for email")
    return RenderedEmail(
        subject=one_line(_render(renderer, template.subject, variables, html=False)),
        text=_render(renderer, template.body, variables, html=False),
        html=_render(renderer, template.body, variables, html=True),
    )
