"""The guard rails of AI copy: what the model may see, and which answers may replace the template."""

from __future__ import annotations

import pytest

from domain.copy_guard import check_answer, placeholders, values_for_model
from domain.copy_personalization import html_from_text, plain_text
from domain.personalization import FallbackReason, PersonalizationRequest, PersonalizedCopy
from domain.values import Channel

SMS_TEXT = "Hi Dana, 20% off whitening this week: https://acme.example/offer?c=7 Reply STOP to opt out"


def sms_request(body: str = SMS_TEXT, instruction: str = "warmer", **values: str) -> PersonalizationRequest:
    return PersonalizationRequest(Channel.SMS, instruction, body, None, values or {"first_name": "Dana"}, 160)


def answer(body: str, subject: str | None = None) -> PersonalizedCopy:
    return PersonalizedCopy(body, subject, "m", 10, 10)


GOOD_SMS = "Dana, we miss you! 20% off whitening: https://acme.example/offer?c=7 Reply STOP to opt out"


def test_values_for_model_are_only_the_used_ones_without_contact_details() -> None:
    """The model gets the template's own values as text, never phones, emails, links, addresses or long text."""
    given = {
        "first_name": "Dana",
        "visits": 3,
        "unused": "secret plan",
        "phone": "+14155550100",
        "home_address": "1 Main St",
        "payment_link": "https://pay.example/x",
        "note": "call me at 415-555-0100",
        "nick": "dana@example.com",
        "story": "x" * 101,
        "flag": True,
        "missing": None,
    }
    used = placeholders("Hi {{ first_name }} ({{visits}}) {{ phone }} {{ home_address }} {{ payment_link }}") | {
        "note",
        "nick",
        "story",
        "flag",
        "missing",
    }
    assert values_for_model(used, given) == {"first_name": "Dana", "visits": "3"}


def test_a_good_answer_passes() -> None:
    """An answer that keeps the link and the opt-out literal and adds nothing is accepted."""
    assert check_answer(sms_request(), answer(GOOD_SMS), ["Reply STOP to opt out"]) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("   ", FallbackReason.EMPTY),
        ("Dana, 20% off whitening! Reply STOP to opt out", FallbackReason.REQUIRED_LINK_DROPPED),
        ("Dana, 20% off: https://acme.example/offer?c=7", FallbackReason.REQUIRED_LITERAL_DROPPED),
        (GOOD_SMS + " More at https://evil.example", FallbackReason.LINK_ADDED),
        (GOOD_SMS + " or see acme-deals.com/now", FallbackReason.LINK_ADDED),
        (GOOD_SMS + " Call (415) 555-0199", FallbackReason.PHONE_ADDED),
        (GOOD_SMS + " Write to help@acme.example", FallbackReason.EMAIL_ADDED),
        (GOOD_SMS + " {{ first_name }}", FallbackReason.PLACEHOLDER_LEFT),
        ("<b>" + GOOD_SMS + "</b>", FallbackReason.MALFORMED_ANSWER),
        (GOOD_SMS + " " + "x" * 80, FallbackReason.TOO_LONG),
    ],
)
def test_a_bad_answer_names_the_rule_it_breaks(body: str, reason: FallbackReason) -> None:
    """Each broken rule sends the template, with that rule's reason."""
    assert check_answer(sms_request(), answer(body), ["Reply STOP to opt out"]) == reason


def test_what_the_input_had_may_be_repeated() -> None:
    """Links, phones and emails given in the template or the instruction are not 'added'."""
    request = sms_request(
        "Hi Dana, call 415-555-0100 or mail desk@acme.example", instruction="mention acme.example/hours"
    )
    written = "Dana! Ring +1 415 555 0100, mail desk@acme.example, hours at acme.example/hours"
    assert check_answer(request, answer(written)) is None


def test_a_date_is_not_a_phone_number() -> None:
    """An ISO date has eight digits but adds no phone number."""
    assert check_answer(sms_request("Hi Dana"), answer("Hi Dana, see you on 2026-02-03")) is None


def test_email_subject_must_be_one_line_and_present() -> None:
    """An email answer without a subject, or with CR/LF in it, falls back."""
    request = PersonalizationRequest(Channel.EMAIL, "warmer", "Hello Dana", "Welcome", {}, 20_000)
    assert check_answer(request, answer("Hello dear Dana", "Welcome back")) is None
    assert check_answer(request, answer("Hello dear Dana", None)) is FallbackReason.EMPTY
    assert check_answer(request, answer("Hello dear Dana", "Welcome\r\nBcc: x")) is FallbackReason.SUBJECT_LINE_BREAK


def test_plain_text_writes_links_out_and_html_from_text_links_them_back() -> None:
    """The model sees an email's links as text; the HTML part escapes the answer and links the URLs again."""
    text = plain_text('<p>Hi &amp; welcome</p><p>See <a href="https://acme.example/x">our offer</a><br>Bye</p>')
    assert text == "Hi & welcome\nSee our offer (https://acme.example/x)\nBye"
    html = html_from_text("Hi <Dana>\n\nSee https://acme.example/x")
    assert html == '<p>Hi &lt;Dana&gt;</p>\n<p>See <a href="https://acme.example/x">https://acme.example/x</a></p>'
