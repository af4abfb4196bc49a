"""The reminder due-time rules and the hourly scan that queues process-reminder jobs from them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest

from domain.jobs import AppointmentScanJob, ReminderJob, ReminderKind
from domain.models import DEFAULT_TRANSACTIONAL_WINDOW, AppointmentStatus, SendWindow, Template
from domain.outcomes import Published
from domain.reminder_scan import due_at, plan_reminders, reminder_job_id
from domain.values import AppointmentId, Channel, OrgId
from tests.support.fakes.crm import InMemoryTemplates
from tests.support.reminder_world import APPOINTMENT, CONTACT, ORG, ReminderWorld, local, make_world

DAY = ReminderKind.DAY_BEFORE
THREE = ReminderKind.THREE_HOURS
NEW_YORK = "America/New_York"
LONDON = "Europe/London"
SYDNEY = "Australia/Sydney"

# (zone, appointment local time, kind, due local time (+fold), elapsed hours between them)
DUE_CASES = [
    pytest.param(NEW_YORK, (2026, 1, 20, 10, 0), DAY, (2026, 1, 19, 10, 0, 0), 24, id="ny-ordinary-day"),
    pytest.param(NEW_YORK, (2026, 3, 8, 10, 0), DAY, (2026, 3, 7, 10, 0, 0), 23, id="ny-spring-forward-24h"),
    pytest.param(NEW_YORK, (2026, 11, 1, 10, 0), DAY, (2026, 10, 31, 10, 0, 0), 25, id="ny-fall-back-24h"),
    pytest.param(LONDON, (2026, 3, 29, 10, 0), DAY, (2026, 3, 28, 10, 0, 0), 23, id="london-spring-forward-24h"),
    pytest.param(LONDON, (2026, 10, 25, 10, 0), DAY, (2026, 10, 24, 10, 0, 0), 25, id="london-fall-back-24h"),
    pytest.param(SYDNEY, (2026, 10, 4, 10, 0), DAY, (2026, 10, 3, 10, 0, 0), 23, id="sydney-spring-forward-24h"),
    pytest.param(SYDNEY, (2026, 4, 5, 10, 0), DAY, (2026, 4, 4, 10, 0, 0), 25, id="sydney-fall-back-24h"),
    # 02:30 does not exist in New York on 2026-03-08: fold=0 reads it as 03:30 EDT.
    pytest.param(NEW_YORK, (2026, 3, 9, 2, 30), DAY, (2026, 3, 8, 3, 30, 0), 23, id="ny-missing-wall-time"),
    # 01:30 does not exist in London on 2026-03-29: fold=0 reads it as 02:30 BST.
    pytest.param(LONDON, (2026, 3, 30, 1, 30), DAY, (2026, 3, 29, 2, 30, 0), 23, id="london-missing-wall-time"),
    # 01:30 happens twice in New York on 2026-11-01: fold=0 is the first (EDT) one.
    pytest.param(NEW_YORK, (2026, 11, 2, 1, 30), DAY, (2026, 11, 1, 1, 30, 0), 25, id="ny-repeated-wall-time"),
    pytest.param(NEW_YORK, (2026, 3, 8, 4, 0), THREE, (2026, 3, 8, 0, 0, 0), 3, id="ny-spring-forward-3h"),
    pytest.param(NEW_YORK, (2026, 11, 1, 3, 0), THREE, (2026, 11, 1, 1, 0, 0), 3, id="ny-fall-back-3h"),
    pytest.param(LONDON, (2026, 3, 29, 4, 0), THREE, (2026, 3, 29, 0, 0, 0), 3, id="london-spring-forward-3h"),
    pytest.param(LONDON, (2026, 10, 25, 3, 0), THREE, (2026, 10, 25, 1, 0, 0), 3, id="london-fall-back-3h"),
]


@pytest.mark.parametrize(("zone", "starts", "kind", "due", "elapsed_hours"), DUE_CASES)
def test_due_time_follows_the_local_clock_across_dst(
    zone: str,
    starts: tuple[int, int, int, int, int],
    kind: ReminderKind,
    due: tuple[int, int, int, int, int, int],
    elapsed_hours: int,
) -> None:
    """The 24h reminder is due at the same wall time the day before and the 3h one 3 elapsed hours before."""
    starts_at = local(zone, *starts)
    expected = local(zone, *due)
    assert due_at(kind, starts_at, ZoneInfo(zone)) == expected
    assert starts_at - expected == timedelta(hours=elapsed_hours)


def test_window_moves_an_early_morning_reminder_to_the_opening() -> None:
    """A 3h reminder due at 05:00 for an 08:00 appointment goes at 07:00 the same morning."""
    starts_at = local(NEW_YORK, 2026, 1, 21, 8)
    planned = plan_reminders(
        starts_at, ZoneInfo(NEW_YORK), DEFAULT_TRANSACTIONAL_WINDOW, local(NEW_YORK, 2026, 1, 19, 12)
    )
    assert [(p.kind, p.send_at) for p in planned] == [
        (DAY, local(NEW_YORK, 2026, 1, 20, 8)),
        (THREE, local(NEW_YORK, 2026, 1, 21, 7)),
    ]


def test_window_moves_a_night_reminder_to_the_evening_before() -> None:
    """A 3h reminder due at 03:30 for a 06:30 appointment goes at the last minute of the evening before."""
    starts_at = local(NEW_YORK, 2026, 1, 21, 6, 30)
    planned = plan_reminders(
        starts_at, ZoneInfo(NEW_YORK), DEFAULT_TRANSACTIONAL_WINDOW, local(NEW_YORK, 2026, 1, 19, 12)
    )
    assert [(p.kind, p.send_at) for p in planned] == [
        (DAY, local(NEW_YORK, 2026, 1, 20, 7)),
        (THREE, local(NEW_YORK, 2026, 1, 20, 20, 59)),
    ]


def test_no_reminder_when_no_allowed_time_is_left_before_the_appointment() -> None:
    """At 21:30 the evening before a 06:30 appointment neither reminder can go out in the window any more."""
    starts_at = local(NEW_YORK, 2026, 1, 21, 6, 30)
    now = local(NEW_YORK, 2026, 1, 20, 21, 30)
    assert plan_reminders(starts_at, ZoneInfo(NEW_YORK), DEFAULT_TRANSACTIONAL_WINDOW, now) == []


def test_the_24h_reminder_never_goes_with_a_3h_one_moved_earlier() -> None:
    """When the window pulls the 3h reminder to the evening before, a late 24h one must still precede it."""
    starts_at = local(NEW_YORK, 2026, 1, 21, 6, 30)
    now = local(NEW_YORK, 2026, 1, 20, 20, 59)
    planned = plan_reminders(starts_at, ZoneInfo(NEW_YORK), DEFAULT_TRANSACTIONAL_WINDOW, now)
    assert [(p.kind, p.send_at) for p in planned] == [(THREE, now)]


def _world(now: datetime, zone: str = NEW_YORK, contact_zone: str | None = None) -> ReminderWorld:
    world = make_world(now)
    world.add_org(zone)
    world.add_contact(zone=contact_zone)
    return world


async def _scan(world: ReminderWorld) -> Published:
    return await world.service.scan(AppointmentScanJob())


def _queued(world: ReminderWorld) -> list[tuple[ReminderJob, datetime | None]]:
    """The reminder jobs published so far, with their run times."""
    jobs = []
    for p in world.publisher.published:
        assert isinstance(p.job, ReminderJob)
        jobs.append((p.job, p.run_at))
    return jobs


async def test_scan_queues_a_reminder_due_before_the_next_scan() -> None:
    """A 24h reminder due within the hour is queued with its deterministic id, delayed to its due time."""
    world = _world(local(NEW_YORK, 2026, 1, 20, 9))
    starts_at = local(NEW_YORK, 2026, 1, 21, 9, 30)
    world.add_appointment(starts_at)
    assert await _scan(world) == Published(1, 0)
    [queued] = world.publisher.published
    assert queued.job_id == "reminder_a-1_24h_20260121T143000Z"
    assert queued.run_at == local(NEW_YORK, 2026, 1, 20, 9, 30)
    assert queued.job == ReminderJob(
        org_id=ORG,
        contact_id=CONTACT,
        appointment_id=APPOINTMENT,
        message="Hi Ana, this is a reminder of your appointment with Bright Smiles on Wednesday, January 21 at "
        "9:30 AM.",
        scheduled_for=starts_at,
        reminder_type=DAY,
    )


async def test_scan_leaves_reminders_due_after_the_next_scan() -> None:
    """A reminder due in two hours is left for a later scan."""
    world = _world(local(NEW_YORK, 2026, 1, 20, 9))
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 11))
    assert await _scan(world) == Published(0, 0)
    assert world.publisher.published == []


@pytest.mark.parametrize(
    ("zone", "starts"),
    [
        pytest.param(NEW_YORK, (2026, 3, 8, 10, 0), id="ny-spring-forward"),
        pytest.param(NEW_YORK, (2026, 11, 1, 10, 0), id="ny-fall-back"),
        pytest.param(LONDON, (2026, 3, 29, 10, 0), id="london-spring-forward"),
        pytest.param(LONDON, (2026, 10, 25, 10, 0), id="london-fall-back"),
    ],
)
async def test_scan_queues_24h_reminders_at_the_local_time_on_dst_days(
    zone: str, starts: tuple[int, int, int, int, int]
) -> None:
    """Half an hour before a DST-day 24h reminder is due (23 or 25 hours ahead), the scan queues it for that time."""
    starts_at = local(zone, *starts)
    due = due_at(DAY, starts_at, ZoneInfo(zone))
    world = _world(due - timedelta(minutes=30), zone)
    world.add_appointment(starts_at)
    assert await _scan(world) == Published(1, 0)
    [(job, run_at)] = _queued(world)
    assert (job.reminder_type, run_at) == (DAY, due)
    assert due.astimezone(ZoneInfo(zone)).time() == time(10, 0)


async def test_scan_after_downtime_queues_an_overdue_24h_reminder_now() -> None:
    """A 24h reminder whose due time passed during downtime is queued to run now when the 3h one is not due."""
    now = local(NEW_YORK, 2026, 1, 20, 15)
    world = _world(now)
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 9, 30))
    assert await _scan(world) == Published(1, 0)
    assert [(job.reminder_type, run_at) for job, run_at in _queued(world)] == [(DAY, now)]


async def test_scan_after_downtime_sends_only_the_3h_reminder_once_it_is_due() -> None:
    """Once the 3h reminder is due the overdue 24h one is dropped and the 3h one runs now."""
    now = local(NEW_YORK, 2026, 1, 21, 7)
    world = _world(now)
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 9, 30))
    assert await _scan(world) == Published(1, 0)
    assert [(job.reminder_type, run_at) for job, run_at in _queued(world)] == [(THREE, now)]


async def test_scan_after_downtime_drops_a_24h_reminder_that_would_crowd_the_3h_one() -> None:
    """A 24h reminder caught up 30 minutes before the 3h one is due is dropped; the 3h one follows as planned."""
    now = local(NEW_YORK, 2026, 1, 21, 8)
    world = _world(now)
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 11, 30))
    assert await _scan(world) == Published(1, 0)
    assert [(job.reminder_type, run_at) for job, run_at in _queued(world)] == [
        (THREE, local(NEW_YORK, 2026, 1, 21, 8, 30))
    ]


async def test_scan_after_downtime_skips_past_and_cancelled_appointments() -> None:
    """After downtime only upcoming, not cancelled appointments get reminders."""
    now = local(NEW_YORK, 2026, 1, 21, 12)
    world = _world(now)
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 11), appointment_id=AppointmentId("past"))
    world.add_appointment(
        local(NEW_YORK, 2026, 1, 21, 13), AppointmentStatus.CANCELLED, appointment_id=AppointmentId("cancelled")
    )
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 14), appointment_id=AppointmentId("upcoming"))
    assert await _scan(world) == Published(1, 0)
    assert [job.appointment_id for job, _ in _queued(world)] == ["upcoming"]


async def test_second_scan_publishes_nothing_new() -> None:
    """Scanning again, now or an hour later, finds the reminder already queued under the same id."""
    world = _world(local(NEW_YORK, 2026, 1, 20, 9))
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 9, 30))
    assert await _scan(world) == Published(1, 0)
    assert await _scan(world) == Published(0, 1)
    world.clock.advance(timedelta(hours=1))
    assert await _scan(world) == Published(0, 1)
    assert len(world.publisher.published) == 1


async def test_scan_queues_again_for_a_rescheduled_appointment() -> None:
    """A moved appointment gets a reminder under a new id; the old job will skip itself as moved."""
    world = _world(local(NEW_YORK, 2026, 1, 20, 9))
    first = world.add_appointment(local(NEW_YORK, 2026, 1, 21, 9, 30))
    await _scan(world)
    world.add_appointment(first.starts_at + timedelta(minutes=30))
    world.clock.advance(timedelta(minutes=30))
    assert await _scan(world) == Published(1, 0)
    assert [p.job_id for p in world.publisher.published] == [
        "reminder_a-1_24h_20260121T143000Z",
        "reminder_a-1_24h_20260121T150000Z",
    ]


async def test_scan_moves_a_3h_reminder_into_the_window() -> None:
    """The scan at 06:00 queues the 3h reminder of an 08:00 appointment (due 05:00) for 07:00."""
    world = _world(local(NEW_YORK, 2026, 1, 21, 6))
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 8))
    assert await _scan(world) == Published(1, 0)
    assert [(job.reminder_type, run_at) for job, run_at in _queued(world)] == [(THREE, local(NEW_YORK, 2026, 1, 21, 7))]


async def test_scan_queues_a_night_reminder_for_the_evening_before() -> None:
    """At 20:00 the scan queues the 3h reminder of a 06:30 appointment (due 03:30) for 20:59, its last chance."""
    world = _world(local(NEW_YORK, 2026, 1, 20, 20))
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 6, 30))
    assert await _scan(world) == Published(1, 0)
    assert [(job.reminder_type, run_at) for job, run_at in _queued(world)] == [
        (THREE, local(NEW_YORK, 2026, 1, 20, 20, 59))
    ]


async def test_scan_uses_the_orgs_window_in_the_contacts_zone() -> None:
    """A 09:00-17:00 org window read on a London contact's clock moves a 08:00 London due time to 09:00."""
    world = make_world(local(LONDON, 2026, 1, 21, 8, 30))
    world.add_org(NEW_YORK, SendWindow(time(9), time(17)))
    world.add_contact(zone=LONDON)
    world.add_appointment(local(LONDON, 2026, 1, 21, 11))
    await _scan(world)
    [queued] = world.publisher.published
    assert queued.run_at == local(LONDON, 2026, 1, 21, 9)


async def test_scan_renders_the_orgs_template_in_the_contacts_zone() -> None:
    """The org's reminder_3h SMS template is rendered with the appointment time on the contact's clock."""
    world = _world(local(LONDON, 2026, 1, 21, 11), contact_zone=LONDON)
    world.templates.add(
        Template(ORG, "reminder_3h", Channel.SMS, "{{ first_name }}: {{ org_name }} {{appointment_date_iso}} "
                 "{{ appointment_time_24h }} ({{ appointment_time }}, {{ appointment_date }})")
    )  # fmt: skip
    world.add_appointment(local(LONDON, 2026, 1, 21, 14))
    await _scan(world)
    [(job, _)] = _queued(world)
    assert job.message == "Ana: Bright Smiles 2026-01-21 14:00 (2:00 PM, Wednesday, January 21)"


async def test_scan_falls_back_to_the_built_in_text_when_the_template_breaks() -> None:
    """A template naming an unknown variable does not cost the contact the reminder: the built-in text goes."""
    world = _world(local(NEW_YORK, 2026, 1, 21, 6, 30))
    world.templates.add(Template(ORG, "reminder_3h", Channel.SMS, "Hi {{ pet_name }}"))
    world.add_appointment(local(NEW_YORK, 2026, 1, 21, 9, 30))
    await _scan(world)
    [(job, _)] = _queued(world)
    assert job.message.startswith("Hi Ana, this is a reminder")


def test_job_ids_are_colon_free_and_never_a_plain_integer() -> None:
    """Appointment ids with ':' or digits only still give valid, distinct BullMQ custom ids."""
    starts_at = datetime(2026, 1, 21, 14, 30, tzinfo=UTC)
    ids = {
        reminder_job_id(AppointmentId(raw), kind, starts_at)
        for raw in ("crm:42", "crm%3A42", "42")
        for kind in ReminderKind
    }
    assert len(ids) == 6
    assert all(":" not in i and not i.isdigit() for i in ids)
    assert reminder_job_id(AppointmentId("crm:42"), THREE, starts_at) == "reminder_crm%3A42_3h_20260121T143000Z"


@attrs.define
class _CountingTemplates(InMemoryTemplates):
    asked: list[tuple[OrgId, str]] = attrs.Factory(list)

    async def get(self, org_id: OrgId, name: str, channel: Channel) -> Template | None:
        self.asked.append((org_id, name))
        return await super().get(org_id, name, channel)


async def test_scan_looks_up_each_orgs_template_once_per_kind() -> None:
    """Many appointments of one org cost one template look-up per reminder kind, not one per appointment."""
    world = _world(local(NEW_YORK, 2026, 1, 21, 6, 30))
    world.service.templates = templates = _CountingTemplates()
    for n in range(5):
        world.add_appointment(local(NEW_YORK, 2026, 1, 21, 9, 30 + n), appointment_id=AppointmentId(f"a{n}"))
    await _scan(world)
    assert len(_queued(world)) == 5
    assert templates.asked == [(ORG, "reminder_3h")]
