"""SMS body limits and segment counting, as the providers bill them.

Source: Twilio, "What the heck is a segment?" and the Messages API (``Body``: up to 1,600 characters), after
3GPP TS 23.038 (the GSM 03.38 7-bit alphabet) and TS 23.040 (concatenated SMS). A body is sent in GSM-7 when every
character is in the GSM 03.38 basic set or its extension table (an extension character such as ``€`` or ``{``
takes two septets), else in UCS-2 (UTF-16: a character outside the BMP, such as an emoji, takes two units). One
segment holds 160 septets or 70 UCS-2 units; a longer body is split into segments of 153 septets or 67 units (the
rest carries the concatenation header).

The 1,600-character limit is counted in UTF-16 code units, what JavaScript's ``length`` reports to the CRM.
"""

from __future__ import annotations

import enum

import attrs

SMS_MAX_CHARS = 1600
"""Twilio's limit for one message ``Body``; a longer one is refused (error 21617)."""

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


class SmsEncoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@attrs.frozen
class SmsLength:
    """``units``: septets (GSM-7) or UTF-16 code units (UCS-2); ``segments``: what the provider bills."""

    encoding: SmsEncoding
    units: int
    segments: int


def utf16_length(text: str) -> int:
    """The text's length in UTF-16 code units (JavaScript's ``length``)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _segments(costs: list[int], single: int, per_segment: int) -> int:
    """Segments of ``per_segment`` units, never splitting one character's units (an escape pair, a surrogate
    pair) across two, as Twilio splits."""
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > per_segment:
            segments, used = segments + 1, 0
        used += cost
    return segments


def sms_length(body: str) -> SmsLength:
    """The encoding, size and segment count of ``body`` (an empty body is one segment)."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in body):
        encoding, single, per_segment = SmsEncoding.GSM7, 160, 153
        costs = [2 if c in _GSM7_EXTENSION else 1 for c in body]
    else:
        encoding, single, per_segment = SmsEncoding.UCS2, 70, 67
        costs = [2 if ord(c) > 0xFFFF else 1 for c in body]
    return SmsLength(encoding, sum(costs), _segments(costs, single, per_segment))


def sms_body_problem(body: str) -> str | None:
    """Why ``body`` cannot be one SMS (a reason without the text), or None when it can."""
    if utf16_length(body) > SMS_MAX_CHARS:
        return f"is longer than {SMS_MAX_CHARS} characters, the SMS body limit"
    return None
