"""The hiredis command packing we give redis-py's async connections writes exactly what its Python packing writes."""

from __future__ import annotations

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import DataError

from adapters.bullmq.connection import HiredisPackingConnection

COMMANDS = [
    ("EVALSHA", "a" * 40, 3, "bull:q:wait", "bull:q:active", b"\x93\xa1x\x01\xc0", 1732800000000, 0.5, "héllo ✓"),
    ("CONFIG GET", "maxmemory-policy"),
    ("SET", "k", "", "PX", 1000),
    ("GET", b"binary key with spaces"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_hiredis_packing_matches_redis_py(command: tuple[object, ...]) -> None:
    """Commands with str, bytes, ints, floats, UTF-8 and a two-word name pack to the same bytes either way."""
    python = redis_asyncio.Connection()
    fast = HiredisPackingConnection()
    assert b"".join(fast.pack_command(*command)) == b"".join(python.pack_command(*command))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [{"a": 1}, True])
def test_a_value_redis_cannot_take_is_refused(value: object) -> None:
    """A dict or a bool is refused with redis-py's DataError before anything is sent, as its own packing does."""
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", value)  # type: ignore[arg-type]
