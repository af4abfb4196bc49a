"""AI personalization of message copy: what the model is given, what it gives back, and the ports around it.

A template opts in with an instruction written by its org; the model then rewrites the rendered copy, and the
guard rails of ``domain.copy_guard`` decide whether its answer may be sent. The copy chosen for a send (the model's
or, on any failure, the plain template's) is stored under the send's ledger key before the provider call, so a
retry or a crash re-sends the same words and never asks the model again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from typing import Protocol

import attrs

from domain.values import Channel, OrgId


class FallbackReason(enum.StrEnum):
    """Why the plain template was sent instead of the model's copy (a bounded set: metric labels, logs)."""

    BUDGET_EXHAUSTED = "budget_exhausted"
    CLAIMED_BEFORE = "claimed_before"  # the ledger had the send before any copy was stored: keep its words
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    PROVIDER_ERROR = "provider_error"  # 5xx, a reset, a refused connection
    MISCONFIGURED = "misconfigured"  # key refused, unknown model, bad request
    REFUSED = "refused"  # the model declined, or its content filter stopped it
    MALFORMED_ANSWER = "malformed_answer"  # not the JSON shape asked for, or cut off at the token limit
    EMPTY = "empty"
    REQUIRED_LINK_DROPPED = "required_link_dropped"
    REQUIRED_LITERAL_DROPPED = "required_literal_dropped"
    LINK_ADDED = "link_added"
    PHONE_ADDED = "phone_added"
    EMAIL_ADDED = "email_added"
    PLACEHOLDER_LEFT = "placeholder_left"  # ``{{`` or ``}}`` in the answer
    TOO_LONG = "too_long"  # over the channel's limit (SMS body length)
    SUBJECT_LINE_BREAK = "subject_line_break"


class PersonalizationFailed(Exception):
    """The personalizer could not give an answer; ``reason`` says why (never the prompt, answer or key)."""

    def __init__(self, reason: FallbackReason) -> None:
        self.reason = reason
        super().__init__(f"personalization failed: {reason}")


@attrs.frozen
class PersonalizationRequest:
    """Everything the model sees, and nothing else.

    ``body`` (and ``subject`` for email) is the rendered template; ``instruction`` the org's own words;
    ``values`` only the personalization values the template uses that carry no contact details (see
    ``copy_guard.values_for_model``). ``max_body_chars`` is the channel's limit on the answer's body.
    """

    channel: Channel
    instruction: str = attrs.field(repr=False)
    body: str = attrs.field(repr=False)
    subject: str | None = attrs.field(repr=False)
    values: Mapping[str, str] = attrs.field(repr=False)
    max_body_chars: int


@attrs.frozen
class PersonalizedCopy:
    """The model's answer with what it cost: ``subject`` is None for SMS; tokens as the provider counts them."""

    body: str = attrs.field(repr=False)
    subject: str | None = attrs.field(repr=False)
    model: str
    input_tokens: int
    output_tokens: int


class CopySource(enum.StrEnum):
    MODEL = "model"
    TEMPLATE = "template"


@attrs.frozen
class StoredCopy:
    """The words chosen for one send, kept under its ledger key; ``fallback`` is None when the model's are used."""

    ledger_key: str
    source: CopySource
    body: str = attrs.field(repr=False)  # the SMS body, or the email's plain-text part
    subject: str | None = attrs.field(repr=False)
    html: str | None = attrs.field(repr=False)
    fallback: FallbackReason | None = None


@attrs.frozen
class DailyBudget:
    """An org's allowance per local calendar day: model requests, and tokens (input plus output)."""

    requests: int
    tokens: int


@attrs.frozen
class PersonalizationOutcome:
    """What one personalization attempt came to, for metrics and traces: content-free by construction."""

    org_id: OrgId
    channel: Channel
    fallback: FallbackReason | None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


class CopyPersonalizer(Protocol):
    async def personalize(self, request: PersonalizationRequest) -> PersonalizedCopy:
        """Ask the model once for copy that follows ``request.instruction``; return its answer unchecked (the
        guard rails are the domain's). The prompt is built from ``request`` alone.

        Raises PersonalizationFailed with TIMEOUT, RATE_LIMITED, PROVIDER_ERROR, MISCONFIGURED, REFUSED or
        MALFORMED_ANSWER; nothing else escapes. Never retries by itself.
        """
        ...


class PersonalizedCopies(Protocol):
    """The words chosen for each send, keyed by its ledger key: written once, before the provider call."""

    async def get(self, ledger_key: str) -> StoredCopy | None:
        """The copy stored for ``ledger_key``, if any."""
        ...

    async def keep(self, copy: StoredCopy, at: datetime) -> StoredCopy:
        """Store ``copy`` unless a copy is stored under its ledger key already; return the stored one. Of
        concurrent calls for one key, every caller gets the first writer's copy."""
        ...


class PersonalizationBudgets(Protocol):
    """Each org's use of the model per local day (``day`` is the org's calendar date)."""

    async def take(self, org_id: OrgId, day: date, budget: DailyBudget) -> bool:
        """Atomically: when the org has made fewer than ``budget.requests`` requests that day and used fewer than
        ``budget.tokens`` tokens, count one more request and return True; else change nothing and return False."""
        ...

    async def spend(self, org_id: OrgId, day: date, tokens: int) -> None:
        """Add ``tokens`` (input plus output of one answer) to the org's day."""
        ...


class PersonalizationRecorder(Protocol):
    def record(self, outcome: PersonalizationOutcome) -> None:
        """Count one personalization attempt (used, or the fallback and its reason; model and tokens).
        In-process and content-free; never raises."""
        ...
