"""Tombstone GC, the downtime check against zombies, and the batchlog, on the simulator.

- The compaction pass purges tombstones older than the table's gc_grace_seconds from the
  engine, keeps younger ones, and turns expired TTL cells into tombstones it purges later.
- A replica down longer than gc_grace does not bring a deleted row back (the rule of
  docs/tombstones.md): if a peer purged a tombstone it missed, it drops the table's data
  and serves no reads until repaired; if none did, peers keep the tombstones it missed.
- A LOGGED batch is stored on two batchlog holders before it is applied and removed after;
  if its coordinator dies in between, the holders replay it in full. UNLOGGED batches and
  single-partition batches never touch the batchlog.
"""

from __future__ import annotations

import pytest

from agora.core import rowmaps
from agora.core.errors import Unavailable, WriteFailure, WriteTimeout
from agora.core.messages import ReadReq
from agora.core.tombstones.downtime import GUARDED, REBUILDING, SERVING
from agora.core.tombstones.keeper import NOT_SERVING
from agora.core.types import ReadCommand
from agora.sim import SimCluster
from agora.sim.results import ConnectionLost

THREE = (("dc1", "rack1"), ("dc1", "rack2"), ("dc1", "rack3"))
RF3 = {"class": "SimpleStrategy", "replication_factor": 3}
TS0 = 1_700_000_000_000_000  # a client timestamp (µs) for hand-built batch partitions


def kv_cluster(seed: int, gc_grace_s: int, config: dict | None = None, **kwargs) -> SimCluster:
    c = SimCluster(seed, THREE, config={"hinted_handoff_enabled": False, **(config or {})}, **kwargs)
    c.wait_until_up(30_000)
    c.wait(c.create_keyspace("ks", RF3, via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    c.wait(c.create_table("ks", "kv", [("k", "text"), ("v", "text")], ["k"], via=0,
                          options={"gc_grace_seconds": gc_grace_s}))
    assert c.run_until(c.schema_agreed, 10_000)
    return c


def table(c: SimCluster):
    node = next(h.node for h in c.hosts if h.up)
    return node.schema.schema.table("ks", "kv")


def raw(c: SimCluster, i: int, k: str):
    """What node i's engine stores for key k, tombstones included (None: nothing)."""
    return c.engine(i).read(rowmaps.read_command(table(c), {"k": k}))


def rows(c: SimCluster, via, k: str, cl="QUORUM"):
    return c.wait(c.select(via, "ks", "kv", {"k": k}, cl))


def run_gc(c: SimCluster, i: int) -> None:
    """Start a compaction pass on node i now (as its timer would) and let it finish."""
    host = c.host(i)
    host._input(host.incarnation, lambda: host._feed(lambda t: host.node.tombstones.run_pass(t)))
    assert c.run_until(lambda: not host.node.tombstones.compaction.running, 10_000)


# ---- tombstone GC ---------------------------------------------------------------------------


def test_the_pass_purges_tombstones_older_than_gc_grace_and_keeps_younger_ones():
    c = kv_cluster(1, gc_grace_s=60, config={"tombstone_gc_interval": "5s"})
    for k in ("old", "young", "live"):
        c.wait(c.insert(0, "ks", "kv", {"k": k, "v": "x"}, "ALL"))
    c.wait(c.delete(0, "ks", "kv", {"k": "old"}, "ALL"))
    c.run_for(40_000)
    c.wait(c.delete(1, "ks", "kv", {"k": "young"}, "ALL"))
    for i in range(3):
        assert raw(c, i, "old").deletion is not None  # younger than gc_grace: kept
    c.run_for(30_000)  # "old" is 70 s old, "young" 30 s; passes ran every 5 s
    for i in range(3):
        assert raw(c, i, "old") is None, "a tombstone past gc_grace is gone, partition and all"
        assert raw(c, i, "young").deletion is not None
        assert c.local_rows(i, "ks", "kv", {"k": "live"}) == [{"k": "live", "v": "x"}]
        assert c.node(i).tombstones.compaction.horizon_s > 0
    assert rows(c, 2, "old", "ALL") == [] and rows(c, 2, "young", "ALL") == []


def test_expired_ttl_cells_become_tombstones_and_are_purged_after_gc_grace():
    c = kv_cluster(2, gc_grace_s=30, config={"tombstone_gc_interval": "5s"})
    c.wait(c.insert(0, "ks", "kv", {"k": "t", "v": "soon gone"}, "ALL", ttl=10))
    assert rows(c, 1, "t") == [{"k": "t", "v": "soon gone"}]
    c.run_for(12_000)
    assert rows(c, 1, "t") == []  # expired: dead to reads at once
    c.run_for(6_000)  # a pass has run since it expired: stored as tombstones now
    for i in range(3):
        stored = raw(c, i, "t")
        assert stored is not None and all(cell.value is None for row in stored.rows.values()
                                          for cell in [row.marker, *row.cells.values()] if cell)
    c.run_for(20_000)  # written 38 s ago: an expired cell's tombstone dates from its write
    for i in range(3):
        assert raw(c, i, "t") is None


def test_a_write_racing_the_pass_is_never_lost():
    c = kv_cluster(3, gc_grace_s=0, config={"tombstone_gc_interval": "1s"})
    for n in range(40):
        c.wait(c.delete(n % 3, "ks", "kv", {"k": f"k{n}"}, "ALL"))
        c.wait(c.insert(n % 3, "ks", "kv", {"k": f"k{n}", "v": str(n)}, "ALL"))
        c.run_for(137)
    c.run_for(5_000)
    for i in range(3):
        assert [c.local_rows(i, "ks", "kv", {"k": f"k{n}"}) for n in range(40)] == \
            [[{"k": f"k{n}", "v": str(n)}] for n in range(40)]


# ---- zombies ----------------------------------------------------------------------------------


def test_a_replica_down_longer_than_gc_grace_does_not_resurrect_a_deleted_row():
    c = kv_cluster(4, gc_grace_s=20, config={"tombstone_gc_interval": "5s"})
    c.wait(c.insert(0, "ks", "kv", {"k": "z", "v": "zombie"}, "ALL"))
    c.crash(2)
    c.run_for(5_000)
    c.wait(c.delete(0, "ks", "kv", {"k": "z"}, "QUORUM"))
    c.run_for(40_000)  # the tombstone passes gc_grace and is purged on nodes 0 and 1
    assert raw(c, 0, "z") is None and raw(c, 1, "z") is None
    assert c.local_rows(2, "ks", "kv", {"k": "z"}) == [{"k": "z", "v": "zombie"}]  # the zombie
    c.restart(2)
    walk = [b"z", None, True]  # as if compaction were halfway through a wide partition
    c.node(2).tombstones.compaction._walk = walk
    assert c.run_until(lambda: c.node(2).tombstones.downtime.state == REBUILDING, 10_000)
    assert c.node(2).tombstones.compaction._walk is not walk  # the drop abandoned it
    c.wait_until_up(30_000)
    assert c.local_rows(2, "ks", "kv", {"k": "z"}) == []  # dropped, not served
    assert c.node(2).needs_repair
    # a coordinator that has not heard of the flag yet is refused, not served
    n2 = c.node(2)
    table_id = n2.schema.schema.table("ks", "kv").id.bytes
    [answer] = n2.on_message(c.nodes[0], ReadReq(10**9, ReadCommand(table_id, b"z"), False), 0)
    assert answer.target == c.nodes[0] and answer.message.error == NOT_SERVING
    for via in range(3):
        assert rows(c, via, "z", "QUORUM") == []
        assert rows(c, via, "z", "ONE") == []
    fut = c.select(0, "ks", "kv", {"k": "z"}, "ALL")
    assert c.run_until(lambda: fut.done, 10_000) and isinstance(fut.error, Unavailable)
    # new writes land on it meanwhile; once repaired it serves again
    c.wait(c.insert(1, "ks", "kv", {"k": "n", "v": "new"}, "ALL"))
    host = c.host(2)
    host._input(host.incarnation, lambda: host._run(host.node.mark_repaired()))
    assert c.node(2).tombstones.downtime.state == SERVING
    assert c.run_until(lambda: all(c.node(i).serves_reads(c.nodes[2]) for i in range(3)), 10_000)
    assert rows(c, 0, "z", "ALL") == [] and rows(c, 2, "n", "ALL") == [{"k": "n", "v": "new"}]


def test_the_check_survives_a_restart():
    c = kv_cluster(13, gc_grace_s=20, config={"tombstone_gc_interval": "5s"})
    c.wait(c.insert(0, "ks", "kv", {"k": "z", "v": "zombie"}, "ALL"))
    c.crash(2)
    c.run_for(5_000)
    c.wait(c.delete(0, "ks", "kv", {"k": "z"}, "QUORUM"))
    c.run_for(40_000)
    c.restart(2)
    assert c.run_until(lambda: c.node(2).tombstones.downtime.state == REBUILDING, 10_000)
    c.wait(c.insert(0, "ks", "kv", {"k": "w", "v": "written while rebuilding"}, "ALL"))
    c.crash(2)
    c.run_for(1_000)
    c.restart(2)  # a quick restart: still rebuilding, nothing dropped again
    assert c.node(2).tombstones.downtime.state == REBUILDING and c.node(2).needs_repair
    assert c.local_rows(2, "ks", "kv", {"k": "w"}) == [{"k": "w", "v": "written while rebuilding"}]
    c.wait_until_up(30_000)
    assert rows(c, 0, "z", "ONE") == []


def test_a_replica_back_after_gc_grace_with_nothing_purged_is_guarded_not_wiped():
    c = kv_cluster(5, gc_grace_s=20)  # the pass's own timer never fires here (1 h)
    c.wait(c.insert(0, "ks", "kv", {"k": "z", "v": "deleted later"}, "ALL"))
    c.wait(c.insert(0, "ks", "kv", {"k": "keep", "v": "only on 2"}, "ALL"))
    c.crash(2)
    c.run_for(5_000)
    c.wait(c.delete(0, "ks", "kv", {"k": "z"}, "QUORUM"))
    c.run_for(30_000)
    c.restart(2)
    assert c.run_until(lambda: c.node(2).tombstones.downtime.state == GUARDED, 10_000)
    c.wait_until_up(30_000)
    assert c.local_rows(2, "ks", "kv", {"k": "keep"}) == [{"k": "keep", "v": "only on 2"}]
    assert c.run_until(lambda: all(c.node(i).tombstones.guards.floor_s() is not None for i in (0, 1)),
                       10_000)
    for i in (0, 1):  # past gc_grace, but newer than node 2's last-alive time: kept
        run_gc(c, i)
        assert raw(c, i, "z").deletion is not None
    assert rows(c, 2, "z", "ALL") == []  # read repair brings node 2 the tombstone
    assert c.local_rows(2, "ks", "kv", {"k": "z"}) == []
    host = c.host(2)
    host._input(host.incarnation, lambda: host._run(host.node.mark_repaired()))
    assert c.run_until(lambda: all(c.node(i).tombstones.guards.floor_s() is None for i in (0, 1)),
                       10_000)
    run_gc(c, 0)
    assert raw(c, 0, "z") is None


def test_a_quick_restart_is_not_checked():
    c = kv_cluster(6, gc_grace_s=864_000)
    c.crash(1)
    c.run_for(3_000)
    c.restart(1)
    c.wait_until_up(30_000)
    assert c.node(1).tombstones.downtime.state == SERVING and not c.node(1).needs_repair


# ---- the batchlog -------------------------------------------------------------------------------


def batch(c: SimCluster, n: int, tag: str) -> list:
    tdef = table(c)
    return [rowmaps.insert(tdef, {"k": f"{tag}{i}", "v": tag}, TS0 + i, 0, 0) for i in range(n)]


def messages(c: SimCluster, name: str) -> int:
    return sum(f" {name} " in line for line in c.trace)


def test_a_logged_batch_goes_through_the_batchlog_and_leaves_nothing_behind():
    c = kv_cluster(7, gc_grace_s=864_000)
    c.wait(c.write(1, batch(c, 5, "b"), "QUORUM", "BATCH"))
    c.run_for(1_000)
    assert messages(c, "BatchStoreReq") == 2 and messages(c, "BatchRemove") == 2
    for i in range(3):
        assert c.engine(i).batchlog_items() == []
        assert [c.local_rows(i, "ks", "kv", {"k": f"b{n}"}) for n in range(5)] == \
            [[{"k": f"b{n}", "v": "b"}] for n in range(5)]


def test_a_logged_batch_whose_coordinator_dies_after_the_batchlog_write_is_applied_in_full():
    c = kv_cluster(8, gc_grace_s=864_000, node_config={0: {"debug_crash_after_batchlog": True}})
    fut = c.write(0, batch(c, 6, "d"), "QUORUM", "BATCH")
    assert c.run_until(lambda: fut.done, 10_000) and isinstance(fut.error, ConnectionLost)
    assert not c.host(0).up
    held = [len(c.engine(i).batchlog_items()) for i in (1, 2)]
    assert held == [1, 1]
    assert all(c.local_rows(i, "ks", "kv", {"k": f"d{n}"}) == [] for i in range(3) for n in range(6))
    c.run_for(15_000)  # replay: after 2 x write_request_timeout, on the next 10 s round
    for i in (1, 2):
        assert [c.local_rows(i, "ks", "kv", {"k": f"d{n}"}) for n in range(6)] == \
            [[{"k": f"d{n}", "v": "d"}] for n in range(6)]
        assert c.engine(i).batchlog_items() == []
    c.restart(0)
    c.wait_until_up(30_000)
    assert [rows(c, 0, f"d{n}", "ALL") for n in range(6)] == [[{"k": f"d{n}", "v": "d"}] for n in range(6)]


def test_unlogged_and_single_partition_batches_skip_the_batchlog():
    c = kv_cluster(9, gc_grace_s=864_000)
    c.wait(c.write(0, batch(c, 4, "u"), "QUORUM", "UNLOGGED_BATCH"))
    c.wait(c.write(0, batch(c, 1, "s"), "QUORUM", "BATCH"))
    c.run_for(1_000)
    assert messages(c, "BatchStoreReq") == 0 and messages(c, "BatchRemove") == 0
    assert rows(c, 1, "u3") == [{"k": "u3", "v": "u"}] and rows(c, 1, "s0") == [{"k": "s0", "v": "s"}]


def test_a_batchlog_nobody_can_hold_is_unavailable_and_a_silent_holder_times_out():
    c = kv_cluster(10, gc_grace_s=864_000)
    c.block(0, 2)  # node 2 never hears node 0's store request
    fut = c.write(0, batch(c, 3, "t"), "ONE", "BATCH")
    assert c.run_until(lambda: fut.done, 10_000)
    assert isinstance(fut.error, WriteTimeout) and fut.error.write_type == "BATCH_LOG"
    c.heal()
    c.crash(1)
    c.crash(2)
    assert c.run_until(lambda: not c.sees(0, 1) and not c.sees(0, 2), 30_000)
    fut = c.write(0, batch(c, 3, "u"), "ONE", "BATCH")
    assert c.run_until(lambda: fut.done, 10_000)
    assert isinstance(fut.error, Unavailable) and (fut.error.required, fut.error.alive) == (1, 0)
    c.wait(c.write(0, batch(c, 3, "a"), "ANY", "BATCH"))  # ANY: the coordinator holds it
    assert messages(c, "BatchStoreReq") == 3  # two for the first batch, one to itself
    c.run_for(100)
    assert c.engine(0).batchlog_items() == []


def test_a_holder_that_cannot_store_the_batch_fails_it_at_once_and_nothing_is_applied(monkeypatch):
    from agora.core.batchlog import holder
    c = kv_cluster(13, gc_grace_s=864_000)
    monkeypatch.setattr(holder, "BATCHLOG_MAX_ENTRIES", 0)  # every holder's batchlog is full
    fut = c.write(0, batch(c, 3, "f"), "QUORUM", "BATCH")
    assert c.run_until(lambda: fut.done, 10_000)
    err = fut.error
    assert isinstance(err, WriteFailure) and err.write_type == "BATCH_LOG"
    assert (err.received, err.required, err.num_failures) == (0, 2, 1)
    assert fut.latency_ms < 100  # at once, not after write_request_timeout
    c.run_for(3_000)
    assert all(c.local_rows(i, "ks", "kv", {"k": f"f{n}"}) == [] for i in range(3) for n in range(3))
    assert all(c.engine(i).batchlog_items() == [] for i in range(3))
    assert c.node(0).batchlog.coordinator.stats["batchlog_failures"] == 1
    monkeypatch.undo()
    c.wait(c.write(0, batch(c, 3, "g"), "QUORUM", "BATCH"))  # room again: it goes through
    assert rows(c, 1, "g2") == [{"k": "g2", "v": "g"}]


@pytest.mark.parametrize("seed", [11, 12])
def test_the_same_seed_replays_the_same_crashed_batch_identically(seed):
    def run() -> str:
        c = kv_cluster(seed, gc_grace_s=864_000, node_config={1: {"debug_crash_after_batchlog": True}},
                       keep_trace=False)
        fut = c.write(1, batch(c, 4, "r"), "QUORUM", "BATCH")
        c.run_until(lambda: fut.done, 10_000)
        c.run_for(20_000)
        return c.trace_hash()
    assert run() == run()


def test_a_logged_batch_at_any_is_answered_when_hints_complete_it():
    c = SimCluster(14, THREE)
    c.wait_until_up(30_000)
    c.wait(c.create_keyspace("ks", {"class": "SimpleStrategy", "replication_factor": 1}, via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    c.wait(c.create_table("ks", "kv", [("k", "text"), ("v", "text")], ["k"], via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    tdef = table(c)
    on_2 = [k for k in (f"h{i}" for i in range(200))
            if c.node(0).replicas_for(tdef.id.bytes, rowmaps.read_command(tdef, {"k": k}).key)[0]
            == (c.nodes[2],)][:3]
    c.crash(2)
    assert c.run_until(lambda: not c.sees(0, 2) and not c.sees(1, 2), 30_000)
    parts = [rowmaps.insert(tdef, {"k": k, "v": "hinted"}, TS0, 0, 0) for k in on_2]
    c.wait(c.write(0, parts, "ANY", "BATCH"))  # no live replica: only hints acknowledge it
    assert messages(c, "BatchStoreReq") == 1  # node 1 is the only live holder


def test_a_full_repair_run_by_the_returning_node_clears_its_flag_and_lifts_the_guards():
    """The repair side of the downtime rule: once node 2 (guarded) has run a repair of every
    keyspace over all its ranges, it is serving again and the others may purge again; while
    it needs repair it pushes nothing of its own to its peers, it only receives."""
    c = kv_cluster(6, gc_grace_s=20)
    c.wait(c.insert(0, "ks", "kv", {"k": "z", "v": "deleted later"}, "ALL"))
    c.crash(2)
    c.run_for(5_000)
    c.wait(c.delete(0, "ks", "kv", {"k": "z"}, "QUORUM"))
    c.run_for(30_000)
    c.restart(2)
    assert c.run_until(lambda: c.node(2).tombstones.downtime.state == GUARDED, 10_000)
    c.wait_until_up(30_000)
    assert c.run_until(lambda: all(c.node(i).tombstones.guards.floor_s() is not None for i in (0, 1)), 10_000)
    report = c.repair(2)
    assert report["state"] == "finished" and not report["ranges_failed"]
    assert c.node(2).antientropy.sender.stats["refused"] > 0  # it only received
    assert c.local_rows(2, "ks", "kv", {"k": "z"}) == []  # the tombstone it missed arrived
    assert c.run_until(lambda: c.node(2).tombstones.downtime.state == SERVING, 10_000)
    assert c.run_until(lambda: all(c.node(i).tombstones.guards.floor_s() is None for i in (0, 1)), 10_000)
