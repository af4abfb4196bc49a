"""The wire format: the JSON that Node's npm ``bullmq`` stores as ``job.data``, to and from the domain payloads.

This is the project's one cattrs converter. Node writes camelCase keys, ``Date`` values as ``Date.toJSON`` strings
(``2026-11-28T19:00:00.000Z``) and numbers as JS numbers (Python's ``json`` gives ``int`` or ``float``). The rules,
decided here once:

- ``data`` must be a JSON object. Extra keys are tolerated (a newer CRM may add fields); their names, never their
  values, are reported in ``DecodedJob.unknown_keys``.
- Ids (``orgId``, ``contactId``, ``appointmentId``) and ``template`` are non-empty strings without control
  characters. JS numbers are refused: the CRM's ids are strings (UUIDs or cuids), a number means a producer bug.
- ``message`` and ``paymentLink`` are strings; their content rules belong to the services.
- Text is repaired, never refused: a lone UTF-16 surrogate (JavaScript's ``slice`` cutting an emoji in half;
  ``JSON.stringify`` writes it as ``\\ud83e``) becomes U+FFFD in every string of ``data``, keys and nested values
  included. Python would otherwise carry it until the first UTF-8 encoding (the database, the provider's request)
  fails. The repaired fields are named in ``DecodedJob.repaired_fields``.
- Date-times are ISO 8601 extended strings with seconds, an optional fraction and a zone (``Z`` or ``+HH:MM``),
  converted to aware UTC. Without a zone they are refused: a naive time is ambiguous.
- ``sequenceStep`` and ``daysOverdue`` are integers. JS has no integer type, so an integral float (``3.0``) is
  accepted as ``3``; ``3.5`` is not. node-postgres returns ``bigint`` and ``numeric`` columns as strings, so a
  string of decimal digits (``"7"``, optional leading ``-``, no sign ``+``, spaces or fraction) is the integer it
  spells. A boolean is never a number.
- ``amount`` is a ``Decimal``:

  - a JS number becomes the decimal with at most 3 fraction digits (the most any ISO 4217 currency has) within
    floating-point noise of it (:data:`NOISE_ULPS` units in the last place), so ``123.30000000000001`` (what
    ``41.1 + 41.1 + 41.1`` gives) is ``123.3``; any other number is the decimal of its shortest ``repr``
    (``125.5`` -> ``Decimal('125.5')``, exactly the text ``JSON.stringify`` wrote), which the currency's rule then
    judges (``123.305`` is not a whole cent);
  - a string (node-postgres returns ``numeric`` columns as strings: ``"123.30"``) is accepted when it is an exact
    plain decimal: optional ``-``, digits, optionally ``.`` and digits (no exponent, no spaces, no ``+``); it is
    taken exactly, with no noise rule (``"123.301"`` is not a whole cent);
  - NaN, infinities, booleans and other strings are refused, naming the form (``is a string that is not a plain
    decimal number``), never the value.
- ``date`` (snapshot jobs) is strictly ``YYYY-MM-DD``. ``reminderType`` is ``24h`` or ``3h``.
- ``personalization`` is a JSON object with string keys. The Node README declares it required, but
  ``JSON.stringify`` drops a key whose value is ``undefined``, so an absent key decodes as ``{}``: a template that
  then needs a variable fails with a clear missing-variable error at render time. ``null`` is refused.
- The scan and fan-out jobs carry nothing: ``{}`` (extra keys tolerated).

docs/wire-format.md lists the accepted representations per field.

Errors are ``InvalidJob`` naming the field by its wire name, never its value, e.g.
``invalid job: scheduledFor is not an ISO 8601 date-time with a time zone``.

``encode_job`` writes what Node would: camelCase, ``Date.toJSON`` date-times (UTC, milliseconds, ``Z``; a JS
``Date`` has millisecond precision, so finer fractions are truncated), amounts as JSON numbers. ``decode_job`` of
``encode_job`` is the identity for millisecond-precision date-times.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NoReturn

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from domain.errors import InvalidJob, InvalidValue
from domain.jobs import JOB_TYPES, Job, JobName, ReminderKind, job_type_of
from domain.values import AppointmentId, ContactId, OrgId

_MAX_SAFE_INTEGER = 2**53 - 1
NOISE_ULPS = 1024
"""How far (in units in the last place of the double) a JS number may lie from a decimal of at most 3 fraction
digits and still be read as it: a sum of a thousand amounts stays within it, while 123.3000001 (a ten-millionth
off, ~7 billion ulps) does not."""
_MAX_FRACTION_DIGITS = 3  # ISO 4217: no currency has more minor-unit digits (BHD, KWD, ...)
_MILLI = Decimal(1).scaleb(-_MAX_FRACTION_DIGITS)
_DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_INTEGER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
_MAX_DECIMAL_TEXT = 40
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_NAME_CHARS = 64
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


@attrs.frozen
class DecodedJob:
    """``unknown_keys`` and ``repaired_fields`` (lone surrogates replaced) are wire names, never values."""

    job: Job
    unknown_keys: tuple[str, ...]
    repaired_fields: tuple[str, ...] = ()


class _WireProblem(ValueError):
    """A field's value broke a wire rule; ``problem`` reads after the field name and never quotes the value."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _printable_name(text: str) -> str:
    """A key or job name fit for a log line: control characters replaced, length capped."""
    cleaned = _CONTROL_CHARS.sub("?", text)
    return cleaned if len(cleaned) <= _MAX_NAME_CHARS else cleaned[: _MAX_NAME_CHARS - 3] + "..."


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# --- structuring: JSON values -> domain values -------------------------------------------------------------------


def _string(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise _WireProblem("is not a string")
    return value


def _identifier(value: object, _type: object) -> str:
    text = _string(value, _type)
    if not text:
        raise _WireProblem("is empty")
    if _CONTROL_CHARS.search(text):
        raise _WireProblem("contains control characters")
    return text


def _integer(value: object, _type: object) -> int:
    if isinstance(value, bool):
        raise _WireProblem("is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if _INTEGER_TEXT.fullmatch(value) and abs(int(value)) <= _MAX_SAFE_INTEGER:
            return int(value)
        raise _WireProblem("is a string that is not an integer in decimal digits")
    raise _WireProblem("is not an integer")


def decimal_of_js_number(value: float) -> Decimal:
    """The decimal a finite JS number stands for: the nearest decimal of at most 3 fraction digits when the number
    is within :data:`NOISE_ULPS` of it, else the number's shortest ``repr``."""
    shortest = Decimal(repr(value))
    exponent = shortest.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -_MAX_FRACTION_DIGITS:
        return shortest
    nearest = shortest.quantize(_MILLI)
    nearest_double = float(nearest)
    if abs(value - nearest_double) <= NOISE_ULPS * math.ulp(nearest_double):
        return Decimal(repr(nearest_double))
    return shortest


def _decimal(value: object, _type: object) -> Decimal:
    if isinstance(value, bool):
        raise _WireProblem("is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _WireProblem("is not a finite number")
        return decimal_of_js_number(value)
    if isinstance(value, str):
        if len(value) <= _MAX_DECIMAL_TEXT and _DECIMAL_TEXT.fullmatch(value):
            return Decimal(value)
        raise _WireProblem("is a string that is not a plain decimal number")
    raise _WireProblem("is not a number")


def repair_text(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate replaced by U+FFFD (see the module rules)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _wire_key(key: object) -> str:
    """A top-level key as named in reasons and logs: repaired, printable."""
    return _printable_name(repair_text(str(key)))


def _repaired(value: object, path: str, repaired: set[str]) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD; ``path`` (the top-level wire key) is added to
    ``repaired`` when anything changed."""
    if isinstance(value, str):
        fixed = repair_text(value)
        if fixed != value:
            repaired.add(path)
        return fixed
    if isinstance(value, list):
        return [_repaired(item, path, repaired) for item in value]
    if isinstance(value, dict):
        return {_repaired(key, path, repaired): _repaired(item, path, repaired) for key, item in value.items()}
    return value


def _date_time(value: object, _type: object) -> datetime:
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        raise _WireProblem("is not an ISO 8601 date-time with a time zone")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _WireProblem("is not a valid calendar date-time") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _WireProblem("is out of range") from None


def _calendar_date(value: object, _type: object) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _WireProblem("is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _WireProblem("is not a valid calendar date") from None


def _reminder_kind(value: object, _type: object) -> ReminderKind:
    if isinstance(value, str):
        for kind in ReminderKind:
            if value == kind.value:
                return kind
    raise _WireProblem("is not one of " + ", ".join(repr(k.value) for k in ReminderKind))


def _json_object(value: object, _type: object) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _WireProblem("is not a JSON object")
    return dict(value)


# --- unstructuring: domain values -> JSON values ------------------------------------------------------------------


def _date_time_to_json(value: datetime) -> str:
    """``Date.prototype.toJSON``: UTC, exactly three fraction digits, ``Z``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue("date-time", "has no time zone")
    utc = value.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond // 1000:03d}Z"
    )


def _decimal_to_json(value: Decimal) -> int | float:
    """The JS number ``JSON.stringify`` would write: integral values as integers, others as the nearest double."""
    if not value.is_finite():
        raise InvalidValue("amount", "is not a finite number")
    if value == value.to_integral_value() and abs(value) <= _MAX_SAFE_INTEGER:
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise InvalidValue("amount", "is not exactly representable as a JS number")
    return as_float


def _build_converter() -> tuple[cattrs.Converter, dict[type[Job], dict[str, str]]]:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _string)
    converter.register_structure_hook(int, _integer)
    converter.register_structure_hook(Decimal, _decimal)
    converter.register_structure_hook(datetime, _date_time)
    converter.register_structure_hook(date, _calendar_date)
    converter.register_structure_hook(ReminderKind, _reminder_kind)
    for id_type in (OrgId, ContactId, AppointmentId):
        converter.register_structure_hook(id_type, _identifier)
    converter.register_unstructure_hook(datetime, _date_time_to_json)
    converter.register_unstructure_hook(date, date.isoformat)
    converter.register_unstructure_hook(Decimal, _decimal_to_json)
    converter.register_unstructure_hook(ReminderKind, lambda kind: kind.value)

    special_fields: dict[str, Callable[[Any, Any], Any]] = {"template": _identifier, "personalization": _json_object}
    wire_names: dict[type[Job], dict[str, str]] = {}
    for job_type in JOB_TYPES.values():
        payload = job_type.payload
        names = {field.name: _camel(field.name) for field in attrs.fields(payload)}
        wire_names[payload] = names
        # typed Any: mypy cannot tell these **kwargs overrides from the generators' keyword flags
        structure_overrides: dict[str, Any] = {
            name: override(rename=wire, struct_hook=special_fields.get(name)) for name, wire in names.items()
        }
        unstructure_overrides: dict[str, Any] = {
            name: override(rename=wire, unstruct_hook=dict if name == "personalization" else None)
            for name, wire in names.items()
        }
        converter.register_structure_hook(payload, make_dict_structure_fn(payload, converter, **structure_overrides))
        converter.register_unstructure_hook(
            payload, make_dict_unstructure_fn(payload, converter, **unstructure_overrides)
        )
    return converter, wire_names


_CONVERTER, _WIRE_NAMES = _build_converter()


def _raise_first_problem(error: ClassValidationError, wire_names: Mapping[str, str]) -> NoReturn:
    """Turn cattrs' collected errors into one InvalidJob for the first failing field, in declaration order."""
    with_notes, _others = error.group_exceptions()
    for exception, note in with_notes:
        if isinstance(note, AttributeValidationNote):
            field = wire_names.get(note.name, note.name)
            if isinstance(exception, KeyError):
                raise InvalidJob(field, "is missing") from None
            if isinstance(exception, _WireProblem):
                raise InvalidJob(field, exception.problem) from None
            raise InvalidJob(field, "has the wrong type") from None
    raise InvalidJob("data", "does not match the job's shape") from None


_JOB_NAMES = {known.value: known for known in JobName}


def decode_job(name: str, data: object) -> DecodedJob:
    """Decode the ``job.data`` of a BullMQ job named ``name``; raises InvalidJob on anything it cannot trust."""
    job_name = _JOB_NAMES.get(name) if isinstance(name, str) else None
    if job_name is None:
        shown = _printable_name(name) if isinstance(name, str) else type(name).__name__
        raise InvalidJob("job name", f"{shown!r} is not a known job")
    if not isinstance(data, dict):
        raise InvalidJob("data", "is not a JSON object")
    payload = JOB_TYPES[job_name].payload
    wire_names = _WIRE_NAMES[payload]
    repaired: set[str] = set()
    cleaned: dict[Any, Any] = {}
    for key, value in data.items():
        wire_key = _wire_key(key)
        cleaned[_repaired(key, wire_key, repaired)] = _repaired(value, wire_key, repaired)
    data = cleaned
    try:
        job = _CONVERTER.structure(data, payload)
    except ClassValidationError as error:
        _raise_first_problem(error, wire_names)
    known = set(wire_names.values())
    unknown = sorted({_printable_name(str(key)) for key in data if key not in known})
    return DecodedJob(job=job, unknown_keys=tuple(unknown), repaired_fields=tuple(sorted(repaired)))


def encode_job(job: Job) -> dict[str, Any]:
    """The ``job.data`` Node's ``bullmq`` would store for this payload (pass it to ``json.dumps``)."""
    job_type_of(job)  # refuses anything that is not a job payload
    encoded: dict[str, Any] = _CONVERTER.unstructure(job, type(job))
    return encoded
