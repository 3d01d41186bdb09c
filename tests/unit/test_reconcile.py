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
