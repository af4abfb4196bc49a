"""A local Sentry ingest endpoint: ``POST /api/<project>/envelope/`` with real SDK envelopes (gzip or plain).

Each envelope is decoded into its header and items; ``events()`` gives the error events' payloads and
``raw_bodies`` the decompressed bytes, for searching canaries in everything the SDK sent.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import attrs
from aiohttp import web

from tests.support.fakeservers.scripted import RecordedRequest, ScriptedServer

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"


@attrs.frozen
class EnvelopeItem:
    headers: dict[str, Any]
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


@attrs.frozen
class Envelope:
    project: str
    headers: dict[str, Any]
    items: list[EnvelopeItem]


def parse_envelope(project: str, body: bytes) -> Envelope:
    """Sentry's envelope format: a JSON header line, then per item a JSON header line and its payload
    (``length`` bytes when given, else up to the next newline)."""
    header_line, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        item_headers = json.loads(item_header_line)
        length = item_headers.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append(EnvelopeItem(item_headers, payload))
    return Envelope(project, json.loads(header_line), items)


def _decoded(body: bytes) -> bytes:
    """aiohttp already undoes a ``Content-Encoding: gzip`` (or deflate) it declares; a body still gzipped
    (magic bytes) is unpacked here. The SDK sends gzip unless the optional ``brotli`` module is installed."""
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


@attrs.define
class FakeSentry(ScriptedServer):
    project: str = "42"
    envelopes: list[Envelope] = attrs.Factory(list)
    raw_bodies: list[bytes] = attrs.Factory(list)

    @property
    def dsn(self) -> str:
        return f"{self.base_url.replace('http://', f'http://{PUBLIC_KEY}@')}/{self.project}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self._serve(self._envelope))
        return app

    async def _envelope(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        if f"sentry_key={PUBLIC_KEY}" not in request.headers.get("X-Sentry-Auth", ""):
            return web.json_response({"detail": "missing or wrong sentry_key"}, status=401)
        if request.headers.get("Content-Encoding", "").lower() not in ("", "identity", "gzip", "deflate"):
            return web.json_response({"detail": "content encoding not supported by the fake"}, status=415)
        body = _decoded(recorded.body)
        self.raw_bodies.append(body)
        envelope = parse_envelope(request.match_info["project"], body)
        self.envelopes.append(envelope)
        return web.json_response({"id": envelope.headers.get("event_id")})

    def events(self) -> list[dict[str, Any]]:
        """The payloads of every error event received, in order."""
        return [item.json() for env in self.envelopes for item in env.items if item.headers.get("type") == "event"]
