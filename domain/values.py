"""Value types of the domain.

Contact details mask themselves in ``repr`` and ``str`` so an accidental log line or exception message cannot
carry them in clear; the raw value is reachable only through an explicit attribute (``.e164``, ``.address``).
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal, InvalidOperation
from typing import NewType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from domain.errors import InvalidValue

OrgId = NewType("OrgId", str)
ContactId = NewType("ContactId", str)
AppointmentId = NewType("AppointmentId", str)
InvoiceId = NewType("InvoiceId", str)
SequenceId = NewType("SequenceId", str)
EnrollmentId = NewType("EnrollmentId", str)


class Channel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"


class MessagePurpose(enum.StrEnum):
    """Why a message is sent; decides its send window and whether marketing caps apply."""

    TRANSACTIONAL = "transactional"  # reminders, dunning
    MARKETING = "marketing"  # nurture steps


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")


def _mask_middle(text: str, keep_start: int, keep_end: int) -> str:
    hidden = len(text) - keep_start - keep_end
    if hidden <= 0:
        return "*" * len(text)
    return text[:keep_start] + "*" * hidden + text[len(text) - keep_end :]


@attrs.frozen(repr=False)
class PhoneNumber:
    """A phone number in E.164 form (``+14155550100``)."""

    e164: str = attrs.field()

    @e164.validator
    def _check(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or not _E164.match(value):
            raise InvalidValue("phone number", "is not in E.164 form (+ then 7 to 15 digits)")

    @classmethod
    def parse(cls, text: str) -> PhoneNumber:
        """Accept common separators (spaces, dashes, dots, parentheses) around an E.164 number."""
        cleaned = re.sub(r"[\s\-().]", "", text) if isinstance(text, str) else text
        return cls(cleaned)

    @property
    def masked(self) -> str:
        return _mask_middle(self.e164, 3, 2)

    def __repr__(self) -> str:
        return f"PhoneNumber({self.masked})"

    __str__ = __repr__


@attrs.frozen(repr=False)
class EmailAddress:
    """An email address, syntactically checked (deliverability is the provider's business)."""

    address: str = attrs.field()

    @address.validator
    def _check(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not isinstance(value, str) or len(value) > 254 or not _EMAIL.match(value):
            raise InvalidValue("email address", "is not a valid address")

    @property
    def masked(self) -> str:
        local, _, domain = self.address.partition("@")
        return f"{local[:1]}***@{domain[:1]}***"

    def __repr__(self) -> str:
        return f"EmailAddress({self.masked})"

    __str__ = __repr__


# ISO 4217 minor-unit exponents that differ from 2; every other valid code uses 2.
_MINOR_UNIT_EXPONENT = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


@attrs.frozen(order=True)
class Money:
    """An amount as integer minor units (cents) of an ISO 4217 currency: no float ever holds money."""

    minor: int
    currency: str = attrs.field()

    @currency.validator
    def _check_currency(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isupper()):
            raise InvalidValue("currency", "is not an ISO 4217 code")

    @staticmethod
    def exponent(currency: str) -> int:
        return _MINOR_UNIT_EXPONENT.get(currency, 2)

    @classmethod
    def from_major(cls, amount: Decimal | int | float | str, currency: str) -> Money:
        """Convert a major-unit amount (``125.5`` USD) exactly, refusing more decimals than the currency has.

        A JS number arrives as a Python float; its shortest repr (``125.5``) is the decimal the producer wrote.
        """
        try:
            value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
        except (InvalidOperation, ValueError, TypeError):
            raise InvalidValue("amount", "is not a number") from None
        if not value.is_finite():
            raise InvalidValue("amount", "is not a finite number")
        exponent = cls.exponent(currency)
        scaled = value.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise InvalidValue("amount", f"has more than {exponent} decimal places")
        return cls(int(scaled), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidValue("currency", "differs between the two amounts")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.minor - other.minor, self.currency)

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    def format(self) -> str:
        """``125.50 USD``: for message bodies, never for arithmetic."""
        exponent = self.exponent(self.currency)
        major = Decimal(self.minor).scaleb(-exponent)
        return f"{major:.{exponent}f} {self.currency}"


def zone(name: str) -> ZoneInfo:
    """The IANA zone of that name, or InvalidValue (never a fixed offset, never the host's local zone)."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidValue("time zone", "is not an IANA zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue("time zone", "is not a known IANA zone name") from None
