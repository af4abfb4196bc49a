"""OTLP/protobuf encoding of ended spans, written straight to bytes: the exporter's encoding off the GIL's budget.

The SDK's encoder (``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``) builds a protobuf message
object per span, attribute and value: ~35-75 us per job span here, on the export thread, which holds the GIL while the
worker's event loop waits. A job span is a flat record (ids, name, kind, times, a few scalar attributes, a status), so
this module writes its wire form directly (~5 us) and leaves every other span (events such as a recorded exception,
links, array or mapping attributes, dropped counts) to the SDK's encoder, whose bytes it embeds unchanged.

Wire format: ``opentelemetry/proto/collector/trace/v1/trace_service.proto`` and ``opentelemetry/proto/trace/v1/
trace.proto`` (opentelemetry-proto); protobuf encoding rules: https://protobuf.dev/programming-guides/encoding/.
The unit tests parse the output with opentelemetry-proto and compare it with the SDK's encoding of the same spans.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Hashable, Sequence
from typing import cast

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

# Field numbers (trace.proto, trace_service.proto, common.proto).
_REQUEST_RESOURCE_SPANS = 1
_RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS, _RESOURCE_SPANS_SCHEMA_URL = 1, 2, 3
_SCOPE_SPANS_SCOPE, _SCOPE_SPANS_SPANS, _SCOPE_SPANS_SCHEMA_URL = 1, 2, 3
_SPAN_TRACE_ID, _SPAN_SPAN_ID, _SPAN_TRACE_STATE, _SPAN_PARENT_SPAN_ID, _SPAN_NAME, _SPAN_KIND = 1, 2, 3, 4, 5, 6
_SPAN_START, _SPAN_END, _SPAN_ATTRIBUTES, _SPAN_STATUS, _SPAN_FLAGS = 7, 8, 9, 15, 16
_STATUS_MESSAGE, _STATUS_CODE = 2, 3
_KEY_VALUE_KEY, _KEY_VALUE_VALUE = 1, 2
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE = 1, 2, 3, 4
# Wire types.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
# SpanFlags: the W3C flags' byte, plus "we know whether the parent is remote" and "it is".
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache  # a few dozen (field, wire type) pairs
def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _any_value(value: object) -> bytes:
    if isinstance(value, bool):  # before int: bool is an int
        return _tag(_ANY_BOOL, _VARINT) + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _delimited(_ANY_STRING, value.encode())
    if isinstance(value, int):
        return _tag(_ANY_INT, _VARINT) + _varint(value)
    if isinstance(value, float):
        return _tag(_ANY_DOUBLE, _FIXED64) + struct.pack("<d", value)
    raise _NotFlat


class _NotFlat(Exception):
    """A span (or attribute) outside the fast path: the SDK's encoder takes it."""


@functools.lru_cache(maxsize=4096)  # attribute keys and their repeated values (queue, job name, outcome, attempt)
def _key_value(key: str, value: object, _type: Hashable) -> bytes:
    """One ``KeyValue`` as the ``attributes`` field of its parent. ``_type`` keeps 1, 1.0 and True apart."""
    return _delimited(
        _SPAN_ATTRIBUTES, _delimited(_KEY_VALUE_KEY, key.encode()) + _delimited(_KEY_VALUE_VALUE, _any_value(value))
    )


_TRACE_ID = _tag(_SPAN_TRACE_ID, _LENGTH_DELIMITED) + b"\x10"  # 16 bytes follow
_SPAN_ID = _tag(_SPAN_SPAN_ID, _LENGTH_DELIMITED) + b"\x08"
_PARENT_SPAN_ID = _tag(_SPAN_PARENT_SPAN_ID, _LENGTH_DELIMITED) + b"\x08"
_TIMES = struct.Struct("<BQBQ")  # start and end: one-byte tags, fixed64 values
_START_TAG, _END_TAG = _tag(_SPAN_START, _FIXED64)[0], _tag(_SPAN_END, _FIXED64)[0]
_FLAGS = _tag(_SPAN_FLAGS, _FIXED32)
_LOCAL_PARENT_FLAGS = _FLAGS + struct.pack("<I", _HAS_IS_REMOTE)
_REMOTE_PARENT_FLAGS = _FLAGS + struct.pack("<I", _HAS_IS_REMOTE | _IS_REMOTE)


@functools.lru_cache(maxsize=256)  # span names are bounded ("process <queue>", a query summary)
def _name_and_kind(name: str, kind: int) -> bytes:
    """The name and kind fields; ``kind`` is the SDK's ``SpanKind`` value (the proto enum counts from UNSPECIFIED)."""
    return _delimited(_SPAN_NAME, name.encode()) + _tag(_SPAN_KIND, _VARINT) + _varint(kind + 1)


@functools.lru_cache(maxsize=256)
def _status(code: int, description: str | None) -> bytes:
    code_field = _tag(_STATUS_CODE, _VARINT) + _varint(code) if code else b""
    message = _delimited(_STATUS_MESSAGE, description.encode()) if description else b""
    return _delimited(_SPAN_STATUS, message + code_field)


def _flat_span(span: ReadableSpan) -> bytes:
    """The ``Span`` message of a span without events, links or drops and with scalar attributes."""
    if span.events or span.links or span.dropped_attributes or span.dropped_events or span.dropped_links:
        raise _NotFlat
    context = span.context
    if context is None:
        raise _NotFlat
    parts = [_TRACE_ID, context.trace_id.to_bytes(16, "big"), _SPAN_ID, context.span_id.to_bytes(8, "big")]
    if context.trace_state:
        trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
        parts.append(_delimited(_SPAN_TRACE_STATE, trace_state.encode()))
    parent = span.parent
    if parent is not None:
        parts += (_PARENT_SPAN_ID, parent.span_id.to_bytes(8, "big"))
    parts.append(_name_and_kind(span.name, span.kind.value))
    parts.append(_TIMES.pack(_START_TAG, span.start_time or 0, _END_TAG, span.end_time or 0))
    attributes = span.attributes or {}
    parts += [_key_value(key, value, cast(Hashable, type(value))) for key, value in attributes.items()]
    status = span.status
    parts.append(_status(status.status_code.value, status.description))
    parts.append(_REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else _LOCAL_PARENT_FLAGS)
    return b"".join(parts)


def _sdk_span(span: ReadableSpan) -> bytes:
    encoded: bytes = encode_spans([span]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    return encoded


def _span_bytes(span: ReadableSpan) -> bytes:
    try:
        return _flat_span(span)
    except (_NotFlat, UnicodeEncodeError, TypeError):  # a lone surrogate, an unhashable value: the SDK's encoder
        return _sdk_span(span)


def _envelope(span: ReadableSpan) -> tuple[bytes, bytes, bytes, bytes]:
    """The encoded resource, its schema URL field, the scope and its schema URL field for ``span``'s group (by the
    SDK's encoder, once per group and batch)."""
    resource_spans = encode_spans([span]).resource_spans[0]
    scope_spans = resource_spans.scope_spans[0]
    resource_schema = (
        _delimited(_RESOURCE_SPANS_SCHEMA_URL, resource_spans.schema_url.encode()) if resource_spans.schema_url else b""
    )
    scope_schema = (
        _delimited(_SCOPE_SPANS_SCHEMA_URL, scope_spans.schema_url.encode()) if scope_spans.schema_url else b""
    )
    resource = _delimited(_RESOURCE_SPANS_RESOURCE, resource_spans.resource.SerializeToString())
    scope = _delimited(_SCOPE_SPANS_SCOPE, scope_spans.scope.SerializeToString())
    return resource, resource_schema, scope, scope_schema


def encode_export_request(spans: Sequence[ReadableSpan]) -> bytes:
    """An ``ExportTraceServiceRequest`` carrying ``spans``, grouped by resource, then instrumentation scope, as the
    SDK's encoder groups them (the same objects make one group)."""
    groups: dict[tuple[int, int], list[ReadableSpan]] = {}
    for span in spans:
        groups.setdefault((id(span.resource), id(span.instrumentation_scope)), []).append(span)
    by_resource: dict[int, list[list[ReadableSpan]]] = {}
    for (resource_id, _scope_id), members in groups.items():
        by_resource.setdefault(resource_id, []).append(members)
    request = []
    for scope_groups in by_resource.values():
        resource, resource_schema, _, _ = _envelope(scope_groups[0][0])
        scope_spans = []
        for members in scope_groups:
            _, _, scope, scope_schema = _envelope(members[0])
            body = b"".join(_delimited(_SCOPE_SPANS_SPANS, _span_bytes(span)) for span in members)
            scope_spans.append(_delimited(_RESOURCE_SPANS_SCOPE_SPANS, scope + body + scope_schema))
        request.append(_delimited(_REQUEST_RESOURCE_SPANS, resource + b"".join(scope_spans) + resource_schema))
    return b"".join(request)
