"""The CopyPersonalizer contract, on the in-memory fake and on the openai library against a local fake OpenAI API.

Each test scripts the model's behaviour through ``Model`` (a good answer, a 429, a 500, a hang, a refusal ...); the
fake side scripts the port's result directly, the real side the HTTP answer that produces it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import attrs
import pytest

from adapters.openai_personalizer import OpenAICopyPersonalizer
from domain.personalization import (
    CopyPersonalizer,
    FallbackReason,
    PersonalizationFailed,
    PersonalizationRequest,
    PersonalizedCopy,
)
from domain.values import Channel
from tests.support.fakes.personalization import FakeCopyPersonalizer
from tests.support.fakeservers import openai as fake_api
from tests.support.fakeservers.openai import FakeOpenAI
from tests.support.fakeservers.scripted import Delay
from tests.support.scratch import running

TIMEOUT_SECONDS = 0.5
MODEL = "gpt-5.4-mini-2026-03-17"
SMS = PersonalizationRequest(Channel.SMS, "warmer", "Hi Dana", None, {"first_name": "Dana"}, 1600)
EMAIL = attrs.evolve(SMS, channel=Channel.EMAIL, subject="Welcome", max_body_chars=20_000)


class Model(Protocol):
    """What the next request to the model gets."""

    def answers(self, body: str, subject: str | None = None) -> None: ...

    def fails(self, reason: FallbackReason) -> None: ...


@attrs.define
class FakeModel:
    personalizer: FakeCopyPersonalizer

    def answers(self, body: str, subject: str | None = None) -> None:
        self.personalizer.script.append(PersonalizedCopy(body, subject, MODEL, 120, 30))

    def fails(self, reason: FallbackReason) -> None:
        self.personalizer.script.append(PersonalizationFailed(reason))


# The HTTP answer of the OpenAI API that each failure reason stands for.
_HTTP_FAILURES = {
    FallbackReason.RATE_LIMITED: fake_api.RATE_LIMITED,
    FallbackReason.PROVIDER_ERROR: fake_api.SERVER_ERROR,
    FallbackReason.MISCONFIGURED: fake_api.openai_error(404, "The model does not exist", "invalid_request_error"),
    FallbackReason.TIMEOUT: Delay(TIMEOUT_SECONDS * 4),
    FallbackReason.REFUSED: fake_api.completion(None, refusal="I can't help with that."),
    FallbackReason.MALFORMED_ANSWER: fake_api.completion("Sure! Here is a warmer message: Hi Dana"),
}


@attrs.define
class HttpModel:
    server: FakeOpenAI

    def answers(self, body: str, subject: str | None = None) -> None:
        self.server.script(fake_api.answer(body, subject, prompt_tokens=120, completion_tokens=30))

    def fails(self, reason: FallbackReason) -> None:
        self.server.script(_HTTP_FAILURES[reason])


@pytest.fixture(params=["fake", "openai"])
async def personalizer(request: pytest.FixtureRequest) -> AsyncIterator[tuple[CopyPersonalizer, Model]]:
    if request.param == "fake":
        fake = FakeCopyPersonalizer()
        yield fake, FakeModel(fake)
        return
    async with running(FakeOpenAI()) as server:
        real = OpenAICopyPersonalizer(server.api_key, MODEL, server.api_base, TIMEOUT_SECONDS)
        yield real, HttpModel(server)
        await real.close()


async def test_an_sms_answer_comes_back_with_its_token_counts(personalizer: tuple[CopyPersonalizer, Model]) -> None:
    """The model's body is returned as it is, without a subject, with the provider's token counts."""
    port, model = personalizer
    model.answers("Dana! So good to hear from you.")
    assert await port.personalize(SMS) == PersonalizedCopy("Dana! So good to hear from you.", None, MODEL, 120, 30)


async def test_an_email_answer_has_its_subject(personalizer: tuple[CopyPersonalizer, Model]) -> None:
    """For email the subject comes back beside the body."""
    port, model = personalizer
    model.answers("Dear Dana, welcome.", "Welcome, Dana")
    copy = await port.personalize(EMAIL)
    assert (copy.subject, copy.body) == ("Welcome, Dana", "Dear Dana, welcome.")


@pytest.mark.parametrize("reason", list(_HTTP_FAILURES))
async def test_each_failure_raises_its_reason(
    personalizer: tuple[CopyPersonalizer, Model], reason: FallbackReason
) -> None:
    """A 429, a 500, a 4xx, a hang past the timeout, a refusal, an answer not in the asked shape: each is
    PersonalizationFailed with its reason, and the next request is answered normally."""
    port, model = personalizer
    model.fails(reason)
    with pytest.raises(PersonalizationFailed) as failed:
        await port.personalize(SMS)
    assert failed.value.reason is reason
    model.answers("Hi again, Dana")
    assert (await port.personalize(SMS)).body == "Hi again, Dana"
