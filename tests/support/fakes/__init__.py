"""In-memory fakes, one per port, for domain unit tests. Each passes the same contract suite as its adapter."""

from __future__ import annotations

import html as html_lib
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs

from domain.errors import (
    DeliveryOutcomeUnknown,
    InvalidJob,
    InvalidValue,
    SuppressionReason,
)
from domain.jobs import Job, job_type_of
from domain.messages import (
    ClaimResult,
    ClaimStatus,
    EmailMessage,
    LedgerEntry,
    LedgerState,
    ProviderReceipt,
    SendClaim,
    SmsMessage,
)
from domain.models import (
    Appointment,
    AppointmentStatus,
    Contact,
    DailySnapshot,
    Enrollment,
    EnrollmentStatus,
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


@attrs.define
class FakeClock:
    """A clock that stands still until told to move."""

    current: datetime = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def set(self, moment: datetime) -> None:
        assert moment.tzinfo is not None, "fake clock takes aware datetimes only"
        self.current = moment.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@attrs.define
class FakeSmsSender:
    """Records accepted messages; ``fail_with`` makes the next sends raise that error instead."""

    sent: list[SmsMessage] = attrs.Factory(list)
    fail_with: list[Exception] = attrs.Factory(list)
    provider_log: dict[str, tuple[datetime, ProviderReceipt]] = attrs.Factory(dict)
    accepted_but_lost: bool = False  # the provider accepts, but the answer never reaches us
    clock: FakeClock = attrs.Factory(FakeClock)

    async def send(self, message: SmsMessage) -> ProviderReceipt:
        if self.fail_with:
            raise self.fail_with.pop(0)
        receipt = ProviderReceipt(f"SM{len(self.sent) + 1:032d}")
        self.sent.append(message)
        self.provider_log[message.ledger_key] = (self.clock.now(), receipt)
        if self.accepted_but_lost:
            self.accepted_but_lost = False
            raise DeliveryOutcomeUnknown("provider did not answer in time")
        return receipt

    async def find_sent(self, ledger_key: str, since: datetime) -> ProviderReceipt | None:
        found = self.provider_log.get(ledger_key)
        if found and found[0] >= since:
            return found[1]
        return None


@attrs.define
class FakeEmailSender:
    sent: list[EmailMessage] = attrs.Factory(list)
    fail_with: list[Exception] = attrs.Factory(list)

    async def send(self, message: EmailMessage) -> ProviderReceipt:
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.sent.append(message)
        return ProviderReceipt(f"sg-{len(self.sent)}")


def _address(recipient: PhoneNumber | EmailAddress) -> str:
    return recipient.e164 if isinstance(recipient, PhoneNumber) else recipient.address.lower()


@attrs.define
class _Row:
    entry: LedgerEntry
    org_id: OrgId
    contact_id: ContactId
    purpose: MessagePurpose


@attrs.define
class InMemorySendLedger:
    """The send ledger in a dict; versions come from one counter, as from the Postgres sequence."""

    rows: dict[str, _Row] = attrs.Factory(dict)
    suppressions: dict[tuple[OrgId, Channel, str], SuppressionReason] = attrs.Factory(dict)
    versions: Iterator[int] = attrs.Factory(lambda: itertools.count(1))

    async def claim(self, claim: SendClaim, at: datetime) -> ClaimResult:
        reason = self.suppressions.get((claim.org_id, claim.channel, _address(claim.recipient)))
        if reason is not None:
            return ClaimResult(ClaimStatus.SUPPRESSED, suppression=reason)
        if claim.key in self.rows:
            return ClaimResult(ClaimStatus.TAKEN, self.rows[claim.key].entry)
        entry = LedgerEntry(claim.key, claim.channel, LedgerState.CLAIMED, at, at, version=next(self.versions))
        self.rows[claim.key] = _Row(entry, claim.org_id, claim.contact_id, claim.purpose)
        return ClaimResult(ClaimStatus.CLAIMED, entry)

    async def get(self, key: str) -> LedgerEntry | None:
        row = self.rows.get(key)
        return row.entry if row else None

    def _move(self, key: str, version: int, allowed: set[LedgerState], **changes: Any) -> LedgerEntry | None:
        row = self.rows.get(key)
        if row is None or row.entry.version != version or row.entry.state not in allowed:
            return None
        row.entry = attrs.evolve(row.entry, version=next(self.versions), **changes)
        return row.entry

    async def mark_sent(self, key: str, version: int, provider_message_id: str, at: datetime) -> bool:
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        changes = {"state": LedgerState.SENT, "provider_message_id": provider_message_id, "updated_at": at}
        return self._move(key, version, unsettled, **changes) is not None

    async def mark_failed(self, key: str, version: int, reason: str, code: str | None, at: datetime) -> bool:
        text = f"{reason} ({code})" if code else reason
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        return self._move(key, version, unsettled, state=LedgerState.FAILED, reason=text, updated_at=at) is not None

    async def mark_unknown(self, key: str, version: int, reason: str, at: datetime) -> bool:
        claimed = {LedgerState.CLAIMED}
        return self._move(key, version, claimed, state=LedgerState.UNKNOWN, reason=reason, updated_at=at) is not None

    async def reclaim(self, key: str, version: int, at: datetime) -> LedgerEntry | None:
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        return self._move(key, version, unsettled, state=LedgerState.CLAIMED, claimed_at=at, updated_at=at)

    async def release(self, key: str, version: int) -> bool:
        row = self.rows.get(key)
        if row is None or row.entry.version != version or row.entry.state is not LedgerState.CLAIMED:
            return False
        del self.rows[key]
        return True

    async def unsettled_before(self, before: datetime, limit: int) -> Sequence[LedgerEntry]:
        unsettled = {LedgerState.CLAIMED, LedgerState.UNKNOWN}
        found = [r.entry for r in self.rows.values() if r.entry.state in unsettled and r.entry.updated_at < before]
        return sorted(found, key=lambda entry: entry.updated_at)[:limit]

    async def suppress(
        self,
        org_id: OrgId,
        channel: Channel,
        recipient: PhoneNumber | EmailAddress,
        reason: SuppressionReason,
        at: datetime,
    ) -> None:
        self.suppressions.setdefault((org_id, channel, _address(recipient)), reason)

    async def count_sent_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> int:
        counted = {LedgerState.CLAIMED, LedgerState.SENT, LedgerState.UNKNOWN}
        return sum(
            1
            for r in self.rows.values()
            if r.org_id == org_id
            and r.contact_id == contact_id
            and r.purpose is purpose
            and r.entry.state in counted
            and r.entry.claimed_at >= since
        )

    async def claim_times_since(
        self, org_id: OrgId, contact_id: ContactId, purpose: MessagePurpose, since: datetime
    ) -> Sequence[datetime]:
        counted = {LedgerState.CLAIMED, LedgerState.SENT, LedgerState.UNKNOWN}
        return sorted(
            r.entry.claimed_at
            for r in self.rows.values()
            if r.org_id == org_id
            and r.contact_id == contact_id
            and r.purpose is purpose
            and r.entry.state in counted
            and r.entry.claimed_at >= since
        )


@attrs.define
class InMemoryOrganizations:
    orgs: dict[OrgId, Organization] = attrs.Factory(dict)

    def add(self, org: Organization) -> Organization:
        self.orgs[org.id] = org
        return org

    async def get(self, org_id: OrgId) -> Organization | None:
        return self.orgs.get(org_id)

    async def active(self) -> Sequence[Organization]:
        return [o for _, o in sorted(self.orgs.items()) if o.active]


@attrs.define
class InMemoryContacts:
    contacts: dict[tuple[OrgId, ContactId], Contact] = attrs.Factory(dict)

    def add(self, contact: Contact) -> Contact:
        self.contacts[(contact.org_id, contact.id)] = contact
        return contact

    async def get(self, org_id: OrgId, contact_id: ContactId) -> Contact | None:
        return self.contacts.get((org_id, contact_id))


@attrs.define
class InMemoryAppointments:
    orgs: InMemoryOrganizations
    contacts: InMemoryContacts
    appointments: dict[tuple[OrgId, AppointmentId], Appointment] = attrs.Factory(dict)
    created_at: dict[tuple[OrgId, AppointmentId], datetime] = attrs.Factory(dict)

    def add(self, appointment: Appointment, created_at: datetime | None = None) -> Appointment:
        key = (appointment.org_id, appointment.id)
        self.appointments[key] = appointment
        self.created_at[key] = created_at or datetime(2000, 1, 1, tzinfo=UTC)
        return appointment

    async def get(self, org_id: OrgId, appointment_id: AppointmentId) -> Appointment | None:
        return self.appointments.get((org_id, appointment_id))

    async def upcoming_between(self, start: datetime, end: datetime) -> Sequence[ReminderCandidate]:
        found = []
        for a in self.appointments.values():
            org = self.orgs.orgs.get(a.org_id)
            contact = self.contacts.contacts.get((a.org_id, a.contact_id))
            if org is None or not org.active or contact is None:
                continue
            if a.status.is_upcoming and start <= a.starts_at < end:
                found.append(ReminderCandidate(a, contact.zone or org.zone, contact.first_name, org.name))
        return sorted(found, key=lambda c: (c.appointment.starts_at, c.appointment.id))

    async def booked_since(self, org_id: OrgId, contact_id: ContactId, since: datetime) -> bool:
        return any(
            a.org_id == org_id
            and a.contact_id == contact_id
            and a.status is not AppointmentStatus.CANCELLED
            and self.created_at[(a.org_id, a.id)] >= since
            for a in self.appointments.values()
        )


@attrs.define
class InMemoryInvoices:
    """Balances set directly per contact, in minor units."""

    balances: dict[tuple[OrgId, ContactId], int] = attrs.Factory(dict)

    def owe(self, org_id: OrgId, contact_id: ContactId, minor: int) -> None:
        self.balances[(org_id, contact_id)] = minor

    async def outstanding_balance(self, org_id: OrgId, contact_id: ContactId, currency: str) -> Money:
        return Money(max(0, self.balances.get((org_id, contact_id), 0)), currency)


@attrs.define
class InMemoryTemplates:
    templates: dict[tuple[OrgId, str, Channel], Template] = attrs.Factory(dict)

    def add(self, template: Template) -> Template:
        self.templates[(template.org_id, template.name, template.channel)] = template
        return template

    async def get(self, org_id: OrgId, name: str, channel: Channel) -> Template | None:
        return self.templates.get((org_id, name, channel))


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class FakeTemplateRenderer:
    """The placeholder rules of the port in a few lines; the real renderer passes the same contract."""

    def render(self, text: str, variables: Mapping[str, Any], *, html: bool) -> str:
        if text.count("{{") != text.count("}}") or len(_PLACEHOLDER.findall(text)) != text.count("{{"):
            raise InvalidValue("template", "has a malformed placeholder")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables or variables[name] is None:
                raise InvalidJob(f"personalization.{name}", "is missing")
            if not isinstance(variables[name], str | int | float):
                raise InvalidJob(f"personalization.{name}", "is not text or a number")
            value = str(variables[name]).lower() if isinstance(variables[name], bool) else str(variables[name])
            return html_lib.escape(value) if html else value

        return _PLACEHOLDER.sub(substitute, text)


@attrs.define
class InMemoryNurtureEnrollments:
    enrollments: dict[EnrollmentId, Enrollment] = attrs.Factory(dict)
    sequences: dict[SequenceId, NurtureSequence] = attrs.Factory(dict)

    def add_sequence(self, sequence: NurtureSequence) -> NurtureSequence:
        self.sequences[sequence.id] = sequence
        return sequence

    def add(self, enrollment: Enrollment) -> Enrollment:
        self.enrollments[enrollment.id] = enrollment
        return enrollment

    async def active_for_contact(self, org_id: OrgId, contact_id: ContactId) -> Sequence[Enrollment]:
        return [
            e
            for _, e in sorted(self.enrollments.items())
            if e.org_id == org_id and e.contact_id == contact_id and e.status is EnrollmentStatus.ACTIVE
        ]

    async def ended_for_contact(self, org_id: OrgId, contact_id: ContactId) -> Sequence[Enrollment]:
        return [
            e
            for _, e in sorted(self.enrollments.items())
            if e.org_id == org_id and e.contact_id == contact_id and e.status is not EnrollmentStatus.ACTIVE
        ]

    async def sequence(self, org_id: OrgId, sequence_id: SequenceId) -> NurtureSequence | None:
        found = self.sequences.get(sequence_id)
        return found if found and found.org_id == org_id else None

    async def record_step(self, enrollment_id: EnrollmentId, step: int, at: datetime) -> None:
        e = self.enrollments[enrollment_id]
        if step > e.last_step_done:
            self.enrollments[enrollment_id] = attrs.evolve(e, last_step_done=step)

    async def complete(self, enrollment_id: EnrollmentId, at: datetime) -> None:
        e = self.enrollments[enrollment_id]
        if e.status is EnrollmentStatus.ACTIVE:
            self.enrollments[enrollment_id] = attrs.evolve(e, status=EnrollmentStatus.COMPLETED)

    async def exit(self, enrollment_id: EnrollmentId, reason: ExitReason, at: datetime) -> None:
        e = self.enrollments[enrollment_id]
        if e.status is EnrollmentStatus.ACTIVE:
            self.enrollments[enrollment_id] = attrs.evolve(e, status=EnrollmentStatus.EXITED, exit_reason=reason)


@attrs.define
class FakeKpiFactsSource:
    """Returns the facts set for (org, start); records every window it was asked for."""

    facts_by_window: dict[tuple[OrgId, datetime], KpiFacts] = attrs.Factory(dict)
    asked: list[tuple[OrgId, datetime, datetime]] = attrs.Factory(list)

    async def facts(self, org: Organization, start: datetime, end: datetime) -> KpiFacts:
        self.asked.append((org.id, start, end))
        found = self.facts_by_window.get((org.id, start))
        if found is not None:
            return found
        zero = Money.zero(org.currency)
        return KpiFacts(0, 0, 0, 0, 0, zero, zero, {}, 0, 0, zero)


@attrs.define
class InMemorySnapshotStore:
    snapshots: dict[tuple[OrgId, date], DailySnapshot] = attrs.Factory(dict)

    async def upsert(self, snapshot: DailySnapshot) -> None:
        self.snapshots[(snapshot.org_id, snapshot.date)] = snapshot

    async def get(self, org_id: OrgId, day: date) -> DailySnapshot | None:
        return self.snapshots.get((org_id, day))

    async def dates_present(self, org_id: OrgId, first: date, last: date) -> set[date]:
        return {d for (o, d) in self.snapshots if o == org_id and first <= d <= last}


@attrs.frozen
class PublishedJob:
    job: Job
    job_id: str
    run_at: datetime | None


@attrs.define
class FakeJobPublisher:
    published: list[PublishedJob] = attrs.Factory(list)

    async def publish(self, job: Job, job_id: str, run_at: datetime | None = None) -> bool:
        queue = job_type_of(job).queue
        if any(p.job_id == job_id and job_type_of(p.job).queue is queue for p in self.published):
            return False
        self.published.append(PublishedJob(job, job_id, run_at))
        return True
