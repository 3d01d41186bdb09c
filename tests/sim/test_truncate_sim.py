"""TRUNCATE and DROP on the simulator: a truncation is a schema change (`Schema.truncate_table`), so it
reaches every node however big the table, and nodes that missed it get it with the schema.
What it covers stays gone whatever comes later -- a hint replayed by a coordinator that held
it, a repair from a replica whose compaction has not run, a write carrying an older
timestamp -- and each node's tombstone compaction then frees the disk. What was written
after it stays. DROP TABLE truncates the table too, so its data leaves every disk, and a
table re-created WITH ID its old id, or kept alive by an ALTER racing the drop, starts empty.

Checks of a replica's disk read its engine directly (`raw`), never through a coordinator."""

from __future__ import annotations

from agora.core import rowmaps
from agora.core.schema import ddl
from agora.core.tombstones.compaction import GC_FIRST_PASS_GOSSIP_ROUNDS
from agora.core.types import MAX_TOKEN, MIN_TOKEN, RangeCommand
from agora.sim import SimCluster

from .test_coordinator_sim import get, kv_cluster, put, value
from .test_gc_batchlog_sim import run_gc
from .test_hints_sim import pending, stop_and_wait_down


def table(c: SimCluster):
    return c.node(0).schema.schema.table("ks", "kv")


def raw(c: SimCluster, i: int, k: str):
    """What node i's engine stores for key k, tombstones included (None: nothing)."""
    return c.engine(i).read(rowmaps.read_command(table(c), {"k": k}))


def truncate(c: SimCluster, via=0) -> int:
    """TRUNCATE ks.kv through `via`, then wait for every running node to have it (as the
    CQL layer waits for schema agreement); the truncation's timestamp."""
    c.wait(c.schema_change(via, ddl.truncate_table({"keyspace": "ks", "name": "kv"})))
    ts = c.node(via).schema.schema.truncated_at(table(c).id.bytes)
    assert c.run_until(lambda: all(h.node.schema.schema.truncated_at(table(c).id.bytes) == ts
                                   for h in c.hosts if h.up), 10_000)
    return ts


def test_truncation_reaches_every_node_and_nothing_brings_the_data_back():
    c = kv_cluster(701)
    c.run_for(GC_FIRST_PASS_GOSSIP_ROUNDS * 1_000)  # the nodes' first compaction pass is due
    before = [f"b{i}" for i in range(20)]
    for i, k in enumerate(before):
        c.wait(put(c, i % 3, k, "old"))
    stop_and_wait_down(c, 2)
    missed = [f"m{i}" for i in range(20)]  # node 2 gets these only by hint, after the truncation
    for i, k in enumerate(missed):
        c.wait(put(c, i % 2, k, "old", "ONE"))
    assert pending(c, 0) and pending(c, 1)
    c.run_for(1_000)  # the copies on the other live replica land (ONE answered without them)
    ts = truncate(c)  # node 2 is down: it learns of the truncation from the schema on its return
    assert ts is not None
    assert all(value(c.wait(get(c, via, k, "ONE"))) is None for via in (0, 1) for k in before + missed)
    # the running nodes walk the table at once: the data leaves their disks without a pass
    assert c.run_until(lambda: all(raw(c, i, k) is None for i in (0, 1) for k in before + missed), 5_000)
    assert raw(c, 2, "b0") is not None  # node 2 is down: its disk still holds it

    c.restart(2)
    assert c.run_until(lambda: c.schema_agreed() and not pending(c, 0) and not pending(c, 1), 30_000)
    assert c.node(2).schema.schema.truncated_at(table(c).id.bytes) == ts
    assert c.node(2).replica.stats["hints"] > 0  # the hints were replayed into it
    for via in range(3):
        for k in before + missed:
            assert value(c.wait(get(c, via, k, "ONE"))) is None, (via, k)

    # Node 2 learnt of the truncation too soon after its start to walk the table at once
    # (its first pass is not due; it walks it when it is): its disk holds the old data, the
    # others' do not. A repair finds the replicas in sync all the same (what the truncation
    # covers is not in their Merkle trees) and streams nothing.
    assert raw(c, 2, "b0") is not None and raw(c, 2, "m0") is not None
    assert all(raw(c, i, k) is None for i in (0, 1) for k in before + missed)
    report = c.repair(0, keyspace="ks", table="kv")
    assert report["state"] == "finished", report
    assert report["ranges_out_of_sync"] == 0 and report["bytes_streamed"] == 0, report
    assert all(raw(c, 0, k) is None for k in before + missed)
    assert c.run_until(lambda: all(raw(c, 2, k) is None for k in before + missed),
                       GC_FIRST_PASS_GOSSIP_ROUNDS * 1_000 + 5_000)
    assert all(value(c.wait(get(c, via, k, "ONE"))) is None for via in range(3) for k in before + missed)

    # Writes after the truncation are kept; one with an older timestamp is not (it reads
    # as if a partition deletion at the truncation covered it).
    c.wait(put(c, 0, "b0", "new"))
    c.wait(put(c, 1, "b1", "older", timestamp=ts - 1))
    c.wait(put(c, 1, "b2", "at it", timestamp=ts))
    c.wait(put(c, 2, "b3", "after it", timestamp=ts + 1))
    for via in range(3):
        assert value(c.wait(get(c, via, "b0", "ALL"))) == "new"
        assert value(c.wait(get(c, via, "b1", "ALL"))) is None
        assert value(c.wait(get(c, via, "b2", "ALL"))) is None
        assert value(c.wait(get(c, via, "b3", "ALL"))) == "after it"

    # Compaction frees the disk of what the truncation covers, and only of that.
    for i in range(3):
        run_gc(c, i)
    for i in range(3):
        assert [k for k in before + missed if raw(c, i, k) is not None] == ["b0", "b3"], i
        assert value(rowmaps.rows_of(table(c), raw(c, i, "b0"))) == "new"


def test_a_truncation_survives_a_restart_and_a_newer_one_wins():
    c = kv_cluster(702)
    for k in ("a", "b"):
        c.wait(put(c, 0, k, "v1"))
    first = truncate(c, via=1)
    c.wait(put(c, 0, "a", "v2"))
    c.crash(0, lose_unsynced=True)  # kill -9 and power loss: the truncation was synced
    c.restart(0)
    assert c.run_until(lambda: c.schema_agreed() and c.all_up(), 30_000)
    assert c.node(0).schema.schema.truncated_at(table(c).id.bytes) == first  # kept on disk
    assert value(c.wait(get(c, 0, "a", "ALL"))) == "v2"
    assert value(c.wait(get(c, 0, "b", "ALL"))) is None
    second = truncate(c, via=2)
    assert second > first
    assert c.run_until(c.schema_agreed, 10_000)
    assert all(c.node(i).schema.schema.truncated_at(table(c).id.bytes) == second for i in range(3))
    assert value(c.wait(get(c, 1, "a", "ALL"))) is None


def stored(c: SimCluster, i: int, table_id: bytes) -> int:
    """Partitions node i's engine holds for the table, tombstones included."""
    return sum(1 for _ in c.engine(i).scan(table_id, -(2**63), 2**63 - 1))


def test_a_dropped_table_leaves_every_disk_and_a_table_re_created_with_its_id_starts_empty():
    c = kv_cluster(704)
    c.run_for(GC_FIRST_PASS_GOSSIP_ROUNDS * 1_000)
    for i in range(30):
        c.wait(put(c, i % 3, f"k{i}", "old", "ALL"))
    tid = table(c).id
    assert all(stored(c, i, tid.bytes) == 30 for i in range(3))
    c.wait(c.schema_change(1, ddl.drop_table({"keyspace": "ks", "name": "kv"})))
    assert c.run_until(lambda: c.schema_agreed() and all(stored(c, i, tid.bytes) == 0 for i in range(3)), 10_000)

    c.wait(c.create_table("ks", "kv", [("k", "text"), ("v", "text")], ["k"], via=2, options={"id": str(tid)}))
    assert c.run_until(c.schema_agreed, 10_000)
    assert table(c).id == tid
    assert all(value(c.wait(get(c, via, "k1", "ALL"))) is None for via in range(3))
    c.wait(put(c, 0, "k1", "new", "ALL"))
    assert all(value(c.wait(get(c, via, "k1", "ALL"))) == "new" for via in range(3))


def test_an_alter_racing_a_drop_keeps_the_table_but_not_its_data_on_any_node():
    """Node 0 drops the table while cut off from the others; node 1 alters it later. The
    merge keeps the table (the ALTER is the newer entry), and the drop's truncation with
    it: every node serves none of the data written before the drop."""
    c = kv_cluster(705)
    c.run_for(GC_FIRST_PASS_GOSSIP_ROUNDS * 1_000)
    for i in range(10):
        c.wait(put(c, 0, f"k{i}", "old", "ALL"))
    c.partition([0], [1, 2])
    c.wait(c.schema_change(0, ddl.drop_table({"keyspace": "ks", "name": "kv"})))
    c.run_for(5)
    c.wait(c.schema_change(1, ddl.alter_table_add({"keyspace": "ks", "name": "kv", "columns": [["w", "text", False]]})))
    c.heal()
    assert c.run_until(lambda: c.schema_agreed() and c.all_up(), 30_000)
    assert table(c) is not None and table(c).column("w") is not None
    for via in range(3):
        assert all(value(c.wait(get(c, via, f"k{i}", "ALL"))) is None for i in range(10))
    c.wait(put(c, 2, "k0", "after", "ALL"))
    assert all(value(c.wait(get(c, via, "k0", "ALL"))) == "after" for via in range(3))


def test_a_coordinator_drops_what_a_truncation_covers_from_a_replica_that_has_not_heard_of_it():
    """Node 2 comes back after the truncation and answers before its schema pull lands (held
    back here): the coordinators, which know of the truncation, neither return nor
    read-repair what it covers."""
    c = kv_cluster(706)
    for k in ("a", "b"):
        c.wait(put(c, 0, k, "old", "ALL"))
    stop_and_wait_down(c, 2)
    truncate(c)
    c.restart(2)
    c.node(2).schema.on_push = lambda source, msg: []  # its schema pull is slow to land
    assert c.run_until(lambda: c.sees(0, 2) and c.sees(1, 2), 10_000)
    assert c.node(2).schema.schema.truncated_at(table(c).id.bytes) is None
    repairs = [(c.node(i).reads.stats["read_repairs"], c.node(i).range_reads.stats["read_repairs"]) for i in (0, 1)]
    for via in (0, 1):
        assert value(c.wait(get(c, via, "a", "ALL"))) is None
        assert c.wait(c.read_range(via, RangeCommand(table(c).id.bytes, MIN_TOKEN, None, MAX_TOKEN), "ALL")) == []
    assert [(c.node(i).reads.stats["read_repairs"], c.node(i).range_reads.stats["read_repairs"])
            for i in (0, 1)] == repairs  # nothing was repaired back into the others


def test_a_write_coordinated_after_truncate_answered_is_kept_whatever_the_clock_skew():
    c = kv_cluster(707)
    c.set_clock(0, offset_ms=20)  # the truncating node's clock runs ahead of node 1's
    c.wait(put(c, 1, "k", "before"))
    truncate(c, via=0)  # answered: every node has it
    c.wait(put(c, 1, "k", "after"))  # node 1 stamps it: past the truncation, though its clock lags
    assert all(value(c.wait(get(c, via, "k", "ALL"))) == "after" for via in range(3))
