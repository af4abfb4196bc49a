"""A local OpenAI Chat Completions API: POST /v1/chat/completions with a Bearer key -> a ``chat.completion``.

Without a script it echoes the message it was given with a greeting prepended, as the JSON object the prompt asks
for. ``completion(...)`` scripts a 200 answer of any content (a refusal, a cut-off answer); ``openai_error``
scripts an error in OpenAI's body shape ``{"error": {"message", "type", "param", "code"}}``; ``Delay`` a hang.
Source: https://platform.openai.com/docs/api-reference/chat/object
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import attrs
from aiohttp import web

from tests.support.fakeservers.scripted import RecordedRequest, Reply, ScriptedServer

FAKE_OPENAI_KEY = "sk-proj-FakeKey0123456789abcdefXYZ"


def completion(
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    model: str = "gpt-5.4-mini-2026-03-17",
    prompt_tokens: int = 120,
    completion_tokens: int = 30,
) -> Reply:
    """A 200 answer in the ``chat.completion`` shape."""
    return Reply(
        200,
        {
            "id": f"chatcmpl-{secrets.token_hex(8)}",
            "object": "chat.completion",
            "created": 1_780_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


def answer(body: str, subject: str | None = None, **usage: int) -> Reply:
    """A 200 answer whose content is the JSON object the prompt asks for."""
    shape: dict[str, str] = {"body": body} if subject is None else {"subject": subject, "body": body}
    return completion(json.dumps(shape), **usage)


def openai_error(status: int, message: str, error_type: str, code: str | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": error_type, "param": None, "code": code}})


RATE_LIMITED = openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded")
SERVER_ERROR = openai_error(500, "The server had an error while processing your request.", "server_error")


@attrs.define
class FakeOpenAI(ScriptedServer):
    api_key: str = FAKE_OPENAI_KEY
    greeting: str = "Hello again! "

    @property
    def api_base(self) -> str:
        """What OPENAI_BASE_URL is set to."""
        return f"{self.base_url}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._serve(self._complete))
        return app

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.requests if r.path == "/v1/chat/completions"]

    async def _complete(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json(openai_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
        given = json.loads(recorded.json()["messages"][-1]["content"])["message"]
        shape = {**given, "body": self.greeting + given["body"]}
        return _json(completion(json.dumps(shape)))


def _json(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
