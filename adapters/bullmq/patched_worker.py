"""bullmq's ``Worker`` with the internals we override, all in this module, pinned to the version they were written for.

What changes against PyPI bullmq 3.4.4 (each behaviour has its own test in
``tests/integration/bullmq/test_patched_worker.py``; the version pin is checked at start-up):

- **The next job comes back with the finished one** (``processJob``): a completed job is moved with
  ``moveToFinished`` asking for the next job (``fetchNext``), one Lua call per job as npm bullmq does, and the next
  job runs in the same task. bullmq 3.4.4 asks for no next job and fetches with a second Lua call
  (``moveToActive``); under ``queue.setGlobalConcurrency`` a freed slot then waits out the blocking fetch in
  flight (``drainDelay``, 5 s) before the next job starts. Failed and deferred attempts fetch nothing (npm bullmq
  also fetches on failure; the run loop's ordinary fetch covers it).
- **A rate-limited queue is waited out, not blocked on** (``getNextJob``): when ``moveToActive`` or
  ``moveToFinished`` answers that the queue's rate limit (``queue.setGlobalRateLimit``) is reached, one fetch
  sleeps until the window ends and then fetches (npm bullmq's ``waitForRateLimit``). bullmq 3.4.4 instead blocks on
  the marker for ``drainDelay`` (5 s), which nothing wakes when the window ends.
- **Blocking waits to the millisecond**: the Redis version is read before the fetch loop starts, so bullmq knows
  ``BZPOPMIN`` takes a fractional timeout (Redis >= 6). bullmq 3.4.4 reads it only when it builds the connection
  itself; with a client handed to it, timeouts are rounded up to whole seconds and a delayed job starts up to a
  second late.
- **Jobs fetched while closing are kept** (``getNextJob``, ``processJob``): a job that an in-flight fetch returns
  after closing began is queued in ``late_jobs`` for the drain (bullmq 3.4.4 drops it, and it stays ``active``
  until a stalled check counts a stall); a next job handed back by ``moveToFinished`` is run in its task.
- **Workers visible to Node tooling** (``_ensure_client_names``, ``blocking_client``): the worker waits for jobs
  on a connection of its own named as npm bullmq names a worker's; the pool stays unnamed
  (``adapters/bullmq/worker_identity.py``).
- **Jobs are fetched and finished over one pipelined connection** (``pipelined_client``, ``moveToActive``,
  ``processJob``): ``moveToActive`` and the ``moveToFinished`` of a completed job go over
  ``adapters/bullmq/pipelined.py`` (one connection shared by all concurrent jobs, as npm bullmq's ioredis does)
  instead of a pooled connection per call; if that connection is lost the call is repeated through the pool, whose
  retry policy applies (as a retry of redis-py's own would repeat it); tested in
  ``tests/integration/bullmq/test_pipelined.py``. When a job arrives at an idle worker, bullmq's run loop (as npm
  bullmq's) starts a ``moveToActive`` for every free slot at once: over the pool each waited for a connection of its
  own, so their timestamps (a fetched job's ``processedOn``) were taken milliseconds before Redis ran them, often
  before the job was even added; written together they reach Redis within the loop turn that stamped them.
- **Job data that is not JSON is failed** (``nextJobFromJobData``), as unrecoverable with a readable reason,
  instead of going through "stalled" for ever.

Upstream: the first three belong in bullmq's ``Worker`` itself (``processJob`` returning the next job to the run
loop, ``limitUntil`` kept as a deadline and waited out, ``getRedisVersion`` called in ``run``); they are written
here so they could be proposed as such.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import time
from typing import Any

import msgpack
import redis.asyncio as redis_asyncio
from bullmq import Job as BullJob
from bullmq import Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError
from bullmq.scripts import raw2NextJobData
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.bullmq.pipelined import PipelinedRedis
from adapters.bullmq.worker_identity import use_blocking_client
from domain.errors import ConfigurationError

BULLMQ_VERSION = "3.4.4"
"""The PyPI bullmq release whose internals the overrides below were written against."""

NOT_JSON_REASON = "invalid job: data is not JSON"


def check_bullmq_version(installed: str | None = None) -> None:
    """Raise ConfigurationError unless the installed bullmq is the release this module overrides."""
    installed = installed or importlib.metadata.version("bullmq")
    if installed != BULLMQ_VERSION:
        raise ConfigurationError(
            f"bullmq {installed} is installed; adapters/bullmq/patched_worker.py overrides the internals of "
            f"bullmq {BULLMQ_VERSION} only (pin it, or review the overrides against the new release)"
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


class PatchedWorker(Worker):  # type: ignore[misc]  # bullmq ships no type hints
    """bullmq's Worker with the overrides listed in the module docstring."""

    waiting: asyncio.Future[Any] | None
    """bullmq's: the fetch that waits for work (the marker's ``BZPOPMIN``, or here a rate-limit window)."""

    def __init__(
        self,
        *args: Any,
        blocking_client: redis_asyncio.Redis | None = None,
        pipelined_client: PipelinedRedis | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if blocking_client is not None:
            use_blocking_client(self, blocking_client)
        self.pipelined_client = pipelined_client
        """Where ``moveToActive`` and completed jobs' ``moveToFinished`` go first (None: the pool)."""
        self.late_jobs: list[BullJob] = []
        self.rate_limited_until_ms = 0
        """Epoch ms until which the queue's rate limit is reached (0: not limited)."""
        keys = self.keys
        self._completed_keys = [keys[name] for name in _FINISH_KEYS] + [keys["completed"]]
        self._completed_tail = [self.scripts.toKey("metrics:completed"), keys["marker"]]
        self._activation_keys = [keys[name] for name in _ACTIVATION_KEYS]

    async def _ensure_client_names(self) -> None:
        """Nothing to do: the blocking client is named as Node names a worker's as it connects, and the pool must
        stay unnamed (adapters/bullmq/worker_identity.py)."""

    async def run(self) -> None:
        for connection in (self.redisConnection, self.blockingRedisConnection):
            if connection is not None:
                await connection.getRedisVersion()  # sets its capabilities: fractional BZPOPMIN timeouts
        await super().run()

    # -- fetching ---------------------------------------------------------------------------------------------

    async def getNextJob(self, token: str) -> BullJob | None:
        if self.closing:
            return None
        if self.rate_limited_until_ms > _now_ms():
            job = await self._fetch_after_rate_limit(token)
        else:
            job = await super().getNextJob(token)
        if job is not None and self.closing:
            self.late_jobs.append(job)
            return None
        return job

    async def _fetch_after_rate_limit(self, token: str) -> BullJob | None:
        """One fetch sleeps out the window (as ``waiting``, so the run loop starts no other and ``close``
        cancels it); concurrent fetches return nothing."""
        if self.waiting is not None:
            return None
        window = asyncio.ensure_future(asyncio.sleep((self.rate_limited_until_ms - _now_ms()) / 1000))
        self.waiting = window
        try:
            await window
        except asyncio.CancelledError:
            if self.closing or self.paused:
                return None
            raise
        finally:
            self.waiting = None
        job: BullJob | None = await self.moveToActive(token)
        return job

    async def moveToActive(self, token: str) -> BullJob | None:
        """bullmq's ``moveToActive`` (``moveToActive-11.lua``: the next waiting job, locked under ``token``) over
        the pipelined connection; through the pool without one, or when that connection was lost."""
        lane = self.pipelined_client
        if lane is None:
            return await self._move_to_active_pooled(token)
        try:
            raw = await self._run_script(lane, "moveToActive", self._activation_keys, self._activation_args(token))
        except (RedisConnectionError, RedisTimeoutError):
            return await self._move_to_active_pooled(token)
        job_data, job_id, limit_until, delay_until = raw2NextJobData(raw)
        return await self.nextJobFromJobData(job_data, job_id, limit_until or 0, delay_until or 0, token)

    async def _move_to_active_pooled(self, token: str) -> BullJob | None:
        job: BullJob | None = await super().moveToActive(token)
        return job

    def _activation_args(self, token: str) -> list[Any]:
        """The arguments of ``moveToActive-11.lua``, as bullmq's ``Scripts.moveToActive`` builds them."""
        opts = self.opts
        packed_opts = msgpack.packb(
            {"token": token, "lockDuration": opts.get("lockDuration", 0), "limiter": opts.get("limiter")},
            use_bin_type=True,
        )
        return [self.keys[""], _now_ms(), packed_opts]

    async def nextJobFromJobData(
        self,
        job_data: dict[str, Any] | None = None,
        job_id: str | None = None,
        limit_until: int = 0,
        delay_until: int = 0,
        token: str | None = None,
    ) -> BullJob | None:
        limit_ms = max(int(limit_until or 0), 0)
        self.rate_limited_until_ms = _now_ms() + limit_ms if limit_ms else 0
        try:
            return await self._job_from_data(job_data, job_id, limit_ms, int(delay_until or 0), token)
        except ValueError:
            if not job_data or _is_json(job_data.get("data", "{}")):
                raise
        # bullmq fails a job carrying a deferred failure ("defa") before calling the processor, as unrecoverable;
        # the raw text travels on as a JSON string so the dead-letter copy keeps it.
        parked = {**job_data, "data": json.dumps(job_data["data"]), "defa": NOT_JSON_REASON}
        return await self._job_from_data(parked, job_id, limit_ms, int(delay_until or 0), token)

    async def _job_from_data(
        self, job_data: dict[str, Any] | None, job_id: str | None, limit_ms: int, delay_until: int, token: str | None
    ) -> BullJob | None:
        job: BullJob | None = await super().nextJobFromJobData(job_data, job_id, limit_ms, delay_until, token)
        return job

    # -- processing -------------------------------------------------------------------------------------------

    async def processJob(self, job: BullJob, token: str) -> None:
        """Run ``job``, then each next job its completion hands back, in this task and under the same token."""
        current: BullJob | None = job
        while current is not None:
            current = await self._process_one(current, token)

    async def _process_one(self, job: BullJob, token: str) -> BullJob | None:
        """One attempt of ``job``; return the next job fetched by its ``moveToFinished``, if any."""
        for option in ("removeOnComplete", "removeOnFail"):
            if option in self.opts:
                job.opts.setdefault(option, self.opts[option])
        self.jobs.add((job, token))
        self.lockManager.track_job(job.id, token, _now_ms(), should_create_controller=False)
        try:
            if job.deferredFailure:
                raise UnrecoverableError(job.deferredFailure)
            result = await self.processor(job, token)
            if self.forceClosing:
                return None  # the job stays active: the stalled check gives it to another worker
            return await self._complete(job, token, result)
        except (DelayedError, WaitingChildrenError):
            return None
        except Exception as error:
            await self._fail(job, token, error)
            return None
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)

    async def _complete(self, job: BullJob, token: str, result: Any) -> BullJob | None:
        fetch_next = not (self.closing or self.paused)
        keys, args = self._completion_args(job, token, result, fetch_next)
        moved = await self._move_to_finished(job.id, keys, args)
        job.returnvalue = result
        job.attemptsMade += 1
        self.emit("completed", job, result)
        if not fetch_next or moved is None:
            return None
        job_data, job_id, limit_until, delay_until = moved
        return await self.nextJobFromJobData(job_data, job_id, limit_until or 0, delay_until or 0, token)

    async def _move_to_finished(self, job_id: str, keys: list[str], args: list[Any]) -> list[Any] | None:
        """bullmq's ``Scripts.moveToFinished`` sent over ``pipelined_client``; through the pool without one, or again
        through it when the pipelined connection was lost (the pool's client retries on its own)."""
        lane = self.pipelined_client
        if lane is None:
            return await self._move_to_finished_pooled(job_id, keys, args)
        try:
            result = await self._run_script(lane, "moveToFinished", keys, args)
        except (RedisConnectionError, RedisTimeoutError):
            return await self._move_to_finished_pooled(job_id, keys, args)
        if type(result) is int and result < 0:
            error = {"code": result, "jobId": job_id, "command": "moveToFinished", "state": "active"}
            raise self.scripts.finishedErrors(error)
        moved: list[Any] | None = raw2NextJobData(result) if result is not None else None
        return moved

    async def _run_script(self, lane: PipelinedRedis, name: str, keys: list[str], args: list[Any]) -> Any:
        """bullmq's script ``name`` over ``lane``: ``EVALSHA``, loading the script first when Redis does not know
        it (``NOSCRIPT``: a restarted or flushed server)."""
        script = self.scripts.commands[name]
        try:
            return await lane.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys, args, lane)  # redis-py's AsyncScript loads it, then runs it

    async def _move_to_finished_pooled(self, job_id: str, keys: list[str], args: list[Any]) -> list[Any] | None:
        moved: list[Any] | None = await self.scripts.moveToFinished(job_id, keys, args)
        return moved

    def _completion_args(self, job: BullJob, token: str, result: Any, fetch_next: bool) -> tuple[list[str], list[Any]]:
        """The keys and arguments of ``moveToFinished-14.lua`` for a completed job, as bullmq's
        ``Scripts.moveToFinishedArgs`` builds them but with the queue's keys built once (it rebuilt them, with
        closures, for every job: ~5 % of the worker's time in the profile)."""
        opts = job.opts
        packed_opts = msgpack.packb(
            {
                "token": token,
                "keepJobs": _keep_jobs(opts.get("removeOnComplete", False)),
                "limiter": self.opts.get("limiter"),
                "lockDuration": self.opts.get("lockDuration"),
                "attempts": job.attempts,
                "attemptsMade": job.attemptsMade,
                "maxMetricsSize": (self.opts.get("metrics") or {}).get("maxDataPoints", ""),
                "fpof": opts.get("failParentOnFailure", False),
                "cpof": opts.get("continueParentOnFailure", False),
                "idof": opts.get("ignoreDependencyOnFailure", False),
                "rdof": opts.get("removeDependencyOnFailure", False),
            },
            use_bin_type=True,
        )
        keys = [*self._completed_keys, self.keys[""] + job.id, *self._completed_tail]
        returned = json.dumps(result, separators=(",", ":"), allow_nan=False)
        args = [job.id, _now_ms(), "returnvalue", returned, "completed", "1" if fetch_next else "", self.keys[""]]
        return keys, [*args, packed_opts]

    async def _fail(self, job: BullJob, token: str, error: Exception) -> None:
        try:
            if not self.forceClosing:
                await job.moveToFailed(error, token)
            self.emit("failed", job, error)
        except Exception as move_error:
            self.emit("error", move_error, job)


_ACTIVATION_KEYS = (
    "wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused", "meta", "pc", "marker",
)  # fmt: skip
"""KEYS[1..11] of ``moveToActive-11.lua``, as bullmq's ``Scripts.moveToActive`` lists them."""
_FINISH_KEYS = ("wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused", "meta", "pc")
"""KEYS[1..10] of ``moveToFinished-14.lua``; then the target set, the job, its metrics and the marker."""


def _keep_jobs(remove: object) -> dict[str, Any]:
    """``removeOnComplete`` (True, False/None, a count, or ``{age, count}``) as the script's ``keepJobs``."""
    if isinstance(remove, dict):
        return remove
    if isinstance(remove, int) and not isinstance(remove, bool):
        return {"count": remove}
    return {"count": 0} if remove else {"count": -1}


def _is_json(text: object) -> bool:
    try:
        json.loads(text)  # type: ignore[arg-type]  # anything json.loads refuses is not JSON
    except (TypeError, ValueError):
        return False
    return True
