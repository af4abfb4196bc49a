"""Twilio's request signature as the webhooks server checks it: requests signed by the ``twilio`` library."""

from __future__ import annotations

import pytest
from multidict import MultiDict, MultiDictProxy

from adapters.webhooks.twilio import TwilioWebhooks
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, twilio_headers

PATH = "/webhooks/twilio/status?ledger_key=reminder%3A24h%3Aa-1%3Asms"
FORM = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": "AC1"}


def form(values: dict[str, str] = FORM) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(values))


def signature(path: str = PATH, values: dict[str, str] = FORM, **kwargs: str) -> str:
    return twilio_headers(path, values, **kwargs)["X-Twilio-Signature"]


def test_a_signature_over_the_configured_url_and_form_is_authentic() -> None:
    assert TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL).authentic(PATH, form(), signature())


def test_a_trailing_slash_in_the_configured_url_changes_nothing() -> None:
    assert TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL + "/").authentic(PATH, form(), signature())


def test_a_signature_over_the_url_with_its_default_port_is_authentic() -> None:
    """The library's rule, kept behind the one-HMAC first comparison: Twilio may sign ``https://host:443/...``."""
    with_port = signature(public_url=PUBLIC_URL.replace(".com", ".com:443"))
    assert with_port != signature()
    assert TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL).authentic(PATH, form(), with_port)


@pytest.mark.parametrize(
    "given",
    [
        None,
        "",
        "bm90IGEgc2lnbmF0dXJl",
        "sïgnature",
        signature(values={**FORM, "MessageStatus": "failed"}),
        signature(path="/webhooks/twilio/status?ledger_key=another"),
        signature(token="0" * 32),
    ],
    ids=["missing", "empty", "garbage", "not-ascii", "other-form", "other-url", "other-token"],
)
def test_anything_else_is_not_authentic(given: str | None) -> None:
    assert not TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL).authentic(PATH, form(), given)


def test_the_auth_token_is_not_in_the_repr() -> None:
    assert AUTH_TOKEN not in repr(TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL))
