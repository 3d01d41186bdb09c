"""Token-range reads on the deterministic simulator: full scans at several levels and
replication factors, paging by position, LIMIT and PER PARTITION LIMIT, blocking read repair
of replicas that missed writes, deletions and TTL, short reads where one replica's
tombstones hide another's rows, Unavailable and ReadTimeout, and ranges across the ring's
wrap.

The table is t (k int, c int, v text, PRIMARY KEY (k, c)) with PARTITIONS partitions of
ROWS rows, loaded at ALL through batched writes."""

from __future__ import annotations

import pytest

from agora.core import reconcile, rowmaps
from agora.core.errors import ReadTimeout, Unavailable
from agora.core.ring.partitioner import token_for_key
from agora.core.schema import types as T
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Bound, RangeCommand, ReadCommand, Slice
from agora.sim import SimCluster

THREE = (("dc1", "rack1"), ("dc1", "rack2"), ("dc1", "rack3"))
PARTITIONS = 200
ROWS = 4


def simple(rf: int) -> dict:
    return {"class": "SimpleStrategy", "replication_factor": rf}


def loaded_cluster(seed: int, rf: int = 3) -> SimCluster:
    c = SimCluster(seed, THREE)
    c.wait_until_up(30_000)
    c.wait(c.create_keyspace("ks", simple(rf), via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    columns = [("k", "int"), ("c", "int"), ("v", "text")]
    c.wait(c.create_table("ks", "t", columns, ["k"], [("c", "asc")], via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    tdef = table(c)
    now_s = c.host(0).clock_ms() // 1000
    for first in range(0, PARTITIONS, 50):
        parts = [rowmaps.insert(tdef, {"k": k, "c": i, "v": f"v{k}.{i}"}, 1_000 + k, 0, now_s)
                 for k in range(first, first + 50) for i in range(ROWS)]
        c.wait(c.write(first // 50 % 3, parts, "ALL"))
    return c


def table(c: SimCluster):
    return c.node(0).schema.schema.table("ks", "t")


def key_of(k: int) -> bytes:
    return k.to_bytes(4, "big", signed=True)  # a CQL int, which is also the partition key


def ring_order(keys) -> list[int]:
    """The ints `keys` in ring order: (token, key bytes)."""
    return sorted(keys, key=lambda k: (token_for_key(key_of(k)), key_of(k)))


def scan(c: SimCluster, via, cl="QUORUM", start=(MIN_TOKEN, None), end=MAX_TOKEN, limit=0, ppl=0,
         slices=None):
    cmd = RangeCommand(table(c).id.bytes, start[0], start[1], end, slices, None, limit, ppl)
    return c.wait(c.read_range(via, cmd, cl))


def rows_of(c: SimCluster, parts) -> list[tuple[int, int]]:
    tdef = table(c)
    return [(r["k"], r["c"]) for p in parts for r in rowmaps.rows_of(tdef, p)]


def keys_of(c: SimCluster, parts) -> list[int]:
    return [rowmaps.rows_of(table(c), p)[0]["k"] for p in parts]


def all_rows() -> list[tuple[int, int]]:
    return [(k, i) for k in ring_order(range(PARTITIONS)) for i in range(ROWS)]


def position(p) -> tuple[int, bytes]:
    return token_for_key(p.key), p.key


def error_of(c: SimCluster, fut, max_ms=20_000):
    assert c.run_until(lambda: fut.done, max_ms), f"{fut!r} still pending"
    assert fut.error is not None, f"{fut!r} succeeded, expected an error"
    return fut.error


# ---- whole-table scans ---------------------------------------------------------------------


@pytest.mark.parametrize("rf", [3, 2])
def test_full_scan_returns_every_partition_once_in_ring_order(rf):
    c = loaded_cluster(100 + rf, rf)
    for via in range(3):
        for cl in ("ONE", "QUORUM", "ALL"):
            parts = scan(c, via, cl)
            assert keys_of(c, parts) == ring_order(range(PARTITIONS)), (via, cl)
            assert [position(p) for p in parts] == sorted(position(p) for p in parts)
            assert rows_of(c, parts) == all_rows()
            # (t, t] is the whole ring too, starting after t
            wrapped = c.wait(c.read_range(via, RangeCommand(table(c).id.bytes, 5, None, 5), cl))
            above = [p for p in parts if position(p)[0] > 5]
            assert wrapped == above + parts[:len(parts) - len(above)]
    assert c.node(0).range_reads.stats["read_repairs"] == 0


def test_the_whole_ring_from_any_token_wraps_and_keeps_ring_order():
    c = loaded_cluster(103)
    start = token_for_key(key_of(ring_order(range(PARTITIONS))[77]))
    parts = scan(c, 1, "QUORUM", start=(start, None), end=start)
    order = ring_order(range(PARTITIONS))
    assert keys_of(c, parts) == order[78:] + order[:78]


@pytest.mark.parametrize("rf", [3, 2])
def test_paging_by_last_position_returns_the_same_rows(rf):
    c = loaded_cluster(110 + rf, rf)
    got: list = []
    start = (MIN_TOKEN, None)
    pages = 0
    while True:
        page = scan(c, pages % 3, "QUORUM", start=start, limit=7 * ROWS)
        pages += 1
        got.extend(page)
        if len(rows_of(c, page)) < 7 * ROWS:
            break
        start = position(page[-1])
    assert pages == PARTITIONS // 7 + 1
    assert rows_of(c, got) == all_rows()


def test_paging_with_a_limit_that_cuts_partitions_continues_inside_the_partition():
    """What a CQL pager does: a page that ends inside a partition goes on with a
    single-partition read after the last clustering key, then from the partition's position."""
    c = loaded_cluster(114)
    tdef = table(c)
    got: list[tuple[int, int]] = []
    start = (MIN_TOKEN, None)
    while True:
        page = scan(c, 0, "QUORUM", start=start, limit=30)
        got.extend(rows_of(c, page))
        if len(rows_of(c, page)) < 30:
            break
        last = page[-1]
        after = Slice(Bound(max(last.rows), False), Bound(b"", True))
        rest = c.wait(c.read(0, ReadCommand(tdef.id.bytes, last.key, (after,)), "QUORUM"))
        got.extend(rows_of(c, [rest] if rest is not None else []))
        start = position(last)
    assert got == all_rows()


@pytest.mark.parametrize("limit", [1, 3, 5, 13, 799, 800, 801])
def test_limit_rows_is_respected_exactly(limit):
    c = loaded_cluster(120)
    parts = scan(c, 2, "QUORUM", limit=limit)
    assert rows_of(c, parts) == all_rows()[:limit]


def test_per_partition_limit_alone_and_with_a_limit():
    c = loaded_cluster(121, 2)
    order = ring_order(range(PARTITIONS))
    assert rows_of(c, scan(c, 0, "QUORUM", ppl=1)) == [(k, 0) for k in order]
    assert rows_of(c, scan(c, 1, "ONE", ppl=2, limit=9)) == [(k, i) for k in order[:5] for i in range(2)][:9]
    from_c2 = Slice(Bound(T.encode_ckey(table(c).ckey_types(), [key_of(2)]), True), Bound(b"", True))
    sliced = scan(c, 2, "ALL", ppl=1, slices=(from_c2,))
    assert rows_of(c, sliced) == [(k, 2) for k in order]


def test_a_start_key_resumes_inside_a_sub_range_and_end_token_is_inclusive():
    c = loaded_cluster(122, 2)
    order = ring_order(range(PARTITIONS))
    tokens = [token_for_key(key_of(k)) for k in order]
    parts = scan(c, 0, "QUORUM", start=(tokens[10], key_of(order[10])), end=tokens[60])
    assert keys_of(c, parts) == order[11:61]
    parts = scan(c, 0, "QUORUM", start=(tokens[10], None), end=tokens[10])  # wraps: all but nothing
    assert keys_of(c, parts) == order[11:] + order[:11]


# ---- the ring's wrap -----------------------------------------------------------------------


@pytest.mark.parametrize("rf", [3, 2])
def test_a_range_across_the_wrap_reads_the_top_then_the_bottom_of_the_ring(rf):
    c = loaded_cluster(130 + rf, rf)
    start, end = MAX_TOKEN - 2**61, MIN_TOKEN + 2**61
    parts = scan(c, 1, "QUORUM", start=(start, None), end=end)
    order = ring_order(range(PARTITIONS))
    top = [k for k in order if token_for_key(key_of(k)) > start]
    bottom = [k for k in order if token_for_key(key_of(k)) <= end]
    assert top and bottom
    assert keys_of(c, parts) == top + bottom
    # and paged across the wrap, 3 partitions at a time
    got, at = [], (start, None)
    while True:
        page = scan(c, 2, "ONE", start=at, end=end, limit=3 * ROWS)
        got += keys_of(c, page)
        if len(page) < 3:
            break
        at = position(page[-1])
    assert got == top + bottom


# ---- repair, deletion, expiry, short reads --------------------------------------------------


def local_keys(c: SimCluster, via) -> list[tuple[int, int, str]]:
    """(k, c, v) of every live row on `via`'s own disk (no coordinator, no repair)."""
    tdef = table(c)
    now_s = c.host(via).clock_ms() // 1000
    found = []
    for _, p in c.engine(via).scan(tdef.id.bytes, MIN_TOKEN, MAX_TOKEN):
        rows = rowmaps.rows_of(tdef, reconcile.live_view(p, now_s))
        found.extend((r["k"], r["c"], r["v"]) for r in rows)
    return found


@pytest.mark.parametrize("via, cl", [(0, "ALL"), (2, "QUORUM")])
def test_a_scan_repairs_a_replica_that_missed_writes_before_answering(via, cl):
    c = loaded_cluster(140)
    tdef = table(c)
    c.isolate(2)
    now_s = c.host(0).clock_ms() // 1000
    fresh = [rowmaps.insert(tdef, {"k": k, "c": 0, "v": "new"}, 5_000 + k, 0, now_s)
             for k in range(0, 300, 7)]
    c.wait(c.write(0, fresh, "QUORUM"))  # node 2 misses these
    c.heal()
    c.run_for(200)
    assert c.sees(0, 2) and c.sees(2, 0)
    assert "new" not in {v for _, _, v in local_keys(c, 2)}
    parts = scan(c, via, cl)
    expected = {(k, i): f"v{k}.{i}" for k in range(PARTITIONS) for i in range(ROWS)}
    expected.update({(k, 0): "new" for k in range(0, 300, 7)})
    rows = [(r["k"], r["c"], r["v"]) for p in parts for r in rowmaps.rows_of(tdef, p)]
    assert sorted(rows) == sorted((k, i, v) for (k, i), v in expected.items())
    assert c.node(via).range_reads.stats["read_repairs"] >= 1
    assert sorted(local_keys(c, 2)) == sorted((k, i, v) for (k, i), v in expected.items())


def test_deleted_partitions_deleted_rows_and_expired_rows_do_not_appear():
    c = loaded_cluster(150, 2)
    for k in range(0, PARTITIONS, 10):
        c.wait(c.delete(k % 3, "ks", "t", {"k": k}, "QUORUM"))
    for k in range(1, PARTITIONS, 10):
        c.wait(c.delete(k % 3, "ks", "t", {"k": k, "c": 1}, "QUORUM"))
    for k in range(2, PARTITIONS, 10):
        c.wait(c.insert(0, "ks", "t", {"k": k, "c": 9, "v": "short-lived"}, "QUORUM", ttl=3))
    with_ttl = scan(c, 1, "QUORUM")
    assert sum(r[1] == 9 for r in rows_of(c, with_ttl)) == PARTITIONS // 10
    c.run_for(4_000)
    expected = [(k, i) for k, i in all_rows() if k % 10 != 0 and not (k % 10 == 1 and i == 1)]
    for cl in ("ONE", "QUORUM", "ALL"):
        assert rows_of(c, scan(c, 2, cl)) == expected
        assert rows_of(c, scan(c, 0, cl, limit=50)) == expected[:50]


def test_tombstones_on_one_replica_hide_rows_another_returned_under_a_limit():
    """Short reads: node 2 missed the deletion of the first 60 partitions. A QUORUM scan
    through node 2 with a small limit gets node 2's live copies of deleted partitions and
    the other replica's tombstones; it must keep reading until it has `limit` truly live
    rows, and repairs node 2 on the way."""
    c = loaded_cluster(160)
    order = ring_order(range(PARTITIONS))
    c.isolate(2)
    futures = [c.delete(k % 2, "ks", "t", {"k": k}, "QUORUM") for k in order[:60]]
    for f in futures:
        c.wait(f)
    c.heal()
    c.run_for(200)
    assert c.sees(2, 0) and c.sees(2, 1)
    assert {k for k, _, _ in local_keys(c, 2)} >= set(order[:60])
    stats = c.node(2).range_reads.stats
    before = stats["short_rounds"]
    parts = scan(c, 2, "QUORUM", limit=10)
    assert rows_of(c, parts) == [(k, i) for k in order[60:63] for i in range(ROWS)][:10]
    assert stats["short_rounds"] > before  # the first round's frontier fell short of the limit
    assert rows_of(c, scan(c, 2, "QUORUM")) == [(k, i) for k in order[60:] for i in range(ROWS)]
    assert not {k for k, _, _ in local_keys(c, 2)} & set(order[:60])


# ---- failures ------------------------------------------------------------------------------


def test_unavailable_when_a_sub_range_lacks_live_replicas():
    c = loaded_cluster(170, 2)
    c.crash(2)
    assert c.run_until(lambda: not c.sees(0, 2) and not c.sees(1, 2), 20_000)
    started = c.now_ms
    err = error_of(c, c.read_range(0, RangeCommand(table(c).id.bytes, MIN_TOKEN, None, MAX_TOKEN), "QUORUM"))
    assert isinstance(err, Unavailable) and (err.required, err.alive) == (2, 1)
    assert c.now_ms == started  # decided before anything was sent
    assert rows_of(c, scan(c, 1, "ONE")) == all_rows()  # RF=2: every range has a survivor
    c.crash(1)
    assert c.run_until(lambda: not c.sees(0, 1), 20_000)
    err = error_of(c, c.read_range(0, RangeCommand(table(c).id.bytes, MIN_TOKEN, None, MAX_TOKEN), "ONE"))
    assert isinstance(err, Unavailable) and (err.required, err.alive) == (1, 0)


def test_read_timeout_when_a_replica_is_alive_but_unreachable():
    c = loaded_cluster(171)
    c.network.partition([c.nodes[0]], [c.nodes[2]])
    fut = c.read_range(0, RangeCommand(table(c).id.bytes, MIN_TOKEN, None, MAX_TOKEN), "ALL")
    err = error_of(c, fut)
    assert isinstance(err, ReadTimeout) and (err.received, err.required) == (2, 3)
    assert fut.latency_ms == c.node(0).cfg.read_request_timeout
    assert c.sees(0, 2)
    assert rows_of(c, scan(c, 0, "QUORUM")) == all_rows()


def test_replicas_answer_in_bounded_pieces_and_the_scan_goes_on_after_each(monkeypatch):
    from agora.core.replica import replica
    c = loaded_cluster(180, 2)
    monkeypatch.setattr(replica, "RANGE_RSP_MAX_ROWS", 10)  # 2-3 partitions per answer
    stats = c.node(1).range_reads.stats
    for cl in ("ONE", "ALL"):
        rounds = stats["rounds"]
        assert rows_of(c, scan(c, 1, cl)) == all_rows()
        assert stats["rounds"] - rounds >= PARTITIONS // 3  # 3 partitions (12 rows) a round
    assert rows_of(c, scan(c, 1, "QUORUM", limit=123)) == all_rows()[:123]


def test_a_partition_bigger_than_an_answer_is_read_in_pieces_and_repaired_across_the_cuts(monkeypatch):
    """Replicas cut a wide partition after a row (RANGE_RSP_MAX_ROWS, here 7) and the scan
    resumes inside it: every row once, in order, the static row once per partition; a
    replica that missed rows in the middle of the partition is repaired piece by piece;
    LIMIT and PER PARTITION LIMIT count across the cuts."""
    from agora.core.replica import replica
    monkeypatch.setattr(replica, "RANGE_RSP_MAX_ROWS", 7)
    c = SimCluster(190, THREE)
    c.wait_until_up(30_000)
    c.wait(c.create_keyspace("ks", simple(3), via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    c.wait(c.create_table("ks", "w", [("k", "int"), ("c", "int"), ("s", "text"), ("v", "text")], ["k"],
                          [("c", "asc")], static=["s"], via=0))
    assert c.run_until(c.schema_agreed, 10_000)
    tdef = c.node(0).schema.schema.table("ks", "w")
    width = {k: (60 if k % 4 == 0 else 2) for k in range(12)}
    now_s = c.host(0).clock_ms() // 1000
    parts = [rowmaps.insert(tdef, {"k": k, "c": 10 * i, "s": f"s{k}", "v": f"v{k}.{i}"}, 1_000, 0, now_s)
             for k, n in width.items() for i in range(n)]
    c.wait(c.write(0, parts, "ALL"))
    c.isolate(2)  # node 2 misses rows in the middle of partition 4 (so it cuts elsewhere)
    late = [rowmaps.insert(tdef, {"k": 4, "c": 10 * i + 5, "v": "late"}, 2_000, 0, now_s)
            for i in range(20, 40, 3)]
    c.wait(c.write(0, late, "QUORUM"))
    gone = [(4, 10 * i) for i in range(22, 60, 2)]  # and rows deleted further on
    for k, ck in gone:
        c.wait(c.delete(0, "ks", "w", {"k": k, "c": ck}, "QUORUM", timestamp=3_000))
    c.heal()
    c.run_for(200)
    value = {(k, 10 * i): f"v{k}.{i}" for k, n in width.items() for i in range(n)}
    value.update({(4, 10 * i + 5): "late" for i in range(20, 40, 3)})
    for row in gone:
        del value[row]
    expected = [(k, i, f"s{k}", value[k, i]) for k in ring_order(width) for i in sorted(i for kk, i in value if kk == k)]
    stats = c.node(1).range_reads.stats

    def rows(parts):
        return [(r["k"], r["c"], r["s"], r["v"]) for p in parts for r in rowmaps.rows_of(tdef, p)]

    def full(cl, limit=0, ppl=0):
        cmd = RangeCommand(tdef.id.bytes, MIN_TOKEN, None, MAX_TOKEN, None, None, limit, ppl)
        return c.wait(c.read_range(1, cmd, cl))

    before = stats["short_rounds"]
    got = full("ALL")
    assert rows(got) == expected
    assert len(got) == len(width) and [p.key for p in got] == [key_of(k) for k in ring_order(width)]
    assert stats["short_rounds"] - before >= 3 * 60 // 7  # the wide partitions came in pieces
    assert stats["read_repairs"] >= 1
    node2 = c.engine(2).read(ReadCommand(tdef.id.bytes, key_of(4)))
    assert [r["c"] for r in rowmaps.rows_of(tdef, reconcile.live_view(node2, now_s))
            if r["v"] == "late"] == [10 * i + 5 for i in range(20, 40, 3)]
    assert rows(full("QUORUM", limit=75)) == expected[:75]
    by_partition = [r for k in ring_order(width) for r in [x for x in expected if x[0] == k][:45]]
    assert rows(full("QUORUM", ppl=45)) == by_partition
    assert rows(full("ONE", limit=50, ppl=45)) == by_partition[:50]
