"""Properties of the wire converter: lossless round trips, and nothing but InvalidJob out of any JSON input."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bullmq.wire import NOISE_ULPS, decimal_of_js_number, decode_job, encode_job
from domain.errors import InvalidJob
from domain.jobs import (
    AppointmentScanJob,
    DunningJob,
    Job,
    JobName,
    NurtureJob,
    ReminderJob,
    ReminderKind,
    SnapshotFanOutJob,
    SnapshotJob,
    job_type_of,
)
from domain.values import AppointmentId, ContactId, OrgId

MODEST = settings(max_examples=200, deadline=None)

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

identifiers = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
# Fixed offsets only: ZoneInfo times in a fold never compare equal across zones (PEP 495), which is not our concern.
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
# A JS Date holds milliseconds, so that is the precision a round trip can keep.
instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC) | offsets
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
js_integers = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
# A round trip keeps what the wire reads as itself: every short decimal, and any number not within float noise of a
# shorter one (0.30000000000000004 is read as 0.3 by design: see test_js_numbers_are_read_within_noise).
amounts = (
    js_integers.map(Decimal)
    | st.integers(min_value=-(10**12), max_value=10**12).map(lambda n: Decimal(n).scaleb(-3))
    | finite_floats.map(lambda f: Decimal(repr(f))).filter(lambda d: decimal_of_js_number(float(d)) == d)
)
personalizations = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5)

jobs: st.SearchStrategy[Job] = st.one_of(
    st.builds(
        ReminderJob,
        org_id=identifiers.map(OrgId),
        contact_id=identifiers.map(ContactId),
        appointment_id=identifiers.map(AppointmentId),
        message=st.text(),
        scheduled_for=instants,
        reminder_type=st.sampled_from(ReminderKind),
    ),
    st.builds(
        NurtureJob,
        org_id=identifiers.map(OrgId),
        contact_id=identifiers.map(ContactId),
        sequence_step=js_integers,
        template=identifiers,
        personalization=personalizations,
    ),
    st.builds(
        DunningJob,
        org_id=identifiers.map(OrgId),
        contact_id=identifiers.map(ContactId),
        amount=amounts,
        days_overdue=js_integers,
        payment_link=st.text(),
    ),
    st.builds(SnapshotJob, org_id=identifiers.map(OrgId), date=st.dates(min_value=date(1, 1, 1))),
    st.just(AppointmentScanJob()),
    st.just(SnapshotFanOutJob()),
)

job_names = st.sampled_from(JobName) | st.text(max_size=30)


@MODEST
@given(jobs)
def test_encode_then_decode_through_json_is_the_identity(job: Job) -> None:
    """Any payload survives encode -> json.dumps -> json.loads -> decode unchanged, with no unknown keys."""
    wire = json.loads(json.dumps(encode_job(job), allow_nan=False))
    decoded = decode_job(job_type_of(job).name, wire)
    assert decoded.job == job
    assert decoded.unknown_keys == ()


@pytest.mark.slow
@MODEST
@given(job_names, JSON_VALUES)
def test_arbitrary_data_raises_nothing_but_invalid_job(name: str, data: object) -> None:
    """Any job name with any JSON value as data either decodes or raises InvalidJob."""
    with contextlib.suppress(InvalidJob):
        decode_job(name, data)


@pytest.mark.slow
@MODEST
@given(jobs.filter(lambda job: bool(encode_job(job))), st.data())
def test_garbage_in_one_field_is_blamed_on_that_field(job: Job, data: st.DataObject) -> None:
    """Replacing or deleting one key of a valid payload decodes or raises InvalidJob naming exactly that key."""
    wire: dict[str, Any] = json.loads(json.dumps(encode_job(job)))
    key = data.draw(st.sampled_from(sorted(wire)), label="key")
    replacement = data.draw(st.none() | st.just(...) | JSON_VALUES, label="replacement")
    if replacement is ...:
        del wire[key]
    else:
        wire[key] = replacement
    blamed: str | None = None
    try:
        decode_job(job_type_of(job).name, wire)
    except InvalidJob as error:
        blamed = error.field
    assert blamed in (None, key)


@MODEST
@given(finite_floats)
def test_js_numbers_are_read_within_noise(number: float) -> None:
    """Any finite JS number is read either as its shortest repr or as a decimal of at most 3 places within
    NOISE_ULPS of it."""
    read = decimal_of_js_number(number)
    if read != Decimal(repr(number)):
        exponent = read.as_tuple().exponent
        assert isinstance(exponent, int)
        assert exponent >= -3
        assert abs(number - float(read)) <= NOISE_ULPS * math.ulp(float(read))


# Any code point, lone surrogates included: what JSON.parse of a string JavaScript cut anywhere can hold.
js_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=20)


@MODEST
@given(
    st.sampled_from([JobName.REMINDER, JobName.NURTURE, JobName.DUNNING]),
    st.dictionaries(
        js_text, st.recursive(js_text, lambda inner: st.lists(inner, max_size=3), max_leaves=6), max_size=4
    ),
    js_text,
)
def test_decoded_text_is_always_encodable(name: JobName, extra: dict[str, Any], message: str) -> None:
    """Whatever text JavaScript sent, every string of a decoded job (and every key named) encodes as UTF-8: lone
    surrogates never get past the wire."""
    base = {
        JobName.REMINDER: {"orgId": "o", "contactId": "c", "appointmentId": "a", "message": message,
                           "scheduledFor": "2026-11-28T19:00:00.000Z", "reminderType": "3h"},
        JobName.NURTURE: {"orgId": "o", "contactId": "c", "sequenceStep": 1, "template": "t",
                          "personalization": {message: [message, extra]}},
        JobName.DUNNING: {"orgId": "o", "contactId": "c", "amount": 1, "daysOverdue": 1, "paymentLink": message},
    }[name]  # fmt: skip
    try:
        decoded = decode_job(name, {**extra, **base})
    except InvalidJob as error:
        str(error).encode("utf-8")
        return
    json.dumps(encode_job(decoded.job), ensure_ascii=False).encode("utf-8")
    json.dumps([decoded.unknown_keys, decoded.repaired_fields], ensure_ascii=False).encode("utf-8")
