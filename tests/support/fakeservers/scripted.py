"""What the fake provider servers share: a script of next answers per test, and a record of every request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
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
class Stall:
    """Behave normally (the request takes effect at once), but hold the answer back this long."""

    seconds: float


@attrs.frozen
class Reset:
    """Close the connection without answering (after the request has been read)."""


@attrs.frozen
class Hang:
    """Hold the request this long, then answer 503 without acting on it: a request that never took effect (the
    sender may die meanwhile)."""

    seconds: float


Step = Reply | Delay | Stall | Reset | Hang


@attrs.frozen
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[web.Request, RecordedRequest], Awaitable[web.StreamResponse]]


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

    def _serve(self, handle: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """An aiohttp handler: record the request, apply the next scripted step, else answer normally."""

        async def serve(request: web.Request) -> web.StreamResponse:
            recorded = await self._record(request)
            step = self._steps.pop(0) if self._steps else None
            if isinstance(step, Reset):
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never written: the socket is gone
            if isinstance(step, Reply):
                body = "" if step.body is None else json.dumps(step.body)
                return web.Response(
                    status=step.status, text=body, headers=step.headers, content_type="application/json"
                )
            if isinstance(step, Hang):
                await asyncio.sleep(step.seconds)
                return web.Response(status=503)
            if isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
            answer = await handle(request, recorded)
            if isinstance(step, Stall):
                await asyncio.sleep(step.seconds)
            return answer

        return serve

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)  # stalled handlers: cancel
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
