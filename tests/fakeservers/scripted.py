"""What the fake provider servers share: a script of next answers per test, and a record of every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web


@attrs.frozen
class Reply:
    """Answer with this status, JSON body and headers instead of the normal behaviour."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = attrs.Factory(dict)


@attrs.frozen
class Delay:
    """Wait this long, then behave normally (the request takes effect: a slow but successful provider)."""

    seconds: float


@attrs.frozen
class Reset:
    """Close the connection without answering (after the request has been read)."""


Step = Reply | Delay | Reset


@attrs.frozen
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class ScriptedServer:
    """Base of the fakes: ``script(...)`` queues the next answers; ``requests`` holds every request received."""

    requests: list[RecordedRequest] = attrs.Factory(list)
    _steps: list[Step] = attrs.Factory(list)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    async def _record(self, request: web.Request) -> RecordedRequest:
        recorded = RecordedRequest(
            request.method, request.path, dict(request.query), dict(request.headers), await request.read()
        )
        self.requests.append(recorded)
        return recorded

    async def _scripted(self, request: web.Request) -> web.StreamResponse | None:
        """The scripted answer to this request, or None to handle it normally."""
        if not self._steps:
            return None
        step = self._steps.pop(0)
        if isinstance(step, Delay):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, Reset):
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never written: the socket is gone
        body = "" if step.body is None else json.dumps(step.body)
        return web.Response(status=step.status, text=body, headers=step.headers, content_type="application/json")

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
