-- AI personalization of nurture copy (issue 19). A template opts in with the org's instruction; the words chosen for
-- each send are kept under its ledger key before the provider call; each org's use of the model is counted per day.
alter table message_templates
    add column ai_instruction text
        check (ai_instruction is null or length(btrim(ai_instruction)) between 1 and 2000),
    -- literals the model's answer must keep verbatim (opt-out text ...): plain text, never a {{ placeholder }}
    add column ai_required_literals text[] not null default '{}'
        check (array_position(ai_required_literals, null) is null
               and array_to_string(ai_required_literals, ' ') !~ '\{\{|\}\}');

-- Written once per ledger key (insert ... on conflict do nothing); a retry reads it back and sends the same words.
create table personalized_copies (
    ledger_key  text primary key,
    source      text not null check (source in ('model', 'template')),
    body        text not null,     -- the SMS body, or the email's plain-text part
    subject     text,
    html        text,
    fallback    text,              -- why the template's words were kept; null exactly when source = 'model'
    created_at  timestamptz not null,
    check ((source = 'model') = (fallback is null))
);

-- Requests and tokens (input plus output) per org and local calendar day of the org.
create table personalization_usage (
    org_id    text not null,
    day       date not null,
    requests  integer not null default 0 check (requests >= 0),
    tokens    bigint not null default 0 check (tokens >= 0),
    primary key (org_id, day)
);
