-- The embedded default sender: every message the worker would have handed to Twilio or SendGrid, once per ledger key.
create table if not exists outbox_messages (
    id bigint generated always as identity primary key,
    ledger_key text not null unique,
    channel text not null check (channel in ('sms', 'email')),
    recipient text not null,
    subject text,
    body text not null,
    html text,
    created_at timestamptz not null
);
