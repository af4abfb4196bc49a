-- Tables the worker owns. No foreign keys into CRM tables: the CRM may delete its rows without asking us.

-- One row per logical message, claimed before the provider call (docs/schema.md has the state machine).
create table send_ledger (
    key                  text primary key,           -- '<kind>:...', e.g. 'reminder:24h:<appointment>:sms'
    kind                 text not null generated always as (split_part(key, ':', 1)) stored,
    org_id               text not null,
    contact_id           text not null,
    channel              text not null check (channel in ('sms', 'email')),
    purpose              text not null check (purpose in ('transactional', 'marketing')),
    state                text not null check (state in ('claimed', 'sent', 'failed', 'unknown')),
    claimed_at           timestamptz not null,
    updated_at           timestamptz not null,
    provider_message_id  text,
    reason               text
);
create index send_ledger_contact_purpose on send_ledger (org_id, contact_id, purpose, claimed_at);
create index send_ledger_org_claimed_at on send_ledger (org_id, claimed_at);
create index send_ledger_unresolved on send_ledger (updated_at) where state in ('claimed', 'unknown');

-- Addresses that must get nothing more on a channel in an org: phone in E.164, email lower-cased.
create table suppressions (
    org_id      text not null,
    channel     text not null check (channel in ('sms', 'email')),
    address     text not null,
    reason      text not null check (reason in ('opted_out', 'invalid_number', 'bounced')),
    created_at  timestamptz not null,
    primary key (org_id, channel, address)
);

create table daily_snapshots (
    org_id                     text not null,
    date                       date not null,
    currency                   char(3) not null,
    appointments_booked        integer not null,
    appointments_completed     integer not null,
    appointments_cancelled     integer not null,
    appointments_no_show       integer not null,
    show_rate                  double precision,
    new_contacts               integer not null,
    revenue_collected_minor    bigint not null,
    outstanding_minor          bigint not null,
    dunning_recovered_minor    bigint not null,
    messages                   jsonb not null,          -- {"sms": {"sent": 3, "failed": 1}, "email": {...}}
    enrollments_started        integer not null,
    enrollments_completed      integer not null,
    computed_at                timestamptz not null,
    primary key (org_id, date)
);
