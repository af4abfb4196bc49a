"""Distributed cron on BullMQ job schedulers: the scan and the snapshot fan-out, their status and a run-now trigger.

- cron.py: DST-safe cron evaluation for the schedulers (croniter 2.0.7 in a zone is wrong across DST changes);
- schedules.py: our schedule definitions, ``sync_schedules`` (every worker at start-up) and ``run_now``;
- status_store.py: the status hash of each schedule (written here, read by the health server);
- status.py: the handler wrapper that records each run, and ``schedule_status`` for the health endpoint and CLI.
"""
