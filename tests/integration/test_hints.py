"""Hinted handoff on real processes with RocksDB (loopback subnet 127.0.30): a replica that was
down during writes gets them by hint replay once it is back, with no read at all, and the
hints survive a kill -9 of the coordinator holding them. Pending hints show in the admin
`status` answer and in `agora status`.

Writes go through node1's admin verbs (the same coordinator path as CQL), so node1 is the
coordinator that holds the hints."""

from __future__ import annotations

import time

import pytest

from agora.cli.render import hint_lines
from agora.runtime.cluster import wait_until

from .conftest import ensure_all_up, make_cluster, wait_schema_agreement

SUBNET = "127.0.30"
KV = {"keyspace": "ks", "table": "kv"}
ROWS = 1_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory, "hints", subnet=SUBNET)
    with cluster.client("node1") as c:
        c.call("create_keyspace", {"name": "ks", "replication": {"class": "SimpleStrategy", "replication_factor": "3"}})
        c.call("create_table", {"keyspace": "ks", "name": "kv", "columns": [["k", "text"], ["v", "text"]],
                                "partition_key": ["k"]})
    wait_schema_agreement(cluster)
    yield cluster
    cluster.down(kill=True)


def status(cluster, node) -> dict:
    with cluster.client(node) as c:
        return c.call("status", {})


def sees_down(cluster, observer, target) -> bool:
    address = cluster.node(target).address
    return any(n["address"] == address and not n["up"] for n in status(cluster, observer)["nodes"])


def hints_for(cluster, holder, target) -> dict | None:
    return status(cluster, holder)["hints"].get(cluster.node(target).node_id)


def write_rows(cluster, prefix: str, n: int) -> None:
    with cluster.client("node1") as c:
        for i in range(n):
            c.call("write", {**KV, "values": {"k": f"{prefix}{i}", "v": f"value-{i}"}, "cl": "QUORUM"})


def local_values(cluster, node, prefix: str, n: int) -> dict:
    """What `node`'s own storage holds (the admin `inspect` op: no coordinator, no repair)."""
    with cluster.client(node) as c:
        found = {}
        for i in range(n):
            rows = c.call("inspect", {**KV, "key": {"k": f"{prefix}{i}"}})
            if rows:
                found[i] = rows[0]["v"]
    return found


def test_a_replica_down_during_writes_catches_up_by_replay_without_any_read(cluster):
    ensure_all_up(cluster)
    cluster.stop("node3")
    wait_until(lambda: sees_down(cluster, "node1", "node3"), 20, "node1 to see node3 down")
    t0 = time.monotonic()
    write_rows(cluster, "a", ROWS)
    write_s = time.monotonic() - t0
    pending = hints_for(cluster, "node1", "node3")
    assert pending is not None and pending["count"] == ROWS and pending["bytes"] > 0
    lines = hint_lines(status(cluster, "node1"))  # what `agora status` prints
    assert lines == [f"hints on {cluster.node('node1').node_id} for {cluster.node('node3').node_id}: "
                     f"{ROWS} pending ({pending['bytes'] / 1024:.1f} KiB)"]

    t0 = time.monotonic()
    cluster.start(["node3"])
    wait_until(lambda: hints_for(cluster, "node1", "node3") is None, 60, "node1 to replay its hints")
    replay_s = time.monotonic() - t0
    stats = status(cluster, "node1")["stats"]["hints"]
    assert stats["replayed"] >= ROWS and stats["dropped"] == 0
    print(f"\n{ROWS} QUORUM writes in {write_s:.2f}s; {pending['bytes']} bytes of hints replayed "
          f"within {replay_s:.2f}s of starting node3 (start and gossip included)")

    # node3 alone, at ONE: it answers from its own storage, and must have everything.
    cluster.stop("node1")
    cluster.stop("node2")
    with cluster.client("node3") as c:
        def complete():
            for i in range(ROWS):
                rows = c.call("read", {**KV, "key": {"k": f"a{i}"}, "cl": "ONE"})
                assert rows and rows[0]["v"] == f"value-{i}", f"a{i} missing on node3"
            return True
        wait_until(complete, 30, "node3 to answer every row alone")
    ensure_all_up(cluster)


def test_e_hints_survive_a_kill_9_of_their_coordinator(cluster):
    ensure_all_up(cluster)
    n = 300
    cluster.stop("node3")
    wait_until(lambda: sees_down(cluster, "node1", "node3"), 20, "node1 to see node3 down")
    write_rows(cluster, "e", n)
    assert hints_for(cluster, "node1", "node3")["count"] == n

    cluster.stop("node1", kill=True)  # no shutdown, no fsync: the hints must be in the WAL
    cluster.start(["node1"])
    assert hints_for(cluster, "node1", "node3")["count"] == n  # read back from disk at boot
    assert local_values(cluster, "node1", "e", n) == {i: f"value-{i}" for i in range(n)}

    cluster.start(["node3"])
    wait_until(lambda: hints_for(cluster, "node1", "node3") is None, 60, "node1 to replay its hints")
    assert local_values(cluster, "node3", "e", n) == {i: f"value-{i}" for i in range(n)}
