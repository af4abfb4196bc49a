"""Unit tests run the domain with in-memory fakes only: any socket use is an error here."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket


@pytest.fixture(autouse=True)
def _no_network() -> None:
    disable_socket(allow_unix_socket=False)
