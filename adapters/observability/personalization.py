"""The PersonalizationRecorder port: each personalization attempt as counts, a log line and job-span attributes.

Content-free by construction (the outcome carries org, channel, reason, model and token counts only). Tokens are
counted per org so each org's cost shows in the metrics; orgs are the CRM's customers, a bounded label.
"""

from __future__ import annotations

import attrs
import structlog
from opentelemetry import trace

from adapters.observability.metrics import MetricsRecorder
from adapters.observability.tracing import set_span_attributes
from domain.personalization import FallbackReason, PersonalizationOutcome

log = structlog.get_logger()
_SETTINGS = "OPENAI_API_KEY, OPENAI_MODEL, OPENAI_BASE_URL"


@attrs.define
class MetricsPersonalizationRecorder:
    metrics: MetricsRecorder

    def record(self, outcome: PersonalizationOutcome) -> None:
        fallback = outcome.fallback.value if outcome.fallback is not None else None
        self.metrics.personalization(
            outcome.org_id, outcome.channel.value, fallback, outcome.model, outcome.input_tokens, outcome.output_tokens
        )
        set_span_attributes(
            trace.get_current_span(),
            {
                "clientflow.personalization.outcome": "fallback" if fallback else "used",
                "clientflow.personalization.reason": fallback or "none",
                "gen_ai.request.model": outcome.model or "none",
                "gen_ai.usage.input_tokens": outcome.input_tokens,
                "gen_ai.usage.output_tokens": outcome.output_tokens,
            },
        )
        fields = {
            "org_id": outcome.org_id,
            "channel": outcome.channel.value,
            "model": outcome.model,
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
        }
        if fallback is None:
            log.info("copy_personalized", **fields)
        elif outcome.fallback is FallbackReason.MISCONFIGURED:  # the key, model or URL refused: templates go plain
            log.error("copy_personalization_fallback", reason=fallback, check=_SETTINGS, **fields)
        else:
            log.warning("copy_personalization_fallback", reason=fallback, **fields)
