-- Delivery feedback from the providers' webhooks (issue 17; docs/delivery-feedback.md).

-- How far each message got after the provider took it; moves forward only (accepted < sent < a final status).
alter table send_ledger
    add column delivery_status text
        check (delivery_status in ('accepted', 'sent', 'delivered', 'undelivered', 'failed')),
    add column delivery_error_code text,
    add column delivery_reported_at timestamptz;

-- Addresses that get nothing more on a channel from any org: the SMS sender and the SendGrid account are shared
-- by every org, so a STOP, a hard bounce or a spam report withdraws the address everywhere.
create table address_suppressions (
    channel        text not null check (channel in ('sms', 'email')),
    address        text not null,                    -- E.164 phone or lower-cased email
    reason         text not null,
    source         text not null,                    -- twilio_inbound, sendgrid_event ...
    suppressed_at  timestamptz not null,
    primary key (channel, address)
);

-- Every consent change applied, in order, with its time and source; event_id makes a redelivery a no-op.
create table consent_changes (
    id          bigint generated always as identity primary key,
    channel     text not null check (channel in ('sms', 'email')),
    address     text not null,
    action      text not null check (action in ('withdrawn', 'restored')),
    reason      text,
    source      text not null,
    event_id    text not null,
    changed_at  timestamptz not null,
    unique (source, event_id)
);
create index consent_changes_address on consent_changes (channel, address, changed_at);
