"""The worker on a TLS-only Redis with an ACL user (``rediss://user:password@`` and REDIS_TLS_CA_FILE), fed by the
npm bullmq producer over TLS; a CA that did not sign the server's certificate is refused in one line."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.bullmq.connection import RedisSettings
from tests.support.processes import Providers, token, workers
from tests.support.queues import eventually
from tests.support.redis_topologies import ACL_PASSWORD, ACL_USER, TLS_PORT, TlsRedis, tls_redis
from tests.support.topologies import (
    add_from_node,
    health_server,
    launch_refusal,
    reminder_jobs,
    topology_env,
    wait_terminal,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    with tls_redis(tmp_path_factory.mktemp("tls")) as started:
        yield started


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"test-tls-{token()}"


@pytest.fixture(scope="module")
def env(server: TlsRedis, providers: Providers, database_url: str, prefix: str) -> dict[str, str]:
    return topology_env(
        providers,
        database_url,
        prefix,
        REDIS_URL=server.url(),
        REDIS_TLS_CA_FILE=str(server.ca_file),
    )


async def test_a_reminder_flows_over_tls_with_an_acl_user(
    server: TlsRedis, env: dict[str, str], providers: Providers, prefix: str, log_dir: pathlib.Path, db: Any
) -> None:
    """A reminder added by Node over TLS is processed by a worker connected as the ACL user; one SMS is sent."""
    node_tls = {
        "host": "127.0.0.1",
        "port": TLS_PORT,
        "username": ACL_USER,
        "password": ACL_PASSWORD,
        "tlsCaFile": str(server.ca_file),
    }
    python_tls = RedisSettings(
        port=TLS_PORT, username=ACL_USER, password=ACL_PASSWORD, tls=True, tls_ca_file=str(server.ca_file)
    )
    [reminder] = await reminder_jobs(db, 1)
    with workers("reminders", env, log_dir):
        [job_id] = await add_from_node(node_tls, prefix, "reminders", [reminder.job])
        found = await wait_terminal(python_tls, prefix, "reminders", [job_id])
    assert found == {job_id: "completed"}
    assert providers.sms_posts_to(reminder.phone) == 1


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ("ca", "REDIS_TLS_CA_FILE"),
        ("password", "REDIS_URL"),
    ],
)
def test_a_wrong_ca_or_password_is_refused_in_one_line(
    server: TlsRedis, env: dict[str, str], change: str, setting: str
) -> None:
    """A CA that did not sign the server's certificate, or a wrong ACL password: exit 78 (permanent), one log line
    naming the setting, and the password nowhere in the output."""
    wrong = (
        {"REDIS_TLS_CA_FILE": str(server.other_ca_file)}
        if change == "ca"
        else {"REDIS_URL": server.url(password="wrong-canary-password")}
    )
    code, output = launch_refusal({**env, **wrong})
    assert code == 78, output
    [line] = [line for line in output.splitlines() if "start_refused" in line or "dependency" in line]
    assert json.loads(line)["error"].startswith(f"{setting}:")
    assert ACL_PASSWORD not in output
    assert "wrong-canary-password" not in output


async def test_health_reports_the_outage_while_it_lasts_and_recovers_by_itself(
    server: TlsRedis, env: dict[str, str]
) -> None:
    """The health server (TLS, ACL user) answers "redis unreachable" while Redis is down and "ok" once it is
    back, without a restart."""
    with health_server(env) as get:
        assert _redis_check(get) == "ok"
        server.stop()
        try:
            assert _redis_check(get) == "redis unreachable"
        finally:
            server.start()
        await eventually(lambda: _answers_ok(get), within=20)


def _redis_check(get: Callable[[str], tuple[int, str]]) -> str:
    _, body = get("/health/ready")
    answer = json.loads(body)
    return str(answer.get("checks", {}).get("redis", answer.get("reason")))


async def _answers_ok(get: Callable[[str], tuple[int, str]]) -> bool:
    return _redis_check(get) == "ok"
