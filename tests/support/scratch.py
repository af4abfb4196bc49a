"""Scratch resources for the messaging tests: a Redis key prefix, a migrated Postgres database, running fake servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from redis.asyncio import Redis

from adapters.postgres.migrator import migrate
from adapters.postgres.pool import PostgresDatabase
from tests.support.fakeservers.scripted import ScriptedServer

S = TypeVar("S", bound=ScriptedServer)

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"

# Canary values: none of them may ever appear in an exception message, a log line or a failure reason.
CANARY_PHONE = "+14155550199"
CANARY_ADDRESS = "canary.patient@example.org"
CANARY_PAYMENT_LINK = "https://pay.example.org/i/CANARY-7f3a"
CANARY_BODY = f"Hi Canary, your balance is due: {CANARY_PAYMENT_LINK}"
CANARIES = (CANARY_PHONE, CANARY_PHONE[1:], CANARY_ADDRESS, CANARY_PAYMENT_LINK, "Canary", "CANARY")


def assert_no_canary(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"canary {canary[:4]}... leaked"


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client of the shared Redis and a key prefix of our own, whose keys are deleted afterwards."""
    client = Redis(host="127.0.0.1", port=6379)
    prefix = f"test-{uuid.uuid4().hex}"
    try:
        yield client, prefix
    finally:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@asynccontextmanager
async def scratch_dsn() -> AsyncIterator[str]:
    """A fresh database with every migration applied (the postgres adapter's runner), dropped afterwards."""
    name = f"cf_messaging_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'create database "{name}"')
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        await migrate(dsn)
        yield dsn
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


@asynccontextmanager
async def scratch_database() -> AsyncIterator[PostgresDatabase]:
    """A pool on a fresh migrated database."""
    async with scratch_dsn() as dsn:
        database = await PostgresDatabase.connect(dsn, min_size=1, max_size=4)
        try:
            yield database
        finally:
            await database.close()


@asynccontextmanager
async def running(server: S) -> AsyncIterator[S]:
    await server.start()
    try:
        yield server
    finally:
        await server.close()
