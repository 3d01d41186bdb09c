"""Plain (msgpack-native) encoding of the data model, shared by the internode codec and the
storage engines.

Owns: the shapes below and their validation. `*_to_plain` returns lists, tuples, ints,
bytes, str, bool and None only; `*_from_plain` accepts exactly what msgpack gives back
(`unpackb(raw=False)`; lists or tuples for arrays) and raises `ProtocolError` -- never any
other exception -- for anything malformed, because it is fed bytes from peers and disks.
It deliberately knows nothing of framing, verbs or key layout; the model is
`agora.core.types`. Arrays are flat where that saves msgpack headers on the hot path.

    Cell            [ts, value|None, ttl_s, ldt_s]
    Deletion        [ts, ldt_s]                       (None where there is none)
    RangeTombstone  [start_prefix, start_inclusive, end_prefix, end_inclusive, ts, ldt_s]
    Row             [clustering, marker|None, deletion|None,
                     [column, path, ts, value|None, ttl_s, ldt_s, ...]]
    Partition       [table_id, key, deletion|None, [range tombstone, ...], static row|None,
                     [ckey, row, ckey, row, ...]]
    ReadCommand     [table_id, key, [start_prefix, start_inclusive, end_prefix,
                     end_inclusive, ...]|None, [column, ...]|None(, limit_rows when > 0
                     (, true when reversed)))]
    RangeCommand    [table_id, start_token, start_key|None, end_token, slices|None
                     (as in ReadCommand), [column, ...]|None, limit_rows,
                     per_partition_limit(, start_ckey when set)]
"""

from __future__ import annotations

from agora.core.errors import ProtocolError
from agora.core.types import (
    Bound,
    Cell,
    Deletion,
    Partition,
    RangeCommand,
    RangeTombstone,
    ReadCommand,
    Row,
    Slice,
)

TABLE_ID_BYTES = 16  # a table id is a uuid
MAX_PARTITION_KEY_BYTES = 0xFFFF  # as Cassandra: keys are length-prefixed by an unsigned short
MIN_INT64 = -(2**63)  # timestamps and deletion times are Cassandra longs
MAX_INT64 = 2**63 - 1
MAX_TTL_S = 2**31 - 1  # Cassandra's TTL is a signed 32-bit int of seconds
MAX_ROW_LIMIT = 2**31 - 1  # CQL's LIMIT and PER PARTITION LIMIT are signed 32-bit ints

_CELL_FIELDS = 6  # column, path, ts, value, ttl_s, ldt_s in a row's flat cell array
_RT_FIELDS = 6
_SLICE_FIELDS = 4


def _bad(what: str) -> ProtocolError:
    return ProtocolError(f"malformed data: {what}")


def _is_array(obj: object) -> bool:
    t = type(obj)
    return t is list or t is tuple


def _check_time(ts: object, ldt_s: object) -> None:
    if type(ts) is not int or type(ldt_s) is not int \
            or not MIN_INT64 <= ts <= MAX_INT64 or not MIN_INT64 <= ldt_s <= MAX_INT64:
        raise _bad("timestamp or deletion time")


# ---- cells and deletions ------------------------------------------------------------------


def cell_to_plain(c: Cell) -> list:
    return [c.ts, c.value, c.ttl_s, c.ldt_s]


def cell_from_plain(obj: object) -> Cell:
    if not _is_array(obj) or len(obj) != 4:
        raise _bad("cell")
    ts, value, ttl_s, ldt_s = obj
    _check_time(ts, ldt_s)
    if (value is not None and type(value) is not bytes) or type(ttl_s) is not int \
            or not 0 <= ttl_s <= MAX_TTL_S:
        raise _bad("cell value or ttl")
    return Cell(ts, value, ttl_s, ldt_s)


def deletion_to_plain(d: Deletion | None) -> list | None:
    return None if d is None else [d.ts, d.ldt_s]


def deletion_from_plain(obj: object) -> Deletion | None:
    if obj is None:
        return None
    if not _is_array(obj) or len(obj) != 2:
        raise _bad("deletion")
    ts, ldt_s = obj
    _check_time(ts, ldt_s)
    return Deletion(ts, ldt_s)


# ---- range tombstones ---------------------------------------------------------------------


def range_tombstone_to_plain(rt: RangeTombstone) -> list:
    return [rt.start.prefix, rt.start.inclusive, rt.end.prefix, rt.end.inclusive,
            rt.deletion.ts, rt.deletion.ldt_s]


def range_tombstone_from_plain(obj: object) -> RangeTombstone:
    if not _is_array(obj) or len(obj) != _RT_FIELDS:
        raise _bad("range tombstone")
    start, start_incl, end, end_incl, ts, ldt_s = obj
    if type(start) is not bytes or type(end) is not bytes \
            or type(start_incl) is not bool or type(end_incl) is not bool:
        raise _bad("range tombstone bounds")
    _check_time(ts, ldt_s)
    return RangeTombstone(Bound(start, start_incl), Bound(end, end_incl), Deletion(ts, ldt_s))


# ---- rows ---------------------------------------------------------------------------------


def row_to_plain(r: Row) -> list:
    flat: list = []
    extend = flat.extend
    for (column, path), c in r.cells.items():
        extend((column, path, c.ts, c.value, c.ttl_s, c.ldt_s))
    m = r.marker
    d = r.deletion
    return [r.clustering, None if m is None else [m.ts, m.value, m.ttl_s, m.ldt_s],
            None if d is None else [d.ts, d.ldt_s], flat]


def _cells_from_flat(flat: object) -> dict:
    if not _is_array(flat) or len(flat) % _CELL_FIELDS:
        raise _bad("row cells")
    cells = {}
    it = iter(flat)
    for column, path, ts, value, ttl_s, ldt_s in zip(it, it, it, it, it, it):
        # One condition, no calls: this loop is the decoder's hot path.
        if type(column) is not str or type(path) is not bytes \
                or (value is not None and type(value) is not bytes) \
                or type(ttl_s) is not int or not 0 <= ttl_s <= MAX_TTL_S \
                or type(ts) is not int or not MIN_INT64 <= ts <= MAX_INT64 \
                or type(ldt_s) is not int or not MIN_INT64 <= ldt_s <= MAX_INT64:
            raise _bad("cell")
        cells[(column, path)] = Cell(ts, value, ttl_s, ldt_s)
    if len(cells) * _CELL_FIELDS != len(flat):
        raise _bad("duplicate cell")
    return cells


def row_from_plain(obj: object) -> Row:
    # The decoder's hot path: the usual None checks are inline, not calls.
    t = type(obj)
    if (t is not list and t is not tuple) or len(obj) != 4:
        raise _bad("row")
    clustering, marker, deletion, flat = obj
    t = type(clustering)
    if t is not list and t is not tuple:
        raise _bad("row clustering")
    for value in clustering:
        if type(value) is not bytes:
            raise _bad("row clustering value")
    if marker is not None:  # cell_from_plain inline: most rows have a marker
        t = type(marker)
        if (t is not list and t is not tuple) or len(marker) != 4:
            raise _bad("cell")
        ts, value, ttl_s, ldt_s = marker
        if type(ts) is not int or not MIN_INT64 <= ts <= MAX_INT64 \
                or type(ldt_s) is not int or not MIN_INT64 <= ldt_s <= MAX_INT64:
            raise _bad("timestamp or deletion time")
        if (value is not None and type(value) is not bytes) or type(ttl_s) is not int \
                or not 0 <= ttl_s <= MAX_TTL_S:
            raise _bad("cell value or ttl")
        marker = Cell(ts, value, ttl_s, ldt_s)
    return Row(tuple(clustering), marker,
               None if deletion is None else deletion_from_plain(deletion), _cells_from_flat(flat))


# ---- partitions ---------------------------------------------------------------------------


def partition_to_plain(p: Partition) -> list:
    rows: list = []
    append = rows.append
    for ckey, row in p.rows.items():
        append(ckey)
        append(row_to_plain(row))
    d = p.deletion
    return [p.table_id, p.key, None if d is None else [d.ts, d.ldt_s],
            [range_tombstone_to_plain(rt) for rt in p.range_tombstones],
            None if p.static is None else row_to_plain(p.static), rows]


# Worst-case msgpack bytes around the fields of one encoded item, lengths of bytes and
# strings aside (a header is at most 5 bytes, an integer at most 9): a cell's column, path
# and value headers plus ts, ttl_s, ldt_s; a row's own array, clustering and cell arrays, its
# marker cell and its deletion; a range tombstone's; a partition's own fields.
_HDR, _INT = 5, 9
_CELL_SIZE_BOUND = 3 * _HDR + 3 * _INT
_ROW_SIZE_BOUND = 3 * _HDR + (2 * _HDR + 3 * _INT) + (_HDR + 2 * _INT)
_RT_SIZE_BOUND = 3 * _HDR + 2 + 2 * _INT
_PARTITION_SIZE_BOUND = 5 * _HDR + TABLE_ID_BYTES + (_HDR + 2 * _INT) + 1


def row_size_bound(r: Row) -> int:
    """At least the bytes `row_to_plain(r)` takes once packed (never less)."""
    size = _ROW_SIZE_BOUND
    marker = r.marker
    if marker is not None and marker.value:
        size += len(marker.value)
    if r.clustering:
        size += sum(map(len, r.clustering)) + _HDR * len(r.clustering)
    for (column, path), c in r.cells.items():
        value = c.value
        size += _CELL_SIZE_BOUND + len(path) + len(column) + (len(value) if value else 0)
        if not column.isascii():  # UTF-8: up to 4 bytes per character
            size += 3 * len(column)
    return size


def partition_size_bound(p: Partition) -> int:
    """At least the bytes `partition_to_plain(p)` takes once packed (never less), computed
    without encoding: what the write path checks against the internode frame limit before a
    mutation is sent anywhere."""
    size = _PARTITION_SIZE_BOUND + len(p.key)
    if p.range_tombstones:
        for rt in p.range_tombstones:
            size += _RT_SIZE_BOUND + len(rt.start.prefix) + len(rt.end.prefix)
    if p.static is not None:
        size += row_size_bound(p.static)
    for ckey, row in p.rows.items():
        size += _HDR + len(ckey) + row_size_bound(row)
    return size


def _check_partition_id(table_id: object, key: object) -> None:
    if type(table_id) is not bytes or len(table_id) != TABLE_ID_BYTES:
        raise _bad("table id")
    if type(key) is not bytes or len(key) > MAX_PARTITION_KEY_BYTES:
        raise _bad("partition key")


def partition_from_plain(obj: object) -> Partition:
    # The decoder's hot path: the usual None and empty checks are inline, not calls.
    if not _is_array(obj) or len(obj) != 6:
        raise _bad("partition")
    table_id, key, deletion, rts, static, flat_rows = obj
    _check_partition_id(table_id, key)
    if not _is_array(rts) or not _is_array(flat_rows) or len(flat_rows) % 2:
        raise _bad("partition contents")
    rows = {}
    it = iter(flat_rows)
    for ckey, row in zip(it, it):
        if type(ckey) is not bytes:
            raise _bad("clustering key")
        rows[ckey] = row_from_plain(row)
    if len(rows) * 2 != len(flat_rows):
        raise _bad("duplicate row")
    return Partition(table_id, key, None if deletion is None else deletion_from_plain(deletion),
                     [range_tombstone_from_plain(rt) for rt in rts] if rts else [],
                     None if static is None else row_from_plain(static), rows)


# ---- read commands ------------------------------------------------------------------------


def _slices_to_plain(slices: tuple[Slice, ...] | None) -> list | None:
    if slices is None:
        return None
    flat: list = []
    for s in slices:
        flat.extend((s.start.prefix, s.start.inclusive, s.end.prefix, s.end.inclusive))
    return flat


def read_command_to_plain(cmd: ReadCommand) -> list:
    columns = None if cmd.columns is None else list(cmd.columns)
    plain = [cmd.table_id, cmd.key, _slices_to_plain(cmd.slices), columns]
    if cmd.limit_rows:
        plain.append(cmd.limit_rows)
        if cmd.reversed:
            plain.append(True)
    return plain


def _slices_from_plain(flat: object) -> tuple[Slice, ...] | None:
    if flat is None:
        return None
    if not _is_array(flat) or len(flat) % _SLICE_FIELDS:
        raise _bad("slices")
    slices = []
    it = iter(flat)
    for start, start_incl, end, end_incl in zip(it, it, it, it):
        if type(start) is not bytes or type(end) is not bytes \
                or type(start_incl) is not bool or type(end_incl) is not bool:
            raise _bad("slice bounds")
        slices.append(Slice(Bound(start, start_incl), Bound(end, end_incl)))
    return tuple(slices)


def _columns_from_plain(columns: object) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if not _is_array(columns):
        raise _bad("columns")
    for column in columns:
        if type(column) is not str:
            raise _bad("column name")
    return tuple(columns)


def read_command_from_plain(obj: object) -> ReadCommand:
    n = len(obj) if _is_array(obj) else 0
    if n == 4:
        table_id, key, slices, columns = obj
        limit, backwards = 0, False
    elif n == 5 or n == 6:  # only a limited read carries its limit, and then its direction
        table_id, key, slices, columns, limit = obj[0], obj[1], obj[2], obj[3], obj[4]
        if type(limit) is not int or not 0 < limit <= MAX_ROW_LIMIT:
            raise _bad("read row limit")
        backwards = n == 6
        if backwards and obj[5] is not True:
            raise _bad("read direction")
    else:
        raise _bad("read command")
    _check_partition_id(table_id, key)
    return ReadCommand(table_id, key, _slices_from_plain(slices), _columns_from_plain(columns), limit,
                       backwards)


def range_command_to_plain(cmd: RangeCommand) -> list:
    columns = None if cmd.columns is None else list(cmd.columns)
    out = [cmd.table_id, cmd.start_token, cmd.start_key, cmd.end_token,
           _slices_to_plain(cmd.slices), columns, cmd.limit_rows, cmd.per_partition_limit]
    if cmd.start_ckey is not None:
        out.append(cmd.start_ckey)
    return out


def _check_token(token: object) -> None:
    if type(token) is not int or not MIN_INT64 <= token <= MAX_INT64:
        raise _bad("token")


def range_command_from_plain(obj: object) -> RangeCommand:
    if not _is_array(obj) or len(obj) not in (8, 9):
        raise _bad("range command")
    table_id, start_token, start_key, end_token, slices, columns, limit, per_partition = obj[:8]
    start_ckey = obj[8] if len(obj) == 9 else None
    _check_partition_id(table_id, b"" if start_key is None else start_key)
    if start_ckey is not None and (type(start_ckey) is not bytes or start_key is None):
        raise _bad("range command resume point")
    _check_token(start_token)
    _check_token(end_token)
    for n in (limit, per_partition):
        if type(n) is not int or not 0 <= n <= MAX_ROW_LIMIT:
            raise _bad("row limit")
    return RangeCommand(table_id, start_token, start_key, end_token, _slices_from_plain(slices),
                        _columns_from_plain(columns), limit, per_partition, start_ckey)
