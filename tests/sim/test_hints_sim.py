"""Hinted handoff on the deterministic simulator (Dynamo paper section 4.6; Cassandra's
hints/): replicas that miss writes get them by replay from the coordinators' own disks once
they are back, with no read involved; hints survive a coordinator crash as its
commitlog_sync mode promises; the hint window, the on/off switch, ANY, QUORUM's refusal to
count hints, the replay throttle, timed-out replicas and replaced nodes.

Every check of a replica's data reads its engine directly (`on_disk`), never through a
coordinator: a read could repair the replica itself and prove nothing about hints."""

from __future__ import annotations

from agora.core import rowmaps
from agora.core.errors import Unavailable, WriteTimeout
from agora.core.hints.service import HINTS_FLUSH_PERIOD_MS
from agora.core.hints.throttle import THROTTLE_BURST_MS
from agora.sim import SimCluster
from agora.storage.memory import MemoryEngine

from .test_coordinator_sim import SIMPLE_RF3, THREE, error_of, kv_cluster, on_disk, put

FOUR = THREE + (("dc1", "rack1"),)


def pending(c: SimCluster, via) -> dict:
    """{target: {"count", "bytes"}} of the hints `via` holds (as the admin status shows)."""
    return c.node(via).hints.pending_by_target()


def stored_hints(c: SimCluster, via) -> int:
    """Hints on `via`'s disk, whether or not its process runs."""
    return sum(1 for _ in c.engine(via).hint_sizes())


def stop_and_wait_down(c: SimCluster, victim, observers=(0, 1)) -> None:
    c.stop(victim)
    assert c.run_until(lambda: not c.host(victim).up
                       and all(not c.sees(o, victim) for o in observers if o != victim), 5_000)


def write_all(c: SimCluster, keys, via=0, cl="QUORUM", value="v") -> None:
    for i, k in enumerate(keys):
        via_i = via[i % len(via)] if isinstance(via, (list, tuple)) else via
        c.wait(put(c, via_i, k, f"{value}-{k}", cl))


def all_on_disk(c: SimCluster, node, keys, value="v") -> bool:
    return all(on_disk(c, node, k) == f"{value}-{k}" for k in keys)


# ---- the basic promise ------------------------------------------------------------------------


def test_a_replica_down_during_quorum_writes_gets_them_by_replay_without_any_read():
    c = kv_cluster(101)
    stop_and_wait_down(c, 2)
    keys = [f"h{i}" for i in range(60)]
    write_all(c, keys, via=[0, 1])
    assert not any(on_disk(c, 2, k) for k in keys)
    held = {via: pending(c, via)[c.nodes[2]]["count"] for via in (0, 1)}
    assert held == {0: 30, 1: 30}  # each coordinator hints what it wrote
    assert all(pending(c, via)[c.nodes[2]]["bytes"] > 0 for via in (0, 1))
    replica_reads = [c.node(n).replica.stats["reads"] + c.node(n).replica.stats["digest_reads"] for n in (0, 1)]

    c.restart(2)
    assert c.run_until(lambda: c.sees(0, 2) and c.sees(1, 2), 10_000)
    seen_up = c.now_ms
    assert c.run_until(lambda: all_on_disk(c, 2, keys), 5_000)
    # Started by the UP notification, not by the periodic flush.
    assert c.now_ms - seen_up < HINTS_FLUSH_PERIOD_MS
    assert c.run_until(lambda: not pending(c, 0) and not pending(c, 1), 1_000)
    assert stored_hints(c, 0) == stored_hints(c, 1) == 0  # deleted once acknowledged
    assert sum(c.node(n).hints.stats["replayed"] for n in (0, 1)) == 60
    assert c.node(2).replica.stats["hints"] == 60
    assert [c.node(n).replica.stats["reads"] + c.node(n).replica.stats["digest_reads"]
            for n in (0, 1)] == replica_reads  # no read was involved


def test_a_replica_that_times_out_is_hinted_at_the_timeout_and_replayed_while_it_is_up():
    c = kv_cluster(102)
    # Node 0 cannot reach node 2, but gossip through node 1 keeps node 2 alive in its eyes:
    # the mutation is sent, never acknowledged, and hinted when write_request_timeout passes.
    c.network.partition([c.nodes[0]], [c.nodes[2]])
    w = put(c, 0, "late", "v-late")
    c.wait(w)
    assert w.latency_ms < 100  # QUORUM did not wait for node 2
    assert c.sees(0, 2) and not pending(c, 0)
    c.run_for(c.node(0).cfg.write_request_timeout)
    assert pending(c, 0)[c.nodes[2]]["count"] == 1
    c.heal()
    # No UP event comes (node 2 never went down): the periodic flush replays it.
    assert c.run_until(lambda: on_disk(c, 2, "late") == "v-late", HINTS_FLUSH_PERIOD_MS + 1_000)
    assert c.run_until(lambda: not pending(c, 0), 1_000)


# ---- durability of hints across a coordinator crash ---------------------------------------------


def _crash_coordinator_holding_hints(sync_mode: str, lose_unsynced: bool, seed: int):
    c = kv_cluster(seed, config={"commitlog_sync": sync_mode, "commitlog_sync_period": "60s"})
    stop_and_wait_down(c, 2)
    keys = [f"k{i}" for i in range(25)]
    write_all(c, keys, via=0)
    assert pending(c, 0)[c.nodes[2]]["count"] == 25
    c.crash(0, lose_unsynced=lose_unsynced)
    c.restart(0)
    return c, keys


def test_hints_survive_a_power_loss_of_their_coordinator_in_batch_mode():
    c, keys = _crash_coordinator_holding_hints("batch", lose_unsynced=True, seed=103)
    assert pending(c, 0)[c.nodes[2]]["count"] == 25  # fsynced before reported stored
    c.restart(2)
    assert c.run_until(lambda: all_on_disk(c, 2, keys), 30_000)
    assert c.run_until(lambda: not pending(c, 0) and stored_hints(c, 0) == 0, 1_000)


def test_hints_survive_a_process_crash_of_their_coordinator_in_periodic_mode():
    c, keys = _crash_coordinator_holding_hints("periodic", lose_unsynced=False, seed=104)
    assert pending(c, 0)[c.nodes[2]]["count"] == 25  # in the WAL: kill -9 loses nothing
    c.restart(2)
    assert c.run_until(lambda: all_on_disk(c, 2, keys), 30_000)
    assert c.run_until(lambda: not pending(c, 0), 1_000)


def test_a_power_loss_in_periodic_mode_loses_the_hints_since_the_last_sync():
    """What periodic mode documents, not a wish: unsynced hints die with the power."""
    c = kv_cluster(105, config={"commitlog_sync": "periodic", "commitlog_sync_period": "60s"})
    stop_and_wait_down(c, 2)
    c.engine(0).sync()
    write_all(c, [f"k{i}" for i in range(10)], via=0)
    assert c.engine(0).unsynced_hints()
    c.crash(0, lose_unsynced=True)
    assert stored_hints(c, 0) == 0
    c.restart(0)
    assert not pending(c, 0)


# ---- when hints are not written ------------------------------------------------------------------


def test_no_hint_for_a_target_down_longer_than_max_hint_window():
    c = kv_cluster(106, config={"max_hint_window": "5s"})
    stop_and_wait_down(c, 2)
    write_all(c, ["early"], via=0)
    c.run_for(5_500)
    write_all(c, ["late"], via=0)
    assert pending(c, 0)[c.nodes[2]]["count"] == 1
    assert c.node(0).hints.stats["expired"] == 1  # the late write's hint, not stored
    c.restart(2)
    assert c.run_until(lambda: on_disk(c, 2, "early") == "v-early", 10_000)
    c.run_for(HINTS_FLUSH_PERIOD_MS)
    assert on_disk(c, 2, "late") is None  # repair's business now


def test_hinted_handoff_disabled_stores_nothing():
    c = kv_cluster(107, config={"hinted_handoff_enabled": False})
    stop_and_wait_down(c, 2)
    write_all(c, ["a", "b"], via=[0, 1])
    assert not pending(c, 0) and not pending(c, 1)
    assert stored_hints(c, 0) == stored_hints(c, 1) == 0
    c.restart(2)
    c.run_for(2 * HINTS_FLUSH_PERIOD_MS)
    assert on_disk(c, 2, "a") is None and on_disk(c, 2, "b") is None


def test_hints_never_count_toward_quorum():
    c = kv_cluster(108)
    stop_and_wait_down(c, 1, observers=(0,))
    stop_and_wait_down(c, 2, observers=(0,))
    err = error_of(c, put(c, 0, "q", "v"))
    assert isinstance(err, Unavailable) and (err.required, err.alive) == (2, 1)
    assert not pending(c, 0) and c.node(0).hints.stats["stored"] == 0  # refused up front
    assert on_disk(c, 0, "q") is None


# ---- consistency level ANY -------------------------------------------------------------------------


def _key_not_replicated_on(c: SimCluster, via: int) -> tuple[str, list[int]]:
    node = c.node(via)
    tdef = node.schema.schema.table("ks", "kv")
    for i in range(1000):
        k = f"any{i}"
        replicas, _, _ = node.replicas_for(tdef.id.bytes, rowmaps.partition_key(tdef, {"k": k}))
        if node.local not in replicas:
            return k, sorted(c.nodes.index(r) for r in replicas)
    raise AssertionError("every key is replicated on the coordinator")


def test_any_with_every_replica_down_succeeds_once_hinted_and_the_data_arrives_later():
    c = kv_cluster(109, FOUR, SIMPLE_RF3)
    key, replicas = _key_not_replicated_on(c, 0)
    for r in replicas:
        stop_and_wait_down(c, r, observers=(0,))
    err = error_of(c, put(c, 0, key, "one", "ONE"))
    assert isinstance(err, Unavailable)
    w = put(c, 0, key, "v-any", "ANY")
    c.wait(w)
    assert w.latency_ms < 10  # answered once the hints were stored, not at a timeout
    assert {t: h["count"] for t, h in pending(c, 0).items()} == {c.nodes[r]: 1 for r in replicas}
    assert all(on_disk(c, r, key) is None for r in replicas)
    for r in replicas:
        c.restart(r)
    assert c.run_until(lambda: all(on_disk(c, r, key) == "v-any" for r in replicas), 30_000)
    assert c.run_until(lambda: not pending(c, 0), 1_000)


def test_any_without_hints_times_out_and_is_never_unavailable():
    c = kv_cluster(110, FOUR, SIMPLE_RF3, config={"hinted_handoff_enabled": False})
    key, replicas = _key_not_replicated_on(c, 0)
    for r in replicas:
        stop_and_wait_down(c, r, observers=(0,))
    err = error_of(c, put(c, 0, key, "v", "ANY"))
    assert isinstance(err, WriteTimeout) and (err.received, err.required) == (0, 1)


# ---- replay: throttle, replaced targets ------------------------------------------------------------


def test_the_throttle_bounds_the_replay_rate():
    rate = 16 * 1024
    c = kv_cluster(111, config={"hinted_handoff_throttle": "16KiB"})
    stop_and_wait_down(c, 2)
    keys = [f"t{i:03d}" for i in range(120)]
    big = "x" * 900
    for k in keys:
        c.wait(put(c, 0, k, big))
    total = pending(c, 0)[c.nodes[2]]["bytes"]
    largest = max(size for _, size in c.engine(0).hint_sizes())
    assert total > 6 * rate  # long enough to measure
    c.restart(2)
    assert c.run_until(lambda: c.sees(0, 2), 10_000)
    started = c.now_ms
    assert c.run_until(lambda: not pending(c, 0), 60_000)
    elapsed_s = (c.now_ms - started) / 1000
    burst = rate * THROTTLE_BURST_MS / 1000
    assert total <= rate * elapsed_s + burst + largest  # never faster than the throttle
    assert elapsed_s <= total / rate * 1.1 + 0.5  # and not much slower either
    assert all(on_disk(c, 2, k) == big for k in keys)


def test_hints_for_a_replaced_node_are_dropped():
    c = kv_cluster(112)
    stop_and_wait_down(c, 2)
    write_all(c, ["r1", "r2", "r3"], via=0)
    assert pending(c, 0)[c.nodes[2]]["count"] == 3
    # A new machine takes node 2's address and tokens, with a new host id and an empty disk.
    old = c.engine(2)
    fresh = MemoryEngine()
    for key, value in old.meta_items(""):
        fresh.put_meta(key, value)
    fresh.put_meta("host_id", b"00000000-0000-4000-8000-000000000002")
    c.host(2).engine = fresh
    c.restart(2)
    assert c.run_until(lambda: c.sees(0, 2), 10_000)
    assert c.run_until(lambda: not pending(c, 0), 5_000)
    assert c.node(0).hints.stats["dropped"] == 3 and c.node(0).hints.stats["replayed"] == 0
    assert all(on_disk(c, 2, k) is None for k in ("r1", "r2", "r3"))
    assert stored_hints(c, 0) == 0
