"""Rows as CQL sees them, from the partitions the coordinator returns: one `RowView` per
clustering row (or per partition with only static data), with every column's serialized value
and the cell metadata WRITETIME() and TTL() need.

Owns: reassembling multi-cell values (non-frozen sets, maps, lists and UDTs stored one cell
per element) into the collection bytes a client expects, decoding partition and clustering
key columns, and the row filter of ALLOW FILTERING. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.schema import types as T
from agora.core.types import Cell, Partition
from agora.cql import ast


@dataclass
class RowView:
    key: bytes  # partition key bytes
    ckey: bytes  # encoded clustering key (b"" for a static-only row)
    values: dict[str, bytes | None]
    cells: dict[str, Cell]  # simple columns' cells, for writetime()/ttl()
    static_only: bool = False


_NOTHING: dict = {}  # the values and cells of a bare row (rows_of); never filled


def split_partition_key(table, key: bytes) -> list[bytes]:
    cols = table.partition_key_columns
    if len(cols) == 1:
        return [key]
    out, pos = [], 0
    while pos < len(key):
        n = int.from_bytes(key[pos:pos + 2], "big")
        out.append(key[pos + 2:pos + 2 + n])
        pos += n + 3
    return out


def _assemble(col, cells: list[tuple[bytes, Cell]]) -> bytes | None:
    t = col.type
    live = [(path, c) for path, c in cells if path]
    if not live:
        return None
    live.sort(key=lambda pc: pc[0])
    if isinstance(t, T.SetType):
        return T.join_collection(t, [T.path_element(t.element, p) for p, _ in live])
    if isinstance(t, T.MapType):
        return T.join_collection(t, [(T.path_element(t.key, p), c.value) for p, c in live])
    if isinstance(t, T.ListType):
        return T.join_collection(t, [c.value for _, c in live])
    if isinstance(t, T.UserType):
        fields: list = [None] * len(t.field_types)
        for p, c in live:
            i = T.udt_field_index(p)
            if i < len(fields):
                fields[i] = c.value
        return T.join_collection(t, fields)
    return None


def _columns_of(table, cells_by_path: dict, values: dict | None, metas: dict | None) -> bool:
    """Fill `values` and `metas` from a row's cells; whether any cell is the table's: cells
    of columns the table no longer has, or had dropped when they were written
    (`TableDef.hides`), are not. With `values` None, only whether any cell is."""
    multi: dict[str, list] = {}
    dropped = table.dropped
    multicell = table.multicell_by_name
    seen = False
    for (name, path), cell in cells_by_path.items():
        is_multi = multicell.get(name)
        if is_multi is None or cell.value is None:
            continue
        if dropped and table.hides(name, cell.ts):
            continue
        seen = True
        if values is None:
            return True
        if is_multi:
            multi.setdefault(name, []).append((path, cell))
        else:
            values[name] = cell.value
            metas[name] = cell
    for name, cells in multi.items():
        values[name] = _assemble(table.column(name), cells)
    return seen


def rows_of(table, part: Partition | None, static_only: bool = True, bare: bool = False) -> list[RowView]:
    """The rows of a live partition view, in clustering order. A partition with static data
    but no rows gives one static-only row when `static_only` (Cassandra does so only for
    queries of whole partitions, and only once per partition). A row without a live marker
    whose live cells all belong to dropped columns is not a row. `bare`: the same rows
    without their values and cells (what COUNT(*) needs: which rows there are)."""
    if part is None:
        return []
    if bare:
        out = [RowView(part.key, ckey, _NOTHING, _NOTHING) for ckey, row in sorted(part.rows.items())
               if row.marker is not None or _columns_of(table, row.cells, None, None)]
        if not out and static_only and part.static is not None \
                and _columns_of(table, part.static.cells, None, None):
            out.append(RowView(part.key, b"", _NOTHING, _NOTHING, static_only=True))
        return out
    base: dict[str, bytes | None] = {}
    for col, raw in zip(table.partition_key_columns, split_partition_key(table, part.key)):
        base[col.name] = raw
    static_vals: dict = {}
    static_meta: dict = {}
    if part.static is not None:
        _columns_of(table, part.static.cells, static_vals, static_meta)
    out = []
    for ckey in sorted(part.rows):
        row = part.rows[ckey]
        values = dict(base)
        for col, raw in zip(table.clustering_columns, row.clustering):
            values[col.name] = raw
        values.update(static_vals)
        metas = dict(static_meta)
        if not _columns_of(table, row.cells, values, metas) and row.marker is None:
            continue  # live only through cells that are not the table's (dropped columns)
        out.append(RowView(part.key, ckey, values, metas))
    if not out and static_vals and static_only:
        out.append(RowView(part.key, b"", {**base, **static_vals}, static_meta, static_only=True))
    return out


# ---- ALLOW FILTERING ------------------------------------------------------------------------


def _elements(t, raw: bytes, keys: bool) -> list[bytes]:
    items = T.split_collection(t, raw)
    if isinstance(t, T.MapType):
        return [k if keys else v for k, v in items]
    return items


def _compare(t, a: bytes, b: bytes) -> int:
    return T.compare(t, a, b)


def matches(row: RowView, filters: list, table) -> bool:
    for f in filters:
        value = row.values.get(f.column.name)
        t = f.column.type
        op = f.op
        if op in (ast.Operator.CONTAINS, ast.Operator.CONTAINS_KEY):
            if value is None or f.values[0] not in _elements(t, value, op == ast.Operator.CONTAINS_KEY):
                return False
            continue
        if f.key is not None:  # m[k] op v
            if value is None:
                return False
            entries = dict(T.split_collection(t, value))
            value, t = entries.get(f.key), t.value
        if value is None:
            return False
        if op == ast.Operator.IN:
            if not any(_compare(t, value, v) == 0 for v in f.values):
                return False
            continue
        c = _compare(t, value, f.values[0])
        ok = {ast.Operator.EQ: c == 0, ast.Operator.NEQ: c != 0, ast.Operator.LT: c < 0,
              ast.Operator.LTE: c <= 0, ast.Operator.GT: c > 0, ast.Operator.GTE: c >= 0}.get(op)
        if not ok:
            return False
    return True
