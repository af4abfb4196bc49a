"""sync_schedules against a real Redis: idempotent upserts, replacement, removal, keeping an overdue tick."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis_asyncio

from adapters.scheduling.schedules import Schedule, define_schedules, scheduler_queue, scheduler_record, sync_schedules
from domain.jobs import JobName, QueueName
from tests.integration.scheduling.support import now_ms, once_at, pending_ticks, sleep_until_ms, tick_millis

HOURLY = define_schedules("0 * * * *", "0 * * * *", "UTC")


async def test_repeated_sync_creates_once_then_leaves_schedulers_untouched(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """The first sync creates both schedulers; the next ones change nothing, not even the pending tick."""
    first = await sync_schedules(client, prefix, HOURLY)
    before = {s.id: await pending_ticks(client, prefix, s) for s in HOURLY}
    second = await sync_schedules(client, prefix, HOURLY)
    assert sorted(first.created) == ["cf-fan-out-snapshots", "cf-scan-appointments"]
    assert sorted(second.unchanged) == ["cf-fan-out-snapshots", "cf-scan-appointments"]
    assert second.created == second.replaced == second.revived == second.removed == ()
    assert {s.id: await pending_ticks(client, prefix, s) for s in HOURLY} == before
    for schedule in HOURLY:
        record = await scheduler_queue(client, prefix, schedule.queue).getJobScheduler(schedule.id)
        assert (record["name"], record["pattern"], record["tz"]) == (str(schedule.job_name), "0 * * * *", "UTC")
        assert len(before[schedule.id]) == 1


async def test_workers_syncing_at_once_leave_one_scheduler_and_one_pending_tick(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """Eight concurrent syncs (fresh and changed definitions) end with one scheduler and one tick per schedule."""
    await asyncio.gather(*(sync_schedules(client, prefix, HOURLY) for _ in range(8)))
    changed = define_schedules("15 * * * *", "45 * * * *", "UTC")
    await asyncio.gather(*(sync_schedules(client, prefix, changed) for _ in range(8)))
    for schedule in changed:
        queue = scheduler_queue(client, prefix, schedule.queue)
        assert await client.zrange(queue.keys["repeat"], 0, -1) == [schedule.id]
        ticks = await pending_ticks(client, prefix, schedule)
        assert len(ticks) == 1
        assert (await queue.getJobScheduler(schedule.id))["pattern"] == schedule.pattern


async def test_changed_cron_replaces_the_old_schedule(client: redis_asyncio.Redis, prefix: str) -> None:
    """A new pattern replaces the scheduler and its pending tick; the old tick is gone."""
    await sync_schedules(client, prefix, HOURLY)
    old_tick = (await pending_ticks(client, prefix, HOURLY[0]))[0]
    changed = define_schedules("30 * * * *", "0 * * * *", "UTC")
    report = await sync_schedules(client, prefix, changed)
    assert report.replaced == ("cf-scan-appointments",)
    assert report.unchanged == ("cf-fan-out-snapshots",)
    [new_tick] = await pending_ticks(client, prefix, changed[0])
    assert new_tick != old_tick
    assert (tick_millis(new_tick) // 60_000) % 60 == 30
    queue = scheduler_queue(client, prefix, QueueName.REMINDERS)
    assert await queue.getJob(old_tick) is None
    assert (await queue.getJobScheduler("cf-scan-appointments"))["pattern"] == "30 * * * *"


async def test_changed_zone_replaces_the_old_schedule(client: redis_asyncio.Redis, prefix: str) -> None:
    """Moving the schedules to another zone is a change: the scheduler records the new zone."""
    await sync_schedules(client, prefix, HOURLY)
    zoned = define_schedules("0 * * * *", "0 1 * * *", "America/New_York")
    report = await sync_schedules(client, prefix, zoned)
    assert sorted(report.replaced) == ["cf-fan-out-snapshots", "cf-scan-appointments"]
    record = await scheduler_queue(client, prefix, QueueName.SNAPSHOTS).getJobScheduler("cf-fan-out-snapshots")
    assert (record["pattern"], record["tz"]) == ("0 1 * * *", "America/New_York")


async def test_schedules_no_longer_defined_are_removed_and_foreign_ones_kept(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """A ``cf-`` scheduler we dropped is removed with its tick and status; a Node-side scheduler stays."""
    legacy = Schedule("weekly-digest", JobName.SCAN_APPOINTMENTS, pattern="0 8 * * 1")
    await sync_schedules(client, prefix, [*HOURLY, legacy])
    reminders = scheduler_queue(client, prefix, QueueName.REMINDERS)
    await reminders.upsertJobScheduler("node-report", {"pattern": "0 6 * * *"}, "scan-appointments", {}, {})
    assert await client.exists(f"{prefix}:cf:schedule:weekly-digest")
    report = await sync_schedules(client, prefix, HOURLY)
    assert report.removed == ("cf-weekly-digest",)
    assert sorted(await client.zrange(reminders.keys["repeat"], 0, -1)) == ["cf-scan-appointments", "node-report"]
    assert await pending_ticks(client, prefix, legacy) == []
    assert not await client.exists(f"{prefix}:cf:schedule:weekly-digest")
    assert "weekly-digest" not in await client.smembers(f"{prefix}:cf:schedules")


async def test_library_upsert_at_start_up_drops_a_tick_that_came_while_no_worker_ran(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """Why sync does not always upsert: bullmq's upsert deletes the overdue tick and arms only the next one."""
    fire_at = now_ms() + 1500
    schedule = Schedule("once", JobName.SCAN_APPOINTMENTS, pattern=once_at(fire_at))
    await sync_schedules(client, prefix, [schedule], owned_queues=[])
    [tick] = await pending_ticks(client, prefix, schedule)
    await sleep_until_ms(tick_millis(tick) + 500)  # the tick is due; no worker runs
    queue = scheduler_queue(client, prefix, schedule.queue)
    await queue.upsertJobScheduler(schedule.id, schedule.repeat_options(), str(schedule.job_name), {}, {})
    [after] = await pending_ticks(client, prefix, schedule)
    assert await queue.getJob(tick) is None
    assert tick_millis(after) - tick_millis(tick) > 300 * 24 * 3600 * 1000  # next year: this year's run is lost


async def test_sync_keeps_a_tick_that_came_while_no_worker_ran(client: redis_asyncio.Redis, prefix: str) -> None:
    """Our start-up sync leaves an unchanged scheduler alone, so its overdue tick is still there to run."""
    fire_at = now_ms() + 1500
    schedule = Schedule("once", JobName.SCAN_APPOINTMENTS, pattern=once_at(fire_at))
    await sync_schedules(client, prefix, [schedule], owned_queues=[])
    [tick] = await pending_ticks(client, prefix, schedule)
    await sleep_until_ms(tick_millis(tick) + 500)
    report = await sync_schedules(client, prefix, [schedule], owned_queues=[])
    assert report.unchanged == (schedule.id,)
    assert await pending_ticks(client, prefix, schedule) == [tick]


async def test_sync_re_arms_a_scheduler_whose_next_tick_was_never_added(
    client: redis_asyncio.Redis, prefix: str
) -> None:
    """A worker that died after taking a tick but before adding the next leaves the scheduler dead; sync re-arms it."""
    scan = Schedule("every-two-seconds", JobName.SCAN_APPOINTMENTS, pattern="*/2 * * * * *")
    await sync_schedules(client, prefix, [scan], owned_queues=[])
    [tick] = await pending_ticks(client, prefix, scan)
    await sleep_until_ms(tick_millis(tick) + 100)  # due: a worker takes it (now active) and crashes at once
    key = f"{prefix}:{scan.queue}"
    await client.zrem(f"{key}:delayed", tick)
    await client.lpush(f"{key}:active", tick)
    report = await sync_schedules(client, prefix, [scan], owned_queues=[])
    assert report.revived == (scan.id,)
    [rearmed] = await pending_ticks(client, prefix, scan)
    assert tick_millis(rearmed) > tick_millis(tick)
    assert await scheduler_queue(client, prefix, scan.queue).getJobState(rearmed) == "delayed"


async def test_library_get_job_scheduler_raises_for_an_unknown_id(client: redis_asyncio.Redis, prefix: str) -> None:
    """bullmq 3.4.4 raises ValueError for a scheduler that does not exist; ``scheduler_record`` answers None."""
    queue = scheduler_queue(client, prefix, QueueName.REMINDERS)
    with pytest.raises(ValueError, match="not enough values to unpack"):
        await queue.getJobScheduler("cf-nothing")
    assert await scheduler_record(queue, "cf-nothing") is None
