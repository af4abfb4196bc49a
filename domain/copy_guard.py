"""Guard rails of AI-personalized copy: what the model may see, and which of its answers may be sent.

The model sees the rendered template, the org's instruction and the personalization values the template uses,
minus any that name or hold contact details. Its answer is sent only when it keeps every link of the template and
every literal the template marks as required, stays within the channel's limits, and brings no link, phone number
or email address that its input did not contain. Detection errs towards refusing: a false alarm sends the plain
template, never a wrong message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from domain.personalization import FallbackReason, PersonalizationRequest, PersonalizedCopy
from domain.sms import utf16_length
from domain.values import Channel

# The renderer's placeholder grammar (domain.ports.TemplateRenderer): ``{{ name }}``.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")
# A bare domain such as ``example.com/offer`` (not inside a URL or an email address).
_DOMAIN = re.compile(r"(?i)(?<![\w@./:-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}(?:/[^\s<>\"']*)?(?![\w@-])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d\s().-]{5,}\d(?!\w)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MARKUP = re.compile(r"<[A-Za-z/!][^>]*>")
_LINE_BREAK = re.compile(r"[\r\n]")
_TRAILING = ".,;:!?)]}'\""
_PHONE_MIN_DIGITS = 7
# Value names that hold contact details, payment or account data: never shown to the model, whatever the value.
_PRIVATE_NAME_PARTS = (
    "phone", "mobile", "cell", "fax", "mail", "address", "street", "city", "zip", "postal", "link", "url",
    "payment", "card", "iban", "account", "invoice", "password", "token", "secret", "ssn", "birth", "dob",
    "last_name", "lastname", "surname",
)  # fmt: skip
MAX_VALUE_CHARS = 100  # a personalization value longer than this is not "first name and the like"


def placeholders(*texts: str | None) -> set[str]:
    """The names of the ``{{ name }}`` placeholders used in ``texts``."""
    return {name for text in texts if text for name in _PLACEHOLDER.findall(text)}


def _is_private_name(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _PRIVATE_NAME_PARTS)


def _value_text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def values_for_model(used: Iterable[str], personalization: Mapping[str, Any]) -> dict[str, str]:
    """The personalization values the model may see: those ``used`` by the template, as text, except values
    named like contact, payment or account data, values that contain a link, email address or phone number,
    and values longer than MAX_VALUE_CHARS."""
    chosen: dict[str, str] = {}
    for name in sorted(set(used)):
        text = _value_text(personalization.get(name))
        if text is None or _is_private_name(name) or len(text) > MAX_VALUE_CHARS:
            continue
        if _links(text) or _emails(text) or _phones(text):
            continue
        chosen[name] = text
    return chosen


def _strip(found: str) -> str:
    return found.rstrip(_TRAILING)


def _links(text: str) -> set[str]:
    return {_strip(m) for m in _URL.findall(text)} | {_strip(m) for m in _DOMAIN.findall(text)}


def _emails(text: str) -> set[str]:
    return {m.lower() for m in _EMAIL.findall(text)}


def _phones(text: str) -> set[str]:
    found = set()
    for match in _PHONE.findall(text):
        digits = re.sub(r"\D", "", match)
        if len(digits) >= _PHONE_MIN_DIGITS and not _ISO_DATE.fullmatch(match.strip()):
            found.add(digits)
    return found


def _phone_known(digits: str, known: set[str]) -> bool:
    """The same number with or without its country code counts as known."""
    return any(digits == k or k.endswith(digits) or digits.endswith(k) for k in known)


def model_input(request: PersonalizationRequest) -> str:
    """All the text the model is given, for the 'nothing new' rules."""
    return "\n".join([request.body, request.subject or "", request.instruction, *request.values.values()])


def check_answer(
    request: PersonalizationRequest, answer: PersonalizedCopy, required: Iterable[str] = ()
) -> FallbackReason | None:
    """None when ``answer`` may be sent in place of the template; else the first rule it breaks.

    ``required`` are the literals the template marks as required (opt-out text ...); every link of the rendered
    template is required too, verbatim.
    """
    body, subject = answer.body, answer.subject
    if not body.strip() or (request.channel is Channel.EMAIL and not (subject or "").strip()):
        return FallbackReason.EMPTY
    written = f"{subject or ''}\n{body}"
    if "{{" in written or "}}" in written:
        return FallbackReason.PLACEHOLDER_LEFT
    if _MARKUP.search(written):  # plain text was asked for; markup would show as text (or act, in HTML)
        return FallbackReason.MALFORMED_ANSWER
    if subject is not None and _LINE_BREAK.search(subject):
        return FallbackReason.SUBJECT_LINE_BREAK
    if utf16_length(body) > request.max_body_chars:
        return FallbackReason.TOO_LONG
    template_text = f"{request.subject or ''}\n{request.body}"
    if any(link not in written for link in _links(template_text)):
        return FallbackReason.REQUIRED_LINK_DROPPED
    if any(literal not in written for literal in required):
        return FallbackReason.REQUIRED_LITERAL_DROPPED
    return _added(model_input(request), written)


def _added(given: str, written: str) -> FallbackReason | None:
    known_links = {link.lower() for link in _links(given)}
    if any(link.lower() not in known_links for link in _links(written)):
        return FallbackReason.LINK_ADDED
    known_phones = _phones(given)
    if any(not _phone_known(digits, known_phones) for digits in _phones(written)):
        return FallbackReason.PHONE_ADDED
    if not _emails(written) <= _emails(given):
        return FallbackReason.EMAIL_ADDED
    return None
