"""Real clusters for integration tests: node processes on 127.0.0.x with RocksDB on disk,
started and stopped through `agora.runtime.cluster.LocalCluster`, the same code the `agora`
CLI uses. Each cluster is torn down (SIGKILL if need be) when its tests finish."""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.query import SimpleStatement, tuple_factory

from agora.runtime.cluster import LocalCluster, parse_dc_layout, wait_until


def make_cluster(tmp_path_factory, name: str, nodes: int = 3, dcs=None, overrides=None,
                 subnet: str = "127.0.0") -> LocalCluster:
    """Each test module uses its own loopback subnet, so clusters never collide on ports."""
    cluster = LocalCluster(tmp_path_factory.mktemp(name) / "cluster")
    cluster.create(parse_dc_layout(nodes, dcs, 1), overrides or {}, subnet=subnet)
    cluster.start()
    return cluster


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    """Three nodes, one DC, hints off (so replicas that miss writes stay stale until a read
    repairs them — what these tests look at)."""
    cluster = make_cluster(tmp_path_factory, "c3", overrides={"hinted_handoff_enabled": False}, subnet="127.0.10")
    with cluster.client("node1") as c:
        c.call("create_keyspace", {"name": "ks", "replication": {"class": "SimpleStrategy", "replication_factor": "3"}})
        c.call("create_table", {"keyspace": "ks", "name": "kv", "columns": [["k", "text"], ["v", "text"]],
                                "partition_key": ["k"]})
    wait_schema_agreement(cluster)
    yield cluster
    cluster.down(kill=True)


def wait_schema_agreement(cluster: LocalCluster, timeout_s: float = 15.0) -> None:
    def agreed():
        versions = set()
        for n in cluster.nodes:
            if cluster.is_running(n):
                with cluster.client(n.name) as c:
                    versions.add(c.call("status", {})["schema"])
        return len(versions) == 1
    wait_until(agreed, timeout_s, "schema agreement")


def ensure_all_up(cluster: LocalCluster) -> None:
    """Restart whatever a previous test left stopped or paused."""
    for n in cluster.nodes:
        if cluster.is_running(n):
            cluster.resume(n.name)
    stopped = [n.name for n in cluster.nodes if not cluster.is_running(n)]
    if stopped:
        cluster.start(stopped)
    else:
        cluster.wait_up()


class PinnedSession:
    """A driver session (protocol v5, tuples) that sends every request to node `node` (1..)
    of the cluster on `subnet`, closed on exit."""

    def __init__(self, subnet: str, node: int = 1):
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([f"{subnet}.{node}"]),
                                   row_factory=tuple_factory, request_timeout=20)
        self.cluster = Cluster([f"{subnet}.{node}"], protocol_version=5,
                               execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        self.session = self.cluster.connect()

    def run(self, text: str, params=(), cl=ConsistencyLevel.QUORUM):
        return list(self.session.execute(SimpleStatement(text, consistency_level=cl), params))

    def __enter__(self) -> "PinnedSession":
        return self

    def __exit__(self, *exc) -> None:
        self.cluster.shutdown()


def node_status(cluster: LocalCluster, name: str) -> dict:
    """A node's admin `status` (gossip view, stats, tombstones, batchlog)."""
    with cluster.client(name) as admin:
        return admin.call("status", {})
