"""Benchmark: the hourly reminder scan over 1,000,000 appointments and the KPI facts of 10,000 orgs for one day.

Builds its own database (``cf_bench_<random>``, dropped at the end) on the server of ``--admin-dsn`` (default
``TEST_DATABASE_URL`` or the local ``test`` database), fills it with COPY, then reports:
  - the scan SQL (EXPLAIN ANALYZE execution time) with its index, against the same query with index scans off
    (the baseline: a sequential scan), and the whole port call (rows converted to domain values);
  - the KPI facts of every org for its own local yesterday, from one process: sequentially, then 4 at a time;
  - ``EXPLAIN (ANALYZE, BUFFERS)`` of both queries.
Run: ``.venv/bin/python bench/postgres_scan_kpi.py`` (about 2-4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.postgres import PostgresAppointments, PostgresDatabase, PostgresKpiFacts, PostgresOrganizations, migrate
from adapters.postgres.crm import UPCOMING_BETWEEN_SQL
from adapters.postgres.kpi import KPI_FACTS_SQL

ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Paris", "Australia/Sydney", "Asia/Tokyo"]
STATUSES = ["scheduled"] * 70 + ["confirmed"] * 15 + ["completed"] * 8 + ["cancelled"] * 4 + ["no_show"] * 3
# The scan's look-ahead (reminder_scan: 26h longest lead + 1h interval + 15 min margin) is ~5% of the spread.
SCAN_WINDOW = timedelta(hours=27, minutes=15)
SPREAD_PAST, SPREAD_FUTURE = timedelta(days=8), timedelta(days=14, hours=17)


def dsn_for(admin_dsn: str, database: str) -> str:
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{database}"


async def fill(connection: asyncpg.Connection, orgs: int, per_org: int, now: datetime) -> dict[str, int]:
    """COPY every table the two queries read; returns the row counts."""
    rng = random.Random(7)
    contacts_per_org, invoices_per_org, ledger_per_org = 20, 10, 20
    spread = (SPREAD_PAST + SPREAD_FUTURE).total_seconds()
    org_ids = [f"org-{n:05d}" for n in range(orgs)]
    await connection.copy_records_to_table(
        "organizations",
        records=[(o, f"Clinic {o}", ZONES[n % len(ZONES)], "USD") for n, o in enumerate(org_ids)],
        columns=["id", "name", "time_zone", "currency"],
    )
    contacts = [
        (o, f"c-{k}", "Ada", f"+1415555{k:04d}", ZONES[k % len(ZONES)] if k % 3 else None,
         now - timedelta(days=rng.uniform(0, 365)))
        for o in org_ids
        for k in range(contacts_per_org)
    ]  # fmt: skip
    await connection.copy_records_to_table(
        "contacts", records=contacts, columns=["org_id", "id", "first_name", "phone", "time_zone", "created_at"]
    )

    def appointments() -> list[tuple[str, str, str, datetime, str, datetime]]:
        rows = []
        for o in org_ids:
            for k in range(per_org):
                starts = now - SPREAD_PAST + timedelta(seconds=rng.uniform(0, spread))
                created = starts - timedelta(days=rng.uniform(1, 30))
                rows.append((o, f"a-{k}", f"c-{k % contacts_per_org}", starts, rng.choice(STATUSES), created))
        return rows

    appointment_rows = appointments()
    await connection.copy_records_to_table(
        "appointments",
        records=appointment_rows,
        columns=["org_id", "id", "contact_id", "starts_at", "status", "created_at"],
    )
    invoices, payments = [], []
    for o in org_ids:
        for k in range(invoices_per_org):
            issued = now - timedelta(days=rng.uniform(0, 90))
            paid = k % 2 == 0
            invoices.append(
                (o, f"i-{k}", f"c-{k}", 10_000 + k, "USD", "paid" if paid else "open", issued, issued if paid else None)
            )
            if paid:
                payments.append((o, f"p-{k}", f"i-{k}", 10_000 + k, "USD", issued + timedelta(days=rng.uniform(0, 3))))
    await connection.copy_records_to_table(
        "invoices",
        records=invoices,
        columns=["org_id", "id", "contact_id", "amount_minor", "currency", "status", "issued_at", "closed_at"],
    )
    await connection.copy_records_to_table(
        "payments",
        records=payments,
        columns=["org_id", "id", "invoice_id", "amount_minor", "currency", "received_at"],
    )
    ledger = [
        (f"{'dunning' if k % 5 == 0 else 'reminder'}:{o}:{k}", o, f"c-{k % contacts_per_org}",
         "sms" if k % 2 else "email", "transactional", rng.choice(["sent", "sent", "sent", "failed", "unknown"]),
         now - timedelta(days=rng.uniform(0, 10)), now)
        for o in org_ids
        for k in range(ledger_per_org)
    ]  # fmt: skip
    await connection.copy_records_to_table(
        "send_ledger",
        records=ledger,
        columns=["key", "org_id", "contact_id", "channel", "purpose", "state", "claimed_at", "updated_at"],
    )
    await connection.copy_records_to_table(
        "nurture_sequences", records=[(o, "seq") for o in org_ids], columns=["org_id", "id"]
    )
    enrollments = [
        (f"{o}-e{k}", o, f"c-{k}", "seq", "completed" if k % 2 else "active",
         now - timedelta(days=rng.uniform(0, 5)), now - timedelta(days=rng.uniform(0, 2)) if k % 2 else None)
        for o in org_ids
        for k in range(5)
    ]  # fmt: skip
    await connection.copy_records_to_table(
        "nurture_enrollments",
        records=enrollments,
        columns=["id", "org_id", "contact_id", "sequence_id", "status", "enrolled_at", "completed_at"],
    )
    await connection.execute("analyze")
    return {
        "organizations": len(org_ids),
        "contacts": len(contacts),
        "appointments": len(appointment_rows),
        "invoices": len(invoices),
        "payments": len(payments),
        "send_ledger": len(ledger),
        "nurture_enrollments": len(enrollments),
    }


async def explain(connection: asyncpg.Connection, sql: str, *args: object) -> tuple[float, str]:
    """Execution time (ms) reported by EXPLAIN ANALYZE, and the plan text."""
    rows = await connection.fetch("explain (analyze, buffers) " + sql, *args)
    plan = "\n".join(r[0] for r in rows)
    execution = next(line for line in plan.splitlines() if line.startswith("Execution Time"))
    return float(execution.split(":")[1].split()[0]), plan


# The range part of the scan alone, without the joins to contacts and orgs that dominate the full query.
RANGE_ONLY_SQL = """
    select count(*) from appointments
     where starts_at >= $1 and starts_at < $2 and status in ('scheduled', 'confirmed')
"""


async def bench_scan(db: PostgresDatabase, dsn: str, now: datetime) -> None:
    start, end = now, now + SCAN_WINDOW
    connection = await asyncpg.connect(dsn)
    try:
        indexed = [await explain(connection, UPCOMING_BETWEEN_SQL, start, end) for _ in range(3)]
        range_indexed = [await explain(connection, RANGE_ONLY_SQL, start, end) for _ in range(3)]
        await connection.execute("set enable_indexscan = off; set enable_bitmapscan = off")
        seq = [await explain(connection, UPCOMING_BETWEEN_SQL, start, end) for _ in range(3)]
        range_seq = [await explain(connection, RANGE_ONLY_SQL, start, end) for _ in range(3)]
    finally:
        await connection.close()
    best_range_indexed, best_range_seq = min(t for t, _ in range_indexed), min(t for t, _ in range_seq)
    best_indexed, best_seq = min(t for t, _ in indexed), min(t for t, _ in seq)
    began = time.perf_counter()
    candidates = await PostgresAppointments(db).upcoming_between(start, end)
    port_seconds = time.perf_counter() - began
    print(f"\n## Reminder scan: window of {SCAN_WINDOW}, {len(candidates):,} candidates")
    print(f"scan SQL, partial index on starts_at: {best_indexed:9.1f} ms (best of 3)")
    print(f"scan SQL, index scans off (baseline): {best_seq:9.1f} ms (best of 3)")
    print(f"ratio baseline / indexed: {best_seq / best_indexed:.2f}x")
    print(f"range part alone, indexed:            {best_range_indexed:9.1f} ms (best of 3)")
    print(f"range part alone, index scans off:    {best_range_seq:9.1f} ms (best of 3)")
    print(f"ratio baseline / indexed, range part: {best_range_seq / best_range_indexed:.1f}x")
    print(
        f"whole port call (SQL + domain values): {port_seconds * 1000:9.1f} ms, "
        f"{len(candidates) / port_seconds:,.0f} candidates/s"
    )
    print("\nEXPLAIN (ANALYZE, BUFFERS), indexed:\n" + indexed[-1][1])


def local_yesterday(zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    day: date = now.astimezone(zone).date() - timedelta(days=1)
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


async def bench_kpi(db: PostgresDatabase, dsn: str, now: datetime) -> None:
    orgs = await PostgresOrganizations(db).active()
    source = PostgresKpiFacts(db)
    windows = {org.id: local_yesterday(org.zone, now) for org in orgs}

    began = time.perf_counter()
    for org in orgs:
        await source.facts(org, *windows[org.id])
    sequential = time.perf_counter() - began

    limit = asyncio.Semaphore(4)

    async def one(org_index: int) -> None:
        org = orgs[org_index]
        async with limit:
            await source.facts(org, *windows[org.id])

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(orgs))))
    concurrent = time.perf_counter() - began
    print(f"\n## KPI facts: {len(orgs):,} orgs, each for its local yesterday")
    print(f"sequential, one connection: {sequential:7.2f} s total, {len(orgs) / sequential:,.0f} orgs/s")
    print(f"4 at a time, pool of 4:     {concurrent:7.2f} s total, {len(orgs) / concurrent:,.0f} orgs/s")
    print(f"ratio sequential / 4 at a time: {sequential / concurrent:.2f}x")
    connection = await asyncpg.connect(dsn)
    try:
        org = orgs[len(orgs) // 2]
        _, plan = await explain(connection, KPI_FACTS_SQL, org.id, *windows[org.id], org.currency)
    finally:
        await connection.close()
    print("\nEXPLAIN (ANALYZE, BUFFERS) of one org's KPI facts:\n" + plan)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--admin-dsn", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--appointments-per-org", type=int, default=100)
    args = parser.parse_args()

    name = f"cf_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(args.admin_dsn)
    await admin.execute(f'create database "{name}"')
    dsn = dsn_for(args.admin_dsn, name)
    try:
        await migrate(dsn)
        connection = await asyncpg.connect(dsn)
        try:
            now: datetime = await connection.fetchval("select date_trunc('hour', now())")  # the server's clock
            began = time.perf_counter()
            counts = await fill(connection, args.orgs, args.appointments_per_org, now)
            filled = time.perf_counter() - began
        finally:
            await connection.close()
        print("# Postgres: reminder scan and KPI facts")
        print(f"data (COPY + ANALYZE in {filled:.1f} s): " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        db = await PostgresDatabase.connect(dsn, min_size=4, max_size=4, command_timeout=120)
        try:
            await bench_scan(db, dsn, now)
            await bench_kpi(db, dsn, now)
        finally:
            await db.close()
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
