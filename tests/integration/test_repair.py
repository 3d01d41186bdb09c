"""Anti-entropy repair on real node processes (RocksDB on disk, loopback subnet 127.0.31,
hints off so that only repair can heal): a replica that was down during 1,000 QUORUM writes
is healed by `agora repair ks` run as a user runs it; it then serves every row alone at ONE;
the report shows what was streamed; a second repair streams nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agora.runtime.cluster import wait_until

from .conftest import make_cluster, wait_schema_agreement

SUBNET = "127.0.31"
KV = {"keyspace": "ks", "table": "kv"}
ROWS = 1_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = make_cluster(tmp_path_factory, "repair", overrides={"hinted_handoff_enabled": False},
                     subnet=SUBNET)
    with c.client("node1") as admin:
        admin.call("create_keyspace", {"name": "ks", "replication": {"class": "SimpleStrategy",
                                                                     "replication_factor": "3"}})
        admin.call("create_table", {"keyspace": "ks", "name": "kv", "columns": [["k", "text"], ["v", "text"]],
                                    "partition_key": ["k"]})
    wait_schema_agreement(c)
    yield c
    c.down(kill=True)


def agora_repair(cluster, *args, timeout=300) -> tuple[dict, str]:
    """`agora repair ARGS --dir <cluster> --json`: (the final report, the printed progress)."""
    proc = subprocess.run([sys.executable, "-m", "agora", "repair", *args, "--dir", str(cluster.dir), "--json"],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"agora repair exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]), proc.stdout


def sees_down(cluster, observer: str, target: str) -> bool:
    with cluster.client(observer) as c:
        nodes = c.call("status", {})["nodes"]
    return any(n["address"] == cluster.node(target).address and not n["up"] for n in nodes)


def test_repair_heals_a_replica_that_was_down_during_writes(cluster):
    cluster.stop("node3")  # graceful: the others mark it down at once
    wait_until(lambda: sees_down(cluster, "node1", "node3"), 20, "node1 to see node3 down")
    with cluster.client("node1") as c:
        for i in range(ROWS):
            c.call("write", {**KV, "values": {"k": f"k{i}", "v": f"v{i}"}, "cl": "QUORUM"})
    cluster.start(["node3"])
    with cluster.client("node3") as c3:
        missing = sum(not c3.call("inspect", {**KV, "key": {"k": f"k{i}"}}) for i in range(0, ROWS, 10))
    assert missing == ROWS // 10, "node3 should have missed every write"

    report, out = agora_repair(cluster, "ks")
    assert report["state"] == "finished" and report["ranges_failed"] == 0
    assert report["ranges_compared"] == report["ranges_total"] > 0
    assert report["ranges_out_of_sync"] > 0
    # node1 and node2 each push the 1,000 rows node3 lacks; node3 may echo a few back
    assert 2 * ROWS <= report["rows_streamed"] <= 2 * ROWS + 200
    assert report["bytes_streamed"] > 0
    print(f"\nrepair of {ROWS} missed rows: {report['elapsed_ms']} ms, "
          f"{report['partitions_hashed']} partitions hashed, {report['rows_streamed']} rows / "
          f"{report['bytes_streamed']} bytes streamed")

    again, _ = agora_repair(cluster, "ks")
    assert again["state"] == "finished" and again["ranges_compared"] == report["ranges_compared"]
    assert (again["ranges_out_of_sync"], again["rows_streamed"], again["bytes_streamed"]) == (0, 0, 0)

    cluster.stop("node1")
    cluster.stop("node2")
    wait_until(lambda: sees_down(cluster, "node3", "node1") and sees_down(cluster, "node3", "node2"),
               20, "node3 to see the others down")
    with cluster.client("node3") as c3:
        values = [c3.call("read", {**KV, "key": {"k": f"k{i}"}, "cl": "ONE"}) for i in range(ROWS)]
    assert [rows[0]["v"] if rows else None for rows in values] == [f"v{i}" for i in range(ROWS)]
    cluster.start(["node1", "node2"])


def test_repair_with_a_replica_down_fails_and_says_which(cluster):
    cluster.stop("node2")
    wait_until(lambda: sees_down(cluster, "node1", "node2"), 20, "node1 to see node2 down")
    proc = subprocess.run([sys.executable, "-m", "agora", "repair", "ks", "kv", "--dir", str(cluster.dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "failed" in proc.stdout and f"replica {cluster.node('node2').node_id} is down" in proc.stdout
    cluster.start(["node2"])


def test_repair_heals_a_partition_bigger_than_an_internode_frame(cluster):
    """20 rows of 1 MiB in one partition, written while node3 was down: repair validates the
    partition and streams it in pieces (no message could hold it whole), and node3 then
    serves every row alone at ONE."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy
    from cassandra.query import SimpleStatement

    def session_on(name: str):
        host = cluster.node(name).address
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]))
        return Cluster([host], protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})

    with session_on("node1") as c:
        c.connect().execute("CREATE TABLE ks.wide (k int, c int, v blob, PRIMARY KEY (k, c))")
    wait_schema_agreement(cluster)
    cluster.stop("node3")
    wait_until(lambda: sees_down(cluster, "node1", "node3"), 20, "node1 to see node3 down")
    with session_on("node1") as c:
        session = c.connect()
        insert = session.prepare("INSERT INTO ks.wide (k, c, v) VALUES (0, ?, ?)")
        insert.consistency_level = ConsistencyLevel.QUORUM
        for i in range(20):
            session.execute(insert, (i, bytes([i]) * (1 << 20)), timeout=30)
    cluster.start(["node3"])
    report, _ = agora_repair(cluster, "ks", "wide")
    assert report["state"] == "finished" and report["ranges_failed"] == 0
    assert report["rows_streamed"] >= 20 and report["bytes_streamed"] > 20 << 20
    cluster.stop("node1")
    cluster.stop("node2")
    wait_until(lambda: sees_down(cluster, "node3", "node1") and sees_down(cluster, "node3", "node2"),
               20, "node3 to see the others down")
    with session_on("node3") as c:
        read = SimpleStatement("SELECT c, v FROM ks.wide WHERE k = 0", consistency_level=ConsistencyLevel.ONE)
        got = [(r.c, r.v[:1], len(r.v)) for r in c.connect().execute(read, timeout=60)]
    assert got == [(i, bytes([i]), 1 << 20) for i in range(20)]
    cluster.start(["node1", "node2"])
