-- Tables the CRM owns and writes; the worker only reads them (except nurture enrollment state, see docs/schema.md).
-- Ids are the CRM's own strings; everything but organizations and enrollments is keyed by (org_id, id) so a row
-- can never be reached through another org.

create table organizations (
    id                          text primary key,
    name                        text not null,
    time_zone                   text not null,           -- IANA name, e.g. 'America/New_York'
    currency                    char(3) not null check (currency ~ '^[A-Z]{3}$'),
    active                      boolean not null default true,
    transactional_window_start  time not null default '07:00',
    transactional_window_end    time not null default '21:00',
    marketing_window_start      time not null default '08:00',
    marketing_window_end        time not null default '20:00',
    -- null: the default policy; else [{"minDaysOverdue": 1, "tone": "friendly", "channels": ["email"]}, ...]
    dunning_policy              jsonb check (dunning_policy is null or jsonb_typeof(dunning_policy) = 'array'),
    created_at                  timestamptz not null default now()
);

create table contacts (
    org_id             text not null references organizations (id),
    id                 text not null,
    first_name         text not null default '',
    last_name          text not null default '',
    phone              text check (phone ~ '^\+[1-9][0-9]{6,14}$'),   -- E.164
    email              text,
    time_zone          text,                                          -- IANA name; null: the org's zone
    preferred_channel  text not null default 'sms' check (preferred_channel in ('sms', 'email')),
    sms_consent        boolean not null default true,
    email_consent      boolean not null default true,
    marketing_consent  boolean not null default false,
    created_at         timestamptz not null default now(),
    deleted_at         timestamptz,
    primary key (org_id, id)
);
create index contacts_org_created_at on contacts (org_id, created_at);

create table appointments (
    org_id      text not null,
    id          text not null,
    contact_id  text not null,
    starts_at   timestamptz not null,
    status      text not null check (status in ('scheduled', 'confirmed', 'cancelled', 'completed', 'no_show')),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (org_id, id),
    foreign key (org_id, contact_id) references contacts (org_id, id)
);
-- The hourly reminder scan: a range on starts_at over upcoming appointments only.
create index appointments_upcoming_starts_at on appointments (starts_at)
    where status in ('scheduled', 'confirmed');
-- KPIs (by start and by creation per org) and the nurture exit rule (booked since, per contact).
create index appointments_org_starts_at on appointments (org_id, starts_at);
create index appointments_org_created_at on appointments (org_id, created_at);
create index appointments_contact_created_at on appointments (org_id, contact_id, created_at);

create table invoices (
    org_id        text not null,
    id            text not null,
    contact_id    text not null,
    amount_minor  bigint not null check (amount_minor >= 0),
    currency      char(3) not null check (currency ~ '^[A-Z]{3}$'),
    status        text not null check (status in ('open', 'paid', 'void', 'written_off')),
    issued_at     timestamptz not null default now(),
    due_at        timestamptz,
    closed_at     timestamptz,    -- when it became paid, void or written off
    primary key (org_id, id),
    foreign key (org_id, contact_id) references contacts (org_id, id),
    check ((status = 'open') = (closed_at is null))
);
create index invoices_contact_status on invoices (org_id, contact_id, status);
create index invoices_org_issued_at on invoices (org_id, issued_at);

create table payments (
    org_id        text not null,
    id            text not null,
    invoice_id    text not null,
    amount_minor  bigint not null check (amount_minor > 0),
    currency      char(3) not null check (currency ~ '^[A-Z]{3}$'),
    received_at   timestamptz not null,
    primary key (org_id, id),
    foreign key (org_id, invoice_id) references invoices (org_id, id)
);
create index payments_org_received_at on payments (org_id, received_at);
create index payments_invoice on payments (org_id, invoice_id);

create table message_templates (
    org_id   text not null references organizations (id),
    name     text not null,
    channel  text not null check (channel in ('sms', 'email')),
    subject  text,
    body     text not null,
    primary key (org_id, name, channel)
);

create table nurture_sequences (
    org_id  text not null references organizations (id),
    id      text not null,
    name    text not null default '',
    primary key (org_id, id)
);

create table nurture_steps (
    org_id         text not null,
    sequence_id    text not null,
    number         integer not null check (number >= 1),
    channel        text not null check (channel in ('sms', 'email')),
    template       text not null,
    delay_seconds  bigint not null check (delay_seconds >= 0),  -- after the previous step (after enrolment for 1)
    primary key (org_id, sequence_id, number),
    foreign key (org_id, sequence_id) references nurture_sequences (org_id, id)
);

-- Enrollments are addressed by id alone (the port's record_step/complete/exit take no org).
create table nurture_enrollments (
    id              text primary key,
    org_id          text not null,
    contact_id      text not null,
    sequence_id     text not null,
    status          text not null default 'active' check (status in ('active', 'completed', 'exited')),
    last_step_done  integer not null default 0 check (last_step_done >= 0),
    enrolled_at     timestamptz not null default now(),
    completed_at    timestamptz,
    exited_at       timestamptz,
    exit_reason     text check (exit_reason in ('unsubscribed', 'appointment_booked', 'contact_gone')),
    updated_at      timestamptz not null default now(),
    foreign key (org_id, contact_id) references contacts (org_id, id),
    foreign key (org_id, sequence_id) references nurture_sequences (org_id, id)
);
create index nurture_enrollments_contact on nurture_enrollments (org_id, contact_id) where status = 'active';
create index nurture_enrollments_org_enrolled_at on nurture_enrollments (org_id, enrolled_at);
create index nurture_enrollments_org_completed_at on nurture_enrollments (org_id, completed_at);
