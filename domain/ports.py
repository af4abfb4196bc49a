"""Ports: what the domain needs from the world, as Protocols speaking domain types only.

Each method's docstring is its contract; tests/contract runs the same suite against the in-memory fake and the
real adapter. Every I/O port is async. Adapters raise ``TransientError`` for infrastructure failures (lost
connection, timeout) and the delivery errors of ``domain.errors`` for provider answers; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from domain.errors import SuppressionReason
from domain.feedback import ConsentChange, DeliveryProgress, DeliveryReport, FeedbackApplied
from domain.jobs import Job
from domain.messages import ClaimResult, EmailMessage, LedgerEntry, ProviderReceipt, SendClaim, SmsMessage
from domain.models import (
    Appointment,
    Contact,
    DailySnapshot,
    Enrollment,
    ExitReason,
    KpiFacts,
    Organization,
    ReminderCandidate,
    Template,
)
from domain.models import (
    Sequence as NurtureSequence,
)
from domain.values import (
    AppointmentId,
    Channel,
    ContactId,
    EmailAddress,
    EnrollmentId,
    MessagePurpose,
    Money,
    OrgId,
    PhoneNumber,
    SequenceId,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant as an aware UTC datetime. The only source of 'now' the domain has."""
        ...


class SmsSender(Protocol):
    async def send(self, message: SmsMessage, deadline: datetime) -> ProviderReceipt:
        """Hand the message to the provider once; return its id when accepted.

        ``deadline`` (an aware UTC datetime) is the instant from which another actor may treat the send's ledger
        claim as abandoned and send the message itself (the Dispatcher's rule, domain/delivery.py: the claim's
        last change plus the settle period, less a margin). The request must be over by then: immediately before
        writing it (after the rate limit and every other wait) the sender calls ``domain.errors.refuse_after``
        with its clock's now and the longest its request may take, and past that raises ClaimLapsed, having sent
        nothing. Each adapter's docstring says what window remains between that check and the write. (The rule
        comes from issue 11: a worker whose loop was blocked past the settle period sent a message twice.)

        Raises ClaimLapsed (nothing sent), DeliveryRejected (permanent; ``suppress`` set for opt-outs and invalid
        numbers), DeliveryRateLimited (not accepted; retry at ``retry_at``), DeliveryOutcomeUnknown (timeout,
        reset, 5xx: maybe accepted), ConfigurationError (credentials refused), TransientError (only when the
        provider certainly never received the request, e.g. connection refused). Never retries by itself.
        """
        ...

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        """Reconciliation: the provider's record of a message sent under ``ledger_key`` since ``since``, if any.

        Used before anything whose earlier send is unknown is sent again. Raises TransientError when the
        provider cannot be asked now.
        """
        ...


class EmailSender(Protocol):
    async def send(self, message: EmailMessage, deadline: datetime) -> ProviderReceipt:
        """Hand the email to the provider once; ``deadline`` and errors as for ``SmsSender.send``."""
        ...


class SendLedger(Protocol):
    """The record of every message: claimed once before the provider call, then resolved.

    Every move after the claim is a compare-and-set: it names the key, the ``version`` of the entry the caller
    read, and (implicitly) the states it may leave; it changes the entry only when both still hold, gives the entry
    a new version (never reused for that key, even after a release), and returns whether it moved. Of concurrent
    movers that read the same entry, exactly one succeeds; the others get False and must re-read.
    """

    async def claim(self, claim: SendClaim, at: datetime) -> ClaimResult:
        """Atomically: if the recipient is suppressed for the claim's channel in its org -> SUPPRESSED (nothing
        written); else if no entry has ``claim.key`` -> write one in state CLAIMED and return CLAIMED with it;
        else TAKEN with the existing entry. Of concurrent claims of one key exactly one gets CLAIMED.
        """
        ...

    async def get(self, key: str) -> LedgerEntry | None:
        """The entry of ``key``, if any."""
        ...

    async def mark_sent(self, key: str, version: int, provider_message_id: str, at: datetime) -> bool:
        """CLAIMED or UNKNOWN at ``version`` -> SENT with the provider's id."""
        ...

    async def mark_failed(self, key: str, version: int, reason: str, code: str | None, at: datetime) -> bool:
        """CLAIMED or UNKNOWN at ``version`` -> FAILED (permanent). ``reason`` holds no PII."""
        ...

    async def mark_unknown(self, key: str, version: int, reason: str, at: datetime) -> bool:
        """CLAIMED at ``version`` -> UNKNOWN: the provider may have accepted it."""
        ...

    async def reclaim(self, key: str, version: int, at: datetime) -> LedgerEntry | None:
        """UNKNOWN or CLAIMED at ``version`` -> CLAIMED again (new ``claimed_at``), for a send that reconciliation
        proved never reached the provider. Returns the new entry (the caller's to send), or None when the entry
        moved or vanished since it was read: then someone else is resolving it and the caller must not send.
        """
        ...

    async def release(self, key: str, version: int) -> bool:
        """Delete a CLAIMED entry at ``version`` whose message the provider certainly did not receive (rate
        limited, a local failure before the request left), so a later run can claim it again. Entries in any
        other state or version are left alone.
        """
        ...

    async def unsettled_before(self, before: datetime, limit: int) -> Sequence[LedgerEntry]:
        """CLAIMED or UNKNOWN entries whose last change is before ``before``, oldest change first, at most
        ``limit`` (for the reconciliation of sends whose jobs ended)."""
        ...

    async def suppress(
        self,
        org_id: OrgId,
        channel: Channel,
        recipient: PhoneNumber | EmailAddress,
        reason: SuppressionReason,
        at: datetime,
    ) -> None:
        """Record that ``recipient`` must get nothing more on ``channel`` in this org. Idempotent."""
        ...

    async def count_sent_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> int:
        """How many messages of ``purpose`` to this contact are CLAIMED, SENT or UNKNOWN, claimed at or after
        ``since`` (the marketing cap counts what may have gone out)."""
        ...

    async def claim_times_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> Sequence[datetime]:
        """The ``claimed_at`` of exactly the entries ``count_sent_since`` counts, oldest first (to tell when the
        marketing cap reopens)."""
        ...


class Organizations(Protocol):
    async def get(self, org_id: OrgId) -> Organization | None:
        """The organization, or None when it does not exist."""
        ...

    async def active(self) -> Sequence[Organization]:
        """Every active organization, ordered by id."""
        ...


class Contacts(Protocol):
    async def get(self, org_id: OrgId, contact_id: ContactId) -> Contact | None:
        """The contact of this org, or None (unknown, deleted, or another org's)."""
        ...


class Appointments(Protocol):
    async def get(self, org_id: OrgId, appointment_id: AppointmentId) -> Appointment | None:
        """The appointment of this org as it is now, or None."""
        ...

    async def upcoming_between(self, start: datetime, end: datetime) -> Sequence[ReminderCandidate]:
        """Every upcoming (scheduled or confirmed) appointment of an active org with ``start <= starts_at < end``,
        ordered by start time, with the contact's zone (else the org's) and names for rendering."""
        ...

    async def booked_since(self, org_id: OrgId, contact_id: ContactId, since: datetime) -> bool:
        """Whether the contact has an appointment created at or after ``since`` that is not cancelled."""
        ...


class Invoices(Protocol):
    async def outstanding_balance(self, org_id: OrgId, contact_id: ContactId, currency: str) -> Money:
        """What the contact owes now: open invoices (not paid, void or written off) less payments on them.

        Never negative; zero when nothing is owed."""
        ...


class Templates(Protocol):
    async def get(self, org_id: OrgId, name: str, channel: Channel) -> Template | None:
        """The org's template of that name for that channel, or None."""
        ...


class TemplateRenderer(Protocol):
    def render(self, text: str, variables: Mapping[str, Any], *, html: bool) -> str:
        """Substitute ``{{ name }}`` placeholders from ``variables``; no attribute access, no code.

        ``html`` escapes substituted values for HTML. A missing variable raises InvalidJob naming it (never
        its value); a malformed template raises InvalidValue.
        Values render as text: ``str()`` for strings and numbers, ``true``/``false`` for booleans, ``None`` counts
        as missing, and a list or object raises InvalidJob naming the variable.
        """
        ...


class NurtureEnrollments(Protocol):
    async def active_for_contact(self, org_id: OrgId, contact_id: ContactId) -> Sequence[Enrollment]:
        """The contact's ACTIVE enrollments, ordered by id."""
        ...

    async def ended_for_contact(self, org_id: OrgId, contact_id: ContactId) -> Sequence[Enrollment]:
        """The contact's COMPLETED and EXITED enrollments, ordered by id."""
        ...

    async def sequence(self, org_id: OrgId, sequence_id: SequenceId) -> NurtureSequence | None:
        """The sequence with its steps, or None."""
        ...

    async def record_step(self, enrollment_id: EnrollmentId, step: int, at: datetime) -> None:
        """Set ``last_step_done`` to ``step`` when it is higher (idempotent; never goes back)."""
        ...

    async def complete(self, enrollment_id: EnrollmentId, at: datetime) -> None:
        """ACTIVE -> COMPLETED. Idempotent."""
        ...

    async def exit(self, enrollment_id: EnrollmentId, reason: ExitReason, at: datetime) -> None:
        """ACTIVE -> EXITED with the reason. Idempotent; a completed enrollment stays completed."""
        ...


class KpiFactsSource(Protocol):
    async def facts(self, org: Organization, start: datetime, end: datetime) -> KpiFacts:
        """The org's raw KPI facts for the instants ``start <= t < end`` (one local day, given in UTC)."""
        ...


class SnapshotStore(Protocol):
    async def upsert(self, snapshot: DailySnapshot) -> None:
        """Store the snapshot, replacing any earlier one for the same org and date."""
        ...

    async def get(self, org_id: OrgId, day: date) -> DailySnapshot | None:
        """The stored snapshot, or None."""
        ...

    async def dates_present(self, org_id: OrgId, first: date, last: date) -> set[date]:
        """The dates in ``first..last`` (inclusive) that have a snapshot."""
        ...


class JobPublisher(Protocol):
    async def publish(self, job: Job, job_id: str, run_at: datetime | None = None) -> bool:
        """Enqueue ``job`` on its queue under ``job_id`` (deterministic: the same logical job, the same id),
        delayed until ``run_at`` when given and in the future. Returns False when a job with that id exists
        already (nothing is added). Raises TransientError when the queue cannot be reached.
        """
        ...


class SuppressionList(Protocol):
    """Addresses withdrawn from a channel for every org (a STOP, a hard bounce, a spam report)."""

    async def suppression(self, channel: Channel, recipient: PhoneNumber | EmailAddress) -> SuppressionReason | None:
        """Why ``recipient`` gets nothing on ``channel`` now, or None. Phones compare in E.164, email ignoring case."""
        ...


class DeliveryFeedback(Protocol):
    """Where the providers' webhooks land: the ledger's delivery progress and the consent changes."""

    async def apply(self, reports: Sequence[DeliveryReport], changes: Sequence[ConsentChange]) -> FeedbackApplied:
        """Apply everything in one transaction (all or nothing; TransientError when the store cannot be reached).

        A report moves its entry's progress forward only (compare-and-set on the rank: a lower or equal rank, a
        report for another channel or another provider message id, or an unknown key changes nothing). The first
        report for a CLAIMED or UNKNOWN entry (or one given up as ``failed_unconfirmed``) settles it to SENT with
        the report's message id: the provider has the message. A change whose (source, event_id) was applied
        before changes nothing; WITHDRAWN suppresses the address with the change's reason (keeping an earlier
        reason); RESTORED lifts an opt-out (every org's, including opt-outs learnt from refused sends), never a
        bounce or spam report. Every applied change is kept with its time and source.
        """
        ...

    async def progress(self, key: str) -> DeliveryProgress | None:
        """The delivery progress recorded for ``key`` (None: no report yet, or no such entry)."""
        ...


class UnsettledSends(Protocol):
    """Reconciliation's view of the ledger: entries whose outcome is still not known."""

    async def unsettled(
        self, updated_before: datetime, limit: int, after: tuple[datetime, str] | None = None
    ) -> Sequence[LedgerEntry]:
        """CLAIMED or UNKNOWN entries last changed before ``updated_before``, ordered by (``updated_at``, ``key``),
        at most ``limit``; with ``after``, only those ordered after that (updated_at, key) (keyset paging)."""
        ...

    async def give_up(self, entry: LedgerEntry, at: datetime) -> bool:
        """``entry`` -> FAILED with reason ``failed_unconfirmed``, only if it is still exactly as read (a
        compare-and-set on its ``version``, as every ledger transition). Never re-sent afterwards; a later provider
        report still settles it."""
        ...

    async def unsettled_by_age(
        self, now: datetime, ages: Sequence[timedelta]
    ) -> Mapping[tuple[Channel, timedelta], int]:
        """For each channel and each of ``ages``: how many CLAIMED or UNKNOWN entries last changed more than that
        long before ``now`` (every pair present, zero included)."""
        ...
