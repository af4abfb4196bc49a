"""A worker stand-in for the SIGKILL tests: deliver one SMS through the real ledger and Twilio adapter, then exit.

Run as ``python -m tests.integration.messaging.send_in_child '<json settings>'``; the test kills it mid-send.
With ``hold_in_limiter`` it first takes the rate limiter's only slot, so its send waits in the limiter, after the
claim has committed and before any provider request.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from adapters.clock import SystemClock
from adapters.messaging.rate_limit import RedisRateLimiter
from adapters.messaging.twilio_sms import TwilioSmsSender
from adapters.postgres import PostgresDatabase, PostgresSendLedger
from domain.delivery import Dispatcher
from tests.integration.messaging.exactly_once_world import CLAIM, MESSAGE
from tests.support.fakes.senders import FakeEmailSender


async def main(settings: dict[str, Any]) -> None:
    clock = SystemClock()
    database = await PostgresDatabase.connect(settings["dsn"])
    redis = Redis(host="127.0.0.1", port=6379)
    limiter = RedisRateLimiter(
        redis, f"{settings['prefix']}:limit", per_second=0.01, clock=clock, max_wait=timedelta(minutes=5)
    )
    if settings["hold_in_limiter"]:
        await limiter.acquire()  # the next slot is 100 s away
    sms = TwilioSmsSender(
        account_sid=settings["account_sid"],
        auth_token=settings["auth_token"],
        sender="+15005550006",
        redis=redis,
        clock=clock,
        rate_limiter=limiter,
        base_url=settings["twilio_url"],
        timeout=timedelta(minutes=5),
        record_prefix=f"{settings['prefix']}:twilio",
    )
    # A settle period above the 5-minute request bound: the claim's deadline lets the request that hangs be written.
    settle = timedelta(minutes=10)
    dispatcher = Dispatcher(PostgresSendLedger(database), sms, FakeEmailSender(clock), clock, settle=settle)
    await dispatcher.deliver(CLAIM, MESSAGE)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
