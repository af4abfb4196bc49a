"""PostgreSQL adapter: the schema's migrations, the repositories behind the domain's ports, the send ledger."""

from adapters.postgres.crm import (
    PostgresAppointments,
    PostgresContacts,
    PostgresInvoices,
    PostgresOrganizations,
    PostgresTemplates,
)
from adapters.postgres.kpi import PostgresKpiFacts
from adapters.postgres.ledger import PostgresSendLedger
from adapters.postgres.migrator import migrate
from adapters.postgres.nurture import PostgresNurtureEnrollments
from adapters.postgres.pool import PostgresDatabase
from adapters.postgres.snapshots import PostgresSnapshotStore

__all__ = [
    "PostgresAppointments",
    "PostgresContacts",
    "PostgresDatabase",
    "PostgresInvoices",
    "PostgresKpiFacts",
    "PostgresNurtureEnrollments",
    "PostgresOrganizations",
    "PostgresSendLedger",
    "PostgresSnapshotStore",
    "PostgresTemplates",
    "migrate",
]
