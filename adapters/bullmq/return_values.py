"""Job return values as plain JSON: bullmq serialises them with ``json.dumps``, where a ``datetime`` fails the job."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


def json_safe(value: object) -> Any:
    """``value`` as plain JSON types: aware datetimes become ``Date.toJSON`` strings, dates ISO dates, enums
    their values. bullmq serialises return values with ``json.dumps``, and a ``datetime`` there fails the job."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a return value must not hold NaN or infinity")
        return value
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("a return value must not hold a naive datetime")
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    raise TypeError(f"{type(value).__name__} is not JSON-safe")
