"""AI personalization is observable without content: counters per outcome and per org's tokens, spans with model,
tokens and outcome, and never the prompt, the answer or the key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import structlog.testing
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from adapters.observability.metrics import MetricsRecorder, MetricsSnapshot, read_recorded, render_prometheus
from adapters.observability.personalization import MetricsPersonalizationRecorder
from adapters.observability.tracing import job_span
from adapters.openai_personalizer import OpenAICopyPersonalizer
from domain.personalization import FallbackReason, PersonalizationOutcome, PersonalizationRequest
from domain.values import Channel, OrgId
from tests.integration.observability.conftest import SpanCapture
from tests.support.fakeservers import openai as fake_api
from tests.support.fakeservers.openai import FakeOpenAI
from tests.support.scratch import running

CANARY = "Zebulon"
REQUEST = PersonalizationRequest(Channel.SMS, "warmer", f"Hi {CANARY}", None, {"first_name": CANARY}, 1600)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    async with running(FakeOpenAI()) as fake:
        yield fake


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


async def test_outcomes_latency_and_each_orgs_tokens_render_as_prometheus(
    redis_prefix: tuple[Redis, str], server: FakeOpenAI
) -> None:
    """A used copy and a fallback count by outcome and reason; tokens per org and model; model requests with their
    seconds, so mean latency is the ratio of the two counters."""
    client, prefix = redis_prefix
    metrics = MetricsRecorder(prefix)
    personalizer = OpenAICopyPersonalizer(server.api_key, "gpt-5.4-mini", server.api_base, 1.0, metrics)
    copy = await personalizer.personalize(REQUEST)
    await personalizer.close()
    recorder = MetricsPersonalizationRecorder(metrics)
    recorder.record(
        PersonalizationOutcome(OrgId("org-7"), Channel.SMS, None, copy.model, copy.input_tokens, copy.output_tokens)
    )
    recorder.record(PersonalizationOutcome(OrgId("org-7"), Channel.SMS, FallbackReason.BUDGET_EXHAUSTED))
    await metrics.flush(client)

    snapshot = MetricsSnapshot([], None, [], await read_recorded(client, prefix), {})
    samples = _samples(render_prometheus(snapshot))

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("clientflow_personalizations_total", channel="sms", outcome="used", reason="none") == 1
    fallback = {"channel": "sms", "outcome": "fallback", "reason": "budget_exhausted"}
    assert value("clientflow_personalizations_total", **fallback) == 1
    assert value("clientflow_model_tokens_total", org_id="org-7", model=copy.model, kind="input") == 120
    assert value("clientflow_model_tokens_total", org_id="org-7", model=copy.model, kind="output") == 30
    assert value("clientflow_model_requests_total", model="gpt-5.4-mini", outcome="answered") == 1
    assert value("clientflow_model_request_seconds_total", model="gpt-5.4-mini", outcome="answered") > 0


async def test_spans_carry_model_tokens_and_outcome_but_no_content(spans: SpanCapture, server: FakeOpenAI) -> None:
    """The model call's span and the job span name the model, the tokens and the outcome; no attribute or event
    carries the prompt, the answer or the key, also when the call fails."""
    metrics = MetricsRecorder("unused")
    personalizer = OpenAICopyPersonalizer(server.api_key, "gpt-5.4-mini", server.api_base, 1.0, metrics)
    recorder = MetricsPersonalizationRecorder(metrics)
    with job_span("nurture", "process-nurture", "1"):
        copy = await personalizer.personalize(REQUEST)
        recorder.record(PersonalizationOutcome(OrgId("org-7"), Channel.SMS, None, copy.model, copy.input_tokens, 30))
    server.script(fake_api.SERVER_ERROR)
    with job_span("nurture", "process-nurture", "2"), pytest.raises(Exception, match="provider_error"):
        await personalizer.personalize(REQUEST)
    await personalizer.close()

    finished = spans.finished()
    chat = [s for s in finished if s.name == "chat gpt-5.4-mini"]
    assert [dict(s.attributes or {}).get("clientflow.outcome") for s in chat] == ["answered", "provider_error"]
    assert dict(chat[0].attributes or {})["gen_ai.usage.input_tokens"] == 120
    [job] = [
        s for s in finished if s.name == "process nurture" and (s.attributes or {}).get("messaging.message.id") == "1"
    ]
    assert dict(job.attributes or {})["clientflow.personalization.outcome"] == "used"
    everything = json.dumps([s.to_json() for s in finished])
    assert CANARY not in everything
    assert server.api_key not in everything


def test_each_outcome_is_one_log_event_and_a_refused_key_names_the_settings() -> None:
    """A used copy logs copy_personalized; a fallback copy_personalization_fallback with its reason, at error level
    naming the settings to check when the key, model or URL was refused."""
    recorder = MetricsPersonalizationRecorder(MetricsRecorder("unused"))
    with structlog.testing.capture_logs() as logged:
        recorder.record(PersonalizationOutcome(OrgId("org-7"), Channel.SMS, None, "m", 10, 5))
        recorder.record(PersonalizationOutcome(OrgId("org-7"), Channel.SMS, FallbackReason.TIMEOUT))
        recorder.record(PersonalizationOutcome(OrgId("org-7"), Channel.EMAIL, FallbackReason.MISCONFIGURED))
    assert [(e["event"], e["log_level"], e.get("reason")) for e in logged] == [
        ("copy_personalized", "info", None),
        ("copy_personalization_fallback", "warning", "timeout"),
        ("copy_personalization_fallback", "error", "misconfigured"),
    ]
    assert "OPENAI_API_KEY" in logged[2]["check"]
