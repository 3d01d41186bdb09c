"""The range-read coordinator over real replicas whose answers cut partitions into pieces:
every row once, LIMIT and PER PARTITION LIMIT exact across cuts, a static row counted only
where its partition ends without live rows, no answer bigger than an internode frame, a
partition sharing its token with another not lost when a scan resumes inside one, and the
CQL pager on top of it (ALLOW FILTERING through a wide partition). A seeded differential
run compares many random clusters -- divergent replicas, deletions of every kind, static
rows, wide partitions, small answer bounds, both engines -- against the merged truth.

The cluster is driven by hand: a RangeReadCoordinator on node "a", a Replica and an engine
per node, every message encoded and decoded on its way, repairs applied at once."""

from __future__ import annotations

import random

import pytest

from agora.core import codec, reconcile
from agora.core.coordinator import range_read
from agora.core.coordinator.range_read import RangeReadCoordinator
from agora.core.effects import CancelTimer, Reply, Send, SetTimer, StorageScan
from agora.core.limits import MAX_FRAME_BYTES, MAX_MUTATION_BYTES
from agora.core.messages import MutationReq, MutationRsp, RangeReadReq
from agora.core.plain import partition_size_bound
from agora.core.replica import replica
from agora.core.replica.replica import Replica
from agora.core.ring import partitioner
from agora.core.ring.partitioner import token_for_key
from agora.core.ring.token_ring import range_contains
from agora.core.types import (MAX_TOKEN, MIN_TOKEN, Bound, Cell, Deletion, Partition, RangeCommand,
                              RangeTombstone, ReadCommand, Row, Slice)
from agora.core.types import ConsistencyLevel as CL
from agora.storage import memory, rocks
from agora.storage.completions import complete
from agora.storage.memory import MemoryEngine
from agora.storage.rocks import RocksEngine
from tests.unit.placement import HandPlacement
from tests.unit.test_cql_statement_rules import NOW_S, MemoryBackend, Node

TID = b"\x01" * 16
NOW_MS = NOW_S * 1000


class _Placement(HandPlacement):
    def __init__(self, nodes):
        super().__init__(nodes[0], "dc1", {}, nodes)
        self.nodes = tuple(nodes)

    def ring_replicas(self, table_id):
        return (-2**62, 0, 2**62), (self.nodes,) * 3, None, len(self.nodes)


class Cluster:
    """Replicas over `engines` ({node: engine}) and a range coordinator on the first node."""

    def __init__(self, engines: dict, between_rounds=None):
        self.engines = engines
        self.replicas = {n: Replica(lambda t: True, sync_writes=False) for n in engines}
        self.coord = RangeReadCoordinator(_Placement(sorted(engines)), read_timeout_ms=5_000)
        self.between_rounds = between_rounds  # called before each round is served
        self.answer_sizes: list[int] = []

    def read(self, cmd: RangeCommand, cl=CL.ALL):
        queue = list(self.coord.start(1, cmd, cl, NOW_MS))
        first = sorted(self.engines)[0]
        while queue:
            eff = queue.pop(0)
            if isinstance(eff, Reply):
                return eff.result
            if isinstance(eff, (SetTimer, CancelTimer)):
                continue
            assert isinstance(eff, Send), eff
            msg, node = codec.decode(codec.encode(eff.message)), eff.target
            if isinstance(msg, RangeReadReq):
                if self.between_rounds is not None and node == first:
                    self.between_rounds()
                [scan] = self.replicas[node].on_range_read("a", msg)
                [send] = self.replicas[node].on_scan_done(complete(self.engines[node], scan), NOW_MS)
                payload = codec.encode(send.message)
                self.answer_sizes.append(len(payload))
                queue.extend(self.coord.on_response(node, codec.decode(payload), NOW_MS))
            else:
                assert isinstance(msg, MutationReq)
                self.engines[node].apply(list(msg.partitions))
                queue.extend(self.coord.on_repair_ack(node, MutationRsp(msg.req_id), NOW_MS))
        raise AssertionError("no reply")


def truth(engines, start=MIN_TOKEN, end=MAX_TOKEN, slices=None, limit=0, ppl=0):
    """(key, static live?, [ckeys]) in ring order: what the scan must return, from the merge
    of every replica's data."""
    merged: dict[bytes, Partition] = {}
    for e in engines.values():
        for _, p in e.scan(TID, MIN_TOKEN, MAX_TOKEN):
            merged[p.key] = reconcile.merge_partitions(merged[p.key], p) if p.key in merged else p
    keys = sorted((k for k in merged if range_contains(start, end, token_for_key(k))),
                  key=lambda k: (token_for_key(k) <= start, token_for_key(k), k))
    out, total = [], 0
    for key in keys:
        view = reconcile.live_view(reconcile.slice_partition(merged[key], ReadCommand(TID, key, slices)), NOW_S)
        ckeys = sorted(view.rows)[:ppl] if ppl else sorted(view.rows)
        n = len(ckeys) or (1 if view.static is not None else 0)
        if not n:
            continue
        if limit and total + n > limit:
            ckeys, n = ckeys[:limit - total], limit - total
        out.append((key, view.static is not None, ckeys))
        total += n
        if limit and total >= limit:
            break
    return out


def shape(result) -> list:
    assert isinstance(result, list), result
    return [(p.key, p.static is not None, sorted(p.rows)) for p in result]


def ck(i: int) -> bytes:
    return i.to_bytes(2, "big")


def live(i: int, ts: int = 10, value: bytes = b"x") -> Row:
    return Row((ck(i),), Cell(ts, b""), None, {("v", b""): Cell(ts, value)})


def engines_of(kind: str, tmp_path, nodes="abc") -> dict:
    return {n: MemoryEngine() if kind == "memory" else RocksEngine(str(tmp_path / n)) for n in nodes}


@pytest.fixture(params=["memory", "rocks"])
def kind(request):
    return request.param


@pytest.fixture
def small_answers(monkeypatch):
    def bound(rows, size=4 << 20):
        monkeypatch.setattr(replica, "RANGE_RSP_MAX_ROWS", rows)
        monkeypatch.setattr(replica, "RANGE_RSP_MAX_BYTES", size)
    return bound


# ---- regressions -------------------------------------------------------------------------


def test_a_static_row_counts_only_where_its_partition_ends_without_live_rows(kind, tmp_path, small_answers):
    """The first piece of the wide partition has only its static row live (its first rows
    are deleted): LIMIT must not end on that phantom static-only row, nor lose rows."""
    small_answers(5)
    engines = engines_of(kind, tmp_path)
    keys = sorted([b"wide", b"next", b"zz1", b"zz2"], key=lambda k: (token_for_key(k), k))
    static = Row((), None, None, {("s", b""): Cell(5, b"st")})
    rows = {ck(i): (Row((ck(i),), None, Deletion(15, 1), {}) if i < 6 else live(i)) for i in range(11)}
    data = [Partition(TID, keys[0], None, [], static, rows)]
    data += [Partition(TID, k, rows={ck(i): live(i) for i in range(3)}) for k in keys[1:]]
    for e in engines.values():
        e.apply(data)
    for limit in (1, 2, 3, 4, 5, 7, 0):
        for ppl in (0, 1, 3):
            got = shape(Cluster(engines).read(RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN, None, None, limit, ppl)))
            assert got == truth(engines, limit=limit, ppl=ppl), (limit, ppl)


def test_per_partition_limit_stops_reading_a_wide_partition(small_answers):
    small_answers(10)
    engines = {"a": MemoryEngine()}
    engines["a"].apply([Partition(TID, b"wide", rows={ck(i): live(i) for i in range(1000)})])
    c = Cluster(engines)
    result = c.read(RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN, None, None, 0, 1), CL.ONE)
    assert [sorted(p.rows) for p in result] == [[ck(0)]]
    assert c.coord.stats["rounds"] <= 3  # not one round per 10 rows of the partition


def test_no_replica_answer_is_bigger_than_an_internode_frame(kind, tmp_path):
    """39 rows of 100 kB and one accepted row of 15 MB: each answer stays under the frame
    (a piece stops before a row that would take it past its byte bound)."""
    engines = engines_of(kind, tmp_path)
    small = Partition(TID, b"k", rows={ck(i): live(i, value=b"s" * 100_000) for i in range(39)})
    big = Partition(TID, b"k", rows={ck(100): live(100, value=b"B" * 15_000_000)})
    assert partition_size_bound(big) <= MAX_MUTATION_BYTES
    for e in engines.values():
        e.apply([small, big])
    c = Cluster(engines)
    got = shape(c.read(RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), CL.QUORUM))
    assert got == [(b"k", False, [ck(i) for i in range(39)] + [ck(100)])]
    assert max(c.answer_sizes) <= MAX_FRAME_BYTES


def test_a_partition_sharing_the_token_of_one_resumed_inside_is_not_lost(kind, tmp_path, small_answers, monkeypatch):
    """K is cut on node a, where it is alone at its token; node b also holds J at that token
    (J before K by key length, after it by bytes). Murmur3 collisions cannot be made on
    purpose: token_for_key is patched."""
    def colliding(key, real=partitioner.token_for_key):
        return 12345 if key in (b"aa", b"b") else real(key)
    for module in (memory, rocks, range_read):
        monkeypatch.setattr(module, "token_for_key", colliding)
    small_answers(4)
    engines = engines_of(kind, tmp_path, "ab")
    k = Partition(TID, b"aa", rows={ck(i): live(i) for i in range(12)})
    j = Partition(TID, b"b", rows={ck(0): live(0)})
    for e in engines.values():
        e.apply([k])
    engines["b"].apply([j])
    got = shape(Cluster(engines).read(RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), CL.ALL))
    assert got == [(b"aa", False, [ck(i) for i in range(12)]), (b"b", False, [ck(0)])]


def test_a_wide_partition_sharing_its_token_is_never_cut(kind, tmp_path, small_answers, monkeypatch):
    """aa (wide) and b share a token; the engine reads b first (shorter key), positions put aa
    first: cutting aa would make the answer's last partition b while the cut is a row of aa.
    Neither the storage scan nor a range read cuts it, and every row comes back."""
    def colliding(key, real=partitioner.token_for_key):
        return 12345 if key in (b"aa", b"b") else real(key)
    for module in (memory, rocks, range_read):
        monkeypatch.setattr(module, "token_for_key", colliding)
    small_answers(1000, 1000)
    engines = engines_of(kind, tmp_path, "a")
    rows = {i: live(i, value=b"x" * 100) for i in range(10)}
    engines["a"].apply([Partition(TID, b"b", rows={ck(i): rows[i] for i in range(3)}),
                        Partition(TID, b"aa", rows={ck(i): rows[i] for i in range(10)})])
    done = complete(engines["a"], StorageScan(1, TID, MIN_TOKEN, None, MAX_TOKEN, 1000, 1000, True))
    assert done.cut_ckey is None
    got = shape(Cluster(engines).read(RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), CL.ONE))
    assert [(k, len(r)) for k, _, r in got] == [(b"aa", 10), (b"b", 3)]


def test_a_filtered_scan_pages_through_a_wide_partition_without_losing_rows(monkeypatch):
    """With ALLOW FILTERING a page may fill with fewer rows than the scan read: the pager
    finishes the partition the scan stopped inside before going on after it."""
    class Coordinated(MemoryBackend):
        async def read_range(self, cmd, cl):
            return Cluster({"a": self.engine}).read(cmd, CL.ONE)

    monkeypatch.setattr(replica, "RANGE_RSP_MAX_ROWS", 7)
    node = Node()
    node.backend.__class__ = Coordinated
    node("CREATE TABLE t (k int, c int, v int, s int static, PRIMARY KEY (k, c))")
    node("UPDATE t SET s = 9 WHERE k = 1")
    for c in range(300):
        node(f"INSERT INTO t (k, c, v) VALUES (1, {c}, {1 if c in (50, 250) else 0})")
    for c in range(6):
        node(f"DELETE FROM t WHERE k = 1 AND c = {c}")
    want = [(1, 50), (1, 250)]
    assert node.rows("SELECT k, c FROM t WHERE v = 1 ALLOW FILTERING") == want
    assert node.rows("SELECT k, c FROM t WHERE v = 1 ALLOW FILTERING", page_size=10) == want
    every = [(1, c, 9) for c in range(6, 300)]
    for page_size in (1, 3, 250, None):
        assert node.rows("SELECT k, c, s FROM t", page_size=page_size) == every
    assert node.rows("SELECT k, c, s FROM t LIMIT 2") == every[:2]


# ---- differential ------------------------------------------------------------------------


def _writes(rng: random.Random) -> list[Partition]:
    """Random fragments of a few partitions: rows, static rows, row deletions, range
    tombstones and partition deletions, at random timestamps."""
    out = []
    for n in range(rng.randint(1, 8)):
        key, width = b"k%d" % n, rng.choice([0, 1, 3, 12, 30])
        for i in range(width):
            out.append(Partition(TID, key, rows={ck(i): live(i, rng.randint(1, 100), b"x" * rng.choice([1, 50]))}))
        if rng.random() < 0.5:
            out.append(Partition(TID, key, static=Row((), None, None, {("s", b""): Cell(rng.randint(1, 100), b"st")})))
        for _ in range(rng.randint(1, 40) if width and rng.random() < 0.5 else 0):
            i = rng.randrange(width)
            out.append(Partition(TID, key, rows={ck(i): Row((ck(i),), None, Deletion(rng.randint(1, 120), 1), {})}))
        if width and rng.random() < 0.3:
            a = rng.randrange(width)
            b = rng.randrange(a, width)
            out.append(Partition(TID, key, None, [RangeTombstone(Bound(ck(a), True), Bound(ck(b), rng.random() < 0.5),
                                                                 Deletion(rng.randint(1, 120), 1))]))
        if rng.random() < 0.1:
            out.append(Partition(TID, key, Deletion(rng.randint(1, 120), 1)))
    return out


@pytest.mark.parametrize("seed", range(60))
def test_random_clusters_scan_to_the_merged_truth(kind, tmp_path, seed, small_answers):
    rng = random.Random(seed)
    small_answers(rng.choice([2, 3, 5, 8, 1000]), rng.choice([200, 600, 4 << 20]))
    engines = engines_of(kind, tmp_path)
    writes = _writes(rng)
    diverge = rng.random() < 0.6
    for w in writes:
        for n in ([x for x in "abc" if rng.random() < 0.7] or ["a"]) if diverge else "abc":
            engines[n].apply([w])
    tokens = sorted(token_for_key(p.key) for p in writes) or [0]
    start = rng.choice([MIN_TOKEN, rng.choice(tokens), rng.choice(tokens) - 1, rng.randint(-2**63, 2**63 - 1)])
    end = rng.choice([MAX_TOKEN, start, rng.choice(tokens)])
    slices = rng.choice([None, (Slice(Bound(ck(3), True), Bound(ck(20), False)),),
                         (Slice(Bound(b"", True), Bound(ck(5), True)), Slice(Bound(ck(9), False), Bound(b"", True)))])
    limit, ppl = rng.choice([0, 0, 1, 2, 5, 10]), rng.choice([0, 0, 1, 3])
    want = truth(engines, start, end, slices, limit, ppl)
    cl = CL.ALL if diverge else rng.choice([CL.ONE, CL.QUORUM])
    got = shape(Cluster(engines).read(RangeCommand(TID, start, None, end, slices, None, limit, ppl), cl))
    assert got == want
    if diverge:  # the scan at ALL repaired every replica of what it returned
        assert got == shape(Cluster(engines).read(RangeCommand(TID, start, None, end, slices, None, limit, ppl), CL.ONE))
    for e in engines.values():
        e.close()


@pytest.mark.parametrize("seed", range(20))
def test_writes_landing_between_rounds_never_duplicate_or_disorder(tmp_path, seed, small_answers):
    rng = random.Random(seed)
    small_answers(rng.choice([2, 3, 5]))
    engines = engines_of("rocks", tmp_path)
    writes = _writes(rng)
    for e in engines.values():
        e.apply(writes)

    def meanwhile():
        if writes and rng.random() < 0.5:
            key, i = rng.choice(writes).key, rng.randrange(40)
            change = rng.choice([Partition(TID, key, Deletion(500, 1)),
                                 Partition(TID, key, rows={ck(i): Row((ck(i),), Cell(600, b""))})])
            for e in engines.values():
                e.apply([change])

    result = Cluster(engines, meanwhile).read(RangeCommand(TID, MIN_TOKEN, None, MAX_TOKEN), CL.QUORUM)
    keys = [p.key for p in result]
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys, key=lambda k: (token_for_key(k), k))
    for e in engines.values():
        e.close()
