"""The queue topology is declared once (domain/jobs.py): what runs and what is offered derives from it."""

from __future__ import annotations

import configparser
import pathlib
import re
from types import SimpleNamespace
from typing import Any

from adapters.bullmq.keys import DEAD_LETTER_QUEUE
from adapters.bullmq.router import JobRouter
from domain.jobs import CONSUMED_QUEUES, JOB_TYPES, SCHEDULED_JOBS, Job, QueueName
from domain.outcomes import Outcome, Skipped
from entrypoints import health, launch
from entrypoints.bootstrap import handlers_by_queue, schedules_of
from entrypoints.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
WORKER_COMMAND = re.compile(r"-m entrypoints\.launch worker --queue (\S+)$")


def _worker_programs(conf: pathlib.Path) -> dict[str, str]:
    """Each ``[program:worker-*]`` of a supervisord file, with the queue its command consumes."""
    parser = configparser.RawConfigParser(strict=False)
    parser.read(conf)
    programs = {}
    for section in parser.sections():
        if section.startswith("program:worker-"):
            match = WORKER_COMMAND.search(parser.get(section, "command").strip())
            programs[section.removeprefix("program:")] = match.group(1) if match else ""
    return programs


def test_supervisord_runs_one_worker_program_per_consumed_queue() -> None:
    """supervisord.conf has exactly one ``worker-<queue>`` program per consumed queue, consuming that queue."""
    programs = _worker_programs(ROOT / "supervisord.conf")
    assert programs == {f"worker-{queue}": str(queue) for queue in CONSUMED_QUEUES}


def test_the_supervisord_check_notices_a_missing_program(tmp_path: pathlib.Path) -> None:
    """A configuration without the dunning worker fails the comparison above (the check can fail)."""
    text = (ROOT / "supervisord.conf").read_text()
    without = re.sub(r"\[program:worker-dunning\].*?(?=\n\[)", "", text, flags=re.S)
    (tmp_path / "supervisord.conf").write_text(without)
    programs = _worker_programs(tmp_path / "supervisord.conf")
    assert "worker-dunning" not in programs
    assert programs != {f"worker-{queue}": str(queue) for queue in CONSUMED_QUEUES}


def test_the_dead_letter_queue_is_not_a_consumed_queue() -> None:
    """Nothing consumes the dead-letter queue: it is the BullMQ adapter's name, not one of the domain's queues."""
    assert DEAD_LETTER_QUEUE not in {str(queue) for queue in QueueName}


def test_every_consumed_queue_has_a_handler_for_each_of_its_jobs() -> None:
    """The composition root's handler maps satisfy the router's completeness check on every consumed queue."""

    async def handle(_job: Job) -> Outcome:
        return Skipped("test")

    service = SimpleNamespace(process=handle, scan=handle, compute=handle, fan_out=handle)
    services: Any = SimpleNamespace(reminders=service, nurture=service, dunning=service, snapshots=service)
    maps = handlers_by_queue(services, handle)
    assert set(maps) == set(CONSUMED_QUEUES)
    for queue in CONSUMED_QUEUES:
        JobRouter(queue, maps[queue])  # raises ConfigurationError naming a missing or foreign job name
    assert {name for handlers in maps.values() for name in handlers} == set(JOB_TYPES)


def test_each_scheduled_job_has_one_schedule_on_a_consumed_queue() -> None:
    """The default settings give one schedule per scheduled job, named after it, on a queue a worker consumes."""
    schedules = schedules_of(Settings.from_env({}))
    assert [schedule.job_name for schedule in schedules] == list(SCHEDULED_JOBS)
    assert all(schedule.name == str(schedule.job_name) for schedule in schedules)
    assert all(schedule.queue in CONSUMED_QUEUES for schedule in schedules)


def test_the_programs_offer_the_consumed_queues() -> None:
    """The launcher's ``--queue`` choices and the health server's queue list are the consumed queues."""
    consumed = tuple(str(queue) for queue in CONSUMED_QUEUES)
    assert consumed == launch.QUEUES
    assert consumed == health.QUEUES
    assert health.HealthServerOptions(redis=None, database_url="").dead_letter_queue == DEAD_LETTER_QUEUE  # type: ignore[arg-type]
