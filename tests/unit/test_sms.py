"""SMS encoding and segment counting as providers bill (GSM-7 / UCS-2), and the 1,600-character body limit."""

from __future__ import annotations

import pytest

from domain.sms import SmsEncoding, SmsLength, sms_body_problem, sms_length


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", SmsLength(SmsEncoding.GSM7, 0, 1)),
        ("See you at 3pm @ Café Ñoño!", SmsLength(SmsEncoding.GSM7, 27, 1)),
        ("See you at Café Ñandú", SmsLength(SmsEncoding.UCS2, 21, 1)),  # ú is not GSM 03.38 (ù is)
        ("a" * 160, SmsLength(SmsEncoding.GSM7, 160, 1)),
        ("a" * 161, SmsLength(SmsEncoding.GSM7, 161, 2)),
        ("a" * 306, SmsLength(SmsEncoding.GSM7, 306, 2)),
        ("a" * 307, SmsLength(SmsEncoding.GSM7, 307, 3)),
        ("€" * 80, SmsLength(SmsEncoding.GSM7, 160, 1)),  # extension characters take two septets
        ("{" * 81, SmsLength(SmsEncoding.GSM7, 162, 2)),
        ("a" + "[" * 77, SmsLength(SmsEncoding.GSM7, 155, 1)),
        ("a" * 152 + "€" + "a" * 10, SmsLength(SmsEncoding.GSM7, 164, 2)),
        ("a" * 152 + "€" + "a" * 152, SmsLength(SmsEncoding.GSM7, 306, 3)),  # the € pair is not split
        ("ê" * 70, SmsLength(SmsEncoding.UCS2, 70, 1)),  # ê is not in the GSM 03.38 alphabet
        ("ê" * 71, SmsLength(SmsEncoding.UCS2, 71, 2)),
        ("Hi 😀" * 10, SmsLength(SmsEncoding.UCS2, 50, 1)),  # an emoji is two UTF-16 units
        ("aa" + "😀" * 66, SmsLength(SmsEncoding.UCS2, 134, 3)),  # no surrogate pair split across segments
        ("\ufffd", SmsLength(SmsEncoding.UCS2, 1, 1)),  # a repaired lone surrogate
    ],
)
def test_encoding_units_and_segments(body: str, expected: SmsLength) -> None:
    """GSM-7 when every character is in the GSM 03.38 sets, else UCS-2; 160/70 in one segment, 153/67 per part."""
    assert sms_length(body) == expected


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("a" * 1600, None),
        ("a" * 1601, "is longer than 1600 characters, the SMS body limit"),
        ("😀" * 800, None),
        ("😀" * 800 + "a", "is longer than 1600 characters, the SMS body limit"),
    ],
)
def test_the_body_limit_counts_utf16_units(body: str, problem: str | None) -> None:
    """Twilio's 1,600-character limit, counted as JavaScript counts length; the reason never quotes the body."""
    assert sms_body_problem(body) == problem
