"""The composition root is cheap to import: the health server and the start-up checks open their Redis client
through it without loading the providers' libraries, which only the processes that send load (supervisord's
``startsecs`` counts every import)."""

from __future__ import annotations

import json
import subprocess
import sys

PROVIDER_LIBRARIES = ("twilio", "sendgrid", "sentry_sdk", "openai")


def _libraries_loaded_by(*modules: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after importing ``modules``."""
    report = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    code = f"import json, sys\nimport {', '.join(modules)}\n{report}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(done.stdout))


def test_the_health_server_and_the_start_up_checks_load_no_provider_library() -> None:
    loaded = _libraries_loaded_by("entrypoints.health", "entrypoints.preflight", "entrypoints.bootstrap")

    assert "entrypoints" in loaded
    assert loaded.isdisjoint(PROVIDER_LIBRARIES), loaded & set(PROVIDER_LIBRARIES)


def test_building_the_senders_loads_their_libraries() -> None:
    """The guard above can fail: the module that builds the Twilio sender loads its library."""
    loaded = _libraries_loaded_by("adapters.messaging.twilio_sms", "adapters.observability.sentry")

    assert {"twilio", "sentry_sdk"} <= loaded
