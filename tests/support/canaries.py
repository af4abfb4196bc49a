"""Canary PII and secrets for the observability tests: none may appear in a log line, envelope or span."""

from __future__ import annotations

PHONE = "+14155550123"
STREET_ADDRESS = "1600 Amphitheatre Parkway"
EMAIL = "jane.canary@example.org"
PAYMENT_LINK = "https://pay.example.com/i/tok_abc123"
API_KEY = "SG.cAnArYkEy0123456789ab.cAnArYsEcReT0123456789abcdefghijklmnopqrstu"
AUTH_TOKEN = "f00dfacecafe0123456789abcdef0123"
FIRST_NAME = "Janelle"

CANARIES = (
    PHONE,
    PHONE[2:],
    STREET_ADDRESS,
    EMAIL,
    PAYMENT_LINK,
    "tok_abc123",
    API_KEY,
    "cAnArY",
    AUTH_TOKEN,
    FIRST_NAME,
)


def job_data() -> dict[str, object]:
    """A job's data carrying everything sensitive at once; a fresh copy each call (Sentry's scrubber edits
    the objects it is given in place)."""
    return {
        "orgId": "org_canary",
        "contactId": "contact_1",
        "phone": PHONE,
        "email": EMAIL,
        "address": STREET_ADDRESS,
        "paymentLink": PAYMENT_LINK,
        "personalization": {"firstName": FIRST_NAME},
        "message": f"Hi {FIRST_NAME}, pay at {PAYMENT_LINK}",
    }


def leaked(text: str | bytes) -> list[str]:
    """The canaries present in ``text`` (an empty list when nothing leaked)."""
    haystack = text.decode(errors="replace") if isinstance(text, bytes) else text
    return [canary for canary in CANARIES if canary in haystack]
