"""The simulator's own machinery: virtual time ordering, the network's delivery rules, and a
simulated host's process faults (pause, crash, power loss) and group commit."""

from __future__ import annotations

import random

import pytest

from agora.core import rowmaps
from agora.core.errors import Unavailable
from agora.core.messages import MutationRsp, SchemaPullReq
from agora.sim import ConnectionLost, SimCluster
from agora.sim.network import Envelope, Network
from agora.sim.scheduler import Scheduler

from .test_coordinator_sim import get, kv_cluster, on_disk, put, value


def test_events_due_at_the_same_millisecond_run_in_scheduling_order():
    s = Scheduler()
    ran = []
    for name in "abc":
        s.schedule(5, lambda name=name: ran.append(name))
    s.schedule(1, lambda: ran.append("first"))
    s.schedule(5, lambda: ran.append("cancelled")).cancel()
    s.advance_to(10)
    assert ran == ["first", "a", "b", "c"] and s.now_ms == 10
    with pytest.raises(AssertionError):
        s.schedule_at(3, lambda: None)


def _net(**options):
    s = Scheduler()
    got: list = []
    dropped: list = []
    net = Network(s, random.Random(1), lambda n: "dc1" if n < "b" else "dc2",
                  lambda env, msg: got.append((s.now_ms, env.source, env.target, msg)),
                  lambda env, why: dropped.append(why), **options)
    return s, net, got, dropped


def test_links_are_fifo_and_latency_follows_the_datacenters():
    s, net, got, _ = _net()
    for i in range(50):
        net.send("a1", "a2", SchemaPullReq(i))
        net.send("a1", "b1", SchemaPullReq(i))
    s.advance_to(1_000)
    local = [(t, m.req_id) for t, src, dst, m in got if dst == "a2"]
    remote = [(t, m.req_id) for t, src, dst, m in got if dst == "b1"]
    assert [r for _, r in local] == list(range(50)) == [r for _, r in remote]
    assert all(1 <= t <= 5 for t, _ in local) and all(30 <= t <= 80 for t, _ in remote)


def test_partitions_drop_at_send_and_in_flight_and_heal_reopens():
    s, net, got, dropped = _net()
    net.send("a1", "b1", MutationRsp(1))
    net.partition(["a1"], ["b1"])  # the first message is in flight: it dies on arrival
    net.send("b1", "a1", MutationRsp(2))  # dropped at once
    s.advance_to(200)
    assert got == [] and dropped == ["blocked", "blocked in flight"]
    net.heal()
    net.send("a1", "b1", MutationRsp(3))
    s.advance_to(400)
    assert [m.req_id for *_, m in got] == [3]


def test_duplication_and_loss_are_counted_and_bad_bytes_are_our_bug():
    s, net, got, dropped = _net(loss=0.3, duplicate=0.3, reorder=True)
    for i in range(200):
        net.send("a1", "a2", MutationRsp(i))
    s.advance_to(100)
    st = net.stats
    assert st.dropped_loss == len(dropped) > 0 and st.duplicated > 0
    assert len(got) == 200 - st.dropped_loss + st.duplicated
    with pytest.raises(AssertionError, match="undecodable"):
        net._arrive(Envelope(0, "a1", "a2", b"\xc1garbage", 0, "junk"))


def test_a_paused_node_queues_its_inputs_and_answers_after_resume():
    c = kv_cluster(31)
    c.pause(1)
    r = get(c, 1, "p", "ONE")  # a client request to the paused coordinator waits too
    w = put(c, 0, "p", "v", "ALL")  # node 1's MutationReq queues behind the pause
    c.run_for(1_000)
    assert not r.done and not w.done
    c.resume(1)
    c.run_for(50)
    assert r.ok and value(r.result()) is None and r.latency_ms >= 1_000
    assert w.ok and on_disk(c, 1, "p") == "v"


def test_a_crash_fails_pending_requests_and_power_loss_drops_unsynced_writes():
    c = kv_cluster(32, config={"commitlog_sync_period": "60s"})
    c.wait(put(c, 0, "k", "v", "ALL"))
    pending = put(c, 2, "k2", "w", "ALL")
    c.crash(2, lose_unsynced=True)
    assert isinstance(pending.error, ConnectionLost)
    assert isinstance(put(c, 2, "k3", "x").error, ConnectionLost)  # refused while down
    assert on_disk(c, 2, "k") is None  # applied, acknowledged, never synced: gone
    assert on_disk(c, 0, "k") == "v"
    c.restart(2)
    c.wait_until_up(30_000)
    assert value(c.wait(get(c, 2, "k", "ALL"))) == "v"  # read repair brings it back
    assert on_disk(c, 2, "k") == "v"


def test_batch_commitlog_survives_power_loss():
    c = kv_cluster(33, config={"commitlog_sync": "batch"})
    c.wait(put(c, 0, "k", "v", "ALL"))
    c.crash(2, lose_unsynced=True)
    assert on_disk(c, 2, "k") == "v"


def test_storage_puts_issued_before_a_flush_go_down_as_one_batch():
    c = kv_cluster(34)
    batches: list[int] = []
    engine = c.engine(0)
    real_apply = engine.apply
    engine.apply = lambda parts, sync=False: (batches.append(len(parts)), real_apply(parts, sync))[1]
    tdef = c.node(0).schema.schema.table("ks", "kv")
    ts = c.node(0).next_timestamp(c.host(0).clock_ms())
    parts = [rowmaps.insert(tdef, {"k": f"g{i}", "v": "x"}, ts) for i in range(4)]
    c.wait(c.write(0, parts, "ONE"))
    c.run_for(20)
    assert batches == [4]  # four MutationReqs to itself, one group commit


def test_the_trace_records_deliveries_drops_replies_and_faults():
    c = SimCluster(35)
    c.wait_until_up(30_000)
    c.isolate(2)
    c.run_for(2_000)
    c.heal()
    kinds = {line.split()[1] for line in c.trace}
    assert {"boot", "msg", "drop", "partition", "heal"} <= kinds
    assert len(c.trace_hash()) == 64


def test_a_graceful_stop_is_seen_at_once_and_a_restart_rejoins():
    c = kv_cluster(36)
    c.wait(put(c, 0, "g", "v", "ALL"))
    c.stop(2)
    assert c.host(2).up  # still running while its farewell leaves
    c.run_for(300)
    assert not c.host(2).up
    assert not c.sees(0, 2) and not c.sees(1, 2)  # told, not convicted: well before phi would
    assert c.nodes[2] in c.node(0).ring  # down, not gone: it keeps its tokens
    refused = put(c, 0, "g", "w", "ALL")
    assert isinstance(refused.error, Unavailable), refused
    c.wait(put(c, 0, "g", "w", "QUORUM"))
    c.restart(2)
    c.wait_until_up(30_000)
    assert value(c.wait(get(c, 2, "g", "ALL"))) == "w"


def test_events_scheduled_while_their_millisecond_runs_keep_sequence_order():
    s = Scheduler()
    ran = []
    s.post(3, lambda tag: (ran.append(tag), s.post(0, ran.append, "same-ms, posted last")), "a")
    timer = s.schedule(3, lambda: ran.append("timer"))  # after "a" in sequence order
    s.post(3, ran.append, "b")
    s.schedule(3, lambda: ran.append("cancelled")).cancel()
    s.post(4, ran.append, "later")
    assert s.next_time() == 3 and s.pending == 4 and timer.seq > 0
    s.advance_to(10)
    assert ran == ["a", "timer", "b", "same-ms, posted last", "later"] and s.now_ms == 10
    assert s.next_time() is None and s.pending == 0


def test_step_runs_one_live_event_at_a_time_and_skips_cancelled_ones():
    s = Scheduler()
    ran = []
    s.schedule(1, lambda: ran.append("dead")).cancel()
    s.post(2, ran.append, "x")
    s.post(2, ran.append, "y")
    assert s.step(1) is False and ran == []  # nothing live due by 1
    assert s.step() and ran == ["x"] and s.now_ms == 2
    assert s.step() and ran == ["x", "y"]
    assert not s.step()


def test_a_payload_sent_to_several_nodes_is_decoded_once_and_each_gets_it():
    s, net, got, _ = _net()
    msg = SchemaPullReq(7)
    for target in ("a2", "a3", "b1"):
        net.send("a1", target, msg)
    s.advance_to(200)
    assert sorted(dst for _, _, dst, _ in got) == ["a2", "a3", "b1"]
    decoded = [m for *_, m in got]
    assert decoded[0] == msg and decoded[0] is not msg  # it crossed as bytes
    assert all(m is decoded[0] for m in decoded)  # one decode, shared by every receiver


def test_requests_leave_no_reference_cycles_behind():
    """Errors answered to clients carry no tracebacks and timers do not hold their own
    events: a run's garbage goes with reference counting, not the cyclic collector (which
    had cost a tenth of a run). The cluster itself stays alive here, so whatever the
    collector finds was made, and dropped, by the requests."""
    import gc

    c = kv_cluster(36)
    gc.collect()
    gc.disable()
    try:
        futures = [put(c, i % 3, f"k{i % 4}", f"v{i}", "ALL") for i in range(30)]
        c.isolate(2)  # timeouts, then Unavailable answers (raised and caught in the coordinator)
        c.run_for(15_000)
        futures += [put(c, 0, "k", "x", "ALL"), get(c, 1, "k", "ALL")]
        c.run_for(15_000)
        c.heal()
        c.run_for(5_000)
        assert all(f.done for f in futures) and any(isinstance(f.error, Unavailable) for f in futures)
        futures.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # (a schema digest's recursive helper is a small cycle of its own, per schema change)
    assert not kinds & {"frame", "traceback", "SimFuture", "SimEvent", "Unavailable", "WriteTimeout"}
