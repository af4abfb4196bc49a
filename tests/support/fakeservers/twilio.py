"""A local Twilio Programmable Messaging API: create and list Messages with Twilio's JSON bodies and errors.

Speaks ``/2010-04-01/Accounts/{AccountSid}/Messages.json``: POST form-encoded (To, From or MessagingServiceSid,
Body, StatusCallback) with basic auth -> 201 with the message resource (status ``queued``); GET lists messages,
newest first, filtered by To, From and DateSent (``DateSent``, ``DateSent<``, ``DateSent>``; dates compared by day).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import secrets
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import attrs
from aiohttp import web

from tests.support.fakeservers.scripted import RecordedRequest, Reply, ScriptedServer


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    """Twilio's error body, as its API sends it."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body, headers or {})


def _rfc2822(moment: datetime) -> str:
    return email.utils.format_datetime(moment)


@attrs.define
class FakeTwilio(ScriptedServer):
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-auth-token"
    now: Callable[[], datetime] = attrs.field(kw_only=True)
    messages: list[dict[str, Any]] = attrs.Factory(list)
    status_callbacks: dict[str, str] = attrs.Factory(dict)  # message sid -> the StatusCallback URL given
    message_created: asyncio.Event = attrs.Factory(asyncio.Event)  # set at every create

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._serve(self._create))
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._serve(self._list))
        return app

    def _authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}" and request.match_info["sid"] == (
            self.account_sid
        )

    async def _create(self, request: web.Request, _recorded: RecordedRequest) -> web.StreamResponse:
        if not self._authorized(request):
            return _json(twilio_error(401, 20003, "Authenticate"))
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        if not to:
            return _json(twilio_error(400, 21604, "A 'To' phone number is required."))
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _json(twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required."))
        if len(body) > 1600:
            return _json(twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit."))
        created = self.now()
        sid = "SM" + secrets.token_hex(16)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"
        message = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": _rfc2822(created),
            "date_sent": None,
            "date_updated": _rfc2822(created),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": str(form["From"]) if form.get("From") else None,
            "messaging_service_sid": str(form["MessagingServiceSid"]) if form.get("MessagingServiceSid") else None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }
        self.messages.append(message)
        self.message_created.set()
        if form.get("StatusCallback"):
            self.status_callbacks[sid] = str(form["StatusCallback"])
        return web.json_response(message, status=201)

    async def _list(self, request: web.Request, _recorded: RecordedRequest) -> web.StreamResponse:
        if not self._authorized(request):
            return _json(twilio_error(401, 20003, "Authenticate"))
        query = request.query
        page_size = int(query.get("PageSize", "50"))
        found = [m for m in reversed(self.messages) if _matches(m, query)][:page_size]
        uri = request.path_qs
        return web.json_response(
            {
                "end": max(len(found) - 1, 0),
                "first_page_uri": uri,
                "messages": found,
                "next_page_uri": None,
                "page": 0,
                "page_size": page_size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )


def _sent_day(message: dict[str, Any]) -> date | None:
    sent = message["date_sent"]
    return email.utils.parsedate_to_datetime(sent).date() if sent else None


def _matches(message: dict[str, Any], query: Any) -> bool:
    if "To" in query and message["to"] != query["To"]:
        return False
    if "From" in query and message["from"] != query["From"]:
        return False
    day = _sent_day(message)
    for name, accept in (
        ("DateSent", lambda d, bound: d == bound),
        ("DateSent<", lambda d, bound: d <= bound),
        ("DateSent>", lambda d, bound: d >= bound),
    ):
        if name in query:
            bound = date.fromisoformat(query[name][:10])
            if day is None or not accept(day, bound):
                return False
    return True


def _json(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
