"""Real clusters for integration tests: node processes on 127.0.0.x with RocksDB on disk,
started and stopped through `agora.runtime.cluster.LocalCluster`, the same code the `agora`
CLI uses. Each cluster is torn down (SIGKILL if need be) when its tests finish."""

from __future__ import annotations

import pytest

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
