"""Tombstone GC, the downtime check and the batchlog on a real 3-node cluster (RocksDB, real
processes on 127.0.32.x), through the real cassandra-driver:

(d) TTL'd data expires on schedule, as the driver sees it;
(f) a LOGGED batch whose coordinator exits right after its batchlog write (the test-only
    `debug_crash_after_batchlog` option) is applied in full by the batchlog holders;
(c) a delete made while a replica was down does not come back when it returns -- neither
    within gc_grace (the tombstone wins the merge) nor after the others purged the tombstone
    (the returning replica drops its stale data and serves no reads until repaired).

Hints are off, so nothing but the mechanisms under test can heal a replica. The tests share
one cluster and run in file order; the last leaves node3 waiting for a repair."""

from __future__ import annotations

import time

import pytest
import yaml
from cassandra import ConsistencyLevel, Unavailable
from cassandra.cluster import NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType, SimpleStatement

from agora.runtime.cluster import wait_until

from .conftest import PinnedSession, ensure_all_up, make_cluster, node_status

SUBNET = "127.0.32"
WIDE_SUBNET = "127.0.33"
RF3 = "{'class': 'SimpleStrategy', 'replication_factor': 3}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = make_cluster(tmp_path_factory, "gc", overrides={"hinted_handoff_enabled": False}, subnet=SUBNET)
    yield c
    c.down(kill=True)


def Session(node: int = 1, subnet: str = SUBNET) -> PinnedSession:
    """A driver session pinned to one node (`node` 1..3), closed on exit."""
    return PinnedSession(subnet, node)


def wait_seen_down(cluster, down: str) -> None:
    address = cluster.node(down).address
    def seen() -> bool:
        return all(any(n["address"] == address and not n["up"] for n in node_status(cluster, name)["nodes"])
                   for name in ("node1", "node2", "node3") if name != down)
    wait_until(seen, 30, f"{down} marked down")


def insert_all(s: PinnedSession, cql: str, rows: list[tuple]) -> None:
    """Run the INSERT `cql` once per row of bound values, at ALL, 32 at a time."""
    insert = s.session.prepare(cql)
    insert.consistency_level = ConsistencyLevel.ALL
    execute_concurrent_with_args(s.session, insert, rows, concurrency=32, raise_on_first_error=True)


def inspect(cluster, name: str, table: str, k: int) -> list:
    with cluster.client(name) as admin:
        return admin.call("inspect", {"keyspace": "gc", "table": table, "key": {"k": k}})


def test_ttl_expiry_is_seen_through_the_driver(cluster):
    with Session(1) as s:
        s.run(f"CREATE KEYSPACE IF NOT EXISTS gc WITH replication = {RF3}")
        s.run("CREATE TABLE gc.ttl (k int PRIMARY KEY, v text) WITH default_time_to_live = 3")
        s.run("INSERT INTO gc.ttl (k, v) VALUES (1, 'by default')", cl=ConsistencyLevel.ALL)
        s.run("INSERT INTO gc.ttl (k, v) VALUES (2, 'explicit') USING TTL 2", cl=ConsistencyLevel.ALL)
        s.run("INSERT INTO gc.ttl (k, v) VALUES (3, 'forever') USING TTL 0", cl=ConsistencyLevel.ALL)
        assert sorted(s.run("SELECT k, v FROM gc.ttl")) == [(1, "by default"), (2, "explicit"), (3, "forever")]
        wait_until(lambda: s.run("SELECT k FROM gc.ttl WHERE k = 2") == [], 10, "k=2 to expire")
        wait_until(lambda: s.run("SELECT k FROM gc.ttl WHERE k = 1") == [], 10, "k=1 to expire")
        assert s.run("SELECT k, v FROM gc.ttl", cl=ConsistencyLevel.ALL) == [(3, "forever")]
    with cluster.client("node2") as admin:  # the pass rewrites them as tombstones
        assert admin.call("compact", {})["partitions_rewritten"] >= 2
    assert inspect(cluster, "node2", "ttl", 1) == [] and inspect(cluster, "node2", "ttl", 3) != []


def test_a_logged_batch_whose_coordinator_dies_after_the_batchlog_write_is_applied(cluster):
    ensure_all_up(cluster)
    with Session(1) as s:
        s.run(f"CREATE KEYSPACE IF NOT EXISTS gc WITH replication = {RF3}")
        s.run("CREATE TABLE gc.batch (k int PRIMARY KEY, v text)")
    node1 = cluster.node("node1")
    options = yaml.safe_load(cluster.config_path(node1).read_text())
    cluster.stop("node1")
    cluster.config_path(node1).write_text(yaml.safe_dump({**options, "debug_crash_after_batchlog": True}))
    cluster.start(["node1"])
    try:
        with Session(1) as s:
            batch = BatchStatement(batch_type=BatchType.LOGGED, consistency_level=ConsistencyLevel.QUORUM)
            for k in range(8):
                batch.add(SimpleStatement("INSERT INTO gc.batch (k, v) VALUES (%s, %s)"), (k, f"b{k}"))
            with pytest.raises(Exception):  # the coordinator is gone before it answers
                s.session.execute(batch)
        wait_until(lambda: not cluster.is_running(node1), 10, "node1 to exit")
        assert "debug_crash_after_batchlog" in cluster.log_path(node1).read_text()
        assert [inspect(cluster, "node2", "batch", k) for k in range(8)] == [[]] * 8  # not applied
        wait_seen_down(cluster, "node1")
        with Session(2) as s:
            def applied():
                return sorted(s.run("SELECT k, v FROM gc.batch")) == [(k, f"b{k}") for k in range(8)]
            wait_until(applied, 40, "the batchlog replay")  # 2 x write_request_timeout + a round
        for name in ("node2", "node3"):
            assert [inspect(cluster, name, "batch", k) for k in range(8)] == [[{"k": k, "v": f"b{k}"}] for k in range(8)]
            wait_until(lambda name=name: node_status(cluster, name)["batchlog"]["entries"] == 0, 20,
                       f"{name}'s batchlog to be empty")
    finally:
        cluster.stop("node1", kill=True)
        cluster.config_path(node1).write_text(yaml.safe_dump(options))
        ensure_all_up(cluster)


def test_a_logged_batch_leaves_no_batchlog_behind(cluster):
    ensure_all_up(cluster)
    with Session(3) as s:
        batch = BatchStatement(batch_type=BatchType.LOGGED, consistency_level=ConsistencyLevel.ALL)
        for k in range(100, 105):
            batch.add(SimpleStatement("INSERT INTO gc.batch (k, v) VALUES (%s, 'ok')"), (k,))
        s.session.execute(batch)
        assert len(s.run("SELECT k FROM gc.batch WHERE k IN (100, 101, 102, 103, 104)")) == 5
    assert node_status(cluster, "node3")["batchlog"]["logged_batches"] == 1
    for name in ("node1", "node2", "node3"):
        wait_until(lambda name=name: node_status(cluster, name)["batchlog"]["entries"] == 0, 10,
                   f"{name}'s batchlog to be empty")


def test_a_delete_missed_within_gc_grace_does_not_come_back(cluster):
    ensure_all_up(cluster)
    with Session(1) as s:
        s.run("CREATE TABLE gc.long (k int PRIMARY KEY, v text)")  # gc_grace: 10 days
        s.run("INSERT INTO gc.long (k, v) VALUES (1, 'deleted')", cl=ConsistencyLevel.ALL)
        cluster.stop("node3", kill=True)
        wait_seen_down(cluster, "node3")
        s.run("DELETE FROM gc.long WHERE k = 1")
    cluster.start(["node3"])
    assert node_status(cluster, "node3")["tombstones"]["state"] == "serving"
    assert inspect(cluster, "node3", "long", 1) == [{"k": 1, "v": "deleted"}]  # it missed the delete
    with Session(3) as s:
        assert s.run("SELECT v FROM gc.long WHERE k = 1", cl=ConsistencyLevel.ALL) == []
    assert inspect(cluster, "node3", "long", 1) == []  # read repair gave it the tombstone


def test_a_delete_purged_while_a_replica_was_down_does_not_come_back(cluster):
    ensure_all_up(cluster)
    with Session(1) as s:
        s.run("CREATE TABLE gc.short (k int PRIMARY KEY, v text) WITH gc_grace_seconds = 2")
        s.run("INSERT INTO gc.short (k, v) VALUES (1, 'zombie')", cl=ConsistencyLevel.ALL)
        s.run("INSERT INTO gc.short (k, v) VALUES (2, 'alive')", cl=ConsistencyLevel.ALL)
        cluster.stop("node3", kill=True)
        wait_seen_down(cluster, "node3")
        s.run("DELETE FROM gc.short WHERE k = 1")
    for name in ("node1", "node2"):  # compact until the tombstone, past gc_grace, is purged
        def purged(name=name) -> bool:
            with cluster.client(name) as admin:
                admin.call("compact", {})
            return node_status(cluster, name)["tombstones"]["purge_horizon_s"] > 0
        wait_until(purged, 20, f"{name} to purge the tombstone")
    cluster.start(["node3"])
    wait_until(lambda: node_status(cluster, "node3")["tombstones"]["state"] == "rebuilding", 20,
               "node3 to find its data may hold zombies")
    assert node_status(cluster, "node3")["tombstones"]["needs_repair"]
    assert inspect(cluster, "node3", "short", 1) == []  # its stale copy is gone
    for node in (1, 2, 3):
        with Session(node) as s:
            for cl in (ConsistencyLevel.ONE, ConsistencyLevel.QUORUM):
                assert s.run("SELECT v FROM gc.short WHERE k = 1", cl=cl) == []
                assert s.run("SELECT v FROM gc.short WHERE k = 2", cl=cl) == [("alive",)]
    with Session(1) as s:
        with pytest.raises(NoHostAvailable) as err:  # node3 serves no reads until repaired
            s.run("SELECT v FROM gc.short WHERE k = 1", cl=ConsistencyLevel.ALL)
        (cause,) = err.value.errors.values()  # the driver wraps the node's answer
        assert isinstance(cause, Unavailable) and (cause.required_replicas, cause.alive_replicas) == (3, 2)
        s.run("INSERT INTO gc.short (k, v) VALUES (3, 'new')", cl=ConsistencyLevel.ALL)  # writes land
    assert inspect(cluster, "node3", "short", 3) == [{"k": 3, "v": "new"}]


@pytest.fixture(scope="module")
def wide_cluster(tmp_path_factory):
    """A cluster of its own: the purge below raises a node's purge horizon, which the
    downtime tests of the shared cluster must not see."""
    c = make_cluster(tmp_path_factory, "gcwide", subnet=WIDE_SUBNET)
    yield c
    c.down(kill=True)


def test_a_wide_partition_is_compacted_in_fragments_and_what_its_deletion_shadowed_stays_gone(wide_cluster):
    """3,000 rows (about 360 KB) under a partition deletion past gc_grace, then 100 newer
    rows: the pass walks the partition in fragments (chunks of about 128 KiB), drops the
    shadowed rows and then the deletion, and nothing it shadowed comes back."""
    cluster = wide_cluster
    with Session(1, WIDE_SUBNET) as s:
        s.run(f"CREATE KEYSPACE IF NOT EXISTS gc WITH replication = {RF3}")
        s.run("CREATE TABLE gc.wide (k int, c int, v text, PRIMARY KEY (k, c)) WITH gc_grace_seconds = 0")
        insert = "INSERT INTO gc.wide (k, c, v) VALUES (1, ?, ?)"
        insert_all(s, insert, [(c, "x" * 100) for c in range(3_000)])
        deleted_at = int(time.time())
        s.run("DELETE FROM gc.wide WHERE k = 1", cl=ConsistencyLevel.ALL)
        insert_all(s, insert, [(c, "new") for c in range(5_000, 5_100)])
    passes = []

    def purged() -> bool:  # compact until the deletion, past gc_grace (0 s) once a second passed, is gone
        with cluster.client("node2") as admin:
            before = admin.call("status", {})["tombstones"]
            after = admin.call("compact", {})
        passes.append(after["chunks"] - before["chunks"])
        return after["purge_horizon_s"] >= deleted_at
    wait_until(purged, 20, "node2 to purge the partition deletion")
    assert passes[-1] >= 3, passes  # the partition alone took several chunks (one, before fragments)
    assert [r["c"] for r in inspect(cluster, "node2", "wide", 1)] == list(range(5_000, 5_100))
    with Session(2, WIDE_SUBNET) as s:
        assert s.run("SELECT count(*) FROM gc.wide WHERE k = 1", cl=ConsistencyLevel.ALL) == [(100,)]


def test_a_table_without_tombstones_is_skipped_by_the_pass_until_a_delete(wide_cluster):
    """Live rows only: once a pass has walked gc.clean, the next ones skip it, also after
    more live rows; a DELETE has it walked again, and its tombstone, past gc_grace, purged."""
    cluster = wide_cluster
    with Session(1, WIDE_SUBNET) as s:
        s.run(f"CREATE KEYSPACE IF NOT EXISTS gc WITH replication = {RF3}")
        s.run("CREATE TABLE gc.clean (k int PRIMARY KEY, v text) WITH gc_grace_seconds = 0")
        insert_all(s, "INSERT INTO gc.clean (k, v) VALUES (?, ?)", [(k, "live") for k in range(500)])
    with cluster.client("node2") as admin:
        admin.call("compact", {})  # walks it (unless the hourly pass already has)
        assert "gc.clean" in admin.call("compact", {})["skipped"]
    with Session(1, WIDE_SUBNET) as s:
        insert_all(s, "INSERT INTO gc.clean (k, v) VALUES (?, ?)", [(k, "more") for k in range(500, 600)])
    with cluster.client("node2") as admin:
        assert "gc.clean" in admin.call("compact", {})["skipped"]
    with Session(1, WIDE_SUBNET) as s:
        deleted_at = int(time.time())
        s.run("DELETE FROM gc.clean WHERE k = 7", cl=ConsistencyLevel.ALL)

    def purged() -> bool:  # gc_grace 0: purgeable once a second has passed
        with cluster.client("node2") as admin:
            after = admin.call("compact", {})
        assert "gc.clean" not in after["skipped"]
        return after["purge_horizon_s"] >= deleted_at
    wait_until(purged, 20, "node2 to walk gc.clean again and purge the tombstone")
    with cluster.client("node2") as admin:
        admin.call("compact", {})  # finds it clean again
        assert "gc.clean" in admin.call("compact", {})["skipped"]
    with Session(2, WIDE_SUBNET) as s:
        assert s.run("SELECT count(*) FROM gc.clean", cl=ConsistencyLevel.ALL) == [(599,)]
