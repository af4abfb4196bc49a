"""The CopyPersonalizer port over OpenAI's Chat Completions API, with the official ``openai`` library (async).

One request per call (the library's retries are off: a slow or failing model sends the plain template, it does not
hold the job), a JSON-object answer, and every library error translated to a FallbackReason. The prompt is built
from the PersonalizationRequest alone. The span carries model, tokens, latency and outcome, never prompt or answer.
Sources: https://platform.openai.com/docs/api-reference/chat/create (request, ``usage``, ``refusal``,
``finish_reason``), https://platform.openai.com/docs/guides/error-codes (statuses).
"""

from __future__ import annotations

import json
import time

import attrs
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from adapters.observability.metrics import MetricsRecorder
from adapters.observability.tracing import child_span, set_span_attributes
from domain.personalization import FallbackReason, PersonalizationFailed, PersonalizationRequest, PersonalizedCopy
from domain.values import Channel

OPENAI_API_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-5.4-mini"
MAX_OUTPUT_TOKENS = 2000  # an SMS or a short email, with room for a reasoning model's own tokens

_RULES = """You rewrite one {channel} message that a small business sends to one of its customers.
Follow the business's instruction, in the message's language. Rules, which win over the instruction:
- keep every link exactly as written, and every sentence the instruction does not ask you to change in meaning;
- add no link, phone number, email address, price, date or promise that the message does not contain;
- plain text only: no markup, no placeholders in braces;
- the body has at most {max_chars} characters.
Answer with one JSON object: {shape}"""
_SHAPES = {
    Channel.SMS: '{"body": "<the message>"}',
    Channel.EMAIL: '{"subject": "<one line, no line breaks>", "body": "<the message>"}',
}


def prompt(request: PersonalizationRequest) -> list[ChatCompletionMessageParam]:
    """The chat messages sent for ``request``: the rules, then the request's own fields as JSON."""
    channel = "SMS" if request.channel is Channel.SMS else "email"
    rules = _RULES.format(channel=channel, max_chars=request.max_body_chars, shape=_SHAPES[request.channel])
    message = {"body": request.body} if request.subject is None else {"body": request.body, "subject": request.subject}
    given = {"instruction": request.instruction, "message": message, "values": dict(request.values)}
    return [
        {"role": "system", "content": rules},
        {"role": "user", "content": json.dumps(given, ensure_ascii=False)},
    ]


def _reason(error: openai.OpenAIError) -> FallbackReason:
    if isinstance(error, openai.APITimeoutError):
        return FallbackReason.TIMEOUT
    if isinstance(error, openai.APIConnectionError):
        return FallbackReason.PROVIDER_ERROR
    if isinstance(error, openai.RateLimitError):
        return FallbackReason.RATE_LIMITED
    if isinstance(error, openai.APIStatusError):
        return FallbackReason.PROVIDER_ERROR if error.status_code >= 500 else FallbackReason.MISCONFIGURED
    return FallbackReason.PROVIDER_ERROR


def _copy(request: PersonalizationRequest, completion: ChatCompletion) -> PersonalizedCopy:
    """The answer of ``completion``; PersonalizationFailed when refused, cut off or not the JSON shape asked."""
    if not completion.choices:
        raise PersonalizationFailed(FallbackReason.MALFORMED_ANSWER)
    choice = completion.choices[0]
    if choice.message.refusal or choice.finish_reason == "content_filter":
        raise PersonalizationFailed(FallbackReason.REFUSED)
    if choice.finish_reason == "length" or not choice.message.content:
        raise PersonalizationFailed(FallbackReason.MALFORMED_ANSWER)
    try:
        answer = json.loads(choice.message.content)
    except ValueError:
        raise PersonalizationFailed(FallbackReason.MALFORMED_ANSWER) from None
    body = answer.get("body") if isinstance(answer, dict) else None
    subject = answer.get("subject") if isinstance(answer, dict) else None
    wants_subject = request.channel is Channel.EMAIL
    if not isinstance(body, str) or (wants_subject and not isinstance(subject, str)):
        raise PersonalizationFailed(FallbackReason.MALFORMED_ANSWER)
    usage = completion.usage
    return PersonalizedCopy(
        body=body,
        subject=subject if wants_subject else None,
        model=completion.model,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
    )


@attrs.define
class OpenAICopyPersonalizer:
    """``base_url`` is ``OPENAI_BASE_URL`` (a compatible gateway, or a local fake in tests); ``timeout_seconds``
    bounds the whole request."""

    api_key: str = attrs.field(repr=False)
    model: str = DEFAULT_MODEL
    base_url: str = OPENAI_API_BASE_URL
    timeout_seconds: float = 10.0
    recorder: MetricsRecorder | None = None
    _client: openai.AsyncOpenAI = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_seconds, max_retries=0
        )

    async def close(self) -> None:
        await self._client.close()

    async def personalize(self, request: PersonalizationRequest) -> PersonalizedCopy:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": self.model,
        }
        with child_span(f"chat {self.model}", attributes=attributes) as span:
            started = time.monotonic()
            outcome = "answered"
            try:
                copy = _copy(request, await self._completion(request))
            except PersonalizationFailed as failed:
                outcome = failed.reason.value
                raise
            finally:
                seconds = time.monotonic() - started
                set_span_attributes(span, {"clientflow.outcome": outcome})
                if self.recorder is not None:
                    self.recorder.model_request(self.model, outcome, seconds)
            set_span_attributes(
                span,
                {
                    "gen_ai.response.model": copy.model,
                    "gen_ai.usage.input_tokens": copy.input_tokens,
                    "gen_ai.usage.output_tokens": copy.output_tokens,
                },
            )
            return copy

    async def _completion(self, request: PersonalizationRequest) -> ChatCompletion:
        try:
            return await self._client.chat.completions.create(
                model=self.model,
                messages=prompt(request),
                response_format={"type": "json_object"},
                max_completion_tokens=MAX_OUTPUT_TOKENS,
            )
        except openai.OpenAIError as error:
            raise PersonalizationFailed(_reason(error)) from None
