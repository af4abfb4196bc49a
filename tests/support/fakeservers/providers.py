"""The fake Twilio and SendGrid served from an event loop on a daemon thread of their own.

The system and end-to-end suites block on subprocesses (workers, supervisord, the Node producer) while the programs
under test call the providers, so the fakes must keep answering outside the test's own event loop, and they outlive
a single test's loop. Each suite subclasses ``Providers`` for the servers and look-ups only it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from tests.support.fakeservers.scripted import ScriptedServer
from tests.support.fakeservers.sendgrid import FakeSendGrid
from tests.support.fakeservers.twilio import FakeTwilio


def now_utc() -> datetime:
    """The wall clock: the fake Twilio stamps its messages with it, and the suites seed their data by it."""
    return datetime.now(UTC)


class Providers:
    """The fake Twilio and SendGrid, served from their own event loop on a daemon thread."""

    def __init__(self, thread_name: str = "fake-providers") -> None:
        self.twilio = FakeTwilio(now=now_utc)
        self.sendgrid = FakeSendGrid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=thread_name, daemon=True)

    def servers(self) -> tuple[ScriptedServer, ...]:
        """The servers started (and closed) in this order; a subclass adds its own."""
        return (self.twilio, self.sendgrid)

    def start(self) -> None:
        self._thread.start()
        for server in self.servers():
            self._call(server.start())

    def stop(self) -> None:
        for server in self.servers():
            self._call(server.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def sms_to(self, phone: str) -> list[dict[str, Any]]:
        """The messages the fake Twilio created for this number, oldest first."""
        return [m for m in list(self.twilio.messages) if m["to"] == phone]

    def mail_to(self, address: str) -> list[dict[str, Any]]:
        """The mail bodies the fake SendGrid accepted for this address, oldest first."""
        return [
            mail
            for mail in list(self.sendgrid.accepted)
            if any(to["email"] == address for p in mail["personalizations"] for to in p["to"])
        ]


P = TypeVar("P", bound=Providers)


@contextlib.contextmanager
def running(providers: P) -> Iterator[P]:
    """``providers`` started for the block, stopped afterwards."""
    providers.start()
    try:
        yield providers
    finally:
        providers.stop()
