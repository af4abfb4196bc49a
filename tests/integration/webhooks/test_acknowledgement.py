"""Fast acknowledgement: the webhooks program's pool makes a status callback one statement on the wire, prepared
and planned before the first callback arrives; the per-callback log line costs nothing above debug level."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import aiohttp
import pytest
import structlog
from yarl import URL

from adapters.clock import SystemClock
from adapters.health.server import running_health_server
from adapters.observability.logging import configure_logging
from adapters.postgres import PostgresDatabase, PostgresSendLedger
from adapters.postgres.feedback import PostgresDeliveryFeedback, open_acknowledging_database
from adapters.webhooks.server import WebhookHandlers, build_webhooks_app
from adapters.webhooks.twilio import TwilioWebhooks
from domain.feedback import DeliveryProgress
from domain.messages import LedgerState, SendClaim
from domain.values import Channel, ContactId, MessagePurpose, OrgId
from tests.integration.webhooks.conftest import Webhooks
from tests.integration.webhooks.test_twilio_webhooks import KEY, PHONE, T0, claimed, post_status, status_path
from tests.support.fakeservers.webhook_signing import AUTH_TOKEN, PUBLIC_URL, twilio_headers

if TYPE_CHECKING:
    from adapters.postgres.pool import Connection

POOL_SIZE = 3


@pytest.fixture
async def acknowledging(db: PostgresDatabase, webhooks_database: str) -> AsyncIterator[PostgresDatabase]:
    """The webhooks program's pool on the (emptied) test database."""
    database = await open_acknowledging_database(webhooks_database, size=POOL_SIZE)
    try:
        yield database
    finally:
        await database.close()


async def every_connection(database: PostgresDatabase) -> AsyncIterator[Connection]:
    """Each of the pool's connections, all held at once (so none is handed out twice)."""
    async with AsyncExitStack() as stack:
        held = await asyncio.gather(*(stack.enter_async_context(database.connection()) for _ in range(POOL_SIZE)))
        for connection in held:
            yield connection


async def test_every_connection_has_the_callback_statement_prepared_and_planned_from_the_start(
    acknowledging: PostgresDatabase,
) -> None:
    """All connections are open before any callback, and each holds the compare-and-set UPDATE with a kept
    (generic) plan, so no callback pays connecting, parsing or planning."""
    plans = []
    async for connection in every_connection(acknowledging):
        plans.append(
            await connection.fetchval(
                "select max(generic_plans) from pg_prepared_statements where statement ~ '^\\s*update send_ledger'"
            )
        )
    assert len(plans) == POOL_SIZE
    assert all(plan is not None and plan >= 1 for plan in plans), plans


async def test_a_status_callback_is_one_statement_on_the_wire(acknowledging: PostgresDatabase) -> None:
    """Moving an UNKNOWN entry to delivered sends the database exactly one statement: no BEGIN/COMMIT, no SELECT,
    no reset on release; the entry is settled all the same."""
    sent: list[str] = []
    async for connection in every_connection(acknowledging):
        connection.add_query_logger(lambda record: sent.append(record.query))
    handlers = WebhookHandlers(
        PostgresDeliveryFeedback(acknowledging), SystemClock(), TwilioWebhooks(AUTH_TOKEN, PUBLIC_URL), None, 65536
    )
    ledger = PostgresSendLedger(acknowledging)
    claim = SendClaim(KEY, OrgId("org-1"), ContactId("c-1"), Channel.SMS, MessagePurpose.TRANSACTIONAL, PHONE)
    await ledger.claim(claim, T0)
    await ledger.mark_unknown(KEY, (await ledger.get(KEY)).version, "timeout", T0)  # type: ignore[union-attr]
    sent.clear()
    form = {"MessageSid": "SM42", "MessageStatus": "delivered", "AccountSid": "AC1"}
    async with (
        running_health_server(build_webhooks_app(handlers), "127.0.0.1", 0) as port,
        aiohttp.ClientSession() as http,
        http.post(
            URL(f"http://127.0.0.1:{port}{status_path()}", encoded=True),
            data=form,
            headers=twilio_headers(status_path(), form),
        ) as answer,
    ):
        assert answer.status == 204
    assert len(sent) == 1, sent
    assert sent[0].lstrip().startswith("update send_ledger")
    entry = await ledger.get(KEY)
    assert entry is not None
    assert (entry.state, entry.provider_message_id) == (LedgerState.SENT, "SM42")
    assert await PostgresDeliveryFeedback(acknowledging).progress(KEY) is DeliveryProgress.DELIVERED


async def test_a_connection_released_inside_a_transaction_comes_back_without_it(
    acknowledging: PostgresDatabase,
) -> None:
    """Skipping the reset statement keeps asyncpg's rollback: a transaction left open is not handed on."""
    async with acknowledging.connection() as connection:
        await connection.execute("begin")
        await connection.execute("select pg_current_xact_id()")
    async for connection in every_connection(acknowledging):
        assert not connection.is_in_transaction()
        assert await connection.fetchval("select pg_current_xact_id_if_assigned()") is None


@pytest.mark.parametrize(("level", "logged"), [("debug", True), ("info", False)])
async def test_a_status_callback_is_logged_at_debug_level_only(webhooks: Webhooks, level: str, logged: bool) -> None:
    """The per-callback line (``delivery_status_received``) is written at debug level and skipped, not filtered,
    above it."""
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(level, production=True, stream=stream)
    try:
        await claimed(webhooks)
        assert await post_status(webhooks, "delivered") == 204
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        structlog.reset_defaults()
    assert ('"delivery_status_received"' in stream.getvalue()) is logged
