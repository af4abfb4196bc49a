"""The redaction rules: canary PII and secrets never survive, ordinary operational text does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.observability import redaction
from adapters.observability.redaction import REDACTED, is_sensitive_key, redact, redact_mapping, redact_text
from domain.values import EmailAddress, PhoneNumber

PHONE = "+14155550123"
EMAIL = "jane.doe@example.org"
ADDRESS = "1600 Amphitheatre Parkway"
PAYMENT_LINK = "https://pay.example.com/i/tok_abc123"
SENDGRID_KEY = "SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789abcdefghijklmnopqrstuvwxyzABC"
CANARIES = (PHONE, "4155550123", "555-0123", EMAIL, ADDRESS, "tok_abc123", SENDGRID_KEY, "aBcDeFgHiJkLmNoPqRsTuV")


def _leaks(rendered: str) -> list[str]:
    return [canary for canary in CANARIES if canary in rendered]


@pytest.mark.parametrize(
    "key",
    [
        "phone", "Phone", "to", "FROM", "email", "name", "first_name", "firstName", "lastName", "body", "message",
        "personalization", "payment_link", "paymentLink", "PAYMENT-LINK", "token", "auth_token", "authToken",
        "TWILIO_AUTH_TOKEN", "api_key", "apiKey", "SENDGRID_API_KEY", "key", "password", "secret", "Authorization",
        "dsn", "SENTRY_DSN", "address",
    ],
)  # fmt: skip
def test_sensitive_keys_in_any_case_style(key: str) -> None:
    """Each PII or secret key is recognised in snake_case, camelCase, kebab-case and upper case."""
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["queue", "job_name", "jobId", "org_id", "attempt", "event", "level", "timestamp"])
def test_operational_keys_are_kept(key: str) -> None:
    """Fields that carry no PII (queue, job name, ids, level) stay readable."""
    assert not is_sensitive_key(key)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"sending to {PHONE} now", "sending to"),
        ("call +1 (415) 555-0123 today", "call"),
        ("call (415) 555-0123 today", "today"),
        ("call 415.555.0123", "call"),
        ("uk +44 20 7946 0958", "uk"),
        (f"recipient {EMAIL} bounced", "bounced"),
        (f"pay at {PAYMENT_LINK} please", "https://pay.example.com/i/"),
        ("GET https://api.example.com/v1/x?token=s3cr3tvalue&email=a%40b.c", "https://api.example.com/v1/x?token="),
        ("redis://:hunter2pass@cache.internal:6379/0", "cache.internal:6379"),
        (f"key {SENDGRID_KEY} refused", "refused"),
        ("Authorization: Bearer abcdef123456ghijkl", "Authorization"),
        ("auth_token=ffeeddccbbaa0099 sid=AC" + "0" * 32, "auth_token="),
        ("password: hunter2pass", "password"),
    ],
)
def test_free_text_is_masked(text: str, kept: str) -> None:
    """Phones, emails, URL tokens, query values, credentials and provider keys are masked; the rest stays."""
    masked = redact_text(text)
    assert kept in masked
    for secret in ("4155550123", "555-0123", "7946 0958", EMAIL, "tok_abc123", "s3cr3tvalue", "hunter2"):
        assert secret not in masked
    assert "abcdef123456" not in masked
    assert SENDGRID_KEY not in masked
    assert "ffeeddccbbaa0099" not in masked
    assert "0" * 32 not in masked


@pytest.mark.parametrize(
    "text",
    [
        "job 1234 of queue reminders completed in 12ms",
        "scheduled for 2025-07-01T14:30:00.000Z (+00:00)",
        "moved 1719844200000 to delayed",
        "attempt 3 of 3, backoff 2000 ms",
        "POST /v3/mail/send HTTP/1.1 202",
    ],
)
def test_operational_text_is_untouched(text: str) -> None:
    """Timestamps, job ids, durations and request lines without secrets are not mangled."""
    assert redact_text(text) == text


def test_nested_structures_are_redacted_by_key_and_by_text() -> None:
    """Sensitive keys at any depth lose their values; other strings are masked; numbers and ids stay."""
    payload = {
        "orgId": "org_1",
        "jobId": "42",
        "data": {
            "contactId": "c_9",
            "paymentLink": PAYMENT_LINK,
            "personalization": {"first_name": "Jane", "street": ADDRESS},
            "amount": 1250,
            "notes": [f"reach {EMAIL}", {"to": PHONE}],
        },
        "headers": {"Authorization": "Basic dXNlcjpwYXNz"},
    }
    redacted = redact(payload)
    assert isinstance(redacted, dict)
    assert redacted["orgId"] == "org_1"
    assert redacted["data"]["amount"] == 1250
    assert redacted["data"]["paymentLink"] == REDACTED
    assert redacted["data"]["personalization"] == REDACTED
    assert redacted["data"]["notes"][1] == {"to": REDACTED}
    assert redacted["headers"]["Authorization"] == REDACTED
    assert _leaks(repr(redacted)) == []


def test_other_objects_are_rendered_then_masked() -> None:
    """Objects go through their repr: domain values mask themselves, anything else is masked as text."""

    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque(phone={PHONE})"

    redacted = redact_mapping({"who": PhoneNumber(PHONE), "mail": EmailAddress(EMAIL), "thing": Opaque()})
    assert _leaks(repr(redacted)) == []
    assert redacted["thing"].startswith("Opaque(")  # type: ignore[union-attr]


def test_redaction_is_idempotent() -> None:
    """Masking masked text changes nothing, so layers of redaction (log, then Sentry) compose."""
    once = redact_text(f"{PHONE} {EMAIL} {PAYMENT_LINK} {SENDGRID_KEY}")
    assert redact_text(once) == once


@given(
    number=st.from_regex(r"\+[1-9]\d{9,13}", fullmatch=True),
    before=st.sampled_from(["", "to ", "phone=", "(", "sms:"]),
    after=st.sampled_from(["", " failed", ")", ",", "."]),
)
def test_any_e164_number_in_text_is_masked(number: str, before: str, after: str) -> None:
    """Whatever E.164 number appears in a sentence, its digits after the country code do not survive."""
    assert number[3:] not in redact_text(f"{before}{number}{after}")


@pytest.mark.parametrize(
    "minimal",
    [
        "a@b.co", "+1234567", "(415) 555-0123", "415-555-0123", "415 555 0123", "415.555.0123", "ab://h/abc123def",
        "Bearer abcdef", "basic abcdef", "token=abc", "pwd:x", "dsn=x", "paymentLink=x", "SG.abcdefgh", "sk_abcdef",
        "tok_abcdef", "AC" + "a" * 32,
    ],
)  # fmt: skip
def test_the_quick_look_sees_every_rule(minimal: str) -> None:
    """The cheap first look that skips most text lets through no shortest example of any masking rule."""
    assert redaction._mask_all(minimal) != minimal
    assert redaction.redact_text(minimal) == redaction._mask_all(minimal)


@pytest.mark.parametrize("text", ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "1719844200000"])
def test_trace_ids_and_job_ids_are_kept(text: str) -> None:
    """Trace and span ids (hex) and numeric job ids are no phone numbers: they stay readable."""
    assert redact_text(text) == text


@pytest.mark.parametrize("key", ["sk-proj-AbCdEf0123456789_xyz-ABCDEF", "sk-abcdefghijklmnopqrstuvwx1234"])
def test_openai_keys_are_masked_in_free_text(key: str) -> None:
    """An OpenAI API key (``sk-...``, ``sk-proj-...``) inside an error message does not survive."""
    assert key not in redact_text(f"request failed with key {key} (status 401)")


def test_text_seen_clean_is_remembered_boundedly_and_pii_never() -> None:
    """The remembered clean texts (a value on every line is looked at once) start over when full, hold no text that
    was masked, and a canary is masked however often it comes."""
    for index in range(redaction._CLEAN_TEXTS_LIMIT + 10):
        assert redact_text(f"job-{index}") == f"job-{index}"
    assert len(redaction._CLEAN_TEXTS) <= redaction._CLEAN_TEXTS_LIMIT
    assert [redact_text(f"call {PHONE}") for _ in range(3)] == [f"call {redaction.mask_phone(PHONE)}"] * 3
    assert not [text for text in redaction._CLEAN_TEXTS if _leaks(text)]
