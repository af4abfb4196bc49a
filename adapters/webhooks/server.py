"""The webhooks HTTP server (aiohttp): authenticate, write what the request means in one transaction, answer.

Nothing here calls a provider. A request that is unsigned, wrongly signed, stale or too large changes nothing and
is answered 403/413; the reason is logged and counted, never the body. A store failure answers 503 so the provider
delivers again later (every write is idempotent, so a redelivery is harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import attrs
import structlog
from aiohttp import web
from multidict import MultiDictProxy

from adapters.observability.metrics import MetricsRecorder
from adapters.webhooks.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    MalformedBatch,
    SendGridSignature,
    parse_events,
)
from adapters.webhooks.twilio import EMPTY_TWIML, Ignored, TwilioWebhooks, inbound_change, status_report
from domain.errors import TransientError
from domain.feedback import TWILIO_STATUSES, ConsentChange, DeliveryReport, FeedbackApplied
from domain.ports import Clock, DeliveryFeedback

log = structlog.get_logger("clientflow.webhooks")
# The level structlog's filter_by_level reads: checked first, a debug line that would be dropped costs nothing.
_level = logging.getLogger("clientflow.webhooks")

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
SENDGRID_EVENTS = frozenset(
    {"processed", "deferred", "delivered", "bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe",
     "open", "click", "group_resubscribe"}
)  # fmt: skip


_TWILIO_KINDS = frozenset(TWILIO_STATUSES)


def _bounded(kind: str, known: frozenset[str]) -> str:
    return kind if kind in known else "other"


@attrs.define
class WebhookHandlers:
    """``twilio`` None: Twilio is not configured and its routes refuse everything. ``sendgrid`` None: no
    verification key, so SendGrid's events are taken unsigned (development only; the program refuses that in
    production). ``max_body_bytes`` bounds every request body."""

    feedback: DeliveryFeedback
    clock: Clock
    twilio: TwilioWebhooks | None
    sendgrid: SendGridSignature | None
    max_body_bytes: int
    metrics: MetricsRecorder | None = None

    def _refuse(self, provider: str, reason: str, status: int) -> web.Response:
        log.warning("webhook_refused", provider=provider, reason=reason, status=status)
        if self.metrics is not None:
            self.metrics.webhook_refused(provider, reason)
        return web.Response(status=status)

    def _count(self, provider: str, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_event(provider, kind, outcome)

    def _too_large(self, request: web.Request) -> bool:
        return request.content_length is not None and request.content_length > self.max_body_bytes

    async def _apply(
        self, provider: str, reports: Sequence[DeliveryReport], changes: Sequence[ConsentChange]
    ) -> FeedbackApplied | web.Response:
        try:
            return await self.feedback.apply(reports, changes)
        except TransientError as error:
            log.error("webhook_store_unavailable", provider=provider, error=str(error))
            return web.Response(status=503)

    async def _twilio_form(self, request: web.Request) -> MultiDictProxy[str] | web.Response:
        if self.twilio is None:
            return self._refuse("twilio", "not_configured", 403)
        if self._too_large(request):
            return self._refuse("twilio", "too_large", 413)
        try:
            form = cast("MultiDictProxy[str]", await request.post())
        except web.HTTPRequestEntityTooLarge:
            return self._refuse("twilio", "too_large", 413)
        signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
        if not self.twilio.authentic(request.raw_path, form, signature):
            return self._refuse("twilio", "bad_signature" if signature else "unsigned", 403)
        return form

    async def twilio_status(self, request: web.Request) -> web.Response:
        """``POST /webhooks/twilio/status``: a message status callback."""
        form = await self._twilio_form(request)
        if isinstance(form, web.Response):
            return form
        kind = _bounded(form.get("MessageStatus", "").strip().lower(), _TWILIO_KINDS)
        report = status_report(request.query, form, self.clock.now())
        if isinstance(report, Ignored):
            log.info("delivery_status_ignored", provider="twilio", reason=report.reason, status=kind)
            self._count("twilio", kind, "ignored")
            return web.Response(status=204)
        applied = await self._apply("twilio", [report], [])
        if isinstance(applied, web.Response):
            return applied
        self._count("twilio", kind, "applied" if applied.reports else "unchanged")
        if _level.isEnabledFor(logging.DEBUG):  # a filtered-out debug line still runs structlog's chain (~50 µs)
            log.debug("delivery_status_received", ledger_key=report.ledger_key, status=kind, moved=applied.reports)
        return web.Response(status=204)

    async def twilio_inbound(self, request: web.Request) -> web.Response:
        """``POST /webhooks/twilio/inbound``: an inbound SMS; answers empty TwiML."""
        form = await self._twilio_form(request)
        if isinstance(form, web.Response):
            return form
        change = inbound_change(form, self.clock.now())
        if isinstance(change, Ignored):
            log.info("inbound_sms_ignored", reason=change.reason)
            self._count("twilio", "inbound", "ignored")
        else:
            applied = await self._apply("twilio", [], [change])
            if isinstance(applied, web.Response):
                return applied
            self._log_change(change, applied.consent_changes)
            self._count("twilio", f"inbound_{change.action}", "applied" if applied.consent_changes else "unchanged")
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def sendgrid_events(self, request: web.Request) -> web.Response:
        """``POST /webhooks/sendgrid/events``: one Event Webhook batch."""
        if self._too_large(request):
            return self._refuse("sendgrid", "too_large", 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse("sendgrid", "too_large", 413)
        now = self.clock.now()
        if self.sendgrid is not None:
            headers = request.headers
            refusal = self.sendgrid.refusal(body, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), now)
            if refusal is not None:
                return self._refuse("sendgrid", refusal, 403)
        try:
            batch = parse_events(body, now)
        except MalformedBatch as malformed:
            log.warning("webhook_malformed", provider="sendgrid", problem=str(malformed))
            return web.Response(status=400)
        applied = await self._apply("sendgrid", batch.reports, batch.changes)
        if isinstance(applied, web.Response):
            return applied
        for change in batch.changes:
            self._log_change(change, None)
        for kind in batch.kinds:
            self._count("sendgrid", _bounded(kind, SENDGRID_EVENTS), "received")
        log.info(
            "sendgrid_events_applied",
            events=len(batch.kinds),
            unusable=batch.unusable,
            reports_moved=applied.reports,
            consent_changes=applied.consent_changes,
        )
        return web.Response(status=204)

    @staticmethod
    def _log_change(change: ConsentChange, applied: int | None) -> None:
        """``applied``: 1 new, 0 a redelivery, None unknown (a batch reports its total only)."""
        event = {None: "consent_change_received", 0: "consent_change_repeated"}.get(applied, "consent_changed")
        log.info(
            event,
            channel=str(change.channel),
            action=str(change.action),
            reason=str(change.reason) if change.reason else None,
            recipient=change.recipient.masked,
            source=change.source,
        )


def build_webhooks_app(handlers: WebhookHandlers) -> web.Application:
    """The routes; every body is bounded by ``max_body_bytes`` (aiohttp answers 413 beyond it)."""
    app = web.Application(client_max_size=handlers.max_body_bytes)
    app.router.add_post("/webhooks/twilio/status", handlers.twilio_status)
    app.router.add_post("/webhooks/twilio/inbound", handlers.twilio_inbound)
    app.router.add_post("/webhooks/sendgrid/events", handlers.sendgrid_events)
    app.router.add_get("/webhooks/live", _live)
    return app


async def _live(_request: web.Request) -> web.Response:
    """The process and its event loop answer."""
    return web.json_response({"status": "ok"})
