"""One Redis connection that many tasks share, their commands pipelined: the worker's hot path (``moveToFinished``).

Why: with redis-py's pool each of the worker's concurrent jobs finishes on a connection of its own, so every job
costs one ``send`` and one ``recv`` system call (on loopback the kernel runs Redis's side of TCP inside our
``send``), a pool checkout and release, a task for the write timeout and redis-py's per-command instrumentation:
~30 us of our CPU per command against ~4 us here (measured, bench/README.md issue 15), and Redis serves 50
sockets instead of one. npm bullmq's client (ioredis) works as this one does: one connection, commands written
in order, replies matched to them in order (Redis answers each connection's commands in the order it read them).

How: the commands issued in one turn of the event loop are written with one ``write``; replies are parsed with
hiredis, errors mapped to redis-py's exception classes (``NOSCRIPT`` -> ``NoScriptError``, so a redis-py
``AsyncScript`` reloads its script as with a ``Redis`` client). A lost connection fails every command in flight
with redis-py's ``ConnectionError``; no command waits longer than the socket timeout without the connection
making progress (then ``TimeoutError``, and the connection is dropped). The next command reconnects (after a
failed connect, commands fail at once for ``RECONNECT_AFTER_S``). Nothing is
retried here: a caller that may repeat its command retries through the pooled client, whose retry policy applies.

Plain TCP to one server only (the worker's settings without TLS, Sentinel or Cluster); :func:`open_pipelined_redis`
returns None otherwise and the worker keeps using its pool.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Awaitable
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from adapters.bullmq.connection import RedisSettings

WATCHDOG_EVERY_S = 1.0
"""How often a connection with commands in flight checks that Redis still answers."""
RECONNECT_AFTER_S = 1.0
"""After a failed connect, commands fail at once (their callers fall back to the pool) for this long, so that an
unreachable server costs one connect timeout, not one per waiting command."""


class _Connection(asyncio.Protocol):
    """One socket: commands in, replies matched to their futures in order."""

    def __init__(self, timeout_s: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(encoding="utf-8", replyError=BaseParser.parse_error)
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._timeout_s = timeout_s
        self._progress_at = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._lost: Exception | None = None

    @property
    def usable(self) -> bool:
        return self._transport is not None and self._lost is None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        if self._timeout_s is not None:
            self._watchdog = self._loop.call_later(WATCHDOG_EVERY_S, self._check_progress)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self._progress_at = self._loop.time()
        pending = self._pending
        while (reply := self._reader.gets()) is not False:
            future = pending.popleft()
            if future.done():  # its caller was cancelled; the reply is dropped
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            reason = f": {type(exc).__name__}" if exc is not None else ""
            self._lost = RedisConnectionError(f"Redis closed the pipelined connection{reason}")
        if self._watchdog is not None:
            self._watchdog.cancel()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(self._lost)

    def _check_progress(self) -> None:
        assert self._timeout_s is not None
        assert self._transport is not None
        if self._pending and self._loop.time() - self._progress_at > self._timeout_s:
            self._lost = RedisTimeoutError(f"Redis sent no reply for {self._timeout_s:g} s")
            self._transport.abort()  # connection_lost fails the commands in flight
            return
        self._watchdog = self._loop.call_later(WATCHDOG_EVERY_S, self._check_progress)

    def send(self, args: tuple[EncodableT, ...]) -> asyncio.Future[Any]:
        """Queue one command for this turn's write; the future gets its reply (or the error Redis answered)."""
        if self._lost is not None:
            raise self._lost
        if not self._outgoing:
            self._loop.call_soon(self._flush)
            if not self._pending:
                self._progress_at = self._loop.time()
        self._outgoing.append(hiredis.pack_command(args))  # type: ignore[arg-type]  # its stub types a 1-tuple
        future = self._loop.create_future()
        self._pending.append(future)
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and self._lost is None:
            self._transport.write(b"".join(outgoing))  # an error surfaces in connection_lost

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class PipelinedRedis:
    """The few commands a ``redis.asyncio.Redis`` offers that redis-py's ``AsyncScript`` calls (``evalsha``,
    ``script_load``), over one pipelined connection, opened on first use and again after a loss."""

    def __init__(self, settings: RedisSettings, timeout_s: float | None = None) -> None:
        """``timeout_s``: how long commands in flight may go without a reply (default: the settings' socket
        timeout, which must exceed the worker's longest blocking wait; none of ours blocks)."""
        self._settings = settings
        self._timeout_s = timeout_s if timeout_s is not None else settings.socket_timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._failed_at: float | None = None

    def execute_command(self, *args: EncodableT) -> Awaitable[Any]:
        """Send one command; await its decoded reply. Raises redis-py's ``ResponseError`` family for an error
        reply, ``ConnectionError`` / ``TimeoutError`` when the connection is lost or Redis stops answering.
        (A plain function returning the reply's future when connected: no coroutine per command.)"""
        connection = self._connection
        if connection is not None and connection.usable:
            return connection.send(args)
        return self._connect_and_send(args)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: EncodableT) -> Awaitable[Any]:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def _connect_and_send(self, args: tuple[EncodableT, ...]) -> Any:
        connection = await self._connect()
        return await connection.send(args)

    async def script_load(self, script: str) -> str:
        sha: str = await self.execute_command("SCRIPT", "LOAD", script)
        return sha

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and self._connection.usable:
                return self._connection
            loop = asyncio.get_running_loop()
            if self._failed_at is not None and loop.time() - self._failed_at < RECONNECT_AFTER_S:
                raise RedisConnectionError("the pipelined connection could not be opened a moment ago")
            try:
                connection = await self._open()
            except Exception:
                self._failed_at = loop.time()  # when the attempt ended (a connect timeout can take seconds)
                raise
            self._failed_at = None
            self._connection = connection
            return connection

    async def _open(self) -> _Connection:
        settings = self._settings
        loop = asyncio.get_running_loop()
        try:
            transport, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self._timeout_s), settings.host, settings.port),
                settings.connect_timeout_s,
            )
        except (OSError, TimeoutError) as error:
            raise RedisConnectionError(
                f"cannot connect to Redis at {settings.host}:{settings.port}: {type(error).__name__}"
            ) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        try:
            if settings.password is not None:
                credentials = (settings.username, settings.password) if settings.username else (settings.password,)
                await connection.send(("AUTH", *credentials))
            if settings.db:
                await connection.send(("SELECT", settings.db))
        except BaseException:
            connection.close()
            raise
        return connection


def open_pipelined_redis(settings: RedisSettings) -> PipelinedRedis | None:
    """A pipelined client for a plain single server; None for TLS, Sentinel or Cluster settings (the worker then
    finishes jobs through its pool)."""
    if settings.tls or settings.sentinels or settings.cluster_nodes:
        return None
    return PipelinedRedis(settings)
