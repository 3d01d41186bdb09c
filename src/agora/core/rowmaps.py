"""Partition fragments from column->value maps, and row maps from partitions: the small
statement layer behind the admin `write`/`read`/`delete` verbs (CLI, demo, tests).

Owns: INSERT/DELETE semantics over a table definition (an INSERT writes a row marker plus one
cell per column; a None value writes a cell tombstone; a DELETE with the whole primary key
writes a row tombstone, with only the partition key a partition tombstone) and the inverse
mapping for reads. Values are msgpack-native (ints, floats, str, bytes, bool, None) and are
coerced to the column's CQL type. The CQL front door builds its own partitions from CQL
statements; both end in the same coordinator calls.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid

from agora.core.errors import InvalidRequest
from agora.core.ring.partitioner import compose_partition_key
from agora.core.schema import types as T
from agora.core.types import (Bound, Cell, Deletion, Partition, ReadCommand, Row, Slice,
                              TimestampUs)


def _coerce(ctype, value):
    """A msgpack-native value to what the CQL type's serializer takes."""
    name = ctype.cql_name()
    if value is None:
        return None
    if name in ("uuid", "timeuuid") and isinstance(value, str):
        return uuid.UUID(value)
    if name == "timestamp" and isinstance(value, int):
        return datetime.datetime.fromtimestamp(value / 1000, tz=datetime.timezone.utc)
    if name == "decimal" and isinstance(value, (str, int, float)):
        return decimal.Decimal(str(value))
    if name in ("float", "double") and isinstance(value, int):
        return float(value)
    return value


def _native(value):
    """A deserialized value to something msgpack can carry."""
    if isinstance(value, (uuid.UUID, decimal.Decimal, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, datetime.datetime):
        return int(value.replace(tzinfo=value.tzinfo or datetime.timezone.utc).timestamp() * 1000)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_native(v) for v in value)
    if isinstance(value, dict):
        return {_native(k): _native(v) for k, v in value.items()}
    return value


def _ser(col, value) -> bytes:
    return T.serialize(col.type, _coerce(col.type, value))


def partition_key(table, values: dict) -> bytes:
    cols = table.partition_key_columns
    missing = [c.name for c in cols if values.get(c.name) is None]
    if missing:
        raise InvalidRequest(f"Missing mandatory PRIMARY KEY part {missing[0]}")
    return compose_partition_key([_ser(c, values[c.name]) for c in cols])


def _clustering(table, values: dict, require_all: bool) -> tuple[tuple[bytes, ...], bytes]:
    raw: list[bytes] = []
    for c in table.clustering_columns:
        if values.get(c.name) is None:
            if require_all:
                raise InvalidRequest(f"Missing mandatory PRIMARY KEY part {c.name}")
            break
        raw.append(_ser(c, values[c.name]))
    types = table.ckey_types()[: len(raw)]
    return tuple(raw), T.encode_ckey(types, raw)


def insert(table, values: dict, ts: TimestampUs, ttl_s: int = 0, now_s: int = 0) -> Partition:
    unknown = sorted(k for k in values if table.column(k) is None)
    if unknown:
        raise InvalidRequest(f"Undefined column name {unknown[0]} in table {table.keyspace}.{table.name}")
    key = partition_key(table, values)
    clustering, ckey = _clustering(table, values, require_all=True)
    ldt = now_s + ttl_s if ttl_s else 0
    part = Partition(table.id.bytes, key)
    row = Row(clustering, marker=Cell(ts, b"", ttl_s, ldt))
    static = Row(())
    for name in sorted(values):
        col = table.column(name)
        if col.kind in ("partition_key", "clustering"):
            continue
        v = values[name]
        cell = Cell(ts, None, 0, now_s) if v is None else Cell(ts, _ser(col, v), ttl_s, ldt)
        (static if col.kind == "static" else row).cells[(name, b"")] = cell
    if table.clustering_columns:
        part.rows[ckey] = row
        if static.cells:
            part.static = static
    else:
        row.cells.update(static.cells)
        part.rows[b""] = row
    return part


def delete(table, values: dict, ts: TimestampUs, now_s: int) -> Partition:
    """DELETE FROM t WHERE <key>: a row tombstone, a clustering-prefix range tombstone, or a
    partition tombstone, depending on how much of the primary key is given."""
    key = partition_key(table, values)
    clustering, ckey = _clustering(table, values, require_all=False)
    part = Partition(table.id.bytes, key)
    deletion = Deletion(ts, now_s)
    if not clustering:
        part.deletion = deletion
    elif len(clustering) == len(table.clustering_columns):
        part.rows[ckey] = Row(clustering, deletion=deletion)
    else:
        from agora.core.types import RangeTombstone
        part.range_tombstones.append(RangeTombstone(Bound(ckey, True), Bound(ckey, True), deletion))
    return part


def read_command(table, values: dict) -> ReadCommand:
    """SELECT * FROM t WHERE <partition key> [AND <clustering prefix>]."""
    key = partition_key(table, values)
    clustering, ckey = _clustering(table, values, require_all=False)
    slices = (Slice(Bound(ckey, True), Bound(ckey, True)),) if clustering else None
    return ReadCommand(table.id.bytes, key, slices, None)


def _decode_pk(table, key: bytes) -> dict:
    cols = table.partition_key_columns
    if len(cols) == 1:
        return {cols[0].name: _native(T.deserialize(cols[0].type, key))}
    out, pos = {}, 0
    for c in cols:
        n = int.from_bytes(key[pos:pos + 2], "big")
        out[c.name] = _native(T.deserialize(c.type, key[pos + 2:pos + 2 + n]))
        pos += n + 3
    return out


def rows_of(table, part: Partition | None, with_writetime: bool = False) -> list[dict]:
    """The live rows of `part` (already reduced to what a client sees) as column maps."""
    if part is None:
        return []
    base = _decode_pk(table, part.key)
    static_vals = {}
    if part.static is not None:
        for (name, _path), cell in sorted(part.static.cells.items()):
            static_vals[name] = _native(T.deserialize(table.column(name).type, cell.value))
    out = []
    for ckey in sorted(part.rows):
        row = part.rows[ckey]
        values = dict(base)
        for c, raw in zip(table.clustering_columns, row.clustering):
            values[c.name] = _native(T.deserialize(c.type, raw))
        values.update(static_vals)
        for (name, _path), cell in sorted(row.cells.items()):
            col = table.column(name)
            if col is None:
                continue
            values[name] = _native(T.deserialize(col.type, cell.value))
            if with_writetime:
                values[f"writetime({name})"] = cell.ts
        out.append(values)
    if not out and static_vals:
        out.append({**base, **static_vals})
    return out
