"""Start-up checks of the dependencies, each failure one line naming the setting and the cause.

A cause is **permanent** (a missing database, an unknown role, a rejected password, a taken port: raise
``Refused``; the process exits 78 before supervisord's ``startsecs``, so repeated failures end in FATAL and the
alert) or **transient** (nothing answers yet, a timeout: ``Unreachable``; a worker waits with backoff and is not
ready meanwhile, a CLI command says so and exits 69). Messages name hosts, ports, databases and roles, never a
password.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from adapters.bullmq.connection import close_redis
from entrypoints.bootstrap import open_check_redis
from entrypoints.settings import Settings

EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE (sysexits.h)
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
CHECK_TIMEOUT_S = 5.0
log = structlog.get_logger("entrypoints.preflight")


class Refused(Exception):
    """A permanent cause: waiting will not help; the message names the setting."""


class Unreachable(Exception):
    """A transient cause: the dependency does not answer now; the message names the setting."""


def _cause(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    if isinstance(error, OSError) and error.errno is not None:
        return errno.errorcode.get(error.errno, "connection failed").lower().removeprefix("e").replace("_", " ")
    return type(error).__name__


async def check_postgres(url: str) -> None:
    """Connect once with DATABASE_URL; Refused or Unreachable naming the cause."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 5432}"
    database = parts.path.lstrip("/") or unquote(parts.username or "")
    try:
        connection = await asyncpg.connect(url, timeout=CHECK_TIMEOUT_S)
    except asyncpg.InvalidCatalogNameError:
        raise Refused(f'DATABASE_URL names database "{database}", which does not exist on {where}') from None
    except asyncpg.InvalidPasswordError:
        raise Refused(f'DATABASE_URL: the server at {where} rejected the password of role "{parts.username}"') from None
    except asyncpg.InvalidAuthorizationSpecificationError:
        raise Refused(
            f'DATABASE_URL: the server at {where} refused role "{parts.username}" (no such role, or no access '
            f'to "{database}")'
        ) from None
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as error:
        raise Unreachable(f"DATABASE_URL: no PostgreSQL answers at {where} ({_cause(error)})") from None
    except asyncpg.PostgresError as error:
        raise Refused(f"DATABASE_URL: the server at {where} refused the connection ({error.sqlstate})") from None
    await connection.close()


def _redis_variable(settings: Settings) -> str:
    """The setting that says where Redis is, for the one-line refusal."""
    if settings.redis_cluster_nodes:
        return "REDIS_CLUSTER_NODES"
    if settings.redis_sentinels:
        return "REDIS_SENTINELS/REDIS_SENTINEL_MASTER"
    return "REDIS_URL" if settings.redis_url else "REDIS_HOST/REDIS_PORT"


def _credentials_variable(settings: Settings) -> str:
    """Where the rejected user and password came from: REDIS_URL when it holds them."""
    if settings.redis_url and "@" in settings.redis_url:
        return "REDIS_URL"
    return "REDIS_USERNAME/REDIS_PASSWORD" if settings.redis_username else "REDIS_PASSWORD"


def _certificate_refused(error: BaseException) -> bool:
    chain: BaseException | None = error
    while chain is not None:
        if isinstance(chain, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(chain):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


async def check_redis(settings: Settings) -> None:
    """PING Redis in its configured topology (one server, Sentinel or Cluster); Refused or Unreachable naming
    the setting and the cause."""
    where = settings.redis_where()
    variable = _redis_variable(settings)
    client = open_check_redis(settings, CHECK_TIMEOUT_S)
    try:
        await client.ping()
    except AuthenticationError:
        raise Refused(f"{_credentials_variable(settings)}: Redis at {where} rejected it (or needs one)") from None
    except ResponseError as error:
        if "NOAUTH" in str(error) or "AUTH" in str(error).upper():
            raise Refused(
                f"{_credentials_variable(settings)}: Redis at {where} needs a password, or another one"
            ) from None
        raise Refused(f"{variable}: {where} answered PING with an error; is it Redis?") from None
    except (RedisError, OSError) as error:
        if _certificate_refused(error):
            raise Refused(
                f"REDIS_TLS_CA_FILE: the TLS certificate of Redis at {where} does not chain to that CA "
                "(or does not name the host)"
            ) from None
        cause = _cause(error.__cause__ or error.__context__ or error)
        raise Unreachable(f"{variable}: no Redis answers at {where} ({cause})") from None
    finally:
        await close_redis(client)


def check_port_free(host: str, port: int, setting: str = "HEALTH") -> None:
    """Refused naming ``<setting>_HOST``/``<setting>_PORT`` when the address cannot be bound (taken, or not this
    machine's); ``setting`` is the variables' stem (``HEALTH``, ``WEBHOOKS``)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise Refused(f"{setting}_PORT: {host}:{port} is taken by another process") from None
            raise Refused(f"{setting}_HOST/{setting}_PORT: cannot listen on {host}:{port} ({_cause(error)})") from None


async def dependencies_once(settings: Settings) -> None:
    """PostgreSQL then Redis, once."""
    await check_postgres(settings.database_url)
    await check_redis(settings)


async def wait_for_dependencies(
    settings: Settings,
    check: Callable[[Settings], Awaitable[None]] = dependencies_once,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Return once every dependency answers; log one line per failed attempt and wait (1, 2, 4 ... 30 s).

    Raises Refused at once on a permanent cause.
    """
    for attempt in range(1_000_000):
        try:
            await check(settings)
        except Unreachable as error:
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            log.warning("dependency_unreachable", error=str(error), retry_in_s=delay, attempt=attempt + 1)
            await sleep(delay)
        else:
            if attempt:
                log.info("dependencies_reachable", attempts=attempt + 1)
            return
