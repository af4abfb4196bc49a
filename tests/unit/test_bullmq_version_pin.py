"""The start-up check pinning the bullmq release whose internals adapters/bullmq/patched_worker.py overrides."""

from __future__ import annotations

import importlib.metadata

import pytest

from adapters.bullmq.patched_worker import BULLMQ_VERSION, check_bullmq_version
from domain.errors import ConfigurationError


def test_the_installed_bullmq_is_the_pinned_release() -> None:
    assert importlib.metadata.version("bullmq") == BULLMQ_VERSION
    check_bullmq_version()


@pytest.mark.parametrize("other", ["3.4.5", "3.5.0", "2.19.0"])
def test_another_release_is_refused_naming_both_versions_and_the_module(other: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_bullmq_version(other)
    message = str(refused.value)
    assert other in message
    assert BULLMQ_VERSION in message
    assert "patched_worker.py" in message
