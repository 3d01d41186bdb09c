"""The merge: how two versions of a partition become one, and what a client may see of it.

Owns: the reconciliation rules every replica and coordinator apply -- per-cell
last-write-wins, tombstones (cell, row, range, partition), TTL expiry, shadowing, the
canonical form of a partition, digests, read-repair diffs and tombstone purging.
It deliberately knows nothing of storage layout, the network or CQL types: values are opaque
bytes and clustering keys (`ckey`) are opaque bytes whose byte order is clustering order and
where a clustering prefix is a byte prefix (see `agora.core.types`).

Rules come from Cassandra (`db/rows/Cells.reconcile`, `db/LivenessInfo`, `db/DeletionTime`,
`db/rows/Row.Merger`, `db/partitions/PurgeFunction`) and DESIGN.md section 4:

- cells: the higher timestamp wins; at equal timestamps a tombstone beats a live cell; then
  the greater (value bytes, ldt_s, ttl_s) wins, so the order over cells is total and the
  merge is commutative, associative and idempotent. Row markers merge like cells.
- deletions: the greater (ts, ldt_s) wins. A deletion with timestamp T shadows every cell,
  marker and narrower deletion with timestamp <= T that it covers (partition deletion: the
  whole partition; range tombstone: the rows whose ckey it contains; row deletion: its row).

Canonical form (what every function here returns): shadowed cells, markers and deletions are
dropped, rows left with nothing are dropped, an empty static row is None, rows are in ckey
order, and range tombstones are sorted by bounds with one (the greatest) deletion per pair
of bounds. Merging is then a join in a lattice and commutative, associative and idempotent
as values. Inputs are never mutated, and partitions and rows are values: nothing changes one
in place, so an output may share rows with an input (`live_view` keeps a row that is live as
stored; `merge_into` keeps rows the incoming fragment does not touch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from agora.core.packing import pack
from agora.core.types import (
    Bound,
    Cell,
    CellPath,
    Deletion,
    Partition,
    RangeTombstone,
    ReadCommand,
    Row,
)

DIGEST_BYTES = 16  # as Cassandra's MD5 read digests: collisions between replicas negligible

# An interval of ckeys, half open: lo <= ckey < hi, hi None = unbounded above.
Interval = tuple[bytes, bytes | None]


# ---- cells and deletions ------------------------------------------------------------------


def merge_cells(a: Cell, b: Cell) -> Cell:
    """The winner of two versions of one cell (or of two row markers)."""
    if a.ts != b.ts:
        return a if a.ts > b.ts else b
    a_dead = a.value is None
    if a_dead != (b.value is None):
        return a if a_dead else b
    ka = (a.value or b"", a.ldt_s, a.ttl_s)
    kb = (b.value or b"", b.ldt_s, b.ttl_s)
    return a if ka >= kb else b


def _merge_optional_cells(a: Cell | None, b: Cell | None) -> Cell | None:
    if a is None:
        return b
    if b is None:
        return a
    return merge_cells(a, b)


def merge_deletions(a: Deletion | None, b: Deletion | None) -> Deletion | None:
    """The stronger of two deletions, by (ts, ldt_s); None means no deletion."""
    if a is None:
        return b
    if b is None:
        return a
    return a if (a.ts, a.ldt_s) >= (b.ts, b.ldt_s) else b


def _max_ts(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


# ---- clustering intervals -----------------------------------------------------------------


def _prefix_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix`
    (None if there is none, i.e. the prefix is empty or all 0xFF)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def clustering_interval(start: Bound, end: Bound) -> Interval | None:
    """The ckeys between two bounds as a half-open interval [lo, hi), None if empty.

    start inclusive P: ckey >= P; start exclusive P: ckey > P and not a P-prefixed key;
    end inclusive P: ckey <= P or P-prefixed; end exclusive P: ckey < P; an empty prefix is
    unbounded on its side whatever its inclusivity."""
    if not start.prefix:
        lo = b""
    elif start.inclusive:
        lo = start.prefix
    else:
        succ = _prefix_successor(start.prefix)
        if succ is None:
            return None
        lo = succ
    if not end.prefix:
        hi = None
    elif end.inclusive:
        hi = _prefix_successor(end.prefix)
    else:
        hi = end.prefix
    if hi is not None and lo >= hi:
        return None
    return lo, hi


def in_interval(ckey: bytes, interval: Interval) -> bool:
    lo, hi = interval
    return lo <= ckey and (hi is None or ckey < hi)


def _intervals_meet(a: Interval, b: Interval) -> bool:
    lo = a[0] if a[0] >= b[0] else b[0]
    if a[1] is None:
        hi = b[1]
    elif b[1] is None:
        hi = a[1]
    else:
        hi = a[1] if a[1] <= b[1] else b[1]
    return hi is None or lo < hi


def _rt_sort_key(rt: RangeTombstone) -> tuple:
    return (rt.start.prefix, rt.start.inclusive, rt.end.prefix, rt.end.inclusive,
            rt.deletion.ts, rt.deletion.ldt_s)


def _canonical_range_tombstones(rts: Iterable[RangeTombstone],
                                pdel: Deletion | None) -> list[RangeTombstone]:
    """Drop those shadowed by the partition deletion, keep the greatest deletion per pair
    of bounds, sort."""
    if not rts:  # the usual case
        return []
    best: dict[tuple[Bound, Bound], RangeTombstone] = {}
    for rt in rts:
        if pdel is not None and rt.deletion.ts <= pdel.ts:
            continue
        bounds = (rt.start, rt.end)
        old = best.get(bounds)
        if old is None or merge_deletions(old.deletion, rt.deletion) is not old.deletion:
            best[bounds] = rt
    return sorted(best.values(), key=_rt_sort_key)


class _Cover:
    """Answers 'which deletion timestamp covers this ckey' from the partition deletion and
    the range tombstones."""

    __slots__ = ("partition_ts", "ranges")

    def __init__(self, pdel: Deletion | None, rts: Sequence[RangeTombstone]) -> None:
        self.partition_ts = None if pdel is None else pdel.ts
        self.ranges: list[tuple[Interval, int]] = []
        for rt in rts:
            interval = clustering_interval(rt.start, rt.end)
            if interval is not None:
                self.ranges.append((interval, rt.deletion.ts))

    def ts_for(self, ckey: bytes) -> int | None:
        ts = self.partition_ts
        for interval, rt_ts in self.ranges:
            if (ts is None or rt_ts > ts) and in_interval(ckey, interval):
                ts = rt_ts
        return ts


# ---- rows ---------------------------------------------------------------------------------


def _clean_row(clustering: tuple[bytes, ...], marker: Cell | None, deletion: Deletion | None,
               cells: dict[CellPath, Cell], cover_ts: int | None) -> Row | None:
    """Build a canonical row, dropping what `cover_ts` (or the row's own deletion) shadows.
    `cells` must be a dict the caller owns (it is kept)."""
    if deletion is not None:
        if cover_ts is not None and deletion.ts <= cover_ts:
            deletion = None
        else:
            cover_ts = deletion.ts
    if cover_ts is not None:
        if marker is not None and marker.ts <= cover_ts:
            marker = None
        cells = {path: c for path, c in cells.items() if c.ts > cover_ts}
    cells = _drop_shadowed_elements(cells)
    if marker is None and deletion is None and not cells:
        return None
    return Row(clustering, marker, deletion, cells)


def _collection_deletions(cells: dict[CellPath, Cell]) -> dict[str, int]:
    """column -> ts of its collection-wide tombstone. A tombstone at path b"" of a column
    whose other cells have element paths deletes every element written at or before it:
    Cassandra's complex deletion, written when a non-frozen collection is overwritten or
    deleted. (Element paths are never empty, so b"" is free for this.)"""
    return {col: c.ts for (col, path), c in cells.items() if not path and c.value is None}


def _drop_shadowed_elements(cells: dict[CellPath, Cell]) -> dict[CellPath, Cell]:
    deleted = _collection_deletions(cells)
    if not deleted:
        return cells
    return {(col, path): c for (col, path), c in cells.items()
            if not path or col not in deleted or c.ts > deleted[col]}


def _merge_rows(x: Row | None, y: Row | None, cover_ts: int | None) -> Row | None:
    if x is None:
        x, y = y, None
        if x is None:
            return None
    if y is None:
        return _clean_row(x.clustering, x.marker, x.deletion, dict(x.cells), cover_ts)
    cells = dict(x.cells)
    for path, cell in y.cells.items():
        old = cells.get(path)
        cells[path] = cell if old is None else merge_cells(old, cell)
    clustering = x.clustering if x.clustering >= y.clustering else y.clustering
    return _clean_row(clustering, _merge_optional_cells(x.marker, y.marker),
                      merge_deletions(x.deletion, y.deletion), cells, cover_ts)


def _row_is_empty(row: Row | None) -> bool:
    return row is None or (row.marker is None and row.deletion is None and not row.cells)


# ---- partitions ---------------------------------------------------------------------------


def merge_partitions(a: Partition, b: Partition) -> Partition:
    """The canonical join of two fragments of the same partition."""
    assert a.table_id == b.table_id and a.key == b.key, "merging different partitions"
    pdel = merge_deletions(a.deletion, b.deletion)
    rts = _canonical_range_tombstones(a.range_tombstones + b.range_tombstones, pdel)
    pdel_ts = None if pdel is None else pdel.ts
    static = _merge_rows(a.static, b.static, pdel_ts)
    cover = _Cover(pdel, rts) if rts else None
    a_rows, b_rows = a.rows, b.rows
    ckeys = sorted(a_rows.keys() | b_rows.keys()) if b_rows else sorted(a_rows)
    rows: dict[bytes, Row] = {}
    for ckey in ckeys:
        cover_ts = pdel_ts if cover is None else cover.ts_for(ckey)
        row = _merge_rows(a_rows.get(ckey), b_rows.get(ckey), cover_ts)
        if row is not None:
            rows[ckey] = row
    return Partition(a.table_id, a.key, pdel, rts, static, rows)


def merge_into(stored: Partition, incoming: Partition) -> Partition:
    """`merge_partitions(stored, incoming)` for a store that owns `stored` (canonical) and
    never mutates partitions in place: rows `incoming` does not touch are shared with
    `stored` rather than copied, so the cost follows the size of `incoming`, not of the
    partition. Falls back to the full merge when `incoming` carries partition-level
    deletions (they may shadow any row)."""
    if incoming.deletion is not None or incoming.range_tombstones:
        return merge_partitions(stored, incoming)
    assert stored.table_id == incoming.table_id and stored.key == incoming.key, \
        "merging different partitions"
    pdel_ts = None if stored.deletion is None else stored.deletion.ts
    cover = _Cover(stored.deletion, stored.range_tombstones) \
        if stored.range_tombstones else None
    rows = dict(stored.rows)
    added = False
    for ckey, row in incoming.rows.items():
        old = rows.get(ckey)
        cover_ts = pdel_ts if cover is None else cover.ts_for(ckey)
        merged = _merge_rows(old, row, cover_ts)
        if merged is not None:
            rows[ckey] = merged
            added = added or old is None
        elif old is not None:  # unreachable for a canonical `stored`; kept for safety
            del rows[ckey]
    if added:
        rows = {ckey: rows[ckey] for ckey in sorted(rows)}
    static = stored.static if incoming.static is None \
        else _merge_rows(stored.static, incoming.static, pdel_ts)
    return Partition(stored.table_id, stored.key, stored.deletion,
                     list(stored.range_tombstones), static, rows)


def canonical(p: Partition) -> Partition:
    """`p` in canonical form (a fresh copy even if it already was)."""
    return merge_partitions(p, Partition(p.table_id, p.key))


def merge_many(partitions: Sequence[Partition]) -> Partition:
    """The join of one or more fragments of the same partition."""
    assert partitions, "merge_many needs at least one partition"
    result = canonical(partitions[0]) if len(partitions) == 1 else partitions[0]
    for p in partitions[1:]:
        result = merge_partitions(result, p)
    return result


def rows_only(p: Partition) -> bool:
    """No partition deletion, range tombstone or static row: nothing shadows p's rows, so
    each is canonical as stored (the usual partition)."""
    return p.deletion is None and not p.range_tombstones and p.static is None


def is_empty(p: Partition | None) -> bool:
    """True if `p` holds nothing at all: no data and no tombstones."""
    if p is None:
        return True
    if p.deletion is not None or p.range_tombstones or not _row_is_empty(p.static):
        return False
    for row in p.rows.values():  # _row_is_empty inline: a scan asks this of every partition
        if row.marker is not None or row.deletion is not None or row.cells:
            return False
    return True


# ---- time: expiry and purging -------------------------------------------------------------


def _expire_cell(cell: Cell | None, now_s: int) -> Cell | None:
    if cell is None or cell.ttl_s <= 0 or cell.value is None or cell.ldt_s > now_s:
        return cell
    # Cassandra: an expired cell is a tombstone written at the original write time.
    return Cell(cell.ts, None, 0, cell.ldt_s - cell.ttl_s)


def _expire_row(row: Row | None, now_s: int) -> Row | None:
    if row is None:
        return None
    for c in row.cells.values():
        if c.ttl_s > 0 and c.value is not None and c.ldt_s <= now_s:
            cells = {path: _expire_cell(c, now_s) for path, c in row.cells.items()}
            break
    else:  # nothing expires (the usual case): the same cells, in a dict of its own
        cells = dict(row.cells)
    return Row(row.clustering, _expire_cell(row.marker, now_s), row.deletion, cells)


def _expires(row: Row | None, now_s: int) -> bool:
    """Whether anything in `row` has expired by `now_s` (and so `_expire_row` changes it)."""
    if row is None:
        return False
    m = row.marker
    if m is not None and m.ttl_s > 0 and m.value is not None and m.ldt_s <= now_s:
        return True
    for c in row.cells.values():
        if c.ttl_s > 0 and c.value is not None and c.ldt_s <= now_s:
            return True
    return False


def expire(p: Partition, now_s: int) -> Partition:
    """Turn every TTL'd cell and marker that has expired by `now_s` into a tombstone. When
    nothing has, that is `p` itself (partitions are values: nothing changes one in place)."""
    for row in p.rows.values():
        if _expires(row, now_s):
            break
    else:
        if not _expires(p.static, now_s):
            return p
    rows = {ckey: _expire_row(row, now_s) for ckey, row in p.rows.items()}
    return Partition(p.table_id, p.key, p.deletion, list(p.range_tombstones),
                     _expire_row(p.static, now_s), rows)


def _purgeable(cell: Cell | None, gc_before_s: int) -> bool:
    """A tombstone, or an expiring cell (expired by then), whose ldt_s is before gc_before."""
    return cell is not None and (cell.value is None or cell.ttl_s > 0) \
        and cell.ldt_s < gc_before_s


def _purge_row(row: Row | None, gc_before_s: int) -> Row | None:
    if row is None:
        return None
    marker = None if _purgeable(row.marker, gc_before_s) else row.marker
    deletion = row.deletion
    if deletion is not None and deletion.ldt_s < gc_before_s:
        deletion = None
    cells = {path: c for path, c in row.cells.items() if not _purgeable(c, gc_before_s)}
    if marker is None and deletion is None and not cells:
        return None
    return Row(row.clustering, marker, deletion, cells)


def purge_tombstones(p: Partition, gc_before_s: int) -> Partition:
    """Drop tombstones of every kind (and long-expired cells) whose ldt_s < gc_before_s.
    Shadowed data is dropped first, so purging a deletion never resurrects what it deleted
    locally (what other replicas still hold is gc_grace's business, as in Cassandra)."""
    q = canonical(p)
    pdel = q.deletion
    if pdel is not None and pdel.ldt_s < gc_before_s:
        pdel = None
    rts = [rt for rt in q.range_tombstones if rt.deletion.ldt_s >= gc_before_s]
    rows = {}
    for ckey, row in q.rows.items():
        kept = _purge_row(row, gc_before_s)
        if kept is not None:
            rows[ckey] = kept
    return Partition(q.table_id, q.key, pdel, rts, _purge_row(q.static, gc_before_s), rows)


# ---- TRUNCATE ----------------------------------------------------------------------------


def _truncated_row(row: Row | None, truncated_at: int) -> Row | None:
    if row is None:
        return None
    marker, deletion = row.marker, row.deletion
    if marker is not None and marker.ts <= truncated_at:
        marker = None
    if deletion is not None and deletion.ts <= truncated_at:
        deletion = None
    cells = {path: c for path, c in row.cells.items() if c.ts > truncated_at}
    if marker is None and deletion is None and not cells:
        return None
    if marker is row.marker and deletion is row.deletion and len(cells) == len(row.cells):
        return row
    return Row(row.clustering, marker, deletion, cells)


def drop_truncated(p: Partition, truncated_at: int) -> Partition | None:
    """What a table truncated at `truncated_at` (µs, `Schema.truncated_at`) keeps of `p`:
    the cells, row markers and tombstones written after it; None if nothing is left.

    A truncation reads as a partition deletion at that timestamp over every partition of
    the table, kept for good; so what it covers can go outright, tombstones included (a
    tombstone at or before it shadows only data at or before it). A canonical `p` stays
    canonical. Replicas apply it to what they read before answering, digesting or
    streaming, and tombstone compaction to what it rewrites, so every node answers alike
    whether or not its compaction has freed the space yet."""
    pdel = p.deletion
    if pdel is not None and pdel.ts <= truncated_at:
        pdel = None
    rts = [rt for rt in p.range_tombstones if rt.deletion.ts > truncated_at]
    static = _truncated_row(p.static, truncated_at)
    rows = {}
    for ckey, row in p.rows.items():
        kept = _truncated_row(row, truncated_at)
        if kept is not None:
            rows[ckey] = kept
    if pdel is None and not rts and static is None and not rows:
        return None
    return Partition(p.table_id, p.key, pdel, rts, static, rows)


# ---- what a client sees -------------------------------------------------------------------


def _live_row(row: Row | None, cover_ts: int | None, now_s: int,
              marker_counts: bool) -> Row | None:
    if row is None:
        return None
    if row.deletion is None and cover_ts is None:
        # The usual row: nothing covers it. If every cell is a live value (so no collection
        # tombstone either) and its marker, if any, is live, it is its own view: rows are
        # values, never changed in place.
        marker = row.marker
        if marker is None or (marker.value is not None and (not marker.ttl_s or now_s < marker.ldt_s)):
            cells = row.cells
            for c in cells.values():
                if c.value is None or (c.ttl_s and now_s >= c.ldt_s):
                    break
            else:
                if cells or (marker is not None and marker_counts):
                    return row
                return None
    if row.deletion is not None and (cover_ts is None or row.deletion.ts > cover_ts):
        cover_ts = row.deletion.ts
    deleted = _collection_deletions(row.cells)
    cells = {path: c for path, c in row.cells.items()
             if c.is_live(now_s) and (cover_ts is None or c.ts > cover_ts)
             and (not path[1] or path[0] not in deleted or c.ts > deleted[path[0]])}
    marker = row.marker
    if marker is not None and not (marker.is_live(now_s)
                                   and (cover_ts is None or marker.ts > cover_ts)):
        marker = None
    if not cells and (marker is None or not marker_counts):
        return None
    return Row(row.clustering, marker, None, cells)


def live_row_total(p: Partition, now_s: int) -> int:
    """How many clustering rows `live_view(p, now_s)` has, or 1 when it has none and has a
    static row: what `replica.live_row_count` counts of that view, without building it."""
    pdel_ts = None if p.deletion is None else p.deletion.ts
    cover = _Cover(p.deletion, p.range_tombstones) if p.range_tombstones else None
    n = 0
    for ckey, row in p.rows.items():
        if _live_row(row, pdel_ts if cover is None else cover.ts_for(ckey), now_s, True) is not None:
            n += 1
    if n == 0 and _live_row(p.static, pdel_ts, now_s, marker_counts=False) is not None:
        return 1
    return n


def live_view(p: Partition, now_s: int) -> Partition:
    """What a client sees at `now_s`: live cells only; rows with a live marker or a live
    cell; the static row if it has a live cell; no tombstones. Works on any input (shadowed
    data is honoured even if `p` is not canonical)."""
    pdel_ts = None if p.deletion is None else p.deletion.ts
    cover = _Cover(p.deletion, p.range_tombstones) if p.range_tombstones else None
    rows = {}
    for ckey in sorted(p.rows):
        cover_ts = pdel_ts if cover is None else cover.ts_for(ckey)
        row = _live_row(p.rows[ckey], cover_ts, now_s, marker_counts=True)
        if row is not None:
            rows[ckey] = row
    static = _live_row(p.static, pdel_ts, now_s, marker_counts=False)
    return Partition(p.table_id, p.key, None, [], static, rows)


# ---- reads: slices, digests, repair -------------------------------------------------------


def project_row(row: Row | None, columns: frozenset[str] | None) -> Row | None:
    """`row` cut to `columns` (None: all of them), or None when nothing is left."""
    if row is None:
        return None
    if columns is None:
        cells = dict(row.cells)
    else:
        cells = {path: c for path, c in row.cells.items() if path[0] in columns}
    if row.marker is None and row.deletion is None and not cells:
        return None
    return Row(row.clustering, row.marker, row.deletion, cells)


def slice_partition(p: Partition, cmd: ReadCommand) -> Partition:
    """The part of `p` that `cmd` reads, in canonical form: rows in cmd.slices (markers and
    row deletions kept), only cmd.columns' cells (static row included), the partition
    deletion, and the range tombstones that meet a slice (kept whole, so a coordinator
    merging replica answers sees every deletion that covers a returned row)."""
    assert p.table_id == cmd.table_id and p.key == cmd.key, "slicing another partition"
    if cmd.slices is None and cmd.columns is None:  # the whole partition: nothing to cut
        return canonical(p)
    columns = None if cmd.columns is None else frozenset(cmd.columns)
    intervals = None
    rts = p.range_tombstones
    if cmd.slices is not None:
        intervals = [iv for s in cmd.slices
                     if (iv := clustering_interval(s.start, s.end)) is not None]
        rts = [rt for rt in rts if _rt_meets(rt, intervals)]
    rows = {}
    for ckey, row in p.rows.items():
        if intervals is None or any(in_interval(ckey, iv) for iv in intervals):
            projected = project_row(row, columns)
            if projected is not None:
                rows[ckey] = projected
    sliced = Partition(p.table_id, p.key, p.deletion, list(rts),
                       project_row(p.static, columns), rows)
    return canonical(sliced)


def _rt_meets(rt: RangeTombstone, intervals: list[Interval]) -> bool:
    interval = clustering_interval(rt.start, rt.end)
    return interval is not None and any(_intervals_meet(interval, iv) for iv in intervals)


_NOTHING_DIGEST = hashlib.blake2b(b"agora:nothing", digest_size=DIGEST_BYTES).digest()


def _cell_digest_form(cell: Cell | None) -> list | None:
    return None if cell is None else [cell.ts, cell.value, cell.ttl_s, cell.ldt_s]


def _deletion_digest_form(d: Deletion | None) -> list | None:
    return None if d is None else [d.ts, d.ldt_s]


def _row_digest_form(row: Row | None) -> list | None:
    if row is None:
        return None
    cells = []
    for path in sorted(row.cells):
        cells.extend((path[0], path[1], _cell_digest_form(row.cells[path])))
    return [list(row.clustering), _cell_digest_form(row.marker),
            _deletion_digest_form(row.deletion), cells]


def digest(p: Partition | None) -> bytes:
    """A DIGEST_BYTES blake2b over a canonical encoding of `p` (rows in ckey order, cells in
    path order, range tombstones in canonical order). Equal partitions give equal digests;
    None and every empty partition give one fixed "nothing" digest. Replicas compare
    digests of canonical data (what storage returns), as Cassandra's digest reads do."""
    if is_empty(p):
        return _NOTHING_DIGEST
    if rows_only(p):
        # The usual partition, rows only: the bytes digest_begin and digest_rows would feed,
        # hashed in one call.
        rows = p.rows
        if len(rows) == 1:
            [(ckey, row)] = rows.items()
            data = pack([p.table_id, p.key, None, [], None]) + pack([ckey, _row_digest_form(row)])
        else:
            data = b"".join([pack([p.table_id, p.key, None, [], None]),
                             *[pack([ckey, _row_digest_form(rows[ckey])]) for ckey in sorted(rows)]])
        return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()
    h = digest_begin(p)
    digest_rows(h, p)
    return h.digest()


def digest_begin(p: Partition):
    """A running `digest` of partition `p` that has taken its header (deletion, range
    tombstones, static row) and none of its rows: feed it the rows with `digest_rows`, in
    clustering order, in as many pieces as they come; `.digest()` then equals `digest` of
    the whole (non-empty) partition."""
    rts = [[rt.start.prefix, rt.start.inclusive, rt.end.prefix, rt.end.inclusive,
            rt.deletion.ts, rt.deletion.ldt_s]
           for rt in sorted(p.range_tombstones, key=_rt_sort_key)]
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(pack([p.table_id, p.key, _deletion_digest_form(p.deletion), rts,
                   _row_digest_form(p.static)]))
    return h


def digest_rows(h, p: Partition) -> None:
    """Feed the running digest `h` the rows of `p`, a piece of its partition whose rows all
    come after those fed before."""
    rows = p.rows
    for ckey in sorted(rows):
        h.update(pack([ckey, _row_digest_form(rows[ckey])]))


def rows_up_to(p: Partition, last: bytes, reversed_: bool = False) -> Partition:
    """`p` without its clustering rows after `last` (before it when `reversed_`; deletion,
    range tombstones and static row kept): what two pages that read up to different keys
    both cover."""
    rows = {ckey: row for ckey, row in p.rows.items() if (ckey >= last if reversed_ else ckey <= last)}
    return Partition(p.table_id, p.key, p.deletion, list(p.range_tombstones), p.static, rows)


def page_digest(p: Partition | None, more_after: bytes | None) -> bytes:
    """`digest(p)`, and for a read that a row limit stopped, the last clustering key it read:
    two replicas agree on a page only if they agree on where it ends (a replica that holds
    fewer rows must not pass for one with the same first rows and more after them)."""
    d = digest(p)
    if more_after is None:
        return d
    return hashlib.blake2b(d + b"agora:more-after" + more_after, digest_size=DIGEST_BYTES).digest()


def _row_diff(want: Row | None, have: Row | None) -> Row | None:
    """The part of `want` that `have` does not hold identically."""
    if want is None:
        return None
    if have is None:
        return project_row(want, None)
    marker = want.marker if want.marker != have.marker else None
    deletion = want.deletion if want.deletion != have.deletion else None
    have_cells = have.cells
    cells = {path: c for path, c in want.cells.items() if have_cells.get(path) != c}
    if marker is None and deletion is None and not cells \
            and want.clustering == have.clustering:
        return None
    return Row(want.clustering, marker, deletion, cells)


def repair_for(merged: Partition, replica_version: Partition | None) -> Partition | None:
    """The mutation that brings a replica which answered `replica_version` up to `merged`
    (the resolved answer, which must be a join that includes `replica_version`): every
    deletion, range tombstone, marker and cell of `merged` the replica does not hold
    identically. None if there is nothing to send."""
    if replica_version is None:
        return None if is_empty(merged) else canonical(merged)
    have = replica_version
    deletion = merged.deletion if merged.deletion != have.deletion else None
    have_rts = set(have.range_tombstones)
    rts = [rt for rt in merged.range_tombstones if rt not in have_rts]
    rows = {}
    for ckey, row in merged.rows.items():
        diff = _row_diff(row, have.rows.get(ckey))
        if diff is not None:
            rows[ckey] = diff
    out = Partition(merged.table_id, merged.key, deletion, rts,
                    _row_diff(merged.static, have.static), rows)
    return None if is_empty(out) else out
