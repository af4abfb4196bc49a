"""AI-personalized nurture copy through real worker processes: the real openai client against a local fake OpenAI API.

A process-nurture job from the real npm bullmq, for a template that opts in, sends the model's words; every bad
answer (a dropped link, an added URL, too long for SMS, a 429, a 500, a hang past the timeout) sends the template
and is counted with its reason; a worker killed after the generation and before the send re-sends the same words
once, without asking the model again.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from adapters.observability.metrics import read_recorded
from tests.support.crm import Org, create_contact, create_org, enroll_in_sequence, unique_phone
from tests.support.fakeservers import openai as fake_api
from tests.support.fakeservers.openai import FakeOpenAI
from tests.support.fakeservers.providers import running
from tests.support.fakeservers.scripted import Delay, Hang, Step
from tests.support.processes import (
    Providers,
    WorkerProcess,
    add_jobs,
    delete_keys,
    system_env,
    token,
    wait_for_state,
    workers,
)

pytestmark = pytest.mark.slow  # real workers with the fake model: 43 s and more a test measured

RETRY = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}
TIMEOUT_SECONDS = 1.0
TEMPLATE = "Hi {{ first_name }}, your smile misses us! Book: https://smiles.example/book Reply STOP to opt out"
OPT_OUT = "Reply STOP to opt out"
INSTRUCTION = "warmer, mention their last visit"


def plain(name: str) -> str:
    return TEMPLATE.replace("{{ first_name }}", name)


def warm(name: str) -> str:
    return f"{name}, it was lovely to see you last spring! Book again: https://smiles.example/book {OPT_OUT}"


class AiProviders(Providers):
    """The fake Twilio and SendGrid, and a fake OpenAI API, on their own thread."""

    def __init__(self) -> None:
        super().__init__("fake-providers-openai")
        self.openai = FakeOpenAI()

    def servers(self) -> tuple[Any, ...]:
        return (*super().servers(), self.openai)


@pytest.fixture(scope="module")
def providers() -> Iterator[AiProviders]:
    with running(AiProviders()) as found:
        yield found


def openai_env(providers: AiProviders) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": providers.openai.api_key,
        "OPENAI_BASE_URL": providers.openai.api_base,
        "OPENAI_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    }


@pytest.fixture(scope="module")
def env(providers: AiProviders, database_url: str, prefix: str) -> dict[str, str]:
    """Development mode without Twilio and SendGrid: messages go to the outbox table; the model is the fake."""
    without_providers: dict[str, str | None] = {
        name: None
        for name in (
            "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_BASE_URL",
            "TWILIO_STATUS_CALLBACK_URL", "SENDGRID_API_KEY", "SENDGRID_FROM_EMAIL", "SENDGRID_HOST",
        )
    }  # fmt: skip
    return system_env(
        providers, database_url, prefix, NODE_ENV="development", **without_providers, **openai_env(providers)
    )


@pytest.fixture(scope="module")
def nurture(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[WorkerProcess]:
    with workers("nurture", env, log_dir) as [worker]:
        yield worker


async def enrolled(db: Any, name: str) -> tuple[dict[str, Any], str]:
    """A contact enrolled in a one-step SMS sequence whose template opts in: the job data and the ledger key."""
    org: Org = await create_org(db)
    contact = await create_contact(db, org, name, phone=unique_phone(), marketing_consent=True)
    await db.execute(
        "insert into message_templates (org_id, name, channel, body, ai_instruction, ai_required_literals)"
        " values ($1, 'tips', 'sms', $2, $3, $4)",
        org.id,
        TEMPLATE,
        INSTRUCTION,
        [OPT_OUT],
    )
    enrollment = await enroll_in_sequence(db, org, contact, channel="sms", template="tips")
    data = {
        "orgId": org.id,
        "contactId": contact,
        "sequenceStep": 1,
        "template": "tips",
        "personalization": {"first_name": name, "phone": "+15550001111"},
    }
    return data, f"nurture:{enrollment}:1:sms"


async def step(prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    [job_id] = await add_jobs(prefix, "nurture", [{"name": "process-nurture", "data": data, "opts": RETRY}])
    job = await wait_for_state(prefix, "nurture", job_id, ("completed", "failed"))
    assert job["state"] == "completed", job["failedReason"]
    return job


async def outbox_body(db: Any, key: str) -> str:
    [row] = await db.fetch("select body from outbox_messages where ledger_key = $1", key)
    body: str = row["body"]
    return body


@pytest.mark.usefixtures("nurture")
async def test_an_opted_in_step_sends_the_models_words_to_the_outbox(
    providers: AiProviders, prefix: str, db: Any
) -> None:
    """The model's copy is the message in the outbox and the stored copy; the model saw no phone number."""
    data, key = await enrolled(db, "Ada")
    providers.openai.script(fake_api.answer(warm("Ada")))
    asked_before = len(providers.openai.requests)

    job = await step(prefix, data)

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert await outbox_body(db, key) == warm("Ada")
    stored = await db.fetchrow("select source, body, fallback from personalized_copies where ledger_key = $1", key)
    assert (stored["source"], stored["body"], stored["fallback"]) == ("model", warm("Ada"), None)
    [asked] = providers.openai.chat_requests()[asked_before:]
    assert "+1555" not in str(asked)


BAD_ANSWERS: list[tuple[str, Step, str]] = [
    ("drops_link", fake_api.answer(f"Ada, we miss you! {OPT_OUT}"), "required_link_dropped"),
    ("adds_url", fake_api.answer(warm("Ada") + " https://win.example/prize"), "link_added"),
    ("over_sms_limit", fake_api.answer(warm("Ada") + " ♥" * 900), "too_long"),
    ("rate_limited", fake_api.RATE_LIMITED, "rate_limited"),
    ("server_error", fake_api.SERVER_ERROR, "provider_error"),
    ("hangs", Delay(TIMEOUT_SECONDS * 1.5), "timeout"),
]


@pytest.mark.usefixtures("nurture")
async def test_each_bad_answer_sends_the_template_and_counts_its_reason(
    providers: AiProviders, prefix: str, db: Any
) -> None:
    """For each bad answer the outbox holds the template's words, and the stored copy and the fallback counter name
    its reason (one step after another, so the scripted answers meet their own jobs)."""
    counted_before = {reason: await fallbacks_counted(prefix, reason) for _, _, reason in BAD_ANSWERS}
    for case, answer, reason in BAD_ANSWERS:
        data, key = await enrolled(db, "Ada")
        providers.openai.script(answer)

        job = await step(prefix, data)

        assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}, case
        assert await outbox_body(db, key) == plain("Ada"), case
        assert await db.fetchval("select fallback from personalized_copies where ledger_key = $1", key) == reason
    expected = {reason: before + 1 for reason, before in counted_before.items()}
    for _ in range(80):  # the worker flushes its counters every 5 s
        counted = {reason: await fallbacks_counted(prefix, reason) for reason in expected}
        if counted == expected:
            break
        await asyncio.sleep(0.1)
    assert counted == expected


async def fallbacks_counted(prefix: str, reason: str) -> float:
    client = redis_asyncio.Redis()
    try:
        samples = await read_recorded(client, prefix)
    finally:
        await client.aclose()
    return sum(
        s.value
        for s in samples
        if s.metric == "personalizations_total"
        and dict(s.labels) == {"channel": "sms", "outcome": "fallback", "reason": reason}
    )


SETTLE_SECONDS = 16
FAST_RECOVERY = {"SEND_SETTLE_SECONDS": str(SETTLE_SECONDS), "STALLED_INTERVAL_MS": "2000"}


@pytest.fixture
async def kill_prefix() -> AsyncIterator[str]:
    name = f"test-system-ai-kill-{token()}"
    yield name
    await delete_keys(f"{name}:*")


async def test_a_worker_killed_after_the_generation_resends_the_same_words_once(
    providers: AiProviders, database_url: str, kill_prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """SIGKILL while the SMS request (with the model's words) has not taken effect at Twilio: another worker takes the
    job back, finds nothing at Twilio after the settle period, and sends the stored words, never asking the model
    again (which would now answer with other words)."""
    env = system_env(providers, database_url, kill_prefix, **FAST_RECOVERY, **openai_env(providers))
    data, key = await enrolled(db, "Bea")
    phone = await db.fetchval("select phone from contacts where id = $1", data["contactId"])
    providers.openai.script(fake_api.answer(warm("Bea")))  # asked again, the fake would answer other words
    providers.twilio.script(Hang(60))  # the first SMS request never takes effect
    asked_before = len(providers.openai.requests)

    victim = WorkerProcess("nurture", env, log_dir).wait_ready()
    try:
        [job_id] = await add_jobs(kill_prefix, "nurture", [{"name": "process-nurture", "data": data, "opts": RETRY}])
        for _ in range(200):
            if providers.sms_posts_to(phone):
                break
            await asyncio.sleep(0.05)
        assert providers.sms_posts_to(phone) == 1
    finally:
        victim.kill()
    assert await db.fetchval("select state from send_ledger where key = $1", key) == "claimed"
    assert await db.fetchval("select body from personalized_copies where ledger_key = $1", key) == warm("Bea")

    with workers("nurture", env, log_dir):
        job = await wait_for_state(kill_prefix, "nurture", job_id, ("completed", "failed"), within=SETTLE_SECONDS + 30)

    assert job["returnvalue"] == {"outcome": "sent", "channels": ["sms"]}
    assert [sms["body"] for sms in providers.sms_to(phone)] == [warm("Bea")]
    assert providers.sms_posts_to(phone) == 2  # the lost request, then the one re-send
    assert len(providers.openai.requests) - asked_before == 1
    assert await db.fetchval("select state from send_ledger where key = $1", key) == "sent"
