"""The PersonalizationRecorder port's contract, run on the recording fake and on the metrics recorder: every kind of
outcome (used, each fallback, no model) is recorded in-process without raising."""

from __future__ import annotations

import pytest

from adapters.observability.metrics import MetricsRecorder
from adapters.observability.personalization import MetricsPersonalizationRecorder
from domain.personalization import FallbackReason, PersonalizationOutcome, PersonalizationRecorder
from domain.values import Channel, OrgId
from tests.support.fakes.personalization import RecordingPersonalizationRecorder

OUTCOMES = [
    PersonalizationOutcome(OrgId("org-1"), Channel.SMS, None, "small-model", 120, 40),
    PersonalizationOutcome(OrgId("org-1"), Channel.EMAIL, FallbackReason.TIMEOUT, "small-model"),
    *(PersonalizationOutcome(OrgId("org-2"), Channel.SMS, reason) for reason in FallbackReason),
]


@pytest.fixture(params=["fake", "metrics"])
def recorder(request: pytest.FixtureRequest) -> PersonalizationRecorder:
    if request.param == "fake":
        return RecordingPersonalizationRecorder()
    return MetricsPersonalizationRecorder(MetricsRecorder("contract-test"))


def test_every_outcome_is_recorded_without_raising(recorder: PersonalizationRecorder) -> None:
    for outcome in OUTCOMES:
        assert recorder.record(outcome) is None  # type: ignore[func-returns-value]  # the port returns nothing
