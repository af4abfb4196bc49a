"""The OpenAI personalizer against a local OpenAI API: what it sends, that it asks once, and that nothing leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from adapters.observability.metrics import MetricsRecorder
from adapters.openai_personalizer import MAX_OUTPUT_TOKENS, OpenAICopyPersonalizer
from adapters.provider_logging import pin_provider_library_logging
from domain.personalization import FallbackReason, PersonalizationFailed, PersonalizationRequest
from domain.values import Channel
from tests.support.fakeservers import openai as fake_api
from tests.support.fakeservers.openai import FakeOpenAI
from tests.support.scratch import running

MODEL = "gpt-5.4-mini"
CANARY_NAME = "Zebulon"
REQUEST = PersonalizationRequest(
    Channel.EMAIL,
    "warmer, mention their last visit",
    f"Hi {CANARY_NAME}, book again: https://acme.example/book",
    "We miss you",
    {"first_name": CANARY_NAME},
    20_000,
)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with running(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture
async def personalizer(server: FakeOpenAI) -> AsyncIterator[OpenAICopyPersonalizer]:
    real = OpenAICopyPersonalizer(server.api_key, MODEL, server.api_base, 0.5, MetricsRecorder("test"))
    yield real
    await real.close()


async def test_the_request_carries_only_the_request_fields(
    personalizer: OpenAICopyPersonalizer, server: FakeOpenAI
) -> None:
    """One Chat Completions call: the key as Bearer, the model, a JSON-object answer, and a user message holding
    exactly the rendered template, the instruction and the values, nothing else."""
    copy = await personalizer.personalize(REQUEST)

    assert copy.body == "Hello again! " + REQUEST.body
    (recorded,) = server.requests
    assert recorded.headers["Authorization"] == f"Bearer {server.api_key}"
    sent = recorded.json()
    assert (sent["model"], sent["response_format"], sent["max_completion_tokens"]) == (
        MODEL,
        {"type": "json_object"},
        MAX_OUTPUT_TOKENS,
    )
    system, user = sent["messages"]
    assert system["role"] == "system"
    assert CANARY_NAME not in system["content"]
    assert json.loads(user["content"]) == {
        "instruction": REQUEST.instruction,
        "message": {"body": REQUEST.body, "subject": REQUEST.subject},
        "values": {"first_name": CANARY_NAME},
    }


@pytest.mark.parametrize("failure", [fake_api.RATE_LIMITED, fake_api.SERVER_ERROR])
async def test_a_failed_request_is_not_retried(
    personalizer: OpenAICopyPersonalizer, server: FakeOpenAI, failure: fake_api.Reply
) -> None:
    """A 429 or a 500 costs one request: the library's own retries are off."""
    server.script(failure)
    with pytest.raises(PersonalizationFailed):
        await personalizer.personalize(REQUEST)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            fake_api.completion('{"subject": "Hi", "body": "cut', finish_reason="length"),
            FallbackReason.MALFORMED_ANSWER,
        ),
        (fake_api.completion(None, finish_reason="content_filter"), FallbackReason.REFUSED),
        (fake_api.completion('{"body": "no subject for an email"}'), FallbackReason.MALFORMED_ANSWER),
        (fake_api.completion('["body"]'), FallbackReason.MALFORMED_ANSWER),
    ],
)
async def test_answers_that_cannot_be_used_name_their_reason(
    personalizer: OpenAICopyPersonalizer, server: FakeOpenAI, reply: fake_api.Reply, reason: FallbackReason
) -> None:
    """A cut-off answer, a content-filtered one, and JSON not of the asked shape each fail with their reason."""
    server.script(reply)
    with pytest.raises(PersonalizationFailed) as failed:
        await personalizer.personalize(REQUEST)
    assert failed.value.reason is reason


async def test_a_wrong_key_is_misconfigured_and_the_key_is_in_no_message(server: FakeOpenAI) -> None:
    """A refused key falls back as misconfigured; the error text carries neither key."""
    wrong = "sk-proj-WrongKey0123456789abcdefXYZ"
    personalizer = OpenAICopyPersonalizer(wrong, MODEL, server.api_base, 0.5)
    with pytest.raises(PersonalizationFailed) as failed:
        await personalizer.personalize(REQUEST)
    await personalizer.close()
    assert failed.value.reason is FallbackReason.MISCONFIGURED
    assert wrong not in str(failed.value)
    assert server.api_key not in str(failed.value)
    assert failed.value.__cause__ is None


LIBRARY_LOGGERS = ("openai", "httpx2", "httpcore2", "httpx", "httpcore")


def library_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines the openai library and its HTTP client logged below WARNING."""
    return [
        f"{record.getMessage()} {record.args}"
        for record in caplog.records
        if record.name.split(".")[0] in LIBRARY_LOGGERS and record.levelno < logging.WARNING
    ]


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """The root logger at DEBUG and the library loggers unpinned, whatever an earlier test configured; restored."""
    root = logging.getLogger()
    previous = root.level, {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    root.setLevel(logging.DEBUG)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    root.setLevel(previous[0])
    for name, level in previous[1].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("debug_logging")
async def test_pinned_library_logging_leaks_nothing_at_debug(
    personalizer: OpenAICopyPersonalizer, server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """With the root logger at DEBUG, the pinned openai and HTTP client loggers write no request line at all."""
    pin_provider_library_logging()
    caplog.set_level(logging.DEBUG)
    await personalizer.personalize(REQUEST)
    server.script(fake_api.SERVER_ERROR)
    with pytest.raises(PersonalizationFailed):
        await personalizer.personalize(REQUEST)
    assert library_lines(caplog) == []
    everything = "\n".join(f"{record.getMessage()} {record.args}" for record in caplog.records)
    assert CANARY_NAME not in everything
    assert server.api_key not in everything


@pytest.mark.usefixtures("debug_logging")
async def test_unpinned_the_library_logs_its_requests(
    personalizer: OpenAICopyPersonalizer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the pin the library and its HTTP client log every request (URL, headers' traces) at DEBUG/INFO:
    the test above checks something that happens."""
    caplog.set_level(logging.DEBUG)
    await personalizer.personalize(REQUEST)
    assert any("HTTP Request: POST" in line for line in library_lines(caplog))
