"""Redis topologies of the tests' own, on loopback ports 7600-7699 (this suite's range; the shared Redis on 6379
is never touched): a Cluster (3 masters, 3 replicas), a Sentinel set (1 master, 1 replica, 3 sentinels) and a TLS
server with an ACL user and a CA made here with openssl. Each runs from a temporary directory and is stopped after.
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence

import attrs

CLUSTER_PORTS = tuple(range(7600, 7606))
SENTINEL_DATA_PORTS = (7610, 7611)
SENTINEL_PORTS = (7615, 7616, 7617)
TLS_PORT = 7620
SENTINEL_MASTER = "crm"
ACL_USER = "crm-worker"
ACL_PASSWORD = "acl-canary-password"  # a throwaway test credential


def _wait_listening(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def cli(port: int, *command: str, tls: Sequence[str] = ()) -> str:
    """``redis-cli -p port command...``; its output."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *tls, *command], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


@attrs.define
class Servers:
    """redis-server processes by port, in one directory; ``kill`` SIGKILLs one, ``stop_all`` ends them."""

    directory: pathlib.Path
    processes: dict[int, subprocess.Popen[bytes]] = attrs.Factory(dict)

    def start(self, port: int, *arguments: str) -> None:
        """Start redis-server with ``arguments`` for ``port`` (refused if something listens there already)."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            raise AssertionError(f"port {port} is taken (another run of these tests?)")
        node_dir = self.directory / str(port)
        node_dir.mkdir(exist_ok=True)
        argv = ["redis-server", *arguments, "--bind", "127.0.0.1", "--dir", str(node_dir), "--save", ""]
        argv += ["--logfile", str(node_dir / "redis.log")]
        self.processes[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(port)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(10)

    def stop_all(self) -> None:
        for port in list(self.processes):
            process = self.processes.pop(port)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@attrs.define
class Cluster:
    servers: Servers
    ports: tuple[int, ...] = CLUSTER_PORTS

    @property
    def seeds(self) -> str:
        """REDIS_CLUSTER_NODES: every node, as an operator would list them."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def master_of(self, key: str) -> int:
        """The port of the master now serving ``key``'s slot."""
        slot = int(cli(self._alive_port(), "cluster", "keyslot", key))
        for line in cli(self._alive_port(), "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split(":")[1].split("@")[0])
        raise AssertionError(f"no master serves slot {slot}")

    def _alive_port(self) -> int:
        return next(port for port in self.ports if port in self.servers.processes)

    def healthy(self) -> bool:
        return "cluster_state:ok" in cli(self._alive_port(), "cluster", "info")


@contextlib.contextmanager
def redis_cluster(directory: pathlib.Path, ports: tuple[int, ...] = CLUSTER_PORTS) -> Iterator[Cluster]:
    """Six nodes, ``redis-cli --cluster create ... --cluster-replicas 1``; a dead master fails over in ~2 s."""
    servers = Servers(directory)
    try:
        for port in ports:
            servers.start(
                port,
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1500",
                "--appendonly",
                "no",
            )
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        cluster = Cluster(servers, ports)
        deadline = time.monotonic() + 30
        while not (cluster.healthy() and all(_cluster_ok(port) for port in ports)):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.2)
        yield cluster
    finally:
        servers.stop_all()


def _cluster_ok(port: int) -> bool:
    return "cluster_state:ok" in cli(port, "cluster", "info")


@attrs.define
class SentinelSet:
    servers: Servers

    @property
    def sentinels(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{port}" for port in SENTINEL_PORTS)

    def master_port(self) -> int:
        return int(cli(SENTINEL_PORTS[0], "sentinel", "get-master-addr-by-name", SENTINEL_MASTER).split()[1])

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: the replica becomes master (returns once the sentinels announce it)."""
        before = self.master_port()
        cli(SENTINEL_PORTS[0], "sentinel", "failover", SENTINEL_MASTER)
        deadline = time.monotonic() + 30
        while self.master_port() == before:
            assert time.monotonic() < deadline, "the sentinels did not fail over"
            time.sleep(0.1)


@contextlib.contextmanager
def redis_sentinel(directory: pathlib.Path) -> Iterator[SentinelSet]:
    """A master, its replica and three sentinels watching them (quorum 2)."""
    master, replica = SENTINEL_DATA_PORTS
    servers = Servers(directory)
    try:
        servers.start(master, "--port", str(master), "--appendonly", "no")
        servers.start(replica, "--port", str(replica), "--replicaof", "127.0.0.1", str(master), "--appendonly", "no")
        for port in SENTINEL_PORTS:
            config = directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
            )
            servers.start(port, str(config), "--sentinel")
        sentinel_set = SentinelSet(servers)
        deadline = time.monotonic() + 30
        while not _replica_known(sentinel_set):
            assert time.monotonic() < deadline, "the sentinels did not find the replica"
            time.sleep(0.2)
        yield sentinel_set
    finally:
        servers.stop_all()


def _replica_known(sentinel_set: SentinelSet) -> bool:
    replicas = cli(SENTINEL_PORTS[0], "sentinel", "replicas", SENTINEL_MASTER)
    online = "master_link_status:up" in cli(SENTINEL_DATA_PORTS[1], "info", "replication")
    return str(SENTINEL_DATA_PORTS[1]) in replicas and online


@attrs.frozen
class TlsRedis:
    port: int
    ca_file: pathlib.Path
    other_ca_file: pathlib.Path
    """A CA that did not sign the server's certificate."""
    servers: Servers
    arguments: tuple[str, ...]

    def url(self, user: str = ACL_USER, password: str = ACL_PASSWORD) -> str:
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.servers.kill(self.port)

    def start(self) -> None:
        self.servers.start(self.port, *self.arguments)


def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], capture_output=True, check=True, timeout=60)


@contextlib.contextmanager
def tls_redis(directory: pathlib.Path) -> Iterator[TlsRedis]:
    """TLS only (no plain port), a certificate for 127.0.0.1 signed by a test CA, and an ACL user allowed all
    keys and commands (the default user is off)."""
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.crt"),
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(directory / "server.key"), "-out", str(directory / "server.csr"),
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", str(directory / "server.csr"), "-CA", str(directory / "ca.crt"),
        "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "1",
        "-extfile", str(directory / "san.ext"), "-out", str(directory / "server.crt"),
    )  # fmt: skip
    arguments = (
        "--port", "0", "--tls-port", str(TLS_PORT),
        "--tls-cert-file", str(directory / "server.crt"), "--tls-key-file", str(directory / "server.key"),
        "--tls-ca-cert-file", str(directory / "ca.crt"), "--tls-auth-clients", "no",
        "--user", "default", "off",
        "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all",
    )  # fmt: skip
    server = TlsRedis(TLS_PORT, directory / "ca.crt", directory / "other-ca.crt", Servers(directory), arguments)
    try:
        server.start()
        yield server
    finally:
        server.servers.stop_all()
