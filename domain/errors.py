"""The domain's errors: what the shell must do with a failure is decided by its class, never by its text.

Messages name fields, codes and reasons, never a value: they end up in Redis (``failedReason``), logs and Sentry.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta


class ClientFlowError(Exception):
    """Base of every error the domain and its adapters raise on purpose."""


class InvalidValue(ClientFlowError, ValueError):
    """A value failed its own rules (a malformed phone number, an unknown zone)."""

    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"{what} {problem}")


class InvalidJob(ClientFlowError):
    """The job can never succeed as it is: fail it at once, without retries, into the dead-letter queue."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"invalid job: {field} {problem}")


class TransientError(ClientFlowError):
    """Infrastructure failed for now (a lost connection, a timeout): retry with the job's backoff."""


class ConfigurationError(ClientFlowError):
    """The worker is misconfigured (missing or revoked credentials): stop, alert once, do not burn retries."""


class SuppressionReason(enum.StrEnum):
    OPTED_OUT = "opted_out"
    INVALID_NUMBER = "invalid_number"
    BOUNCED = "bounced"
    SPAM_REPORTED = "spam_reported"


class DeliveryError(ClientFlowError):
    """A provider refused or could not confirm a message. ``code`` is the provider's own error code."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(f"{reason} (provider code {code})" if code else reason)


class DeliveryRejected(DeliveryError):
    """Permanently refused: recorded as failed, never retried.

    ``suppress`` names the suppression to record for the recipient's address, if any.
    """

    def __init__(self, reason: str, code: str | None = None, suppress: SuppressionReason | None = None) -> None:
        super().__init__(reason, code)
        self.suppress = suppress


class DeliveryRateLimited(DeliveryError):
    """The provider asked us to slow down: the message was NOT accepted; try again at ``retry_at``."""

    def __init__(self, retry_at: datetime, code: str | None = None) -> None:
        super().__init__("provider rate limit reached", code)
        self.retry_at = retry_at


class DeliveryOutcomeUnknown(DeliveryError):
    """The provider may or may not have accepted the message (timeout, reset, 5xx): never re-send blindly."""


class ClaimLapsed(ClientFlowError):
    """A sender refused to write its request: it could not be over by the deadline of the send's ledger claim,
    after which another actor may treat the claim as abandoned and send the message itself. Nothing was sent."""

    def __init__(self) -> None:
        super().__init__("the send's ledger claim lapsed before the request was written; nothing was sent")


def refuse_after(deadline: datetime, now: datetime, bound: timedelta = timedelta(0)) -> None:
    """Raise ClaimLapsed unless a request started at ``now`` and taking at most ``bound`` is over by ``deadline``
    (aware UTC datetimes). Senders call it immediately before their request is written (``SmsSender.send``)."""
    if now + bound > deadline:
        raise ClaimLapsed
