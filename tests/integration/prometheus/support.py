"""Debian's Prometheus for the tests: ``promtool`` and a ``prometheus`` server on loopback, run from a temp dir.

scripts/setup.sh (``ensure_prometheus``) installs the ``prometheus`` package when missing; a test skips, naming
the reason, only when the binaries are still not there (the package could not be installed on this machine).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
PROMETHEUS_PORT = 7890  # in this suite's port range (7800-7899)


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed: scripts/setup.sh ensure_prometheus installs Debian's prometheus package")
    return found


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def api(path: str, **params: str) -> Any:
    """GET Prometheus' HTTP API (without blocking the loop that serves /metrics); the ``data`` of a success."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{PROMETHEUS_PORT}{path}", params=params, timeout=aiohttp.ClientTimeout(5)
        ) as answer,
    ):
        body = await answer.json()
    assert body["status"] == "success", body
    return body["data"]


@contextmanager
def running_prometheus(directory: pathlib.Path, target_port: int) -> Iterator[None]:
    """Prometheus scraping ``127.0.0.1:<target_port>/metrics`` every second as job ``clientflow``, with our alert
    rules evaluated every second, until the block ends."""
    shutil.copy(ALERTS, directory / "alerts.yml")
    (directory / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: clientflow\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n",
        encoding="utf-8",
    )
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--web.enable-lifecycle",
        ],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (directory / "prometheus.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
