"""The wire converter against the exact JSON Node's bullmq stores for each job of the README."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from adapters.bullmq.wire import DecodedJob, decode_job, encode_job
from domain.errors import InvalidJob, InvalidValue
from domain.jobs import (
    AppointmentScanJob,
    DunningJob,
    JobName,
    NurtureJob,
    ReminderJob,
    ReminderKind,
    SnapshotFanOutJob,
    SnapshotJob,
)
from domain.values import AppointmentId, ContactId, OrgId

# Literal JSON.stringify output of the README's four shapes (node -e 'console.log(JSON.stringify({...}))').
REMINDER_JSON = (
    '{"orgId":"org_1","contactId":"ct_9f2","appointmentId":"apt_77","message":"See you tomorrow at 3 PM",'
    '"scheduledFor":"2026-11-28T19:00:00.000Z","reminderType":"24h"}'
)
NURTURE_JSON = (
    '{"orgId":"org_1","contactId":"ct_9f2","sequenceStep":2,"template":"welcome-2",'
    '"personalization":{"firstName":"Ana","visits":3,"vip":true,"tags":["a","b"]}}'
)
DUNNING_JSON = (
    '{"orgId":"org_1","contactId":"ct_9f2","amount":125.5,"daysOverdue":7,'
    '"paymentLink":"https://pay.example.com/i/inv_1"}'
)
SNAPSHOT_JSON = '{"orgId":"org_1","date":"2026-11-27"}'

SHAPES = {
    JobName.REMINDER: REMINDER_JSON,
    JobName.NURTURE: NURTURE_JSON,
    JobName.DUNNING: DUNNING_JSON,
    JobName.SNAPSHOT: SNAPSHOT_JSON,
}


def data_of(name: JobName, **changes: Any) -> dict[str, Any]:
    """The README payload for ``name`` with some keys replaced (or removed when the value is ``...``)."""
    data: dict[str, Any] = json.loads(SHAPES[name])
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


def invalid(name: JobName | str, data: object) -> InvalidJob:
    with pytest.raises(InvalidJob) as raised:
        decode_job(name, data)
    return raised.value


# --- the four README shapes --------------------------------------------------------------------------------------


def test_reminder_decodes_with_aware_utc_time() -> None:
    """A Node reminder job becomes a ReminderJob with an aware UTC scheduledFor."""
    decoded = decode_job(JobName.REMINDER, json.loads(REMINDER_JSON))
    assert decoded == DecodedJob(
        job=ReminderJob(
            org_id=OrgId("org_1"),
            contact_id=ContactId("ct_9f2"),
            appointment_id=AppointmentId("apt_77"),
            message="See you tomorrow at 3 PM",
            scheduled_for=datetime(2026, 11, 28, 19, 0, tzinfo=UTC),
            reminder_type=ReminderKind.DAY_BEFORE,
        ),
        unknown_keys=(),
    )
    assert isinstance(decoded.job, ReminderJob)
    assert decoded.job.scheduled_for.utcoffset() == timedelta(0)


def test_reminder_type_three_hours() -> None:
    """reminderType '3h' decodes to the three-hour kind."""
    decoded = decode_job(JobName.REMINDER, data_of(JobName.REMINDER, reminderType="3h"))
    assert isinstance(decoded.job, ReminderJob)
    assert decoded.job.reminder_type is ReminderKind.THREE_HOURS


def test_nurture_decodes_with_personalization_kept_as_json() -> None:
    """A Node nurture job keeps its personalization object value for value."""
    decoded = decode_job(JobName.NURTURE, json.loads(NURTURE_JSON))
    assert decoded.job == NurtureJob(
        org_id=OrgId("org_1"),
        contact_id=ContactId("ct_9f2"),
        sequence_step=2,
        template="welcome-2",
        personalization={"firstName": "Ana", "visits": 3, "vip": True, "tags": ["a", "b"]},
    )


def test_dunning_amount_is_the_exact_decimal_node_wrote() -> None:
    """amount 125.5 becomes Decimal('125.5'), not the binary float's long expansion."""
    decoded = decode_job(JobName.DUNNING, json.loads(DUNNING_JSON))
    assert decoded.job == DunningJob(
        org_id=OrgId("org_1"),
        contact_id=ContactId("ct_9f2"),
        amount=Decimal("125.5"),
        days_overdue=7,
        payment_link="https://pay.example.com/i/inv_1",
    )
    assert str(decoded.job.amount) == "125.5"


def test_snapshot_decodes_its_calendar_date() -> None:
    """A Node snapshot job's date string becomes a date."""
    decoded = decode_job(JobName.SNAPSHOT, json.loads(SNAPSHOT_JSON))
    assert decoded.job == SnapshotJob(org_id=OrgId("org_1"), date=date(2026, 11, 27))


@pytest.mark.parametrize(
    ("name", "payload"),
    [(JobName.SCAN_APPOINTMENTS, AppointmentScanJob()), (JobName.FAN_OUT_SNAPSHOTS, SnapshotFanOutJob())],
)
def test_scheduled_jobs_accept_an_empty_object(name: JobName, payload: object) -> None:
    """The scan and fan-out jobs carry nothing and decode from {}."""
    assert decode_job(name, {}) == DecodedJob(job=payload, unknown_keys=())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(SHAPES))
def test_encode_writes_exactly_what_node_wrote(name: JobName) -> None:
    """Encoding a decoded README payload gives back Node's JSON, key for key and character for character."""
    decoded = decode_job(name, json.loads(SHAPES[name]))
    assert json.dumps(encode_job(decoded.job), separators=(",", ":")) == SHAPES[name]


# --- unknown keys and the envelope -------------------------------------------------------------------------------


def test_unknown_keys_are_tolerated_and_reported_by_name_sorted() -> None:
    """Extra keys do not fail the job; their names come back sorted, their values nowhere."""
    data = data_of(JobName.DUNNING, zeta="z-secret", alpha={"nested": "a-secret"})
    decoded = decode_job(JobName.DUNNING, data)
    assert decoded.unknown_keys == ("alpha", "zeta")
    assert "secret" not in repr(decoded)


def test_unknown_keys_of_scheduled_jobs_are_reported() -> None:
    """The empty scheduled jobs also tolerate and report extra keys."""
    decoded = decode_job(JobName.SCAN_APPOINTMENTS, {"tick": "2026-11-28T19:00:00.000Z"})
    assert decoded == DecodedJob(job=AppointmentScanJob(), unknown_keys=("tick",))


def test_unknown_key_names_are_made_printable() -> None:
    """Key names with control characters or huge lengths are cleaned before being reported."""
    decoded = decode_job(JobName.SNAPSHOT, data_of(JobName.SNAPSHOT, **{"bad\nkey": 1, "k" * 500: 2}))
    assert decoded.unknown_keys == ("bad?key", "k" * 61 + "...")


@pytest.mark.parametrize("data", [None, [], "{}", 1, True, [{"orgId": "org_1"}]])
def test_data_that_is_not_an_object_is_invalid(data: object) -> None:
    """job.data must be a JSON object."""
    error = invalid(JobName.SNAPSHOT, data)
    assert str(error) == "invalid job: data is not a JSON object"


def test_unknown_job_name_is_invalid_and_shown_cleaned() -> None:
    """An unknown job name is refused, shown without control characters and capped in length."""
    error = invalid("process-\x1bmystery" + "x" * 200, {})
    assert error.field == "job name"
    assert "\x1b" not in str(error)
    assert len(str(error)) < 120


def test_job_name_is_matched_exactly() -> None:
    """Job names are case-sensitive strings, as BullMQ stores them."""
    assert invalid("Process-Reminder", json.loads(REMINDER_JSON)).field == "job name"


# --- required fields and types -----------------------------------------------------------------------------------

REQUIRED = (
    [
        (JobName.REMINDER, key)
        for key in ("orgId", "contactId", "appointmentId", "message", "scheduledFor", "reminderType")
    ]
    + [(JobName.NURTURE, key) for key in ("orgId", "contactId", "sequenceStep", "template")]
    + [(JobName.DUNNING, key) for key in ("orgId", "contactId", "amount", "daysOverdue", "paymentLink")]
    + [(JobName.SNAPSHOT, key) for key in ("orgId", "date")]
)


@pytest.mark.parametrize(("name", "key"), REQUIRED)
def test_each_missing_required_key_is_named(name: JobName, key: str) -> None:
    """Removing any required key fails the job naming that key in camelCase."""
    error = invalid(name, data_of(name, **{key: ...}))
    assert (error.field, error.problem) == (key, "is missing")


@pytest.mark.parametrize(("name", "key"), REQUIRED)
def test_each_required_key_set_to_null_is_named(name: JobName, key: str) -> None:
    """null is never a valid value for a required key."""
    assert invalid(name, data_of(name, **{key: None})).field == key


@pytest.mark.parametrize(
    ("name", "key", "value", "problem"),
    [
        (JobName.REMINDER, "orgId", 17, "is not a string"),
        (JobName.REMINDER, "orgId", "", "is empty"),
        (JobName.REMINDER, "contactId", "ct\x00", "contains control characters"),
        (JobName.REMINDER, "appointmentId", ["apt_77"], "is not a string"),
        (JobName.REMINDER, "message", 5, "is not a string"),
        (JobName.REMINDER, "reminderType", "1h", "is not one of '24h', '3h'"),
        (JobName.REMINDER, "reminderType", "24H", "is not one of '24h', '3h'"),
        (JobName.REMINDER, "reminderType", 24, "is not one of '24h', '3h'"),
        (JobName.NURTURE, "sequenceStep", 2.5, "is not an integer"),
        (JobName.NURTURE, "sequenceStep", "2.0", "is a string that is not an integer in decimal digits"),
        (JobName.NURTURE, "sequenceStep", " 2", "is a string that is not an integer in decimal digits"),
        (JobName.NURTURE, "sequenceStep", "+2", "is a string that is not an integer in decimal digits"),
        (JobName.NURTURE, "sequenceStep", "02", "is a string that is not an integer in decimal digits"),
        (JobName.NURTURE, "sequenceStep", "9007199254740992", "is a string that is not an integer in decimal digits"),
        (JobName.NURTURE, "sequenceStep", True, "is not an integer"),
        (JobName.NURTURE, "template", "", "is empty"),
        (JobName.NURTURE, "template", 3, "is not a string"),
        (JobName.NURTURE, "personalization", None, "is not a JSON object"),
        (JobName.NURTURE, "personalization", ["firstName"], "is not a JSON object"),
        (JobName.NURTURE, "personalization", "Ana", "is not a JSON object"),
        (JobName.NURTURE, "personalization", {1: "Ana"}, "is not a JSON object"),
        (JobName.DUNNING, "amount", "125,50", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "1.2e2", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", " 125.50", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "+125.50", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "$125.50", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "125.", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "NaN", "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", "1" * 41, "is a string that is not a plain decimal number"),
        (JobName.DUNNING, "amount", True, "is not a number"),
        (JobName.DUNNING, "amount", float("nan"), "is not a finite number"),
        (JobName.DUNNING, "amount", float("inf"), "is not a finite number"),
        (JobName.DUNNING, "amount", {"value": 1}, "is not a number"),
        (JobName.DUNNING, "daysOverdue", 7.25, "is not an integer"),
        (JobName.DUNNING, "daysOverdue", False, "is not an integer"),
        (JobName.DUNNING, "paymentLink", None, "is not a string"),
        (JobName.SNAPSHOT, "date", "2026-11-27T00:00:00.000Z", "is not a YYYY-MM-DD date"),
        (JobName.SNAPSHOT, "date", "2026-2-01", "is not a YYYY-MM-DD date"),
        (JobName.SNAPSHOT, "date", "20261127", "is not a YYYY-MM-DD date"),
        (JobName.SNAPSHOT, "date", "\uff12\uff10\uff12\uff16-11-27", "is not a YYYY-MM-DD date"),  # fullwidth digits
        (JobName.SNAPSHOT, "date", "2026-02-30", "is not a valid calendar date"),
        (JobName.SNAPSHOT, "date", 20261127, "is not a YYYY-MM-DD date"),
    ],
)
def test_ill_typed_values_name_the_field_and_never_the_value(
    name: JobName, key: str, value: object, problem: str
) -> None:
    """Each ill-typed value raises InvalidJob with the wire field name and a readable problem."""
    error = invalid(name, data_of(name, **{key: value}))
    assert (error.field, error.problem) == (key, problem)
    assert str(error) == f"invalid job: {key} {problem}"


def test_message_value_never_appears_in_errors() -> None:
    """A PII-bearing value next to a bad field stays out of the error text."""
    data = data_of(JobName.REMINDER, message="Call +14155550100 Ana", scheduledFor="tomorrow Ana")
    error = invalid(JobName.REMINDER, data)
    assert str(error) == "invalid job: scheduledFor is not an ISO 8601 date-time with a time zone"
    assert "Ana" not in str(error)


def test_first_failing_field_in_declaration_order_is_reported() -> None:
    """With several bad fields, the error names the first in the payload's declared order."""
    data = data_of(JobName.DUNNING, contactId=1, amount="x", daysOverdue=...)
    assert invalid(JobName.DUNNING, data).field == "contactId"


def test_integral_float_is_accepted_as_an_integer() -> None:
    """JS has no integer type: 3.0 is the integer 3."""
    decoded = decode_job(JobName.NURTURE, data_of(JobName.NURTURE, sequenceStep=3.0))
    assert isinstance(decoded.job, NurtureJob)
    assert decoded.job.sequence_step == 3
    assert type(decoded.job.sequence_step) is int


def test_personalization_absent_decodes_as_empty() -> None:
    """JSON.stringify drops undefined keys, so an absent personalization is an empty object."""
    decoded = decode_job(JobName.NURTURE, data_of(JobName.NURTURE, personalization=...))
    assert isinstance(decoded.job, NurtureJob)
    assert decoded.job.personalization == {}


# --- date-times --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T19:00:00.000Z",
        "2026-11-28T19:00:00Z",
        "2026-11-28T19:00:00.000000Z",
        "2026-11-28T14:00:00.000-05:00",
        "2026-11-29T04:30:00+09:30",
        "2026-11-28T19:00:00.000+00:00",
    ],
)
def test_date_times_with_a_zone_convert_to_the_same_utc_instant(text: str) -> None:
    """Z and numeric offsets, with or without milliseconds, all give the same aware UTC instant."""
    decoded = decode_job(JobName.REMINDER, data_of(JobName.REMINDER, scheduledFor=text))
    assert isinstance(decoded.job, ReminderJob)
    assert decoded.job.scheduled_for == datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
    assert decoded.job.scheduled_for.tzinfo is UTC


def test_offset_is_applied_on_a_dst_day_without_consulting_any_zone() -> None:
    """On the US fall-back night the offset in the string alone fixes the instant."""
    decoded = decode_job(JobName.REMINDER, data_of(JobName.REMINDER, scheduledFor="2026-11-01T01:30:00.000-05:00"))
    assert isinstance(decoded.job, ReminderJob)
    assert decoded.job.scheduled_for == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_sub_millisecond_fraction_is_kept() -> None:
    """Fractions finer than milliseconds are kept to the microsecond."""
    decoded = decode_job(JobName.REMINDER, data_of(JobName.REMINDER, scheduledFor="2026-11-28T19:00:00.123456Z"))
    assert isinstance(decoded.job, ReminderJob)
    assert decoded.job.scheduled_for.microsecond == 123456


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-11-28T19:00:00.000", "is not an ISO 8601 date-time with a time zone"),  # naive
        ("2026-11-28T19:00:00", "is not an ISO 8601 date-time with a time zone"),  # naive
        ("2026-11-28", "is not an ISO 8601 date-time with a time zone"),
        ("2026-11-28 19:00:00Z", "is not an ISO 8601 date-time with a time zone"),
        ("2026-11-28T19:00Z", "is not an ISO 8601 date-time with a time zone"),
        ("Sat Nov 28 2026 19:00:00 GMT+0000", "is not an ISO 8601 date-time with a time zone"),
        ("+275760-09-13T00:00:00.000Z", "is not an ISO 8601 date-time with a time zone"),
        ("2026-11-31T19:00:00.000Z", "is not a valid calendar date-time"),
        ("2026-11-28T24:00:00.000Z", "is not a valid calendar date-time"),
        ("0001-01-01T00:30:00.000+01:00", "is out of range"),
        (1795892400000, "is not an ISO 8601 date-time with a time zone"),  # epoch milliseconds
    ],
)
def test_unusable_date_times_are_refused(text: object, problem: str) -> None:
    """Naive, partial, non-ISO and impossible date-times fail the job naming scheduledFor."""
    error = invalid(JobName.REMINDER, data_of(JobName.REMINDER, scheduledFor=text))
    assert (error.field, error.problem) == ("scheduledFor", problem)


def test_encode_writes_date_to_json_form_in_utc() -> None:
    """Any aware date-time encodes as UTC with exactly three fraction digits and Z, like Date.toJSON."""
    job = ReminderJob(
        org_id=OrgId("o"),
        contact_id=ContactId("c"),
        appointment_id=AppointmentId("a"),
        message="m",
        scheduled_for=datetime(2026, 3, 8, 1, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-8))),
        reminder_type=ReminderKind.THREE_HOURS,
    )
    assert encode_job(job)["scheduledFor"] == "2026-03-08T09:59:59.999Z"


def test_encode_pads_early_years_to_four_digits() -> None:
    """Years below 1000 are written with four digits, as Date.toJSON does."""
    job = SnapshotJob(org_id=OrgId("o"), date=date(987, 6, 5))
    assert encode_job(job)["date"] == "0987-06-05"


# --- amounts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("125.5", Decimal("125.5")),
        ("125", Decimal("125")),
        ("0.30000000000000004", Decimal("0.3")),  # what JS writes for 0.1 + 0.2: noise around 0.3
        ("0.1234", Decimal("0.1234")),
        ("19.99", Decimal("19.99")),
        ("1e+21", Decimal("1E+21")),
        ("-3.5", Decimal("-3.5")),
    ],
)
def test_amount_is_the_decimal_of_the_text_node_wrote(wire: str, expected: Decimal) -> None:
    """The float's shortest repr is exactly JSON.stringify's text, so no binary noise enters the Decimal (and
    noise around a short decimal is dropped)."""
    data = json.loads(DUNNING_JSON.replace('"amount":125.5', f'"amount":{wire}'))
    decoded = decode_job(JobName.DUNNING, data)
    assert isinstance(decoded.job, DunningJob)
    assert decoded.job.amount == expected
    assert str(decoded.job.amount) == str(expected)


def _amount(value: object) -> Decimal:
    decoded = decode_job(JobName.DUNNING, data_of(JobName.DUNNING, amount=value))
    assert isinstance(decoded.job, DunningJob)
    return decoded.job.amount


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (41.1 + 41.1 + 41.1, Decimal("123.3")),  # 123.30000000000001 in JS and Python alike
        (0.1 + 0.2, Decimal("0.3")),
        (sum([0.1] * 1000), Decimal("100")),  # 99.9999999999986: a thousand additions of noise
        (19.99 * 3, Decimal("59.97")),  # 59.97000000000001
        (1.005 * 1000, Decimal("1005")),  # 1004.9999999999999
    ],
)
def test_amount_within_float_noise_of_a_decimal_is_that_decimal(value: float, expected: Decimal) -> None:
    """A JS number within floating-point noise of a decimal with at most 3 places is that decimal."""
    assert _amount(value) == expected


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (123.305, "123.305"),
        (123.3000001, "123.3000001"),
        (0.0001, "0.0001"),
        (1.2345 + 0.0000000000000002, "1.2345000000000002"),  # noise, but around a 4-place decimal
    ],
)
def test_amount_farther_than_noise_from_a_cent_keeps_its_text(value: float, kept: str) -> None:
    """A number that is not noise away from a short decimal keeps its written text, for the currency to judge."""
    assert str(_amount(value)) == kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [("123.30", "123.30"), ("123", "123"), ("-5.00", "-5.00"), ("0.001", "0.001"), ("123.30000000000001", None)],
)
def test_amount_as_an_exact_decimal_string_is_taken_exactly(text: str, expected: str | None) -> None:
    """node-postgres returns NUMERIC as a string: a plain decimal string is its exact value, with no noise rule."""
    assert str(_amount(text)) == (expected or text)


@pytest.mark.parametrize(("text", "expected"), [("7", 7), ("-3", -3), ("0", 0), ("9007199254740991", 2**53 - 1)])
def test_integer_strings_from_node_postgres_are_their_integer(text: str, expected: int) -> None:
    """node-postgres returns bigint/numeric columns as strings: digits spell the integer."""
    decoded = decode_job(JobName.DUNNING, data_of(JobName.DUNNING, daysOverdue=text))
    assert isinstance(decoded.job, DunningJob)
    assert decoded.job.days_overdue == expected


# --- text ------------------------------------------------------------------------------------------------------


def test_lone_surrogates_in_every_text_field_become_replacement_characters() -> None:
    """Text cut inside an emoji by JS ``slice`` arrives with lone surrogates: each becomes U+FFFD, in top-level
    strings, nested values and keys, and the repaired fields are named."""
    data = json.loads(
        '{"orgId":"org_1","contactId":"ct_9f2","sequenceStep":2,"template":"welcome-2",'
        '"personalization":{"firstName":"Ana \\ud83e","tags":["\\udc00x"],"k\\ud800":1,"ok":"\\ud83d\\ude00"}}'
    )
    decoded = decode_job(JobName.NURTURE, data)
    assert isinstance(decoded.job, NurtureJob)
    assert decoded.job.personalization == {
        "firstName": "Ana \ufffd",
        "tags": ["\ufffdx"],
        "k\ufffd": 1,
        "ok": "\U0001f600",
    }
    assert decoded.repaired_fields == ("personalization",)
    reminder = json.loads(REMINDER_JSON.replace("3 PM", "3 PM \\ud83e"))
    repaired = decode_job(JobName.REMINDER, reminder)
    assert isinstance(repaired.job, ReminderJob)
    assert repaired.job.message == "See you tomorrow at 3 PM \ufffd"
    assert repaired.job.message.encode("utf-8")  # encodable now: the database and providers take it
    assert repaired.repaired_fields == ("message",)


def test_text_without_lone_surrogates_is_untouched() -> None:
    """Nothing is reported repaired for well-formed text, emoji pairs included."""
    reminder = json.loads(REMINDER_JSON.replace("3 PM", "3 PM \\ud83d\\ude00"))
    assert decode_job(JobName.REMINDER, reminder).repaired_fields == ()


@pytest.mark.parametrize(
    ("amount", "written"),
    [(Decimal("125.5"), "125.5"), (Decimal("125.00"), "125"), (Decimal("0.1"), "0.1"), (Decimal("7"), "7")],
)
def test_encode_writes_amount_as_js_would(amount: Decimal, written: str) -> None:
    """Integral amounts are written without a fraction, others as the shortest double text."""
    job = DunningJob(org_id=OrgId("o"), contact_id=ContactId("c"), amount=amount, days_overdue=1, payment_link="l")
    assert json.dumps(encode_job(job)["amount"]) == written


@pytest.mark.parametrize("amount", [Decimal("0.1000000000000000000001"), Decimal("NaN"), Decimal("Infinity")])
def test_encode_refuses_amounts_no_js_number_can_hold(amount: Decimal) -> None:
    """An amount a JS number cannot carry exactly is refused rather than silently rounded."""
    job = DunningJob(org_id=OrgId("o"), contact_id=ContactId("c"), amount=amount, days_overdue=1, payment_link="l")
    with pytest.raises(InvalidValue):
        encode_job(job)


def test_encode_refuses_what_is_not_a_job() -> None:
    """encode_job only takes the job payload classes."""
    with pytest.raises(TypeError):
        encode_job(object())  # type: ignore[arg-type]
