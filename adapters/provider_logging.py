"""The provider libraries log request URLs, headers and payloads (recipients, bodies, API keys) at DEBUG/INFO."""

from __future__ import annotations

import logging

_PROVIDER_LOGGERS = ("twilio", "twilio.http_client", "twilio.async_http_client", "python_http_client")


def pin_provider_library_logging(level: int = logging.WARNING) -> None:
    """Keep the Twilio and SendGrid libraries' own loggers at WARNING (or ``level`` when higher) whatever the root
    level is. ``configure_logging`` calls it with the root level."""
    for name in _PROVIDER_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, level))
