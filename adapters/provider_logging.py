"""The provider libraries log request URLs, headers and payloads (recipients, bodies, prompts, keys) at DEBUG/INFO."""

from __future__ import annotations

import logging

_PROVIDER_LOGGERS = (
    "twilio", "twilio.http_client", "twilio.async_http_client", "python_http_client",
    "openai", "httpx2", "httpcore2", "httpx", "httpcore",  # openai logs request options (prompts) at DEBUG
)  # fmt: skip


def pin_provider_library_logging(level: int = logging.WARNING) -> None:
    """Keep the Twilio, SendGrid and OpenAI libraries' own loggers at WARNING (or ``level`` when higher) whatever
    the root level is. ``configure_logging`` calls it with the root level."""
    for name in _PROVIDER_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
