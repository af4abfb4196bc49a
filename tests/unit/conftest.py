"""Unit tests run the domain with in-memory fakes only: any network socket use is an error here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    # Unix sockets stay allowed: asyncio's event loop needs a socketpair for its self-pipe, and they reach no network.
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
