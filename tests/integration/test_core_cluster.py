"""The leaderless core on real processes: quorum reads and writes through any node, a dead
node, last-write-wins across coordinators, blocking read repair, durability across kill -9,
failure detection, and speculative retry around a paused replica.

Requests go through the admin verbs, which call the same coordinator entry points as the CQL
server."""

from __future__ import annotations

import time

import pytest

from agora.runtime.admin_client import AdminError
from agora.runtime.cluster import wait_until

from .conftest import ensure_all_up, node_status

KV = {"keyspace": "ks", "table": "kv"}


def write(c, k, v, cl="QUORUM", **extra):
    return c.call("write", {**KV, "values": {"k": k, "v": v}, "cl": cl, **extra})


def read(c, k, cl="QUORUM"):
    rows = c.call("read", {**KV, "key": {"k": k}, "cl": cl})
    return rows[0]["v"] if rows else None


def inspect(cluster, node, k):
    with cluster.client(node) as c:
        rows = c.call("inspect", {**KV, "key": {"k": k}})
    return rows[0]["v"] if rows else None


def sees(cluster, observer, target, up: bool) -> bool:
    with cluster.client(observer) as c:
        nodes = c.call("status", {})["nodes"]
    return any(n["address"] == cluster.node(target).address and n["up"] == up for n in nodes)


def test_a_quorum_write_then_quorum_read_through_another_node(cluster3):
    ensure_all_up(cluster3)
    with cluster3.client("node1") as c1, cluster3.client("node2") as c2:
        for i in range(50):
            write(c1, f"a{i}", f"value-{i}")
        assert [read(c2, f"a{i}") for i in range(50)] == [f"value-{i}" for i in range(50)]


def test_b_one_node_dead_quorum_works_and_all_is_unavailable(cluster3):
    ensure_all_up(cluster3)
    cluster3.stop("node3", kill=True)
    with cluster3.client("node1") as c1, cluster3.client("node2") as c2:
        # straight away, before the failure detector has noticed: QUORUM still succeeds
        for i in range(20):
            write(c1, f"b{i}", "x")
            assert read(c2, f"b{i}") == "x"
        wait_until(lambda: sees(cluster3, "node1", "node3", up=False), 20, "node1 to see node3 down")
        with pytest.raises(AdminError) as err:
            write(c1, "b-all", "y", cl="ALL")
        assert err.value.kind == "Unavailable"
        assert (err.value.details["required"], err.value.details["alive"]) == (3, 2)
        wait_until(lambda: sees(cluster3, "node2", "node3", up=False), 20, "node2 to see node3 down")
        with pytest.raises(AdminError) as err:
            read(c2, "b0", cl="ALL")
        assert err.value.kind == "Unavailable"
    cluster3.start(["node3"])


@pytest.mark.parametrize("order", ["older-first", "newer-first"])
def test_c_last_write_wins_across_coordinators(cluster3, order):
    ensure_all_up(cluster3)
    key = f"c-{order}"
    writes = [("node1", 100, "old"), ("node2", 200, "new")]
    if order == "newer-first":
        writes.reverse()
    for node, ts, value in writes:
        with cluster3.client(node) as c:
            write(c, key, value, cl="ALL", timestamp=ts)
    for n in cluster3.nodes:
        assert inspect(cluster3, n.name, key) == "new"


def test_d_read_at_all_repairs_a_stale_replica(cluster3):
    ensure_all_up(cluster3)
    with cluster3.client("node1") as c1:
        write(c1, "d", "before", cl="ALL")
        cluster3.stop("node3")
        wait_until(lambda: sees(cluster3, "node1", "node3", up=False), 20, "node1 to see node3 down")
        write(c1, "d", "after", cl="QUORUM")
        cluster3.start(["node3"])
        assert inspect(cluster3, "node3", "d") == "before"  # it missed the write
        assert read(c1, "d", cl="ALL") == "after"
    assert inspect(cluster3, "node3", "d") == "after"  # repaired before the read answered
    with cluster3.client("node3") as c3:
        cluster3.stop("node1")
        cluster3.stop("node2")
        assert read(c3, "d", cl="ONE") == "after"  # node3 alone answers the new value
    ensure_all_up(cluster3)


def test_e_kill_9_and_restart_lose_no_acknowledged_write(cluster3):
    ensure_all_up(cluster3)
    acked = []
    with cluster3.client("node2") as c2:
        for i in range(300):
            write(c2, f"e{i}", f"v{i}", cl="ONE")
            acked.append(i)
    for n in cluster3.nodes:  # no graceful shutdown, no fsync: the WAL must hold
        cluster3.stop(n.name, kill=True)
    cluster3.start()
    with cluster3.client("node1") as c1:
        got = {i: read(c1, f"e{i}", cl="ALL") for i in acked}
    assert got == {i: f"v{i}" for i in acked}


def test_f_gossip_marks_killed_node_down_and_restarted_node_up(cluster3):
    ensure_all_up(cluster3)
    t0 = time.monotonic()
    cluster3.stop("node2", kill=True)
    wait_until(lambda: sees(cluster3, "node1", "node2", up=False) and sees(cluster3, "node3", "node2", up=False),
               20, "node2 marked down")
    down_after = time.monotonic() - t0
    status = node_status(cluster3, "node1")
    assert status["stats"]["runtime"] == {"oversized": 0, "failed_messages": 0}
    phi = {r["address"]: r["phi"] for r in status["nodes"]}
    address = {n.name: n.address for n in cluster3.nodes}
    assert phi[address["node1"]] is None  # its own row
    assert phi[address["node2"]] > 8 > phi[address["node3"]]  # convicted past the threshold; alive
    cluster3.spawn(cluster3.node("node2"))
    t1 = time.monotonic()
    wait_until(lambda: sees(cluster3, "node1", "node2", up=True) and sees(cluster3, "node3", "node2", up=True),
               30, "node2 marked up")
    up_after = time.monotonic() - t1
    print(f"marked down after {down_after:.1f}s, up after {up_after:.1f}s")
    assert down_after < 15


def _speculative_retries(cluster, node) -> int:
    with cluster.client(node) as c:
        return c.call("status", {})["stats"]["reads"]["speculative_retries"]


def test_g_speculative_retry_around_a_paused_replica(cluster3):
    """node1 reads at QUORUM from itself plus its preferred peer. Pausing node2, then node3,
    makes the preferred peer a paused one at least once, so speculative retry must carry some
    reads — and no read may hang. Which peer node1 prefers follows the latency it measures
    (a paused peer keeps the score it had), so a phase goes on past its 20 reads, up to 100,
    until some read (of this phase or the one before) has speculated: the preference can
    turn to the paused peer on a phase's last read, and the next phase would then start on
    the other one."""
    ensure_all_up(cluster3)
    before = _speculative_retries(cluster3, "node1")
    latencies = []
    with cluster3.client("node1") as c1:
        for i in range(40):
            write(c1, f"g{i}", "x", cl="ALL")
        for i in range(40):  # warm the latency window so the threshold is the real p99
            read(c1, f"g{i}")
        for paused in ("node2", "node3"):
            cluster3.pause(paused)
            try:
                for i in range(100):
                    t0 = time.monotonic()
                    assert read(c1, f"g{i % 40}") == "x"
                    latencies.append(time.monotonic() - t0)
                    if i >= 19 and _speculative_retries(cluster3, "node1") > before:
                        break
            finally:
                cluster3.resume(paused)
    retries = _speculative_retries(cluster3, "node1") - before
    latencies.sort()
    print(f"QUORUM reads with a paused replica: median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms, {retries} speculative retries (read timeout 5000 ms)")
    assert retries >= 1
    assert latencies[-1] < 1.0


def test_f_graceful_stop_is_announced(cluster3):
    """A graceful stop tells its peers (gossip shutdown), so they mark it down at once instead
    of waiting for the failure detector."""
    ensure_all_up(cluster3)
    t0 = time.monotonic()
    cluster3.stop("node3")
    wait_until(lambda: sees(cluster3, "node1", "node3", up=False) and sees(cluster3, "node2", "node3", up=False),
               20, "node3 marked down")
    assert time.monotonic() - t0 < 3.0
    with cluster3.client("node1") as c1:  # its tokens stay in the ring: ALL is Unavailable, not rerouted
        with pytest.raises(AdminError) as err:
            write(c1, "f-all", "x", cl="ALL")
        assert err.value.kind == "Unavailable"
    cluster3.start(["node3"])
