"""The queue topology, declared once, and the job payloads it carries.

The queues a worker consumes (one supervisord program each), the job names on each queue and their payload types,
the jobs our schedules add, the options every added job carries (attempts, backoff, retention) and how long each
queue's oldest job may wait before the backlog alert. The worker's and CLI's ``--queue`` choices, the health
server's queue list, the publisher and the router's completeness check all derive from here. The dead-letter queue
is the BullMQ adapter's (adapters/bullmq/dead_letter.py), not a queue of the domain. Payloads are the four shapes of
the Node worker's README plus the scheduled jobs, as frozen values; field names are Pythonic here and the wire
converter (adapters/bullmq/wire.py) maps them to the Node CRM's camelCase JSON. Fields that carry PII or message
content are left out of ``repr``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from domain.errors import InvalidJob
from domain.values import AppointmentId, ContactId, OrgId


class QueueName(enum.StrEnum):
    """The queues we consume, as the Node CRM names them (npm bullmq queue names)."""

    REMINDERS = "reminders"
    NURTURE = "nurture"
    DUNNING = "dunning"
    SNAPSHOTS = "snapshots"


CONSUMED_QUEUES: tuple[QueueName, ...] = tuple(QueueName)
"""Every queue a worker program consumes: supervisord.conf runs one ``worker-<queue>`` program for each."""

WAITING_AGE_LIMITS_S: Mapping[str, int] = {QueueName.REMINDERS: 5 * 60}
"""How long (seconds) the oldest waiting job of a queue may wait before the backlog alert fires
(deploy/prometheus/alerts.yml ``ClientFlowQueueBacklog``, against the health server's gauge
``clientflow_queue_waiting_age_limit_seconds``); a queue not named here: ``DEFAULT_WAITING_AGE_LIMIT_S``. Reminders
are tighter: a reminder three hours before an appointment loses its point when it goes out late."""

DEFAULT_WAITING_AGE_LIMIT_S = 15 * 60


def waiting_age_limit_s(queue: str) -> int:
    """The backlog limit of ``queue`` (any queue name the health server reports), in seconds."""
    return WAITING_AGE_LIMITS_S.get(queue, DEFAULT_WAITING_AGE_LIMIT_S)


class JobName(enum.StrEnum):
    REMINDER = "process-reminder"
    NURTURE = "process-nurture"
    DUNNING = "process-dunning"
    SNAPSHOT = "process-snapshots"
    SCAN_APPOINTMENTS = "scan-appointments"  # the hourly scan (cron `0 * * * *`)
    FAN_OUT_SNAPSHOTS = "fan-out-snapshots"  # the daily snapshot fan-out (cron `0 1 * * *`)
    MAINTAIN_QUEUES = "maintain-queues"  # queue maintenance (hourly at :15): finished jobs, dead letters, leftovers


class ReminderKind(enum.StrEnum):
    DAY_BEFORE = "24h"
    THREE_HOURS = "3h"


def _aware(_instance: object, attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJob(attribute.name, "must carry a time zone")


@attrs.frozen
class ReminderJob:
    org_id: OrgId
    contact_id: ContactId
    appointment_id: AppointmentId
    message: str = attrs.field(repr=False)
    scheduled_for: datetime = attrs.field(validator=_aware)
    reminder_type: ReminderKind


@attrs.frozen
class NurtureJob:
    org_id: OrgId
    contact_id: ContactId
    sequence_step: int
    template: str
    personalization: Mapping[str, Any] = attrs.field(repr=False, factory=dict)


@attrs.frozen
class DunningJob:
    """``amount`` stays the producer's major-unit number here; the dunning service validates it into Money."""

    org_id: OrgId
    contact_id: ContactId
    amount: Decimal
    days_overdue: int
    payment_link: str = attrs.field(repr=False)


@attrs.frozen
class SnapshotJob:
    org_id: OrgId
    date: date


@attrs.frozen
class AppointmentScanJob:
    """The hourly scan; carries nothing: it works from due times, not from the tick that started it."""


@attrs.frozen
class SnapshotFanOutJob:
    """The snapshot fan-out; carries nothing: each org's local day is computed from the clock."""


@attrs.frozen
class QueueMaintenanceJob:
    """The queue maintenance tick; carries nothing: what to clean is configuration, counted from Redis."""


Job = ReminderJob | NurtureJob | DunningJob | SnapshotJob | AppointmentScanJob | SnapshotFanOutJob | QueueMaintenanceJob


@attrs.frozen
class JobType:
    name: JobName
    queue: QueueName
    payload: type[Job]


JOB_TYPES: Mapping[JobName, JobType] = {
    t.name: t
    for t in (
        JobType(JobName.REMINDER, QueueName.REMINDERS, ReminderJob),
        JobType(JobName.SCAN_APPOINTMENTS, QueueName.REMINDERS, AppointmentScanJob),
        JobType(JobName.NURTURE, QueueName.NURTURE, NurtureJob),
        JobType(JobName.DUNNING, QueueName.DUNNING, DunningJob),
        JobType(JobName.SNAPSHOT, QueueName.SNAPSHOTS, SnapshotJob),
        JobType(JobName.FAN_OUT_SNAPSHOTS, QueueName.SNAPSHOTS, SnapshotFanOutJob),
        JobType(JobName.MAINTAIN_QUEUES, QueueName.SNAPSHOTS, QueueMaintenanceJob),  # the quietest queue
    )
}


SCHEDULED_JOBS: tuple[JobName, ...] = (JobName.SCAN_APPOINTMENTS, JobName.FAN_OUT_SNAPSHOTS, JobName.MAINTAIN_QUEUES)
"""The jobs our schedules add, one schedule each, named after its job; the cron patterns are settings
(``SCAN_CRON``, ``SNAPSHOT_CRON``, ``MAINTENANCE_CRON``)."""


@attrs.frozen
class JobDefaults:
    """What every job we add carries: the Node producer's retries (``attempts``; exponential backoff from
    ``backoff_delay_ms``, doubling) and how long Redis keeps it once finished, by age (seconds) and count."""

    attempts: int = 3
    backoff_delay_ms: int = 1000
    completed_age_s: int = 24 * 3600
    completed_count: int = 10_000
    failed_age_s: int = 14 * 24 * 3600
    failed_count: int = 50_000


PUBLISHED_JOB_DEFAULTS = JobDefaults(completed_age_s=48 * 3600)
"""Jobs the services publish (and dead-letter replays): completed reminder jobs must outlive the hourly scans that
could queue them again (up to ~27 h before the appointment), so completed jobs are kept two days."""

SCHEDULED_JOB_DEFAULTS = JobDefaults()
"""Schedule ticks and run-now jobs: completed ones are kept a day."""


def custom_job_id(kind: str, *parts: str) -> str:
    """A deterministic BullMQ job id ``<kind>_<part>_<part>...``.

    npm bullmq refuses ``:`` in custom ids and ids that parse as integers; each part is percent-escaped (``%`` and
    ``:``), so the id has no ``:`` and distinct parts give distinct ids, and the kind prefix keeps it non-numeric.
    """
    return "_".join([kind, *(part.replace("%", "%25").replace(":", "%3A") for part in parts)])


def job_type_of(payload: Job) -> JobType:
    for job_type in JOB_TYPES.values():
        if type(payload) is job_type.payload:
            return job_type
    raise TypeError(f"not a job payload: {type(payload).__name__}")
