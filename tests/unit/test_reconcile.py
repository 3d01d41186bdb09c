"""agora.core.reconcile by example: each Cassandra merge rule, spelled out once."""

from __future__ import annotations

import pytest

from agora.core import reconcile as r
from agora.core.types import (
    Bound,
    Cell,
    Deletion,
    Partition,
    RangeTombstone,
    ReadCommand,
    Row,
    Slice,
)

T = b"\x01" * 16
K = b"key"


def part(**kw) -> Partition:
    return Partition(T, K, **kw)


def row(ckey: bytes = b"", marker=None, deletion=None, **cells) -> Row:
    return Row((ckey,) if ckey else (), marker, deletion,
               {(name, b""): c for name, c in cells.items()})


def rt(start: bytes, end: bytes, ts: int, start_incl=True, end_incl=True) -> RangeTombstone:
    return RangeTombstone(Bound(start, start_incl), Bound(end, end_incl), Deletion(ts, 100))


# ---- cells --------------------------------------------------------------------------------


def test_higher_timestamp_wins():
    assert r.merge_cells(Cell(2, b"a"), Cell(1, b"z")) == Cell(2, b"a")
    assert r.merge_cells(Cell(1, None, 0, 5), Cell(2, b"a")) == Cell(2, b"a")


def test_tombstone_beats_live_cell_at_equal_timestamp():
    assert r.merge_cells(Cell(3, b"zzz"), Cell(3, None, 0, 1)) == Cell(3, None, 0, 1)


def test_greater_value_then_ldt_then_ttl_break_ties():
    assert r.merge_cells(Cell(3, b"a"), Cell(3, b"b")).value == b"b"
    assert r.merge_cells(Cell(3, b"a", 10, 50), Cell(3, b"a", 10, 60)).ldt_s == 60
    assert r.merge_cells(Cell(3, b"a", 10, 50), Cell(3, b"a", 20, 50)).ttl_s == 20
    assert r.merge_cells(Cell(3, None, 0, 7), Cell(3, None, 0, 9)).ldt_s == 9


def test_deletion_merge():
    assert r.merge_deletions(None, None) is None
    assert r.merge_deletions(Deletion(1, 5), None) == Deletion(1, 5)
    assert r.merge_deletions(Deletion(2, 1), Deletion(1, 9)) == Deletion(2, 1)
    assert r.merge_deletions(Deletion(2, 1), Deletion(2, 9)) == Deletion(2, 9)


# ---- partitions ---------------------------------------------------------------------------


def test_cells_merge_per_column():
    a = part(rows={b"c": row(b"c", v=Cell(1, b"old"), w=Cell(5, b"w"))})
    b = part(rows={b"c": row(b"c", v=Cell(2, b"new"))})
    m = r.merge_partitions(a, b)
    assert m.rows[b"c"].cells == {("v", b""): Cell(2, b"new"), ("w", b""): Cell(5, b"w")}


def test_partition_deletion_shadows_older_data_everywhere():
    a = part(static=row(s=Cell(1, b"s")),
             rows={b"a": row(b"a", Cell(1, b""), v=Cell(1, b"x")),
                   b"b": row(b"b", v=Cell(3, b"y"))})
    m = r.merge_partitions(a, part(deletion=Deletion(2, 100)))
    assert m.static is None
    assert list(m.rows) == [b"b"]
    assert m.deletion == Deletion(2, 100)


def test_equal_timestamp_is_shadowed():
    m = r.merge_partitions(part(rows={b"a": row(b"a", v=Cell(2, b"x"))}),
                           part(rows={b"a": row(b"a", deletion=Deletion(2, 100))}))
    assert m.rows[b"a"] == row(b"a", deletion=Deletion(2, 100))


def test_row_deletion_keeps_newer_cells_and_marker():
    a = part(rows={b"a": row(b"a", Cell(5, b""), v=Cell(5, b"new"), w=Cell(1, b"old"))})
    m = r.merge_partitions(a, part(rows={b"a": row(b"a", deletion=Deletion(3, 100))}))
    assert m.rows[b"a"] == row(b"a", Cell(5, b""), Deletion(3, 100), v=Cell(5, b"new"))


def test_range_tombstone_shadows_only_rows_in_range_and_not_static():
    rows = {ck: row(ck, v=Cell(1, b"x")) for ck in (b"a", b"b", b"c", b"d")}
    a = part(static=row(s=Cell(1, b"s")), rows=rows)
    m = r.merge_partitions(a, part(range_tombstones=[rt(b"b", b"c", 1)]))
    assert list(m.rows) == [b"a", b"d"]
    assert m.static is not None


def test_range_tombstones_are_canonical():
    x, y = rt(b"a", b"b", 1), rt(b"a", b"b", 2)
    m = r.merge_partitions(part(range_tombstones=[y, rt(b"0", b"1", 1)]),
                           part(range_tombstones=[x, x]))
    assert m.range_tombstones == [rt(b"0", b"1", 1), y]
    # Ones older than the partition deletion go.
    m = r.merge_partitions(m, part(deletion=Deletion(1, 0)))
    assert m.range_tombstones == [y]


def test_row_deletion_shadowed_by_partition_deletion_is_dropped():
    m = r.merge_partitions(part(rows={b"a": row(b"a", deletion=Deletion(1, 100))}),
                           part(deletion=Deletion(1, 50)))
    assert m.rows == {}


def test_merge_many_and_mismatch():
    assert r.merge_many([part(rows={b"a": row(b"a", v=Cell(1, b"x"))})]).rows[b"a"].cells
    with pytest.raises(AssertionError):
        r.merge_partitions(part(), Partition(T, b"other"))


def test_is_empty():
    assert r.is_empty(None) and r.is_empty(part()) and r.is_empty(part(rows={b"a": row()}))
    assert not r.is_empty(part(deletion=Deletion(1, 1)))
    assert not r.is_empty(part(rows={b"a": row(b"a", deletion=Deletion(1, 1))}))


# ---- time ---------------------------------------------------------------------------------


def test_expire_turns_expired_cells_into_tombstones_at_write_time():
    p = part(rows={b"a": row(b"a", Cell(7, b"", 10, 110), v=Cell(7, b"x", 10, 110),
                             w=Cell(8, b"y", 10, 111), z=Cell(9, b"z"))})
    e = r.expire(p, 110)
    got = e.rows[b"a"]
    assert got.marker == Cell(7, None, 0, 100)
    assert got.cells[("v", b"")] == Cell(7, None, 0, 100)
    assert got.cells[("w", b"")] == Cell(8, b"y", 10, 111)
    assert got.cells[("z", b"")] == Cell(9, b"z")
    assert p.rows[b"a"].cells[("v", b"")] == Cell(7, b"x", 10, 110)  # input untouched


def test_live_view():
    p = part(
        deletion=Deletion(1, 100),
        range_tombstones=[rt(b"d", b"d", 5)],
        static=row(s=Cell(2, None, 0, 9)),
        rows={
            b"a": row(b"a", Cell(2, b"")),  # marker only: the row exists
            b"b": row(b"b", v=Cell(2, None, 0, 9)),  # only a dead cell: invisible
            b"c": row(b"c", v=Cell(2, b"x", 5, 50), w=Cell(2, b"y")),  # one expired
            b"d": row(b"d", Cell(9, b""), v=Cell(4, b"under rt")),
            b"e": row(b"e", Cell(2, b"", 5, 50)),  # expired marker, nothing else
        })
    v = r.live_view(p, 50)
    assert v.deletion is None and v.range_tombstones == [] and v.static is None
    assert list(v.rows) == [b"a", b"c", b"d"]
    assert v.rows[b"c"].cells == {("w", b""): Cell(2, b"y")}
    assert v.rows[b"d"].cells == {}
    assert r.live_view(part(static=row(s=Cell(2, b"s"))), 0).static == row(s=Cell(2, b"s"))


def test_purge_tombstones():
    p = part(deletion=Deletion(1, 10), range_tombstones=[rt(b"x", b"y", 2)],
             rows={b"a": row(b"a", v=Cell(3, None, 0, 10), w=Cell(3, b"w", 5, 10),
                             z=Cell(3, b"z")),
                   b"b": row(b"b", deletion=Deletion(3, 10))})
    q = r.purge_tombstones(p, 11)
    assert q.deletion is None and q.range_tombstones == [rt(b"x", b"y", 2)]  # its ldt is 100
    assert list(q.rows) == [b"a"] and q.rows[b"a"].cells == {("z", b""): Cell(3, b"z")}
    assert r.purge_tombstones(p, 10) == r.canonical(p)


# ---- slices and repair --------------------------------------------------------------------


def test_slice_bounds_and_columns():
    rows = {ck: row(ck, Cell(1, b""), v=Cell(1, b"v"), w=Cell(1, b"w"))
            for ck in (b"a", b"ab", b"b", b"ba", b"c")}
    p = part(static=row(s=Cell(1, b"s")), rows=rows,
             range_tombstones=[rt(b"0", b"0", 0), rt(b"bz", b"bz", 0)])

    def ckeys(start, end, columns=None):
        cmd = ReadCommand(T, K, (Slice(start, end),), columns)
        return list(r.slice_partition(p, cmd).rows)

    assert ckeys(Bound(b"a", False), Bound(b"b", True)) == [b"b", b"ba"]
    assert ckeys(Bound(b"a", True), Bound(b"b", False)) == [b"a", b"ab"]
    assert ckeys(Bound(b""), Bound(b"")) == list(rows)
    s = r.slice_partition(p, ReadCommand(T, K, (Slice(Bound(b"b"), Bound(b"b")),), ("v",)))
    assert s.rows[b"b"].cells == {("v", b""): Cell(1, b"v")}
    assert s.rows[b"b"].marker == Cell(1, b"")
    assert s.static is None  # no selected static column
    assert s.range_tombstones == [rt(b"bz", b"bz", 0)]


def test_repair_for():
    replica = part(rows={b"a": row(b"a", v=Cell(1, b"old"), w=Cell(1, b"same"))})
    merged = r.merge_partitions(replica, part(rows={b"a": row(b"a", v=Cell(2, b"new"))},
                                               deletion=Deletion(0, 1)))
    repair = r.repair_for(merged, replica)
    assert repair == part(deletion=Deletion(0, 1),
                          rows={b"a": row(b"a", v=Cell(2, b"new"))})
    assert r.repair_for(merged, merged) is None
    assert r.repair_for(part(), None) is None
    assert r.repair_for(merged, None) == merged


def test_digest_ignores_dict_order_but_not_content():
    a = part(rows={b"a": row(b"a", v=Cell(1, b"x")), b"b": row(b"b", v=Cell(1, b"y"))})
    b = part(rows={b"b": row(b"b", v=Cell(1, b"y")), b"a": row(b"a", v=Cell(1, b"x"))})
    assert r.digest(a) == r.digest(b)
    assert r.digest(a) != r.digest(part(rows={b"a": row(b"a", v=Cell(1, b"x"))}))
    assert r.digest(None) == r.digest(part())


def test_digest_format_is_pinned():
    """Replicas of different versions compare digests: changing the encoding is a protocol
    change. Update these constants only on purpose."""
    p = part(deletion=Deletion(1, 2),
             range_tombstones=[RangeTombstone(Bound(b"a"), Bound(b"b", False), Deletion(3, 4))],
             static=row(s=Cell(5, b"s")),
             rows={b"c": Row((b"c",), Cell(6, b""), None,
                             {("v", b""): Cell(7, b"v", 10, 20),
                              ("m", b"\x01"): Cell(8, None, 0, 9)})})
    assert r.digest(p).hex() == "95c66306ee40c9bdc3ec879c52e599f0"
    assert r.digest(None).hex() == "3a1ddaa284a54ad4b00847f56bba1308"


# ---- TRUNCATE -----------------------------------------------------------------------------


def test_drop_truncated_keeps_only_what_was_written_after():
    p = part(deletion=Deletion(3, 100), range_tombstones=[rt(b"a", b"b", 4), rt(b"c", b"d", 7)],
             static=row(s=Cell(4, b"s"), t=Cell(8, b"t")),
             rows={b"a": row(b"a", Cell(5, b""), v=Cell(5, b"v")),  # all at or before 5
                   b"b": row(b"b", Cell(2, b""), deletion=Deletion(6, 100), v=Cell(9, b"new")),
                   b"c": row(b"c", v=Cell(6, None, 0, 100))})
    q = r.drop_truncated(p, 5)
    assert q.deletion is None and q.range_tombstones == [rt(b"c", b"d", 7)]
    assert q.static == row(t=Cell(8, b"t"))
    assert q.rows == {b"b": row(b"b", None, Deletion(6, 100), v=Cell(9, b"new")),
                      b"c": row(b"c", v=Cell(6, None, 0, 100))}
    assert r.drop_truncated(p, 9) is None  # nothing after 9
    assert r.drop_truncated(p, 1) == p  # nothing written at or before 1
    assert r.drop_truncated(part(rows={b"a": row(b"a", v=Cell(3, b"v"))}), 3) is None


def _random_partition(rng) -> Partition:
    def cell(live_only=False):
        ts = rng.randint(1, 12)
        if not live_only and rng.random() < 0.25:
            return Cell(ts, None, 0, 100)
        return Cell(ts, bytes([rng.randint(97, 99)]))

    def random_row(ckey: bytes) -> Row:
        cells = {}
        for col in "vw":
            if rng.random() < 0.6:
                cells[(col, b"")] = cell()
        if rng.random() < 0.4:  # a collection: elements and maybe a collection-wide tombstone
            for path in (b"x", b"y"):
                if rng.random() < 0.7:
                    cells[("m", path)] = cell(live_only=True)
            if rng.random() < 0.5:
                cells[("m", b"")] = Cell(rng.randint(1, 12), None, 0, 100)
        marker = Cell(rng.randint(1, 12), b"") if rng.random() < 0.5 else None
        deletion = Deletion(rng.randint(1, 12), 100) if rng.random() < 0.2 else None
        return Row((ckey,) if ckey else (), marker, deletion, cells)

    rows = {ck: random_row(ck) for ck in (b"a", b"b", b"c", b"d") if rng.random() < 0.7}
    rts = [rt(*sorted(rng.sample([b"a", b"b", b"c", b"d"], 2)), rng.randint(1, 12))
           for _ in range(rng.randint(0, 2))]
    return part(deletion=Deletion(rng.randint(1, 12), 100) if rng.random() < 0.3 else None,
                range_tombstones=rts, static=random_row(b"") if rng.random() < 0.3 else None,
                rows=rows)


def test_drop_truncated_reads_as_a_partition_deletion_and_commutes_with_merging():
    """Over random partitions: what a client sees of the truncated partition is what a
    partition deletion at the truncation time would leave; the result is canonical when the
    input is; and truncating fragments then merging them equals merging then truncating (so
    replicas that filter their answers agree with one that compacted already)."""
    import random
    rng = random.Random(7)
    empty = part()
    for _ in range(3_000):
        a, b = _random_partition(rng), _random_partition(rng)
        at = rng.randint(0, 12)
        deleted = r.merge_partitions(a, part(deletion=Deletion(at, 100)))
        truncated = r.drop_truncated(a, at) or empty
        assert r.live_view(truncated, 50) == r.live_view(deleted, 50)
        ca = r.canonical(a)
        assert (r.drop_truncated(ca, at) or empty) == r.canonical(r.drop_truncated(ca, at) or empty)
        merged_first = r.drop_truncated(r.merge_partitions(a, b), at) or empty
        truncated_first = r.merge_partitions(r.drop_truncated(a, at) or empty,
                                             r.drop_truncated(b, at) or empty)
        assert r.canonical(merged_first) == truncated_first
        for kept in [truncated.static, *truncated.rows.values()]:
            assert kept is None or all(c.ts > at for c in kept.cells.values())


def test_digest_of_rows_only_partitions_is_the_piecewise_digest():
    """Partitions without header (the usual ones) are hashed in one call: the same bytes
    as digest_begin + digest_rows feed, so the same digest as pieces give and as before."""
    one = part(rows={b"c": Row((b"c",), Cell(6, b""), None, {("v", b""): Cell(7, b"v", 10, 20)})})
    three = part(rows={k: Row((k,), None, Deletion(2, 3) if k == b"b" else None,
                              {("v", b""): Cell(4, k), ("m", b"\x01"): Cell(5, None, 0, 9)})
                       for k in (b"c", b"a", b"b")})
    for p in (one, three):
        h = r.digest_begin(p)
        for ckey in sorted(p.rows):  # one row a piece
            r.digest_rows(h, part(rows={ckey: p.rows[ckey]}))
        assert r.digest(p) == h.digest()
    assert r.digest(one).hex() == "8f313251ab61ed3991b2cec55a21e814"
    assert r.digest(three).hex() == "2560e89d91730545076c52d9384f0198"


def test_a_partition_with_any_header_part_is_digested_with_it():
    """Only rows-only partitions take the one-call digest: one that differs from another by
    its static row, its deletion or a range tombstone alone has another digest, the
    piecewise one."""
    rows = {b"c": Row((b"c",), Cell(6, b""), None, {("v", b""): Cell(7, b"v")})}
    plain = part(rows=dict(rows))
    for headed in (part(rows=dict(rows), static=row(s=Cell(5, b"s"))),
                   part(rows=dict(rows), deletion=Deletion(1, 2)),
                   part(rows=dict(rows), range_tombstones=[RangeTombstone(Bound(b"a"), Bound(b"b"), Deletion(3, 4))])):
        h = r.digest_begin(headed)
        r.digest_rows(h, headed)
        assert r.digest(headed) == h.digest() != r.digest(plain)
