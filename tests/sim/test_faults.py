"""The simulator's faults beyond crash and symmetric partitions: clock skew and drift,
one-way partitions, a whole datacenter cut off, reordering and the latency tail, and the
nemesis that injects them (recording what a power loss rolled back)."""

from __future__ import annotations

import random

from agora.core.messages import MutationRsp
from agora.sim import SimCluster
from agora.sim.clock import SimClock
from agora.sim.history import History
from agora.sim.nemesis import FAULT_KINDS, FaultSpec, Nemesis
from agora.sim.network import Network
from agora.sim.scheduler import Scheduler

from .test_coordinator_sim import NTS_3_3, TWO_DCS, get, kv_cluster, on_disk, put, value


# ---- clocks ------------------------------------------------------------------------------


def test_a_clock_steps_and_drifts_from_true_time():
    clock = SimClock()
    assert clock.read(5_000) == 5_000
    clock.set(1_000, offset_ms=-300)  # an NTP step backwards
    assert clock.read(1_000) == 700
    clock.set(2_000, drift_ppm=10_000)  # 1% fast from here on, no jump
    assert clock.read(2_000) == 1_700
    assert clock.read(12_000) == 11_700 + 100
    clock.set(12_000, offset_ms=0, drift_ppm=0)
    assert clock.read(20_000) == 20_000


def test_a_skewed_node_sees_skewed_time_and_stamps_writes_with_it():
    c = kv_cluster(41)
    c.set_clock(1, offset_ms=5_000)
    assert c.host(1).clock_ms() - c.host(0).clock_ms() == 5_000
    ahead = c.wait(put(c, 1, "s", "from-the-future"))
    behind = c.wait(put(c, 0, "s", "later-but-older"))
    assert ahead - behind > 4_000_000  # microseconds
    assert value(c.wait(get(c, 2, "s", "ALL"))) == "from-the-future"
    c.set_clock(2, drift_ppm=50_000)
    before = c.host(2).clock_ms() - c.host(0).clock_ms()
    c.run_for(10_000)
    assert c.host(2).clock_ms() - c.host(0).clock_ms() - before == 500


def test_a_clock_stepping_back_does_not_convict_anyone_or_reuse_timestamps():
    c = kv_cluster(42)
    first = c.wait(put(c, 0, "t", "one"))
    c.set_clock(0, offset_ms=-3_000)
    second = c.wait(put(c, 0, "t", "two"))
    assert second > first  # the coordinator's clock never goes backwards
    c.run_for(20_000)
    assert c.all_up()


# ---- partitions ------------------------------------------------------------------------


def test_a_one_way_partition_drops_one_direction_only():
    s = Scheduler()
    got: list = []
    net = Network(s, random.Random(1), lambda n: "dc1", lambda env, msg: got.append((env.source, msg.req_id)))
    net.block("a", "b")
    net.send("a", "b", MutationRsp(1))
    net.send("b", "a", MutationRsp(2))
    s.advance_to(100)
    assert got == [("b", 2)]


def test_a_node_whose_messages_cannot_get_out_applies_writes_it_cannot_acknowledge():
    c = kv_cluster(43)
    c.partition([2], one_way=True)  # 2 -> others dropped; others -> 2 delivered
    w = put(c, 0, "o", "v", "ALL")
    assert c.run_until(lambda: w.done, 10_000)
    assert type(w.error).__name__ == "WriteTimeout"
    assert on_disk(c, 2, "o") == "v"  # applied; only the acknowledgement was lost
    # Gossip needs a round trip (syn, ack, ack2), so a one-way cut silences both sides.
    assert c.run_until(lambda: not any(c.sees(a, b) for a, b in ((0, 2), (1, 2), (2, 0), (2, 1))), 30_000)
    c.heal()
    c.wait_until_up(30_000)


def test_cutting_a_datacenter_off_keeps_its_own_links():
    c = kv_cluster(44, TWO_DCS, NTS_3_3)
    c.cut_dc("dc2")
    blocked = c.network.blocked
    dc1, dc2 = c.nodes[:3], c.nodes[3:]
    assert all((a, b) in blocked and (b, a) in blocked for a in dc1 for b in dc2)
    assert not any((a, b) in blocked for group in (dc1, dc2) for a in group for b in group)
    c.wait(put(c, 4, "d", "dc2-only", "LOCAL_QUORUM"))
    assert value(c.wait(get(c, 5, "d", "LOCAL_QUORUM"))) == "dc2-only"


# ---- network weather -----------------------------------------------------------------------


def _arrivals(**options) -> list[int]:
    s = Scheduler()
    got: list = []
    net = Network(s, random.Random(7), lambda n: "dc1", lambda env, msg: got.append(msg.req_id), **options)
    for i in range(300):
        net.send("a", "b", MutationRsp(i))
    s.advance_to(10_000)
    return got


def test_reordering_lets_later_messages_overtake_and_fifo_does_not():
    assert _arrivals() == list(range(300))
    reordered = _arrivals(reorder=True)
    assert sorted(reordered) == list(range(300)) and reordered != list(range(300))


def test_the_latency_tail_delays_some_messages_by_hundreds_of_milliseconds():
    s = Scheduler()
    times: list = []
    net = Network(s, random.Random(3), lambda n: "dc1", lambda env, msg: times.append(s.now_ms),
                  reorder=True, slow=0.1)
    for i in range(500):
        net.send("a", "b", MutationRsp(i))
    s.advance_to(10_000)
    slow = [t for t in times if t >= 200]
    assert 20 < len(slow) < 90 and all(t <= 5 or 200 <= t <= 1_500 for t in times)


def test_network_faults_can_change_mid_run():
    c = kv_cluster(45)
    c.set_network_faults(loss=0.5, duplicate=0.2, reorder=True, slow=0.1)
    c.run_for(3_000)
    st = c.network.stats
    assert st.dropped_loss > 0 and st.duplicated > 0
    c.set_network_faults(loss=0.0, duplicate=0.0, reorder=False, slow=0.0)
    lost = st.dropped_loss
    c.run_for(3_000)
    assert c.network.stats.dropped_loss == lost


# ---- disks -----------------------------------------------------------------------------------


def test_power_loss_drops_exactly_the_writes_since_the_last_sync():
    c = kv_cluster(46, config={"commitlog_sync_period": "5s"})
    c.wait(put(c, 0, "synced", "v", "ALL"))
    c.run_for(5_000)  # a periodic sync passes on every node
    c.wait(put(c, 0, "unsynced", "w", "ALL"))
    assert c.engine(1).unsynced_count() == 1
    c.crash(1, lose_unsynced=True)
    assert (on_disk(c, 1, "synced"), on_disk(c, 1, "unsynced")) == ("v", None)
    c.crash(2)  # kill -9: the operating system still has the log
    assert (on_disk(c, 2, "synced"), on_disk(c, 2, "unsynced")) == ("v", "w")


# ---- the nemesis -----------------------------------------------------------------------------


def test_the_nemesis_injects_every_kind_records_power_loss_rollbacks_and_undoes_it_all():
    c = kv_cluster(47, layout=(("dc1", "r1"),) * 5, config={"commitlog_sync_period": "60s"})
    tdef = c.node(0).schema.schema.table("ks", "kv")
    from agora.core import rowmaps
    commands = {k: rowmaps.read_command(tdef, {"k": k}) for k in ("x", "y")}
    for k in commands:
        c.wait(put(c, 0, k, "v", "ALL"))
    history = History()
    spec = FaultSpec(interval_ms=(200, 400), duration_ms=(300, 2_000), max_down=2, power_loss=1.0)
    nemesis = Nemesis(c, spec, history, random.Random(5), commands)
    nemesis.start()
    c.run_for(60_000)
    nemesis.stop()
    assert set(FAULT_KINDS) - {"crash"} <= {k.replace("one-way", "partition") for k in nemesis.injected}
    assert nemesis.injected["power-loss"] > 0
    lost = [f for f in history.faults if f.kind == "power-loss" and f.keys]
    assert lost and {k for f in lost for k in f.keys} <= {"x", "y"}
    assert not c.network.blocked and c.network.loss == 0 and not c.network.reorder
    assert all(h.up and not h.paused and h.clock.offset_ms == 0 for h in c.hosts)


def test_the_same_nemesis_seed_injects_the_same_faults():
    def faults(seed: int) -> list[str]:
        c = SimCluster(48)
        c.wait_until_up(30_000)
        history = History()
        nemesis = Nemesis(c, FaultSpec(), history, random.Random(seed))
        nemesis.start()
        c.run_for(30_000)
        nemesis.stop()
        return [f.describe() for f in history.faults]

    assert faults(1) == faults(1) != faults(2)
