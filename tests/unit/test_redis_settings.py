"""Redis connection settings: REDIS_URL, ACL user, TLS CA, Cluster and Sentinel modes, and the Cluster key rule."""

from __future__ import annotations

import pathlib

import pytest
from redis.crc import key_slot

from adapters.redis_keys import (
    dead_lettered_key,
    heartbeat_index_key,
    heartbeat_key,
    recorded_metrics_key,
    schedule_key,
    schedules_index_key,
)
from adapters.redis_topology import QueuePrefixes, hash_tag, parse_endpoints
from entrypoints.bootstrap import redis_settings
from entrypoints.settings import Settings, SettingsError


def test_redis_url_wins_over_host_port_and_password() -> None:
    """A rediss:// URL's host, port, ACL user, password (percent-decoded), TLS and database are the connection's."""
    settings = Settings.from_env(
        {
            "REDIS_URL": "rediss://app:p%40ss@cache.internal:6380/2",
            "REDIS_HOST": "ignored",
            "REDIS_PORT": "7000",
            "REDIS_PASSWORD": "ignored-too",
        }
    )
    connection = redis_settings(settings)
    assert (connection.host, connection.port, connection.db) == ("cache.internal", 6380, 2)
    assert (connection.username, connection.password, connection.tls) == ("app", "p@ss", True)
    assert connection.cluster_nodes == ()
    assert connection.sentinels == ()


def test_acl_user_joins_the_password_when_the_url_names_none() -> None:
    """REDIS_USERNAME and REDIS_PASSWORD fill in what a credential-less REDIS_URL leaves out."""
    settings = Settings.from_env(
        {"REDIS_URL": "redis://10.0.0.5", "REDIS_USERNAME": "worker", "REDIS_PASSWORD": "s3cret"}
    )
    connection = redis_settings(settings)
    assert (connection.host, connection.port, connection.username, connection.password) == (
        "10.0.0.5",
        6379,
        "worker",
        "s3cret",
    )


def test_cluster_and_sentinel_modes_read_their_seeds() -> None:
    """REDIS_CLUSTER_NODES selects cluster mode, REDIS_SENTINELS with REDIS_SENTINEL_MASTER sentinel mode."""
    cluster = redis_settings(
        Settings.from_env({"REDIS_CLUSTER_NODES": "10.0.0.1:7000, 10.0.0.2:7001", "BULLMQ_PREFIX": "{bull}"})
    )
    assert cluster.cluster_nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    sentinel = redis_settings(
        Settings.from_env({"REDIS_SENTINELS": "s1:26379,s2:26379", "REDIS_SENTINEL_MASTER": "crm"})
    )
    assert (sentinel.sentinels, sentinel.sentinel_master) == ((("s1", 26379), ("s2", 26379)), "crm")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"REDIS_CLUSTER_NODES": "n1:7000"},
            "BULLMQ_PREFIX must hold a hash tag such as {bull} with REDIS_CLUSTER_NODES",
        ),
        ({"REDIS_CLUSTER_NODES": "n1:7000", "BULLMQ_PREFIX": "{}bull"}, "BULLMQ_PREFIX must hold a hash tag"),
        (
            {"REDIS_CLUSTER_NODES": "n1:7000", "REDIS_SENTINELS": "s1:26379", "BULLMQ_PREFIX": "{b}"},
            "REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other",
        ),
        ({"REDIS_CLUSTER_NODES": "n1"}, "REDIS_CLUSTER_NODES must be comma-separated host:port pairs"),
        ({"REDIS_SENTINELS": "s1:99999"}, "REDIS_SENTINELS must be comma-separated host:port pairs"),
        ({"REDIS_URL": "http://user:canary-secret@h:1"}, "REDIS_URL must be a redis:// or rediss:// URL"),
        ({"REDIS_URL": "redis://user:canary-secret@h:port"}, "REDIS_URL is malformed: the port is not a number"),
        ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_TLS_CA_FILE must name a readable file"),
        (
            {
                "REDIS_CLUSTER_NODES": "n1:7000",
                "BULLMQ_PREFIX": "{cf}",
                "BULLMQ_QUEUE_PREFIXES": "reminders={reminders},nurture=nurture",
            },
            "BULLMQ_QUEUE_PREFIXES must give each queue it names a hash tag such as {reminders}",
        ),
        (
            {"REDIS_CLUSTER_NODES": "n1:7000", "BULLMQ_QUEUE_PREFIXES": "reminders={reminders}"},
            "BULLMQ_PREFIX must hold a hash tag",
        ),
        ({"BULLMQ_QUEUE_PREFIXES": "remindres={canary-secret}"}, "BULLMQ_QUEUE_PREFIXES must name only the queues"),
        ({"BULLMQ_QUEUE_PREFIXES": "reminders"}, "BULLMQ_QUEUE_PREFIXES must be comma-separated queue=prefix pairs"),
        ({"BULLMQ_QUEUE_PREFIXES": "reminders=a,reminders=b"}, "BULLMQ_QUEUE_PREFIXES must name each queue once"),
    ],
)
def test_unusable_redis_settings_are_refused_in_one_line(environ: dict[str, str], expected: str) -> None:
    """Each refusal names the setting and the rule on one line, and never quotes a URL's password."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environ)
    message = str(refused.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert "canary-secret" not in message


def test_a_ca_file_needs_a_tls_url(tmp_path: pathlib.Path) -> None:
    """REDIS_TLS_CA_FILE with a redis:// (not rediss://) URL is refused rather than silently unused."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(SettingsError, match="REDIS_TLS_CA_FILE needs a rediss:// REDIS_URL"):
        Settings.from_env({"REDIS_URL": "redis://h:6379", "REDIS_TLS_CA_FILE": str(ca)})
    settings = Settings.from_env({"REDIS_URL": "rediss://h:6379", "REDIS_TLS_CA_FILE": str(ca)})
    assert redis_settings(settings).tls_ca_file == str(ca)


def test_description_names_the_topology_without_credentials() -> None:
    """describe() shows where Redis is (mode and addresses), never a URL's user password."""
    described = Settings.from_env({"REDIS_URL": "rediss://app:canary-secret@cache:6380/1"}).describe()
    assert described["redis"] == "rediss://cache:6380/1"
    clustered = Settings.from_env({"REDIS_CLUSTER_NODES": "n1:7000", "BULLMQ_PREFIX": "{crm}"}).describe()
    assert clustered["redis"] == "cluster n1:7000"
    assert "canary-secret" not in repr(described) + repr(Settings.from_env({"REDIS_URL": "redis://:canary-secret@h"}))


def test_hash_tags_follow_the_redis_cluster_rule() -> None:
    """The tag is the text between the first '{' and the next '}', when not empty."""
    assert hash_tag("{bull}:reminders:wait") == "bull"
    assert hash_tag("bull:{reminders}:wait") == "reminders"
    assert hash_tag("{}bull:{x}") is None
    assert hash_tag("bull:reminders") is None
    assert parse_endpoints("[::1]:7000") == (("::1", 7000),)


def test_every_key_of_ours_shares_the_queues_slot_under_a_tagged_prefix() -> None:
    """Heartbeats, metrics, dead-letter marks, schedule status, rate limits and Twilio records land in the slot
    of the queues' own keys, so no transaction or script of ours spans slots."""
    prefix = "{bull}"
    ours = [
        heartbeat_key(prefix, "reminders", "host-1"),
        heartbeat_index_key(prefix, "reminders"),
        recorded_metrics_key(prefix),
        dead_lettered_key(prefix),
        schedule_key(prefix, "scan-appointments"),
        schedules_index_key(prefix),
        f"{prefix}:cf:ratelimit:twilio",
        f"{prefix}:cf:twilio:sent:reminder-1",
    ]
    queue_slot = key_slot(b"{bull}:reminders:wait")
    assert {key_slot(key.encode()) for key in ours} == {queue_slot}


PER_QUEUE = "reminders={reminders},nurture={nurture},dunning={dunning},snapshots={snapshots},dead-letter={dead-letter}"


def test_a_prefix_per_queue_keeps_each_queue_in_one_slot_and_the_queues_apart() -> None:
    """BULLMQ_QUEUE_PREFIXES (the Node CRM's ``new Queue(name, {prefix})``): every key of a queue in one slot, the
    five queues in five slots; queues not named keep BULLMQ_PREFIX, which also holds our own keys."""
    settings = Settings.from_env(
        {"REDIS_CLUSTER_NODES": "n1:7000", "BULLMQ_PREFIX": "{cf}", "BULLMQ_QUEUE_PREFIXES": PER_QUEUE}
    )
    prefixes = settings.queue_prefixes
    queues = ("reminders", "nurture", "dunning", "snapshots", "dead-letter")
    slots = {}
    for queue in queues:
        keys = [f"{prefixes.of(queue)}:{queue}:{suffix}" for suffix in ("wait", "active", "meta", "repeat", "job-1")]
        [slots[queue]] = {key_slot(key.encode()) for key in keys}
    assert len(set(slots.values())) == len(queues)
    assert prefixes.of("reminders") == "{reminders}"
    assert settings.describe()["bullmq_queue_prefixes"]["dunning"] == "{dunning}"
    partly = QueuePrefixes("{cf}", {"reminders": "{reminders}"})
    assert (partly.of("reminders"), partly.of("nurture"), partly.home) == ("{reminders}", "{cf}", "{cf}")
