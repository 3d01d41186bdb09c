"""Token-range reads, piece by piece: cutting a range by the ring (`split_range`), the
storage scan's cut (`StorageScan.collect`), the wire form, the replica's bounded answers,
and the coordinator driven by hand through a short read and its repair."""

from __future__ import annotations

import random
from bisect import bisect_left

import pytest

from agora.core import codec
from agora.core.coordinator.range_read import RangeReadCoordinator, SubRange, split_range
from agora.core.effects import CancelTimer, Reply, Send, SetTimer, StorageScan, StorageScanDone
from agora.core.errors import ProtocolError, ReadFailure, ReadTimeout, Unavailable
from agora.core.messages import MutationReq, MutationRsp, RangeReadReq, RangeReadRsp
from agora.core.replica.replica import Replica
from agora.core.ring.partitioner import token_for_key
from agora.core.ring.token_ring import range_contains
from agora.core.types import (MAX_TOKEN, MIN_TOKEN, Bound, Cell, ConsistencyLevel, Deletion,
                              Partition, RangeCommand, Row, Slice)
from agora.storage.memory import MemoryEngine

from tests.unit.placement import HandPlacement

TID = b"\x01" * 16
TOKENS = (-100, 0, 100)
TABLE = (("a", "b"), ("b", "c"), ("c", "a"))  # replicas of ring positions 0, 1, 2


# ---- split_range ---------------------------------------------------------------------------


def test_a_range_inside_one_ring_position_is_one_sub_range():
    assert split_range(TOKENS, TABLE, 10, None, 50) == [SubRange(10, None, 50, ("c", "a"))]
    assert split_range(TOKENS, TABLE, 0, None, 100) == [SubRange(0, None, 100, ("c", "a"))]


def test_a_range_is_cut_at_every_ring_token_inside_it_in_ring_order():
    assert split_range(TOKENS, TABLE, -150, None, 50) == [
        SubRange(-150, None, -100, ("a", "b")),
        SubRange(-100, None, 0, ("b", "c")),
        SubRange(0, None, 50, ("c", "a")),
    ]


def test_tokens_above_the_last_ring_token_belong_to_the_first_position():
    assert split_range(TOKENS, TABLE, 100, None, MAX_TOKEN) == [SubRange(100, None, MAX_TOKEN, ("a", "b"))]


def test_a_wrapping_range_is_also_cut_at_the_ring_end():
    assert split_range(TOKENS, TABLE, 50, None, -120) == [
        SubRange(50, None, 100, ("c", "a")),
        SubRange(100, None, MAX_TOKEN, ("a", "b")),
        SubRange(MIN_TOKEN, None, -120, ("a", "b")),
    ]


def test_start_equal_to_end_is_the_whole_ring_starting_after_it():
    pieces = split_range(TOKENS, TABLE, 50, None, 50)
    assert [(p.start_token, p.end_token) for p in pieces] == [
        (50, 100), (100, MAX_TOKEN), (MIN_TOKEN, -100), (-100, 0), (0, 50)]


def test_the_full_token_span_does_not_wrap():
    pieces = split_range(TOKENS, TABLE, MIN_TOKEN, None, MAX_TOKEN)
    assert [(p.start_token, p.end_token) for p in pieces] == [
        (MIN_TOKEN, -100), (-100, 0), (0, 100), (100, MAX_TOKEN)]


def test_a_start_key_makes_the_first_sub_range_include_the_start_token():
    # token 0 is a ring token: its keys belong to position 1, tokens above it to position 2
    assert split_range(TOKENS, TABLE, 0, b"k", 50) == [
        SubRange(0, b"k", 0, ("b", "c")),
        SubRange(0, None, 50, ("c", "a")),
    ]
    # the rest of one token: start token == end token with a key does not wrap
    assert split_range(TOKENS, TABLE, 7, b"k", 7) == [SubRange(7, b"k", 7, ("c", "a"))]
    # MIN_TOKEN is no key's token, so a key there means nothing
    assert split_range(TOKENS, TABLE, MIN_TOKEN, b"k", -150) == [SubRange(MIN_TOKEN, None, -150, ("a", "b"))]


def test_neighbours_with_the_same_replica_set_are_joined():
    table = (("a", "b"), ("b", "a"), ("c", "a"))
    assert split_range(TOKENS, table, -150, None, 50) == [
        SubRange(-150, None, 0, ("a", "b")),
        SubRange(0, None, 50, ("c", "a")),
    ]
    everywhere = (("a", "b", "c"),) * 3
    assert split_range(TOKENS, everywhere, MIN_TOKEN, None, MAX_TOKEN) == [
        SubRange(MIN_TOKEN, None, MAX_TOKEN, ("a", "b", "c"))]
    # ... but never across the ring's end: a sub-range never wraps
    assert len(split_range(TOKENS, everywhere, 5, None, 5)) == 2


def test_an_empty_ring_has_no_sub_ranges():
    assert split_range((), (), MIN_TOKEN, None, MAX_TOKEN) == []


def _owner_index(tokens, token):
    i = bisect_left(tokens, token)
    return 0 if i == len(tokens) else i


@pytest.mark.parametrize("seed", range(20))
def test_every_token_of_the_range_is_in_exactly_one_sub_range_with_its_replicas(seed):
    rng = random.Random(seed)
    tokens = sorted(rng.sample(range(-1000, 1000), rng.randint(1, 8)))
    table = tuple((f"n{rng.randint(0, 2)}",) for _ in tokens)
    start, end = rng.randint(-1100, 1100), rng.randint(-1100, 1100)
    key = rng.choice([None, b"k"])
    pieces = split_range(tokens, table, start, key, end)
    lo = start - 1 if key is not None else start
    probes = sorted({*range(-1100, 1101, 7), *tokens, start, end, start - 1, start + 1, end + 1})
    for token in probes:
        inside = [p for p in pieces if (p.start_token - (p.start_key is not None)) < token <= p.end_token]
        assert len(inside) == range_contains(lo, end, token), (token, pieces)
        if inside:
            assert set(inside[0].replicas) == set(table[_owner_index(tokens, token)])
    for a, b in zip(pieces, pieces[1:]):
        assert a.end_token == b.start_token or (a.end_token, b.start_token) == (MAX_TOKEN, MIN_TOKEN)
        assert a.start_token <= a.end_token


# ---- the storage scan ----------------------------------------------------------------------


def _part(key: bytes, rows: int = 1) -> Partition:
    return Partition(TID, key, rows={bytes([i]): Row((bytes([i]),), Cell(1, b"")) for i in range(rows)})


def _whole(scanned):
    """(token, partition) pairs as the pieces an engine yields for whole partitions."""
    return iter([(t, p, True, True, 0, max(p.rows) if p.rows else None) for t, p in scanned])


def test_token_range_starts_one_token_early_when_a_key_is_given():
    assert StorageScan(1, TID, 5, None, 9, 10).token_range() == (5, 9)
    assert StorageScan(1, TID, 5, b"k", 9, 10).token_range() == (4, 9)
    assert StorageScan(1, TID, MIN_TOKEN, b"k", 9, 10).token_range() == (MIN_TOKEN, 9)


def test_collect_skips_the_start_key_and_orders_a_token_group_by_key_bytes():
    # the engines order a token's keys by length first; positions order them by bytes
    scanned = [(5, _part(b"b")), (5, _part(b"d")), (5, _part(b"aa")), (5, _part(b"cc")), (7, _part(b"x"))]
    done = StorageScan(1, TID, 5, b"b", 9, 100).collect(_whole(scanned))
    assert [(t, p.key) for t, p in done.partitions] == [(5, b"cc"), (5, b"d"), (7, b"x")]
    assert done.exhausted


def test_collect_stops_at_max_rows_but_never_inside_a_token_group():
    scanned = [(1, _part(b"a", 3)), (2, _part(b"b", 3)), (2, _part(b"cc", 3)), (3, _part(b"d", 3))]
    done = StorageScan(1, TID, 0, None, 9, 4).collect(_whole(scanned))
    assert [p.key for _, p in done.partitions] == [b"a", b"b", b"cc"] and not done.exhausted
    done = StorageScan(1, TID, 0, None, 9, 9).collect(_whole(scanned))
    assert [p.key for _, p in done.partitions] == [b"a", b"b", b"cc"] and not done.exhausted
    done = StorageScan(1, TID, 0, None, 9, 10).collect(_whole(scanned))
    assert len(done.partitions) == 4 and done.exhausted
    # a partition with nothing but a deletion still counts one row
    bare = [(t, Partition(TID, bytes([t]), Deletion(1, 1))) for t in range(1, 6)]
    assert len(StorageScan(1, TID, 0, None, 9, 2).collect(_whole(bare)).partitions) == 2


def test_collect_on_a_wrapping_scan_keeps_ring_order_from_the_start():
    engine = MemoryEngine()
    parts = [Partition(TID, bytes([i]), rows={b"": Row((), Cell(1, b""))}) for i in range(60)]
    engine.apply(parts)
    tokens = sorted(token_for_key(p.key) for p in parts)
    start, end = tokens[40], tokens[10]
    scan = StorageScan(1, TID, start, None, end, 1_000)
    done = scan.collect(engine.scan_pieces(TID, *scan.token_range()))
    assert [t for t, _ in done.partitions] == tokens[41:] + tokens[:11]
    scan = StorageScan(1, TID, start, None, end, 5)
    done = scan.collect(engine.scan_pieces(TID, *scan.token_range()))
    assert [t for t, _ in done.partitions] == tokens[41:46] and not done.exhausted


# ---- wire form -----------------------------------------------------------------------------


def test_range_messages_round_trip_through_the_codec():
    cmd = RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN)
    sliced = RangeCommand(TID, -5, b"key", 5, (Slice(Bound(b"a"), Bound(b"z", False)),), ("v",), 10, 2)
    for msg in (RangeReadReq(1, cmd), RangeReadReq(2, sliced), RangeReadRsp(3, ()),
                RangeReadRsp(4, (_part(b"a", 2), _part(b"b")), True, -5, b"b"),
                RangeReadRsp(5, (), error="boom"),
                RangeReadReq(6, RangeCommand(TID, -5, b"key", 5, None, None, 10, 0, b"\x00\x07")),
                RangeReadRsp(7, (_part(b"a", 2),), True, -5, b"a", last_ckey=b"\x01")):
        assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize("fields", [
    [1, [TID, 0, None, 5, None, None, -1, 0]],  # negative limit
    [1, [TID, 2**63, None, 5, None, None, 0, 0]],  # token out of range
    [1, [TID, 0, "key", 5, None, None, 0, 0]],  # key not bytes
    [1, [TID, 0, None, 5, None, None, True, 0]],  # bool for an int
    [1, [TID, 0, None, 5, None]],  # short
    [1, [TID, 0, None, 5, None, None, 0, 0, b"c"]],  # a resume point without a key
    [1, [TID, 0, b"k", 5, None, None, 0, 0, "c"]],  # a resume point not bytes
])
def test_malformed_range_requests_are_protocol_errors(fields):
    import msgpack
    with pytest.raises(ProtocolError):
        codec.decode(msgpack.packb([RangeReadReq.VERB, *fields], use_bin_type=True))


def test_a_range_answer_with_more_must_name_its_last_position():
    import msgpack
    for fields in ([1, [], True, None, None, None], [1, [], False, 5, b"k", None],
                   [1, [], False, None, None, None, b"c"], [1, [], True, 5, b"k", None, 7]):
        with pytest.raises(ProtocolError):
            codec.decode(msgpack.packb([RangeReadRsp.VERB, *fields], use_bin_type=True))


# ---- the replica ---------------------------------------------------------------------------


def _replica_answer(limit: int, scanned, exhausted: bool, ppl: int = 0) -> RangeReadRsp:
    replica = Replica(lambda t: t == TID, sync_writes=False)
    cmd = RangeCommand(TID, 0, None, 100, None, None, limit, ppl)
    [scan] = replica.on_range_read("coord", RangeReadReq(9, cmd))
    assert isinstance(scan, StorageScan) and (scan.start_token, scan.end_token) == (0, 100)
    [send] = replica.on_scan_done(StorageScanDone(scan.op_id, tuple(scanned), exhausted), 1_000_000)
    assert isinstance(send, Send) and send.target == "coord"
    return send.message


def test_the_replica_stops_at_the_limit_by_its_own_live_rows_and_says_where():
    scanned = [(1, Partition(TID, b"dead", Deletion(5, 1))), (2, _part(b"a", 2)), (3, _part(b"b", 2)),
               (4, _part(b"c", 2))]
    rsp = _replica_answer(3, scanned, exhausted=True)
    assert [p.key for p in rsp.partitions] == [b"dead", b"a", b"b"]  # tombstones travel too
    assert (rsp.more, rsp.last_token, rsp.last_key) == (True, 3, b"b")
    rsp = _replica_answer(3, scanned, exhausted=True, ppl=1)
    assert [p.key for p in rsp.partitions] == [b"dead", b"a", b"b", b"c"] and not rsp.more
    rsp = _replica_answer(0, scanned[:2], exhausted=False)
    assert (rsp.more, rsp.last_token, rsp.last_key) == (True, 2, b"a")


# ---- the coordinator, by hand --------------------------------------------------------------


class FakePlacement(HandPlacement):
    """Three live nodes a, b, c in one DC; every range has all three as replicas."""

    def __init__(self, alive=("a", "b", "c")):
        super().__init__("a", "dc1", {}, alive)

    def ring_replicas(self, table_id):
        return TOKENS, (("a", "b", "c"),) * 3, None, 3


def _live(key: bytes, ts: int = 10) -> Partition:
    return Partition(TID, key, rows={b"": Row((), Cell(ts, b""), cells={("v", b""): Cell(ts, b"x")})})


def _dead(key: bytes, ts: int = 20) -> Partition:
    return Partition(TID, key, Deletion(ts, 1))


def _by_position(keys):
    return sorted(keys, key=lambda k: (token_for_key(k), k))


def test_a_short_read_continues_from_the_frontier_and_repairs_before_answering():
    coord = RangeReadCoordinator(FakePlacement(), read_timeout_ms=5_000)
    keys = _by_position([bytes([i]) for i in range(8)])
    now = 1_000_000
    cmd = RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN, limit_rows=2)
    effects = coord.start(1, cmd, ConsistencyLevel.QUORUM, now)
    sends = [e for e in effects if isinstance(e, Send)]
    assert [s.target for s in sends] == ["a", "b"] and all(s.message.command.limit_rows == 2 for s in sends)
    req = sends[0].message.req_id
    # "a" missed the deletions of the first two partitions and stopped after its 2 live rows;
    # "b" holds those tombstones, and reached its limit two partitions later.
    a = RangeReadRsp(req, (_live(keys[0]), _live(keys[1])), True, token_for_key(keys[1]), keys[1])
    b = RangeReadRsp(req, (_dead(keys[0]), _dead(keys[1]), _live(keys[2]), _live(keys[3])),
                     True, token_for_key(keys[3]), keys[3])
    assert coord.on_response("a", a, now) == []
    effects = coord.on_response("b", b, now)
    [repair] = [e for e in effects if isinstance(e, Send)]
    assert repair.target == "a" and isinstance(repair.message, MutationReq)
    assert [p.key for p in repair.message.partitions] == keys[:2]  # only up to the frontier
    effects = coord.on_repair_ack("a", MutationRsp(repair.message.req_id), now)
    sends = [e for e in effects if isinstance(e, Send)]
    # nothing live within the frontier: a second round from it, still wanting 2 rows
    assert [s.message.command.start_key for s in sends] == [keys[1], keys[1]]
    req = sends[0].message.req_id
    coord.on_response("a", RangeReadRsp(req, (_live(keys[2]), _live(keys[3])), True,
                                         token_for_key(keys[3]), keys[3]), now)
    effects = coord.on_response("b", RangeReadRsp(req, (_live(keys[2]), _live(keys[3])), True,
                                                    token_for_key(keys[3]), keys[3]), now)
    [reply] = [e for e in effects if isinstance(e, Reply)]
    assert [p.key for p in reply.result] == keys[2:4]
    assert coord.in_flight == 0 and coord.stats["short_rounds"] == 1


def test_unavailable_up_front_and_timeout_per_round():
    coord = RangeReadCoordinator(FakePlacement(alive=("a",)), read_timeout_ms=5_000)
    [reply] = coord.start(1, RangeCommand(TID, 0, None, 0), ConsistencyLevel.QUORUM, 0)
    assert isinstance(reply.result, Unavailable) and (reply.result.required, reply.result.alive) == (2, 1)
    coord = RangeReadCoordinator(FakePlacement(), read_timeout_ms=5_000)
    effects = coord.start(2, RangeCommand(TID, 0, None, 0), ConsistencyLevel.ALL, 0)
    assert SetTimer(("range", 2), 5_000) in effects
    req = effects[0].message.req_id
    coord.on_response("b", RangeReadRsp(req, ()), 10)
    [reply, _] = coord.on_timer(("range", 2), 5_000)
    assert isinstance(reply.result, ReadTimeout)
    assert (reply.result.received, reply.result.required, reply.result.data_present) == (1, 3, True)
    assert coord.in_flight == 0


def test_an_answer_straying_outside_the_request_is_ignored():
    coord = RangeReadCoordinator(FakePlacement(), read_timeout_ms=5_000)
    effects = coord.start(3, RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), ConsistencyLevel.ONE, 0)
    req = effects[0].message.req_id
    other_table = Partition(b"\x09" * 16, b"k", Deletion(1, 1))
    assert coord.on_response("a", RangeReadRsp(req, (other_table,)), 1) == []
    assert coord.on_response("a", RangeReadRsp(req, (), True, MIN_TOKEN, b"k"), 1) == []  # no progress
    [reply, _] = coord.on_response("a", RangeReadRsp(req, (_live(b"k"),)), 1)
    assert [p.key for p in reply.result] == [b"k"]


def test_a_replica_error_fails_the_scan_at_once():
    """A round needs every replica it asked: an error answer (say, an answer too big for a
    frame) is a ReadFailure now, not a ReadTimeout read_request_timeout later."""
    coord = RangeReadCoordinator(FakePlacement(), read_timeout_ms=5_000)
    effects = coord.start(4, RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), ConsistencyLevel.QUORUM, 0)
    req = effects[0].message.req_id
    assert coord.on_response("a", RangeReadRsp(req, (_live(b"k"),)), 1) == []
    [reply, cancel] = coord.on_response("b", RangeReadRsp(req, (), error="too big"), 2)
    assert isinstance(reply.result, ReadFailure) and cancel == CancelTimer(("range", 4))
    assert (reply.result.received, reply.result.required, reply.result.failures,
            reply.result.data_present) == (1, 2, {"b": 0}, True)
    assert coord.in_flight == 0


def test_partitions_every_replica_answers_alike_are_neither_merged_nor_repaired(monkeypatch):
    """The usual round: both replicas hold the same. Their versions go to the answer as they
    came, with no merge and no repair; a partition they differ on is merged and repaired."""
    from agora.core import reconcile
    merges = []
    real = reconcile.merge_many
    monkeypatch.setattr(reconcile, "merge_many", lambda versions: merges.append(len(versions)) or real(versions))
    coord = RangeReadCoordinator(FakePlacement(), read_timeout_ms=5_000)
    keys = _by_position([bytes([i]) for i in range(6)])
    now = 1_000_000
    effects = coord.start(1, RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), ConsistencyLevel.QUORUM, now)
    req = [e for e in effects if isinstance(e, Send)][0].message.req_id
    alike = tuple(_live(k) for k in keys)
    assert coord.on_response("a", RangeReadRsp(req, alike), now) == []
    effects = coord.on_response("b", RangeReadRsp(req, tuple(_live(k) for k in keys)), now)
    [reply] = [e for e in effects if isinstance(e, Reply)]
    assert not [e for e in effects if isinstance(e, Send)] and merges == []
    assert [p.key for p in reply.result] == keys
    # b holds a newer write of keys[2] and lacks keys[4]: those two are merged and repaired
    effects = coord.start(2, RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), ConsistencyLevel.QUORUM, now)
    req = [e for e in effects if isinstance(e, Send)][0].message.req_id
    coord.on_response("a", RangeReadRsp(req, alike), now)
    b = tuple(_live(k, 30) if k == keys[2] else _live(k) for k in keys if k != keys[4])
    effects = coord.on_response("b", RangeReadRsp(req, b), now)
    repairs = {e.target: e.message for e in effects if isinstance(e, Send)}
    assert sorted(merges) == [1, 2]
    assert {node: [p.key for p in m.partitions] for node, m in repairs.items()} == \
        {"a": [keys[2]], "b": [keys[4]]}
    assert coord.on_repair_ack("a", MutationRsp(repairs["a"].req_id), now) == []
    [reply] = [e for e in coord.on_repair_ack("b", MutationRsp(repairs["b"].req_id), now)
               if isinstance(e, Reply)]
    assert [p.key for p in reply.result] == keys
    assert reply.result[2].rows[b""].cells[("v", b"")].ts == 30


def test_a_replica_sends_whole_partitions_of_its_scan_without_a_canonical_copy(monkeypatch):
    """A scan's partitions are canonical: a range read of whole partitions sends them on
    (expired cells turned to tombstones all the same); one with a column list cuts them."""
    from agora.core import reconcile
    sliced = []
    real = reconcile.slice_partition
    monkeypatch.setattr(reconcile, "slice_partition", lambda p, cmd: sliced.append(p.key) or real(p, cmd))
    ttl = Partition(TID, b"t", rows={b"": Row((), None, cells={("v", b""): Cell(10, b"x", 5, 990),
                                                               ("w", b""): Cell(10, b"y")})})
    scanned = [(1, _part(b"a", 2)), (2, ttl)]
    rsp = _replica_answer(0, scanned, exhausted=True)
    assert sliced == [] and rsp.partitions[0] == scanned[0][1]
    assert rsp.partitions[1].rows[b""].cells[("v", b"")].value is None  # expired at 995 s < now
    replica = Replica(lambda t: t == TID, sync_writes=False)
    [scan] = replica.on_range_read("coord", RangeReadReq(9, RangeCommand(TID, 0, None, 100, None, ("w",))))
    [send] = replica.on_scan_done(StorageScanDone(scan.op_id, tuple(scanned), True), 1_000_000)
    assert sliced == [b"a", b"t"] and ("v", b"") not in send.message.partitions[1].rows[b""].cells


def test_read_repair_none_merges_differing_partitions_and_repairs_nothing():
    """A table with read_repair = 'NONE': where replicas differ the answer is still the
    merged version, and no replica is sent a repair."""
    placement = FakePlacement()
    placement.read_repair = False
    coord = RangeReadCoordinator(placement, read_timeout_ms=5_000)
    keys = _by_position([bytes([i]) for i in range(4)])
    now = 1_000_000
    effects = coord.start(1, RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), ConsistencyLevel.QUORUM, now)
    req = [e for e in effects if isinstance(e, Send)][0].message.req_id
    coord.on_response("a", RangeReadRsp(req, tuple(_live(k) for k in keys)), now)
    b = tuple(_live(k, 30) if k == keys[2] else _live(k) for k in keys if k != keys[3])
    effects = coord.on_response("b", RangeReadRsp(req, b), now)
    assert not [e for e in effects if isinstance(e, Send)]
    [reply] = [e for e in effects if isinstance(e, Reply)]
    assert [p.key for p in reply.result] == keys
    assert reply.result[2].rows[b""].cells[("v", b"")].ts == 30  # the newer version won
    assert coord.stats["read_repairs"] == 0 and coord.in_flight == 0
