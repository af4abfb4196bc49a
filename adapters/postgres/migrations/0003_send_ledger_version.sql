-- Every send-ledger transition is a compare-and-set on the version the job read (issue 11). Versions come from one
-- sequence, so a key released (deleted) and claimed again never repeats a version an older reader may still hold.
create sequence if not exists send_ledger_version;
alter table send_ledger add column if not exists version bigint not null default nextval('send_ledger_version');
