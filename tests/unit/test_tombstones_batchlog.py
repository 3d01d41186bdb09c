"""Tombstone GC and the batchlog, piece by piece: the engines' compare-and-set `replace` and
batchlog store, what compaction makes of a partition, the purge guards, the downtime
check's verdicts, the choice of batchlog holders, and the new messages on the wire."""

from __future__ import annotations

import random

import pytest

from agora.core import codec, reconcile
from agora.core.batchlog.coordinator import batchlog_endpoints
from agora.core.batchlog.messages import BatchRemove, BatchStoreReq, BatchStoreRsp
from agora.core.effects import Log, PersistMeta, Rewrite, Send, StorageDropTable
from agora.core.errors import ProtocolError
from agora.core.tombstones.compaction import (CLOCK_MARGIN_S, PURGE_HORIZON_STATE, REPAIR_FLAG_STATE,
                                              PurgeGuards, compact_partition, max_purged_ldt)
from agora.core.tombstones.downtime import (DECIDING, GUARDED, REBUILDING, SERVING, Downtime,
                                            suspect_tables)
from agora.core.tombstones.messages import PurgeHorizonReq, PurgeHorizonRsp
from agora.core.types import (MAX_TOKEN, MIN_TOKEN, Bound, Cell, Deletion, Partition,
                              RangeTombstone, ReadCommand, Row)
from agora.storage.memory import MemoryEngine
from agora.storage.rocks import RocksEngine

T = b"\x11" * 16


def live(ts: int, value: bytes = b"x", ttl: int = 0, ldt: int = 0) -> Row:
    return Row((), Cell(ts, b"", ttl, ldt), None, {("v", b""): Cell(ts, value, ttl, ldt)})


def stored(engine, key: bytes):
    return engine.read(ReadCommand(T, key))


# ---- the engines ----------------------------------------------------------------------------


def test_replace_rewrites_a_partition_that_did_not_change_and_deletes_what_the_new_one_lacks(engine):
    engine.apply([Partition(T, b"k", rows={b"a": live(10), b"b": Row((), None, Deletion(20, 5))},
                            range_tombstones=[RangeTombstone(Bound(b"x"), Bound(b"y"), Deletion(7, 3))])])
    before = stored(engine, b"k")
    after = Partition(T, b"k", rows={b"a": before.rows[b"a"]})
    assert engine.replace([Rewrite(before, after)]) == 1
    assert stored(engine, b"k") == after
    assert engine.replace([Rewrite(before, after)]) == 0  # no longer what was read: left alone
    assert engine.replace([Rewrite(after, Partition(T, b"k"))]) == 1
    assert stored(engine, b"k") is None
    assert list(engine.scan(T, MIN_TOKEN, MIN_TOKEN)) == []


def test_replace_leaves_a_partition_written_since_it_was_read(engine):
    engine.apply([Partition(T, b"k", deletion=Deletion(5, 1))])
    read_then = stored(engine, b"k")
    engine.apply([Partition(T, b"k", rows={b"a": live(10)})])  # a write between read and rewrite
    assert engine.replace([Rewrite(read_then, Partition(T, b"k"))]) == 0
    assert stored(engine, b"k").rows[b"a"] == live(10)


def test_batchlog_entries_are_stored_listed_and_removed(engine):
    engine.batchlog_put(b"\x02" * 16, b"two")
    engine.batchlog_put(b"\x01" * 16, b"one", sync=True)
    assert engine.batchlog_items() == [(b"\x01" * 16, b"one"), (b"\x02" * 16, b"two")]
    engine.batchlog_remove(b"\x02" * 16)
    engine.batchlog_remove(b"\x09" * 16)  # unknown: nothing happens
    assert engine.batchlog_items() == [(b"\x01" * 16, b"one")]


def test_memory_batchlog_and_replace_follow_the_crash_model():
    e = MemoryEngine()
    e.apply([Partition(T, b"k", deletion=Deletion(5, 1))], sync=True)
    e.batchlog_put(b"a" * 16, b"synced", sync=True)  # a sync makes everything before durable
    e.batchlog_put(b"b" * 16, b"unsynced")
    e.replace([Rewrite(stored(e, b"k"), Partition(T, b"k"))])
    e.crash()
    assert e.batchlog_items() == [(b"a" * 16, b"synced")]
    assert stored(e, b"k").deletion == Deletion(5, 1)  # an unsynced purge comes back: harmless


def test_rocks_batchlog_survives_a_reopen(tmp_path):
    e = RocksEngine(str(tmp_path / "db"))
    e.batchlog_put(b"a" * 16, b"entry")
    e.close()
    e = RocksEngine(str(tmp_path / "db"))
    assert e.batchlog_items() == [(b"a" * 16, b"entry")]
    e.close()


# ---- what compaction makes of a partition ------------------------------------------------------


def test_compaction_purges_only_what_is_older_than_gc_before():
    p = reconcile.canonical(Partition(T, b"k", rows={b"old": Row((), None, Deletion(10, 100)),
                                                    b"new": Row((), None, Deletion(11, 200)),
                                                    b"live": live(12)}))
    new, ldt = compact_partition(p, now_s=300, gc_before_s=150)
    assert set(new.rows) == {b"new", b"live"} and ldt == 100
    assert compact_partition(p, now_s=300, gc_before_s=100) == (None, 0)


def test_compaction_turns_expired_cells_into_tombstones_dated_from_their_write():
    p = Partition(T, b"k", rows={b"a": live(10, ttl=50, ldt=1050)})  # written at 1000
    new, ldt = compact_partition(p, now_s=1060, gc_before_s=900)
    assert ldt == 0 and new.rows[b"a"].cells[("v", b"")] == Cell(10, None, 0, 1000)
    again, ldt = compact_partition(new, now_s=1060, gc_before_s=1001)
    assert reconcile.is_empty(again) and ldt == 1000


def test_max_purged_ldt_sees_partition_range_row_and_cell_tombstones():
    p = Partition(T, b"k", deletion=Deletion(1, 10),
                  range_tombstones=[RangeTombstone(Bound(b"a"), Bound(b"b"), Deletion(5, 30))],
                  rows={b"c": Row((), None, None, {("v", b""): Cell(9, None, 0, 40)})})
    assert max_purged_ldt(p, 35) == 30 and max_purged_ldt(p, 41) == 40 and max_purged_ldt(p, 5) == 0


def test_a_rewrite_of_a_fragment_compares_and_rewrites_only_its_header_and_rows(engine):
    engine.apply([Partition(T, b"k", rows={c: live(10) for c in (b"a", b"b", b"c", b"d", b"e")})])
    engine.apply([Partition(T, b"k", deletion=Deletion(5, 1))])
    whole = stored(engine, b"k")
    span = Partition(T, b"k", whole.deletion, [], None, {c: whole.rows[c] for c in (b"b", b"c", b"d")})
    engine.apply([Partition(T, b"k", rows={b"e": live(11), b"a": live(11)})])  # outside the span
    new = Partition(T, b"k", rows={b"b": whole.rows[b"b"], b"c": whole.rows[b"c"]})  # d goes, and the header
    assert engine.replace([Rewrite(span, new, b"a", b"d")]) == 1
    after = stored(engine, b"k")
    assert after.deletion is None and sorted(after.rows) == [b"a", b"b", b"c", b"e"]
    assert after.rows[b"a"] == live(11) and after.rows[b"e"] == live(11)
    engine.apply([Partition(T, b"k", rows={b"c": live(12)})])  # inside the span: the next one is left
    assert engine.replace([Rewrite(new, Partition(T, b"k"), b"a", b"d")]) == 0
    assert stored(engine, b"k").rows[b"c"] == live(12)


class FakeGossip:
    def __init__(self):
        self.states: dict = {}
        self.generations: dict = {}

    def app_state(self, node, key):
        return self.states.get((node, key))

    def generation_of(self, node):
        return self.generations.get(node)

    def known_nodes(self):
        return sorted({n for n, _ in self.states} | set(self.generations))


def test_purge_guards_hold_from_a_request_until_the_flag_is_cleared_or_the_node_restarts():
    g = FakeGossip()
    guards = PurgeGuards(g, "me")
    assert guards.floor_s() is None
    guards.add("b", generation=7, since_s=1000)
    assert guards.floor_s() == 1000 - CLOCK_MARGIN_S
    g.generations["b"] = 7
    g.states[("b", REPAIR_FLAG_STATE)] = "1000 guarded"
    g.states[("c", REPAIR_FLAG_STATE)] = "900 rebuilding"
    assert guards.floor_s() == 900 - CLOCK_MARGIN_S  # gossip flags count too
    g.states[("c", REPAIR_FLAG_STATE)] = ""
    g.states[("b", REPAIR_FLAG_STATE)] = ""
    assert guards.floor_s() is None and guards.guarded() == []
    guards.add("b", generation=8, since_s=1100)
    g.generations["b"] = 9
    assert guards.floor_s() is None  # a newer incarnation decides anew


# ---- the downtime check's verdicts ------------------------------------------------------------


class FakeHost:
    local = "a"

    def __init__(self, alive=("a", "b", "c"), horizons=None):
        self.alive = set(alive)
        self.horizons = horizons or {}
        self._req = 0

    def ring_members(self):
        return ["a", "b", "c"]

    def is_alive(self, node):
        return node in self.alive

    def next_req_id(self):
        self._req += 1
        return self._req

    def gossip_state(self, node, key):
        assert key == PURGE_HORIZON_STATE
        return self.horizons.get(node)


def test_only_tables_whose_gc_grace_the_downtime_exceeded_are_suspect():
    tables = [(b"short", 60), (b"long", 864_000)]
    assert suspect_tables(tables, None, 10_000) == []  # a new node
    assert suspect_tables(tables, 9_990, 10_000) == []
    assert suspect_tables(tables, 9_000, 10_000) == [b"short"]


def checker(host, suspects=(b"t",)) -> tuple[Downtime, list]:
    d = Downtime(host, generation=5, last_alive_s=1000, suspects=list(suspects))
    return d, d.start(2_000_000)


def test_a_node_without_suspect_tables_serves_at_once_and_records_it_is_alive():
    d, out = checker(FakeHost(), suspects=())
    assert d.state == SERVING and not d.needs_repair and d.flag() == ""
    # unsynced: a synced put ran an fsync on the event loop every ten seconds
    assert out[0] == PersistMeta("last_alive_s", b"2000", sync=False)
    [state] = [e for e in out if isinstance(e, PersistMeta) and e.key == "downtime_check"]
    assert state.sync  # the state itself stays synced


def test_no_peer_purged_what_it_missed_so_the_node_is_guarded():
    d, out = checker(FakeHost())
    assert d.state == DECIDING and not d.serves_reads and not d.accepts_writes
    asks = [e for e in out if isinstance(e, Send)]
    assert [e.target for e in asks] == ["b", "c"] and asks[0].message.since_s == 1000
    assert d.on_horizon_rsp("b", PurgeHorizonRsp(asks[0].message.req_id, 990)) == []
    d.on_horizon_rsp("c", PurgeHorizonRsp(asks[0].message.req_id, 0))
    assert d.state == GUARDED and d.serves_reads and d.needs_repair and d.flag() == "1000 guarded"
    d.mark_repaired()
    assert d.state == SERVING and d.flag() == ""


def test_a_peer_that_purged_a_newer_tombstone_makes_the_node_drop_and_rebuild():
    d, out = checker(FakeHost(), suspects=(b"t1", b"t2"))
    req_id = next(e for e in out if isinstance(e, Send)).message.req_id
    d.on_horizon_rsp("b", PurgeHorizonRsp(req_id, 0))
    out = d.on_horizon_rsp("c", PurgeHorizonRsp(req_id, 1500))
    assert d.state == REBUILDING and not d.serves_reads and d.accepts_writes
    assert [e for e in out if isinstance(e, StorageDropTable)] == [StorageDropTable(b"t1"),
                                                                     StorageDropTable(b"t2")]


def test_a_down_peer_counts_by_its_gossiped_horizon_and_an_unknown_one_is_waited_for():
    host = FakeHost(alive=("a", "b"))
    d, out = checker(host)
    req_id = next(e for e in out if isinstance(e, Send)).message.req_id
    d.on_horizon_rsp("b", PurgeHorizonRsp(req_id, 0))
    assert d.state == DECIDING  # c is down and nobody knows its horizon
    out = d.on_retry(0)
    assert [e.target for e in out if isinstance(e, Send)] == []  # b answered, c is down
    host.horizons["c"] = "2000"
    d.on_retry(0)
    assert d.state == REBUILDING


def test_a_repair_that_completes_while_deciding_counts_once_the_verdict_is_safe():
    d, out = checker(FakeHost())
    req_id = next(e for e in out if isinstance(e, Send)).message.req_id
    assert isinstance(d.mark_repaired()[0], Log) and d.state == DECIDING
    d.on_horizon_rsp("b", PurgeHorizonRsp(req_id, 0))
    d.on_horizon_rsp("c", PurgeHorizonRsp(req_id, 0))
    assert d.state == SERVING


def test_the_state_is_persisted_and_a_rebuilding_node_resumes_rebuilding():
    d, out = checker(FakeHost())
    assert PersistMeta("downtime_check", b"1000 deciding") in out
    resumed = Downtime(FakeHost(), generation=6, last_alive_s=1000, suspects=[b"t"],
                       resumed_state=REBUILDING)
    out = resumed.start(3_000_000)
    assert resumed.state == REBUILDING and not [e for e in out if isinstance(e, (Send, StorageDropTable))]
    assert resumed.mark_repaired()[-1] == PersistMeta("downtime_check", b"")


# ---- batchlog holders ----------------------------------------------------------------------------


def test_batchlog_endpoints_prefer_two_other_racks_and_fall_back_as_cassandra_does():
    rng = random.Random(1)
    alive = lambda n: True  # noqa: E731
    assert batchlog_endpoints("a", "r1", [("a", "r1")], alive, rng) == ["a"]
    assert batchlog_endpoints("a", "r1", [("a", "r1"), ("b", "r1")], alive, rng) == ["b"]
    members = [("a", "r1"), ("b", "r1"), ("c", "r2"), ("d", "r3"), ("e", "r2")]
    for _ in range(20):
        chosen = batchlog_endpoints("a", "r1", members, alive, rng)
        assert len(chosen) == 2 and {dict(members)[n] for n in chosen} == {"r2", "r3"}
    assert batchlog_endpoints("a", "r1", members, lambda n: n in ("a", "b"), rng) == ["b"]
    assert batchlog_endpoints("a", "r1", members, lambda n: n == "a", rng) == []
    same_rack = [("a", "r1"), ("b", "r1"), ("c", "r1"), ("d", "r1")]
    assert len(set(batchlog_endpoints("a", "r1", same_rack, alive, rng)) - {"a"}) == 2


# ---- messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", [
    BatchStoreReq(7, b"\x01" * 16, (Partition(T, b"k", rows={b"": live(3)}),)),
    BatchStoreRsp(7, None), BatchStoreRsp(8, "batchlog full"), BatchRemove(b"\x02" * 16),
    PurgeHorizonReq(9, 1_700_000_000, 1_700_000_001), PurgeHorizonRsp(9, 0),
])
def test_messages_round_trip(msg):
    assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize("fields", [[60, 1, b"short", []], [62, "x"], [63, 1, -5, 2], [64, 1, "0"]])
def test_bad_messages_are_protocol_errors(fields):
    import msgpack
    with pytest.raises(ProtocolError):
        codec.decode(msgpack.packb(fields, use_bin_type=True))
