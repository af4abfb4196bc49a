# Sourced by scripts/test and scripts/run: installs what the project needs from its own lock files and makes
# sure Redis and PostgreSQL answer on loopback. Idempotent; prints one line per step it takes.
# shellcheck shell=bash

UV_VERSION=0.13.9

ensure_python_env() {
    if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
        echo "setup: installing uv $UV_VERSION" >&2
        python3 -m pip install --quiet --user "uv==$UV_VERSION" || python3 -m pip install --quiet "uv==$UV_VERSION"
    fi
    local uv_bin
    uv_bin=$(command -v uv || echo "$HOME/.local/bin/uv")
    "$uv_bin" sync --frozen --quiet --python 3.11
}

ensure_node_producer() {
    if [ ! -d tests/node/node_modules/bullmq ] || [ tests/node/package-lock.json -nt tests/node/node_modules/.package-lock.json ]; then
        echo "setup: installing the npm bullmq producer (npm ci)" >&2
        (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

redis_answers() { redis-cli -h "${REDIS_HOST:-127.0.0.1}" -p "${REDIS_PORT:-6379}" ${REDIS_PASSWORD:+-a "$REDIS_PASSWORD"} ping 2>/dev/null | grep -q PONG; }
postgres_answers() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

apt_install() {
    echo "setup: installing Debian packages: $*" >&2
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    fi
}

# The test services: the machine's own Redis and PostgreSQL on their standard loopback ports.
ensure_test_services() {
    if ! redis_answers; then
        command -v redis-server >/dev/null || apt_install redis-server redis-tools
        echo "setup: starting Redis on 127.0.0.1:6379" >&2
        mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log
        for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
    fi
    if ! postgres_answers; then
        command -v pg_ctlcluster >/dev/null || apt_install postgresql
        echo "setup: starting PostgreSQL on 127.0.0.1:5432" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
        for _ in $(seq 100); do postgres_answers && break; sleep 0.1; done
    fi
    redis_answers || { echo "setup: Redis does not answer on 127.0.0.1:6379" >&2; return 1; }
    postgres_answers || { echo "setup: PostgreSQL does not answer on 127.0.0.1:5432" >&2; return 1; }
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
        || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database test"
}

# promtool and prometheus for the alert-rule and scrape tests (tests/integration/prometheus): Debian's package.
ensure_prometheus() {
    command -v promtool >/dev/null && command -v prometheus >/dev/null && return 0
    apt_install --no-install-recommends prometheus \
        || echo "setup: could not install Debian's prometheus: the Prometheus tests will be skipped" >&2
}
