"""In-memory fakes of the personalization ports; each passes the contract suite of its real adapter."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import attrs

from domain.personalization import (
    DailyBudget,
    PersonalizationFailed,
    PersonalizationOutcome,
    PersonalizationRequest,
    PersonalizedCopy,
    StoredCopy,
)
from domain.values import Channel, OrgId

FAKE_MODEL = "fake-small-model"


@attrs.define
class FakeCopyPersonalizer:
    """Answers from ``script`` in order (a copy, or an error to raise); with an empty script, echoes the request
    with ``greeting`` prepended. ``requests`` records everything it was asked."""

    script: list[PersonalizedCopy | PersonalizationFailed] = attrs.Factory(list)
    requests: list[PersonalizationRequest] = attrs.Factory(list)
    greeting: str = "Hello again! "

    async def personalize(self, request: PersonalizationRequest) -> PersonalizedCopy:
        self.requests.append(request)
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, PersonalizationFailed):
                raise answer
            return answer
        subject = request.subject if request.channel is Channel.EMAIL else None
        return PersonalizedCopy(self.greeting + request.body, subject, FAKE_MODEL, len(request.body) // 4, 20)


@attrs.define
class InMemoryPersonalizedCopies:
    copies: dict[str, StoredCopy] = attrs.Factory(dict)

    async def get(self, ledger_key: str) -> StoredCopy | None:
        return self.copies.get(ledger_key)

    async def keep(self, copy: StoredCopy, at: datetime) -> StoredCopy:
        return self.copies.setdefault(copy.ledger_key, copy)


@attrs.define
class InMemoryPersonalizationBudgets:
    """``used[(org, day)]`` is ``[requests, tokens]``."""

    used: defaultdict[tuple[OrgId, date], list[int]] = attrs.Factory(lambda: defaultdict(lambda: [0, 0]))

    async def take(self, org_id: OrgId, day: date, budget: DailyBudget) -> bool:
        used = self.used[(org_id, day)]
        if used[0] >= budget.requests or used[1] >= budget.tokens:
            return False
        used[0] += 1
        return True

    async def spend(self, org_id: OrgId, day: date, tokens: int) -> None:
        self.used[(org_id, day)][1] += tokens


@attrs.define
class RecordingPersonalizationRecorder:
    outcomes: list[PersonalizationOutcome] = attrs.Factory(list)

    def record(self, outcome: PersonalizationOutcome) -> None:
        self.outcomes.append(outcome)
