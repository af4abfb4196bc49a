"""Nurture sequences (CRM-owned, read) and enrollment state (the worker moves it: steps, completion, exits).

Each transition is one conditional UPDATE, so repeating it (a retried job) changes nothing the second time.
An unknown enrollment id changes nothing either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from adapters.postgres import rows
from adapters.postgres.pool import PostgresDatabase
from domain.models import Enrollment, ExitReason, SequenceStep
from domain.models import Sequence as NurtureSequence
from domain.values import Channel, ContactId, EnrollmentId, OrgId, SequenceId


@attrs.define
class PostgresNurtureEnrollments:
    db: PostgresDatabase

    async def active_for_contact(self, org_id: OrgId, contact_id: ContactId) -> Sequence[Enrollment]:
        found = await self.db.fetch(
            "select id, org_id, contact_id, sequence_id, status, last_step_done, enrolled_at, exit_reason"
            " from nurture_enrollments where org_id = $1 and contact_id = $2 and status = 'active'"
            ' order by id collate "C"',
            org_id,
            contact_id,
        )
        return [rows.enrollment(row) for row in found]

    async def ended_for_contact(self, org_id: OrgId, contact_id: ContactId) -> Sequence[Enrollment]:
        found = await self.db.fetch(
            "select id, org_id, contact_id, sequence_id, status, last_step_done, enrolled_at, exit_reason"
            " from nurture_enrollments where org_id = $1 and contact_id = $2 and status <> 'active'"
            ' order by id collate "C"',
            org_id,
            contact_id,
        )
        return [rows.enrollment(row) for row in found]

    async def sequence(self, org_id: OrgId, sequence_id: SequenceId) -> NurtureSequence | None:
        async with self.db.connection() as connection:
            exists = await connection.fetchval(
                "select true from nurture_sequences where org_id = $1 and id = $2", org_id, sequence_id
            )
            if not exists:
                return None
            steps = await connection.fetch(
                "select number, channel, template, delay_seconds from nurture_steps"
                " where org_id = $1 and sequence_id = $2 order by number",
                org_id,
                sequence_id,
            )
        return NurtureSequence(
            sequence_id,
            org_id,
            tuple(
                SequenceStep(
                    row["number"], Channel(row["channel"]), row["template"], timedelta(seconds=row["delay_seconds"])
                )
                for row in steps
            ),
        )

    async def record_step(self, enrollment_id: EnrollmentId, step: int, at: datetime) -> None:
        await self.db.execute(
            "update nurture_enrollments set last_step_done = $2, updated_at = $3 where id = $1 and last_step_done < $2",
            enrollment_id,
            step,
            at,
        )

    async def complete(self, enrollment_id: EnrollmentId, at: datetime) -> None:
        await self.db.execute(
            "update nurture_enrollments set status = 'completed', completed_at = $2, updated_at = $2"
            " where id = $1 and status = 'active'",
            enrollment_id,
            at,
        )

    async def exit(self, enrollment_id: EnrollmentId, reason: ExitReason, at: datetime) -> None:
        await self.db.execute(
            "update nurture_enrollments set status = 'exited', exit_reason = $2, exited_at = $3, updated_at = $3"
            " where id = $1 and status = 'active'",
            enrollment_id,
            reason.value,
            at,
        )
