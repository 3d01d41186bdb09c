"""The CQL front door on a real 3-node cluster, through the real cassandra-driver: token-aware
routing lands on replicas, paging continues across nodes, prepared statements survive a node
restart, consistency levels behave as the core does, and DDL needs no schema-agreement wait."""

from __future__ import annotations

import time

import pytest
from cassandra import ConsistencyLevel, Unavailable
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, RoundRobinPolicy, TokenAwarePolicy
from cassandra.query import SimpleStatement, tuple_factory

from agora.runtime.cluster import wait_until

from .conftest import ensure_all_up, make_cluster

SUBNET = "127.0.22"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = make_cluster(tmp_path_factory, "cql", overrides={"hinted_handoff_enabled": False}, subnet=SUBNET)
    yield c
    c.down(kill=True)


def connect(policy=None, **kw):
    profile = ExecutionProfile(load_balancing_policy=policy or TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                               row_factory=tuple_factory, request_timeout=20)
    cl = Cluster([f"{SUBNET}.1"], execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5, **kw)
    return cl, cl.connect(wait_for_all_pools=True)  # token-aware routing needs every pool open


def test_ddl_is_visible_everywhere_without_the_agreement_wait(cluster):
    cl, s = connect()
    try:
        t0 = time.monotonic()
        s.execute("CREATE KEYSPACE r1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute("CREATE KEYSPACE r3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        for ks in ("r1", "r3"):
            s.execute(f"CREATE TABLE {ks}.kv (k int PRIMARY KEY, v text)")
            s.execute(f"CREATE TABLE {ks}.wide (p int, c int, v text, PRIMARY KEY (p, c))")
        elapsed = time.monotonic() - t0
        assert elapsed < 4, f"6 DDL statements took {elapsed:.1f}s: the driver waited for schema agreement"
        assert cl.control_connection.wait_for_schema_agreement(wait_time=0.1)
        for i in (1, 2, 3):  # every node already serves the new table
            one = Cluster([f"{SUBNET}.{i}"], protocol_version=5,
                          execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                              load_balancing_policy=RoundRobinPolicy())})
            try:
                sess = one.connect()
                sess.execute(SimpleStatement("INSERT INTO r3.kv (k, v) VALUES (%s, 'x')", consistency_level=ConsistencyLevel.ALL), (i,))
            finally:
                one.shutdown()
    finally:
        cl.shutdown()


def test_token_aware_requests_land_on_a_replica(cluster):
    """RF=1: each key lives on exactly one node, so a token-aware driver must send each prepared
    write straight to the node that stores it — checked on every node's own storage."""
    cl, s = connect()
    try:
        insert = s.prepare("INSERT INTO r1.kv (k, v) VALUES (?, ?)")
        coordinators = {}
        for k in range(60):
            rs = s.execute(insert, (k, f"v{k}"))
            coordinators[k] = rs.response_future.coordinator_host.split(":")[0] \
                if isinstance(rs.response_future.coordinator_host, str) else rs.response_future.coordinator_host.address
        assert len(set(coordinators.values())) == 3  # keys spread over all nodes
        for k, addr in coordinators.items():
            name = cluster.node(addr).name
            with cluster.client(name) as admin:
                assert admin.call("inspect", {"keyspace": "r1", "table": "kv", "key": {"k": k}}) == [{"k": k, "v": f"v{k}"}]
    finally:
        cl.shutdown()


def test_paging_over_ten_thousand_rows_across_nodes(cluster):
    cl, s = connect()
    try:
        insert = s.prepare("INSERT INTO r3.wide (p, c, v) VALUES (?, ?, ?)")
        from cassandra.concurrent import execute_concurrent_with_args
        rows = [(p, c, f"{p}-{c}") for p in range(100) for c in range(100)]
        results = execute_concurrent_with_args(s, insert, rows, concurrency=64)
        assert all(ok for ok, _ in results)
    finally:
        cl.shutdown()
    cl, s = connect(RoundRobinPolicy())
    try:
        stmt = SimpleStatement("SELECT p, c, v FROM r3.wide", fetch_size=997)
        seen, hosts, state, pages = [], set(), None, 0
        while True:
            rs = s.execute(stmt, paging_state=state)
            hosts.add(rs.response_future._current_host.address)
            seen.extend(rs.current_rows)
            pages += 1
            state = rs.paging_state
            if state is None:
                break
        assert sorted(seen) == sorted(rows)  # every row exactly once
        assert pages >= 11 and len(hosts) == 3  # pages served by different coordinators
        one = list(s.execute(SimpleStatement("SELECT c FROM r3.wide WHERE p = 7", fetch_size=13)))
        assert [r[0] for r in one] == list(range(100))  # a single partition pages in clustering order
    finally:
        cl.shutdown()


def test_prepared_statement_survives_a_node_restart(cluster):
    """node2 restarts and forgets its prepared statements; executing on it answers Unprepared,
    the driver re-prepares there (same id on every node) and the statement keeps working."""
    ensure_all_up(cluster)
    cl, s = connect(RoundRobinPolicy())
    try:
        read = s.prepare("SELECT v FROM r3.kv WHERE k = ?")
        write = s.prepare("INSERT INTO r3.kv (k, v) VALUES (?, ?)")
        # Hinted handoff is off in this cluster, so node2 never learns the writes it missed while
        # down: QUORUM on both sides (W + R > N) is what makes the reads below see them anywhere.
        read.consistency_level = write.consistency_level = ConsistencyLevel.QUORUM
        s.execute(write, (500, "before"))
        cluster.stop("node2", kill=True)
        for k in range(501, 511):  # meanwhile the other nodes serve it (failed sends are retried)
            s.execute(write, (k, "during"))
        cluster.start(["node2"])
        node2 = next(h for h in cl.metadata.all_hosts() if h.address == f"{SUBNET}.2")

        def works_on_node2():
            s.execute(write, (600, "after"), host=node2)
            return s.execute(read, (600,), host=node2).one() == ("after",)
        wait_until(works_on_node2, 30, "the statement to work on the restarted node")
        for h in cl.metadata.all_hosts():
            assert s.execute(read, (505,), host=h).one() == ("during",)
    finally:
        cl.shutdown()


def test_consistency_levels_with_one_node_down(cluster):
    ensure_all_up(cluster)
    cl, s = connect()
    try:
        write = s.prepare("INSERT INTO r3.kv (k, v) VALUES (?, ?)")
        read = s.prepare("SELECT v FROM r3.kv WHERE k = ?")
        cluster.stop("node3", kill=True)

        def both_see_node3_down():
            for name in ("node1", "node2"):
                with cluster.client(name) as a:
                    if not any(n["address"] == f"{SUBNET}.3" and not n["up"] for n in a.call("status", {})["nodes"]):
                        return False
            return True
        wait_until(both_see_node3_down, 30, "node3 marked down")
        write.consistency_level = read.consistency_level = ConsistencyLevel.QUORUM
        for k in range(1000, 1030):
            s.execute(write, (k, "q"))
            assert s.execute(read, (k,)).one() == ("q",)
        write.consistency_level = ConsistencyLevel.ALL
        with pytest.raises(Unavailable) as err:
            s.execute(write, (1, "all"))
        assert (err.value.required_replicas, err.value.alive_replicas) == (3, 2)
    finally:
        cl.shutdown()
        ensure_all_up(cluster)
