"""A local OpenTelemetry collector: OTLP/HTTP protobuf at ``POST /v1/traces`` (gzip or plain), decoded with
opentelemetry-proto so tests can read the spans the real exporter sent."""

from __future__ import annotations

import gzip

import attrs
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.fakeservers.scripted import RecordedRequest, ScriptedServer

PROTOBUF = "application/x-protobuf"


@attrs.define
class FakeOtlpCollector(ScriptedServer):
    exports: list[ExportTraceServiceRequest] = attrs.Factory(list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._serve(self._traces))
        return app

    async def _traces(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        if request.content_type != PROTOBUF:
            return web.Response(status=415, text=f"expected {PROTOBUF}")
        body = recorded.body  # aiohttp has undone a declared gzip encoding; a still-gzipped body is unpacked here
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.exports.append(export)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)

    def spans(self) -> list[tuple[dict[str, str], Span]]:
        """Every span received, with its resource's string attributes."""
        found = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                found += [(resource, span) for scope in resource_spans.scope_spans for span in scope.spans]
        return found
