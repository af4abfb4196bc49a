"""NurtureEnrollments contract: active enrollments, sequences with steps, and idempotent state moves."""

from __future__ import annotations

from datetime import timedelta

from domain.models import Enrollment, EnrollmentStatus, ExitReason, SequenceStep
from domain.models import Sequence as NurtureSequence
from domain.values import Channel, ContactId, EnrollmentId, OrgId, SequenceId
from tests.support.backends import Backend
from tests.support.builders import T0, contact, org

ORG, C1 = OrgId("org-1"), ContactId("c-1")
SEQUENCE = NurtureSequence(
    SequenceId("seq-1"),
    ORG,
    (
        SequenceStep(1, Channel.EMAIL, "welcome", timedelta(0)),
        SequenceStep(2, Channel.SMS, "nudge", timedelta(days=2)),
        SequenceStep(3, Channel.EMAIL, "offer", timedelta(days=5, hours=3)),
    ),
)


def enrollment(enrollment_id: str, *, status: EnrollmentStatus = EnrollmentStatus.ACTIVE, step: int = 0) -> Enrollment:
    return Enrollment(EnrollmentId(enrollment_id), ORG, C1, SEQUENCE.id, status, step, T0)


async def _setup(backend: Backend, *enrollments: Enrollment) -> None:
    await backend.seed.org(org("org-1"))
    await backend.seed.contact(contact("c-1"))
    await backend.seed.sequence(SEQUENCE)
    for e in enrollments:
        await backend.seed.enrollment(e)


async def _status(backend: Backend, enrollment_id: str) -> tuple[EnrollmentStatus, int] | None:
    """The enrollment's status and last step, read through the port (only active ones are visible there)."""
    found = [e for e in await backend.enrollments.active_for_contact(ORG, C1) if e.id == enrollment_id]
    return (found[0].status, found[0].last_step_done) if found else None


async def test_active_for_contact_lists_active_enrollments_by_id(backend: Backend) -> None:
    """Completed and exited enrollments are left out; the rest come back equal, in id order."""
    await _setup(
        backend,
        enrollment("e-b", step=2),
        enrollment("e-a"),
        enrollment("e-done", status=EnrollmentStatus.COMPLETED, step=3),
    )
    found = await backend.enrollments.active_for_contact(ORG, C1)
    assert found == [enrollment("e-a"), enrollment("e-b", step=2)]
    assert await backend.enrollments.active_for_contact(OrgId("org-2"), C1) == []


async def test_sequence_comes_with_its_steps(backend: Backend) -> None:
    """The sequence and its ordered steps (channel, template, delay) come back as stored; another org's is None."""
    await _setup(backend)
    assert await backend.enrollments.sequence(ORG, SEQUENCE.id) == SEQUENCE
    assert await backend.enrollments.sequence(OrgId("org-2"), SEQUENCE.id) is None
    assert await backend.enrollments.sequence(ORG, SequenceId("seq-404")) is None


async def test_record_step_never_goes_back(backend: Backend) -> None:
    """A higher step is recorded; repeating it or recording a lower one changes nothing."""
    await _setup(backend, enrollment("e-1"))
    await backend.enrollments.record_step(EnrollmentId("e-1"), 2, T0)
    await backend.enrollments.record_step(EnrollmentId("e-1"), 2, T0)
    await backend.enrollments.record_step(EnrollmentId("e-1"), 1, T0)
    assert await _status(backend, "e-1") == (EnrollmentStatus.ACTIVE, 2)


async def test_complete_is_idempotent(backend: Backend) -> None:
    """Completing twice leaves the enrollment completed (no longer active), and exit cannot undo it."""
    await _setup(backend, enrollment("e-1"))
    await backend.enrollments.complete(EnrollmentId("e-1"), T0)
    await backend.enrollments.complete(EnrollmentId("e-1"), T0)
    await backend.enrollments.exit(EnrollmentId("e-1"), ExitReason.UNSUBSCRIBED, T0)
    assert await _status(backend, "e-1") is None
    await backend.enrollments.record_step(EnrollmentId("e-1"), 3, T0)
    assert await backend.enrollments.active_for_contact(ORG, C1) == []


async def test_exit_leaves_the_active_list_and_cannot_be_completed(backend: Backend) -> None:
    """An exited enrollment is no longer active; a later complete() does not bring it back."""
    await _setup(backend, enrollment("e-1"), enrollment("e-2"))
    await backend.enrollments.exit(EnrollmentId("e-1"), ExitReason.APPOINTMENT_BOOKED, T0)
    await backend.enrollments.complete(EnrollmentId("e-1"), T0)
    assert [e.id for e in await backend.enrollments.active_for_contact(ORG, C1)] == ["e-2"]


async def test_ended_for_contact_lists_completed_and_exited_by_id(backend: Backend) -> None:
    """Completed and exited enrollments come back in id order; active ones and other orgs' do not."""
    await _setup(backend, enrollment("e-b"), enrollment("e-a"), enrollment("e-active"))
    await backend.enrollments.complete(EnrollmentId("e-b"), T0)
    await backend.enrollments.exit(EnrollmentId("e-a"), ExitReason.UNSUBSCRIBED, T0)
    ended = await backend.enrollments.ended_for_contact(ORG, C1)
    assert [(e.id, e.status) for e in ended] == [
        ("e-a", EnrollmentStatus.EXITED),
        ("e-b", EnrollmentStatus.COMPLETED),
    ]
    assert await backend.enrollments.ended_for_contact(OrgId("org-2"), C1) == []
