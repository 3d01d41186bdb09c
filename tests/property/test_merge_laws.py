"""Merge laws of agora.core.reconcile: the merge is a join (commutative, associative,
idempotent) over cells, deletions and whole partitions, so replicas converge whatever order
writes arrive in; plus the properties read repair, digests, slicing, expiry and purging
rely on.

Generators use tiny alphabets (few columns, ckeys, timestamps and values) so that equal
timestamps, overlapping range tombstones and shadowing happen often.
"""

from __future__ import annotations

import copy
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

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

TABLE = b"\x07" * 16
KEY = b"pk"
ALPHABET = [b"\x00", b"\x01", b"\xff"]
CKEYS = [a + b for a in ALPHABET for b in ALPHABET]  # full clustering keys: 2 bytes
PREFIXES = [b""] + ALPHABET + CKEYS
PATHS = [("a", b""), ("b", b""), ("m", b""), ("m", b"\x01"), ("m", b"\x02")]  # ("m", b"") tombstones are collection deletions

timestamps = st.integers(0, 4)
ldts = st.integers(0, 4)
values = st.sampled_from([b"", b"x", b"y"])


def cells(value_strategy=values):
    live = st.builds(Cell, timestamps, value_strategy)
    dead = st.builds(Cell, timestamps, st.none(), st.just(0), ldts)
    expiring = st.builds(Cell, timestamps, value_strategy, st.integers(1, 2), ldts)
    return st.one_of(live, dead, expiring)


markers = cells(st.just(b""))
deletions = st.builds(Deletion, timestamps, ldts)
bounds = st.builds(Bound, st.sampled_from(PREFIXES), st.booleans())
range_tombstones = st.builds(RangeTombstone, bounds, bounds, deletions)


def clustering_of(ckey: bytes) -> tuple[bytes, ...]:
    return (ckey[:1], ckey[1:])


@st.composite
def rows(draw, clustering=()):
    cell_map = draw(st.dictionaries(st.sampled_from(PATHS), cells(), max_size=3))
    # the data model's invariant: path b"" of a collection column ("m") only ever holds a
    # tombstone (the collection-wide deletion); a live cell there cannot be written
    cell_map = {p: c for p, c in cell_map.items() if p != ("m", b"") or c.value is None}
    return Row(clustering, draw(st.none() | markers), draw(st.none() | deletions), cell_map)


@st.composite
def partitions(draw):
    ckeys = draw(st.lists(st.sampled_from(CKEYS), max_size=4, unique=True))
    return Partition(
        TABLE, KEY,
        deletion=draw(st.none() | deletions),
        range_tombstones=draw(st.lists(range_tombstones, max_size=2)),
        static=draw(st.none() | rows()),
        rows={ck: draw(rows(clustering_of(ck))) for ck in ckeys},
    )


slices = st.builds(Slice, bounds, bounds)
read_commands = st.builds(
    ReadCommand, st.just(TABLE), st.just(KEY),
    st.none() | st.lists(slices, max_size=2).map(tuple),
    st.none() | st.lists(st.sampled_from(["a", "b", "m"]), max_size=2, unique=True).map(tuple),
)

EMPTY = Partition(TABLE, KEY)

# ---- cells and deletions ------------------------------------------------------------------


@given(cells(), cells())
def test_cell_merge_commutative(a, b):
    assert r.merge_cells(a, b) == r.merge_cells(b, a)


@given(cells(), cells(), cells())
def test_cell_merge_associative(a, b, c):
    assert r.merge_cells(r.merge_cells(a, b), c) == r.merge_cells(a, r.merge_cells(b, c))


@given(cells())
def test_cell_merge_idempotent(a):
    assert r.merge_cells(a, a) == a


@given(cells(), cells())
def test_cell_merge_picks_an_input_and_respects_timestamps(a, b):
    m = r.merge_cells(a, b)
    assert m in (a, b)
    assert m.ts == max(a.ts, b.ts)
    if a.ts == b.ts and (a.value is None or b.value is None):
        assert m.value is None


@given(st.none() | deletions, st.none() | deletions, st.none() | deletions)
def test_deletion_merge_laws(a, b, c):
    m = r.merge_deletions
    assert m(a, b) == m(b, a)
    assert m(m(a, b), c) == m(a, m(b, c))
    assert m(a, a) == a


# ---- partitions ---------------------------------------------------------------------------


@given(partitions(), partitions())
def test_partition_merge_commutative(a, b):
    assert r.merge_partitions(a, b) == r.merge_partitions(b, a)


@given(partitions(), partitions(), partitions())
def test_partition_merge_associative(a, b, c):
    left = r.merge_partitions(r.merge_partitions(a, b), c)
    right = r.merge_partitions(a, r.merge_partitions(b, c))
    assert left == right


@given(partitions())
def test_partition_merge_idempotent(a):
    m = r.merge_partitions(a, a)
    assert m == r.canonical(a)
    assert r.merge_partitions(m, m) == m
    assert r.merge_partitions(m, EMPTY) == m


@given(partitions(), partitions())
def test_merge_never_mutates_inputs_nor_shares_rows(a, b):
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    m = r.merge_partitions(a, b)
    assert (a, b) == (a0, b0)
    inputs = {id(row) for p in (a, b) for row in [p.static, *p.rows.values()] if row}
    assert not any(id(row) in inputs for row in [m.static, *m.rows.values()] if row)


@given(partitions(), partitions())
def test_merge_into_a_canonical_store_equals_merge(a, b):
    stored = r.canonical(a)
    before = copy.deepcopy(stored)
    assert r.merge_into(stored, b) == r.merge_partitions(a, b)
    assert stored == before


@settings(max_examples=50)
@given(st.lists(partitions(), min_size=1, max_size=4))
def test_any_order_of_writes_converges(writes):
    expected = r.merge_many(writes)
    for order in itertools.permutations(writes):
        assert r.merge_many(list(order)) == expected
    # And in any grouping: fold from the right.
    folded = r.canonical(writes[-1])
    for w in reversed(writes[:-1]):
        folded = r.merge_partitions(w, folded)
    assert folded == expected


@given(partitions())
def test_canonical_form_has_no_shadowed_or_empty_data(a):
    m = r.canonical(a)
    pdel_ts = -1 if m.deletion is None else m.deletion.ts
    for rt in m.range_tombstones:
        assert rt.deletion.ts > pdel_ts
    for ckey, row in m.rows.items():
        assert row.marker or row.deletion or row.cells
        cover = pdel_ts
        for rt in m.range_tombstones:
            iv = r.clustering_interval(rt.start, rt.end)
            if iv is not None and r.in_interval(ckey, iv):
                cover = max(cover, rt.deletion.ts)
        if row.deletion is not None:
            assert row.deletion.ts > cover
            cover = row.deletion.ts
        assert all(c.ts > cover for c in row.cells.values())
        assert row.marker is None or row.marker.ts > cover
    assert list(m.rows) == sorted(m.rows)


# ---- read repair and digests --------------------------------------------------------------


@given(partitions(), partitions(), partitions())
def test_repair_brings_replica_to_merged(x, y, z):
    merged = r.merge_many([x, y, z])
    for replica in (x, r.canonical(x)):
        repair = r.repair_for(merged, replica)
        assert r.merge_partitions(replica, repair or EMPTY) == merged
    none_repair = r.repair_for(merged, None)
    assert r.merge_partitions(EMPTY, none_repair or EMPTY) == merged


@given(partitions())
def test_repair_of_identical_replica_is_nothing(x):
    m = r.canonical(x)
    assert r.repair_for(m, m) is None


@given(partitions(), partitions())
def test_digest_equal_iff_canonical_equal(a, b):
    ca, cb = r.canonical(a), r.canonical(b)
    assert (r.digest(ca) == r.digest(cb)) == (ca == cb)
    assert r.digest(r.merge_partitions(a, b)) == r.digest(r.merge_partitions(b, a))
    assert len(r.digest(ca)) == r.DIGEST_BYTES


def test_digest_of_nothing():
    assert r.digest(None) == r.digest(EMPTY) == r.digest(Partition(TABLE, b"other"))


# ---- slices -------------------------------------------------------------------------------


def literal_in_slice(ckey: bytes, start: Bound, end: Bound) -> bool:
    """The bound semantics spelled out, independently of reconcile's interval arithmetic."""
    if not start.prefix:
        ok_start = True
    elif start.inclusive:
        ok_start = ckey >= start.prefix
    else:
        ok_start = ckey > start.prefix and not ckey.startswith(start.prefix)
    if not end.prefix:
        ok_end = True
    elif end.inclusive:
        ok_end = ckey <= end.prefix or ckey.startswith(end.prefix)
    else:
        ok_end = ckey < end.prefix
    return ok_start and ok_end


any_bytes = st.lists(st.sampled_from([b"\x00", b"\x01", b"\x7f", b"\xfe", b"\xff"]),
                     max_size=3).map(b"".join)


@given(any_bytes, st.builds(Bound, any_bytes, st.booleans()),
       st.builds(Bound, any_bytes, st.booleans()))
def test_interval_matches_bound_semantics(ckey, start, end):
    iv = r.clustering_interval(start, end)
    assert (iv is not None and r.in_interval(ckey, iv)) == literal_in_slice(ckey, start, end)


@given(partitions(), read_commands)
def test_slice_keeps_exactly_the_selected_rows_and_columns(p, cmd):
    s = r.slice_partition(r.canonical(p), cmd)
    for ckey, row in s.rows.items():
        if cmd.slices is not None:
            assert any(literal_in_slice(ckey, sl.start, sl.end) for sl in cmd.slices)
        if cmd.columns is not None:
            assert all(path[0] in cmd.columns for path in row.cells)
    assert s == r.canonical(s)


@given(partitions(), partitions(), read_commands)
def test_merging_replica_slices_equals_slicing_the_merge(a, b, cmd):
    """What lets a coordinator merge replica answers to a sliced read."""
    sliced_merge = r.slice_partition(r.merge_partitions(a, b), cmd)
    merged_slices = r.merge_partitions(r.slice_partition(r.canonical(a), cmd),
                                       r.slice_partition(r.canonical(b), cmd))
    assert sliced_merge == merged_slices


# ---- time: expiry, live views, purging ----------------------------------------------------


@given(partitions(), st.integers(0, 5))
def test_expire_keeps_the_live_view_and_is_idempotent(p, now_s):
    e = r.expire(p, now_s)
    assert r.live_view(e, now_s) == r.live_view(p, now_s)
    assert r.expire(e, now_s) == e
    for row in [e.static, *e.rows.values()]:
        for c in [row.marker, *row.cells.values()] if row else []:
            assert c is None or c.ttl_s == 0 or c.ldt_s > now_s


@given(partitions(), partitions(), st.integers(0, 5))
def test_live_view_has_no_tombstones_and_commutes_with_merge(a, b, now_s):
    v = r.live_view(r.merge_partitions(a, b), now_s)
    assert v.deletion is None and v.range_tombstones == []
    for row in [v.static, *v.rows.values()]:
        if row is not None:
            assert row.deletion is None
            assert all(c.is_live(now_s) for c in row.cells.values())
    assert v == r.live_view(r.merge_partitions(b, a), now_s)
    assert r.live_view(a, now_s) == r.live_view(r.canonical(a), now_s)


@given(partitions(), st.integers(0, 5), st.integers(0, 5))
def test_purge_keeps_the_live_view(p, gc_before_s, later_s):
    now_s = gc_before_s + later_s
    purged = r.purge_tombstones(p, gc_before_s)
    assert r.live_view(purged, now_s) == r.live_view(p, now_s)
    assert purged == r.canonical(purged)
    assert r.purge_tombstones(p, 0) == r.canonical(p)  # every ldt_s here is >= 0


# ---- collections: a tombstone at path b"" deletes the column's elements up to its ts --------


def _row_with(cells):
    p = Partition(b"t" * 16, b"k")
    p.rows[b"r"] = Row((b"r",), None, None, dict(cells))
    return p


def test_collection_tombstone_shadows_older_elements_only():
    overwrite = _row_with({("m", b""): Cell(9, None, 0, 1), ("m", b"\x03b"): Cell(10, b"new")})
    older = _row_with({("m", b"\x03a"): Cell(5, b"old"), ("m", b"\x03c"): Cell(12, b"later")})
    for merged in (r.merge_partitions(overwrite, older), r.merge_partitions(older, overwrite)):
        cells = merged.rows[b"r"].cells
        assert ("m", b"\x03a") not in cells  # written before the overwrite: gone
        assert cells[("m", b"\x03b")].value == b"new" and cells[("m", b"\x03c")].value == b"later"
        live = r.live_view(merged, 0).rows[b"r"].cells
        assert set(live) == {("m", b"\x03b"), ("m", b"\x03c")}
    # the live view honours it even on a non-canonical fragment
    raw = _row_with({("m", b""): Cell(9, None, 0, 1), ("m", b"\x03a"): Cell(5, b"old")})
    assert not r.live_view(raw, 0).rows


@st.composite
def live_rows_only(draw):
    """Partitions of live, non-expiring rows only: the shape compaction's fast path skips,
    with a tombstone, a TTL or an empty row now and then to push them off it."""
    live = st.builds(Cell, timestamps, values)
    ckeys = draw(st.lists(st.sampled_from(CKEYS), max_size=4, unique=True))
    out = {}
    for ck in ckeys:
        cell_map = draw(st.dictionaries(st.sampled_from([("a", b""), ("b", b""), ("m", b"\x01")]), live,
                                        max_size=3))
        out[ck] = Row(clustering_of(ck), draw(st.none() | st.builds(Cell, timestamps, st.just(b""))),
                      None, cell_map)
    if draw(st.booleans()) and out:  # one row pushed off the fast path
        ck = sorted(out)[0]
        out[ck] = draw(rows(clustering_of(ck)))
    return Partition(TABLE, KEY, rows=out)


@settings(max_examples=400, deadline=None)
@given(p=st.one_of(partitions(), live_rows_only()), now_s=st.integers(0, 6), gc_before_s=st.integers(0, 6),
       purge_header=st.booleans())
def test_compaction_fast_path_changes_nothing_compaction_would_change(p, now_s, gc_before_s, purge_header):
    """compact_partition's shortcut for partitions with nothing to expire, shadow or purge
    answers what the full expire, canonical, purge and compare answer."""
    from agora.core.tombstones import compaction
    expired = r.canonical(r.expire(p, now_s))
    purged = r.purge_tombstones(expired, gc_before_s)
    if not purge_header:
        purged = Partition(purged.table_id, purged.key, expired.deletion, list(expired.range_tombstones),
                           purged.static, purged.rows)
    full = (None, 0) if purged == p else (purged, compaction.max_purged_ldt(expired, gc_before_s, purge_header))
    assert compaction.compact_partition(p, now_s, gc_before_s, purge_header) == full


@settings(max_examples=300, deadline=None)
@given(partitions(), st.integers(0, 6), st.integers(0, 3))
def test_live_row_total_counts_the_live_view(p, now_s, per_partition_limit):
    """What a replica counts of a scanned partition without building its live view is what
    the view would count (clustering rows, or 1 for a live static row alone)."""
    from agora.core.replica.replica import live_row_count
    for part in (p, r.canonical(r.expire(p, now_s))):
        n = r.live_row_total(part, now_s)
        assert n == live_row_count(r.live_view(part, now_s))
        limited = min(n, per_partition_limit) if per_partition_limit else n
        assert limited == live_row_count(r.live_view(part, now_s), per_partition_limit)
