"""The in-memory NurtureEnrollments port.

Passes tests/contract/test_nurture_enrollments.py with the Postgres adapter."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from domain.models import Enrollment, EnrollmentStatus, ExitReason
from domain.models import Sequence as NurtureSequence
from domain.values import ContactId, EnrollmentId, OrgId, SequenceId


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
