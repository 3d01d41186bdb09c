"""TRUNCATE on a real 3-node cluster (RocksDB, real processes on 127.0.34.x), through the real
cassandra-driver: a truncation is one schema change whatever the table holds (no write per
partition), every node answers as if the table were empty from the moment it returns, the
space leaves the disk with each node's tombstone compaction, it survives kill -9, writes
after it stay, and it needs every node up, as in Cassandra."""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel, Unavailable
from cassandra.cluster import NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args

from agora.runtime.cluster import wait_until

from .conftest import PinnedSession, make_cluster, node_status, wait_schema_agreement

SUBNET = "127.0.34"
PARTITIONS = 20_000
NODES = ("node1", "node2", "node3")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # no timed tombstone pass (nor the one a truncation starts at once): the test runs the
    # pass itself (admin compact), so what is on disk before it is not a race with the walk
    c = make_cluster(tmp_path_factory, "truncate", subnet=SUBNET, overrides={"tombstone_gc_interval": 0})
    yield c
    c.down(kill=True)


def Session(node: int = 1) -> PinnedSession:
    """A driver session pinned to one node (`node` 1..3), closed on exit."""
    return PinnedSession(SUBNET, node)


def on_disk(cluster, name: str, k: int) -> list:
    """What node `name`'s storage holds for key k (its raw copy: what compaction has not freed)."""
    with cluster.client(name) as admin:
        return admin.call("inspect", {"keyspace": "tr", "table": "kv", "key": {"k": k}})


def test_a_big_table_is_truncated_by_one_schema_change_and_compaction_frees_the_disk(cluster):
    with Session(1) as s:
        s.run("CREATE KEYSPACE tr WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        s.run("CREATE TABLE tr.kv (k int PRIMARY KEY, v text)")
        insert = s.session.prepare("INSERT INTO tr.kv (k, v) VALUES (?, ?)")
        insert.consistency_level = ConsistencyLevel.ALL
        execute_concurrent_with_args(s.session, insert, [(k, "old") for k in range(PARTITIONS)],
                                     concurrency=64, raise_on_first_error=True)
        assert s.run("SELECT count(*) FROM tr.kv", cl=ConsistencyLevel.ALL) == [(PARTITIONS,)]
        applied = {n: node_status(cluster, n)["stats"]["replica"]["mutations"] for n in NODES}

        s.run("TRUNCATE tr.kv")

        # no partition deletions went out: the truncation travelled with the schema
        assert all(node_status(cluster, n)["stats"]["replica"]["mutations"] - applied[n] < 100 for n in NODES)
    for node in (1, 2, 3):  # every node answers at once, at every level
        with Session(node) as s:
            for cl in (ConsistencyLevel.ONE, ConsistencyLevel.ALL):
                assert s.run("SELECT count(*) FROM tr.kv", cl=cl) == [(0,)]
                assert s.run("SELECT * FROM tr.kv WHERE k = %s", (node,), cl=cl) == []
    assert on_disk(cluster, "node2", 7) == [{"k": 7, "v": "old"}]  # still stored, until compaction

    with Session(2) as s:
        s.run("INSERT INTO tr.kv (k, v) VALUES (7, 'new')", cl=ConsistencyLevel.ALL)
    for name in NODES:
        with cluster.client(name) as admin:
            admin.call("compact", {})
    for name in NODES:
        assert [k for k in range(0, PARTITIONS, 997) if on_disk(cluster, name, k)] == [], name
        assert on_disk(cluster, name, 7) == [{"k": 7, "v": "new"}]
    with Session(3) as s:
        assert s.run("SELECT k, v FROM tr.kv", cl=ConsistencyLevel.ALL) == [(7, "new")]


def test_a_truncation_survives_kill_9_and_needs_every_node_up(cluster):
    cluster.stop("node2", kill=True)
    cluster.start(["node2"])
    wait_schema_agreement(cluster)
    with Session(2) as s:
        assert s.run("SELECT k, v FROM tr.kv", cl=ConsistencyLevel.ALL) == [(7, "new")]

    cluster.stop("node3", kill=True)

    def seen_down() -> bool:
        return all(any(n["address"] == f"{SUBNET}.3" and not n["up"] for n in node_status(cluster, name)["nodes"])
                   for name in ("node1", "node2"))
    wait_until(seen_down, 30, "node3 marked down")
    with Session(1) as s:
        with pytest.raises((Unavailable, NoHostAvailable)) as info:
            s.run("TRUNCATE tr.kv")
        cause = info.value if isinstance(info.value, Unavailable) else \
            next(iter(info.value.errors.values()))
        assert isinstance(cause, Unavailable) and (cause.required_replicas, cause.alive_replicas) == (3, 2)
        assert s.run("SELECT k, v FROM tr.kv", cl=ConsistencyLevel.QUORUM) == [(7, "new")]  # nothing truncated
    cluster.start(["node3"])
    cluster.wait_up()
