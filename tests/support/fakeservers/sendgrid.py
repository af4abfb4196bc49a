"""A local SendGrid v3 Mail Send API: POST /v3/mail/send JSON with a Bearer key -> 202 and ``X-Message-Id``.

Errors come in SendGrid's body ``{"errors": [{"message", "field", "help"}]}``; rate limits with ``X-RateLimit-*``.
"""

from __future__ import annotations

import secrets
from typing import Any

import attrs
from aiohttp import web

from tests.support.fakeservers.scripted import RecordedRequest, Reply, ScriptedServer


def sendgrid_error(
    status: int,
    message: str,
    field: str | None = None,
    help_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """SendGrid's error body, as its API sends it."""
    return Reply(status, {"errors": [{"message": message, "field": field, "help": help_url}]}, headers or {})


@attrs.define
class FakeSendGrid(ScriptedServer):
    api_key: str = "SG.fake-key"
    accepted: list[dict[str, Any]] = attrs.Factory(list)  # the JSON bodies of accepted sends
    message_ids: list[str] = attrs.Factory(list)  # the X-Message-Id of each, in order

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/mail/send", self._serve(self._send))
        return app

    async def _send(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json(sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked"))
        payload = recorded.json()
        for field in ("personalizations", "from", "subject", "content"):
            if not payload.get(field):
                return _json(sendgrid_error(400, f"The {field} field is required.", field))
        self.accepted.append(payload)
        self.message_ids.append(secrets.token_urlsafe(16))
        return web.Response(status=202, headers={"X-Message-Id": self.message_ids[-1]})


def _json(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
