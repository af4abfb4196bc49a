"""Database rows to domain values: the only place that knows both the column names and the domain types."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from domain.errors import InvalidValue
from domain.models import (
    DEFAULT_DUNNING_POLICY,
    Appointment,
    AppointmentStatus,
    Contact,
    DunningStage,
    DunningTone,
    Enrollment,
    EnrollmentStatus,
    ExitReason,
    Organization,
    SendWindow,
)
from domain.values import (
    AppointmentId,
    Channel,
    ContactId,
    EmailAddress,
    EnrollmentId,
    OrgId,
    PhoneNumber,
    SequenceId,
    zone,
)


def optional_zone(name: str | None) -> ZoneInfo | None:
    """A contact's zone; an empty or unknown name counts as not known (the org's zone applies then)."""
    if not name:
        return None
    try:
        return zone(name)
    except InvalidValue:
        return None


def dunning_policy(raw: str | None) -> tuple[DunningStage, ...]:
    """The org's policy from its jsonb column (null: the default), stages ordered by their first day."""
    if raw is None:
        return DEFAULT_DUNNING_POLICY
    try:
        stages = [
            DunningStage(
                int(item["minDaysOverdue"]),
                DunningTone(item["tone"]),
                frozenset(Channel(channel) for channel in item["channels"]),
            )
            for item in json.loads(raw)
        ]
    except (KeyError, TypeError, ValueError):
        raise InvalidValue("dunning policy", "is not a list of {minDaysOverdue, tone, channels}") from None
    if not stages:
        raise InvalidValue("dunning policy", "has no stage")
    return tuple(sorted(stages, key=lambda stage: stage.min_days_overdue))


def dunning_policy_json(policy: tuple[DunningStage, ...]) -> str:
    """The jsonb text of a policy, channels sorted so equal policies store equal text."""
    return json.dumps(
        [
            {
                "minDaysOverdue": s.min_days_overdue,
                "tone": s.tone.value,
                "channels": sorted(c.value for c in s.channels),
            }
            for s in policy
        ]
    )


def organization(row: Mapping[str, Any] | asyncpg.Record) -> Organization:
    return Organization(
        id=OrgId(row["id"]),
        name=row["name"],
        zone=zone(row["time_zone"]),
        currency=row["currency"],
        active=row["active"],
        transactional_window=SendWindow(row["transactional_window_start"], row["transactional_window_end"]),
        marketing_window=SendWindow(row["marketing_window_start"], row["marketing_window_end"]),
        dunning_policy=dunning_policy(row["dunning_policy"]),
    )


def contact(row: asyncpg.Record) -> Contact:
    return Contact(
        id=ContactId(row["id"]),
        org_id=OrgId(row["org_id"]),
        first_name=row["first_name"],
        phone=PhoneNumber(row["phone"]) if row["phone"] else None,
        email=EmailAddress(row["email"]) if row["email"] else None,
        zone=optional_zone(row["time_zone"]),
        preferred_channel=Channel(row["preferred_channel"]),
        sms_consent=row["sms_consent"],
        email_consent=row["email_consent"],
        marketing_consent=row["marketing_consent"],
        created_at=row["created_at"],
    )


def appointment(row: asyncpg.Record) -> Appointment:
    return Appointment(
        id=AppointmentId(row["id"]),
        org_id=OrgId(row["org_id"]),
        contact_id=ContactId(row["contact_id"]),
        starts_at=row["starts_at"],
        status=AppointmentStatus(row["status"]),
    )


def enrollment(row: asyncpg.Record) -> Enrollment:
    return Enrollment(
        id=EnrollmentId(row["id"]),
        org_id=OrgId(row["org_id"]),
        contact_id=ContactId(row["contact_id"]),
        sequence_id=SequenceId(row["sequence_id"]),
        status=EnrollmentStatus(row["status"]),
        last_step_done=row["last_step_done"],
        enrolled_at=row["enrolled_at"],
        exit_reason=ExitReason(row["exit_reason"]) if row["exit_reason"] else None,
    )
