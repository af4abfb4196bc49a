"""When an appointment's reminders are due, when they may go out, and what they say by default.

The hourly scan works from these due times, never from "the last hour", so a scan after downtime still queues
every reminder worth sending; deterministic job ids and ledger keys keep it from queueing or sending one twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from domain.jobs import ReminderKind, custom_job_id
from domain.models import SendWindow
from domain.send_windows import nearest_open
from domain.values import AppointmentId, Channel

SCAN_INTERVAL = timedelta(hours=1)  # the scan's cron is `0 * * * *`
SCAN_MARGIN = timedelta(minutes=15)  # so a next scan that starts a little late misses nothing
# A late 24h reminder that would go out closer than this to the 3h one is dropped: one message is enough.
REMINDER_SPACING = timedelta(hours=1)
# The furthest a reminder is due before its appointment: 24h reminders on a fall-back day are 25 elapsed hours
# early (26 where a zone shifts by two hours).
LONGEST_LEAD = timedelta(hours=26)

DEFAULT_REMINDER_TEXT = (
    "Hi {{ first_name }}, this is a reminder of your appointment with {{ org_name }} "
    "on {{ appointment_date }} at {{ appointment_time }}."
)
DEFAULT_EMAIL_SUBJECT = "Appointment reminder"

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def due_at(kind: ReminderKind, starts_at: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a reminder is due: 3 elapsed hours before, or the same local wall-clock time the day
    before (23 or 25 elapsed hours across a DST change; a wall time missing that day reads per PEP 495 fold=0,
    02:30 -> 03:30, and a repeated one as its first occurrence)."""
    if kind is ReminderKind.THREE_HOURS:
        return (starts_at - timedelta(hours=3)).astimezone(UTC)
    local = starts_at.astimezone(zone)
    day_before = datetime.combine(local.date() - timedelta(days=1), local.time().replace(fold=0), tzinfo=zone)
    return day_before.astimezone(UTC)


@attrs.frozen
class PlannedReminder:
    """A reminder still worth sending: due at ``due``, allowed out at ``send_at`` (never before the scan)."""

    kind: ReminderKind
    due: datetime
    send_at: datetime


def plan_reminders(starts_at: datetime, zone: ZoneInfo, window: SendWindow, now: datetime) -> list[PlannedReminder]:
    """The reminders of an appointment starting at ``starts_at`` that are still worth sending as of ``now``.

    Each goes at the allowed instant nearest its due time (``send_windows.nearest_open``): the 3h one before the
    appointment, the 24h one at least ``REMINDER_SPACING`` before the 3h one is due or goes out (whichever is
    first), so once the 3h reminder is due the 24h one is dropped and the two never go out together. A late
    reminder goes at the first allowed instant from ``now``.
    """
    planned = []
    three_hours_due = due_at(ReminderKind.THREE_HOURS, starts_at, zone)
    three_hours_at = nearest_open(window, three_hours_due, zone, not_before=now, before=starts_at)
    day_before_due = due_at(ReminderKind.DAY_BEFORE, starts_at, zone)
    day_before_deadline = min(three_hours_due, three_hours_at or three_hours_due) - REMINDER_SPACING
    day_before_at = nearest_open(window, day_before_due, zone, not_before=now, before=day_before_deadline)
    if day_before_at is not None:
        planned.append(PlannedReminder(ReminderKind.DAY_BEFORE, day_before_due, day_before_at))
    if three_hours_at is not None:
        planned.append(PlannedReminder(ReminderKind.THREE_HOURS, three_hours_due, three_hours_at))
    return planned


def _instant_tag(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def reminder_job_id(appointment_id: AppointmentId, kind: ReminderKind, starts_at: datetime) -> str:
    """The one BullMQ job id of this reminder for this start time (``reminder_a1_24h_20261128T190000Z``).

    The start time is part of it: a rescheduled appointment gets its reminders again (the old job skips itself
    as moved) instead of colliding with the old job's id.
    """
    return custom_job_id("reminder", appointment_id, kind, _instant_tag(starts_at))


def reminder_ledger_key(
    appointment_id: AppointmentId, kind: ReminderKind, starts_at: datetime, channel: Channel
) -> str:
    """The send ledger's name of this reminder on this channel; shared by the scan's and Node's jobs."""
    return f"reminder:{appointment_id}:{kind}:{_instant_tag(starts_at)}:{channel}"


def reminder_template_name(kind: ReminderKind) -> str:
    return f"reminder_{kind}"


def reminder_variables(first_name: str, org_name: str, starts_at: datetime, zone: ZoneInfo) -> Mapping[str, str]:
    """What a reminder template may use; the appointment's date and time read on the contact's local clock."""
    local = starts_at.astimezone(zone)
    hour = local.hour % 12 or 12
    return {
        "first_name": first_name,
        "org_name": org_name,
        "appointment_date": f"{_WEEKDAYS[local.weekday()]}, {_MONTHS[local.month - 1]} {local.day}",
        "appointment_time": f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}",
        "appointment_date_iso": local.date().isoformat(),
        "appointment_time_24h": f"{local.hour:02d}:{local.minute:02d}",
    }
