"""OTEL_TRACES_SAMPLER as declared in the settings builds the sampler the OpenTelemetry SDK builds from the same
variable (the SDK environment variable specification's names), so declaring it changed no one's traces."""

from __future__ import annotations

from typing import get_args

import pytest
from opentelemetry.sdk.trace import TracerProvider

from adapters.observability.tracing import DEFAULT_SAMPLER, sampler_named
from entrypoints.settings import Settings, TracesSampler


def _sdk_sampler_description(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> str:
    """What the SDK's TracerProvider, given no sampler, builds from OTEL_TRACES_SAMPLER(_ARG) in ``environ``."""
    for variable in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    description: str = TracerProvider(shutdown_on_exit=False).sampler.get_description()
    return description


@pytest.mark.parametrize("name", get_args(TracesSampler))
def test_each_declared_name_is_the_sdk_sampler_of_that_name(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    built = sampler_named(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    sdk = {"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    assert built.get_description() == _sdk_sampler_description(monkeypatch, sdk)


def test_the_default_is_the_sdk_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing set: the sampler the settings give is the one the SDK used when nothing was set (ParentBased on
    AlwaysOn), and init_tracing's own default is that one too."""
    settings = Settings.from_env({})
    built = sampler_named(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    assert built.get_description() == _sdk_sampler_description(monkeypatch, {})
    assert DEFAULT_SAMPLER.get_description() == built.get_description()
    assert "AlwaysOnSampler" in built.get_description()


@pytest.mark.parametrize("name", ["jaeger_remote", "parentbased_", "ALWAYS_ON", ""])
def test_an_unknown_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown trace sampler"):
        sampler_named(name)
