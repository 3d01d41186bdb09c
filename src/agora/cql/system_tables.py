"""The tables every node serves about itself, its peers and the schema: `system.local`,
`system.peers_v2`, `system.peers` and `system_schema.*`, computed on demand from the node's
`Schema` and `ClusterView` (nothing is stored).

Owns: the definitions of those tables (as `TableDef`s, so the statement layer selects, filters
and serializes them like any table), the `system` and `system_schema` keyspace definitions,
and the rows (`virtual_rows`): plain Python values in the driver's conventions, one dict per
row holding every column (None for null), in a deterministic order (by partition key, then
clustering order; peers by address).

Deliberately does not know CQL statements (WHERE, projection, paging and serialization are
the statement layer's), how the cluster view is gathered, or DESCRIBE (`describe.py`).

Where the rules come from:
  * column names, types and keys: Cassandra 5.0 `db/SystemKeyspace.java` (local, peers_v2,
    peers) and `schema/SchemaKeyspace.java` (system_schema.*); table ids as Cassandra's
    `TableId.forSystemTable` (a name-based MD5 uuid of keyspace + table name);
  * which columns the driver and cqlsh read, and what they need in them:
    shared/cql-compat.md sections 2.2-2.7 (`flags` must hold 'compound' or the driver turns the
    table into COMPACT STORAGE; `clustering_order` is never null; a peer row needs host_id,
    data_center, rack and tokens or the driver drops it);
  * `system_virtual_schema`: cassandra-driver 3.30.1 `SchemaParserV4` queries it and tolerates
    an Invalid error; we serve no virtual keyspaces, so it answers Invalid.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

from agora.cql.backend import ClusterView, NodeView
from agora.core.errors import InvalidRequest
from agora.core.schema.model import (
    TABLE_OPTIONS, ColumnDef, KeyspaceDef, Schema, TableDef, TypeDef,
)
from agora.core.schema.types import parse_type

CQL_VERSION = "3.4.7"
NATIVE_PROTOCOL_VERSION = "5"
RELEASE_VERSION = "5.0.0"  # cqlsh warns on anything else; the driver picks SchemaParserV4 by it
PARTITIONER = "org.apache.cassandra.dht.Murmur3Partitioner"
LOCAL_REPLICATION = {"class": "org.apache.cassandra.locator.LocalStrategy"}
UNSERVED_KEYSPACE = "system_virtual_schema"  # the driver asks; Invalid is the expected answer

# Cassandra 5.0 table options that Agora's TABLE_OPTIONS does not model: served with
# Cassandra's defaults so system_schema.tables has 5.0's columns.
FIXED_TABLE_OPTIONS = {"allow_auto_snapshot": True, "incremental_backups": True,
                       "memtable": "default"}

_SYSTEM_OPTIONS = {"gc_grace_seconds": 0, "memtable_flush_period_in_ms": 3600_000}
_SCHEMA_OPTIONS = {"gc_grace_seconds": 7 * 86400, "memtable_flush_period_in_ms": 3600_000}

_TABLE_OPTION_COLUMNS = """additional_write_policy text, allow_auto_snapshot boolean,
    bloom_filter_fp_chance double, caching frozen<map<text, text>>, cdc boolean, comment text,
    compaction frozen<map<text, text>>, compression frozen<map<text, text>>,
    crc_check_chance double, dclocal_read_repair_chance double, default_time_to_live int,
    extensions frozen<map<text, blob>>, gc_grace_seconds int, id uuid,
    incremental_backups boolean, max_index_interval int, memtable text,
    memtable_flush_period_in_ms int, min_index_interval int, read_repair text,
    read_repair_chance double, speculative_retry text"""

# (keyspace, table, comment, partition key, clustering columns, "name type, ..." columns)
_SPECS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("system", "local", "information about the local node", "key", "",
     """key text, bootstrapped text, broadcast_address inet, broadcast_port int,
     cluster_name text, cql_version text, data_center text, gossip_generation int,
     host_id uuid, listen_address inet, listen_port int, native_protocol_version text,
     partitioner text, rack text, release_version text, rpc_address inet, rpc_port int,
     schema_version uuid, tokens set<text>, truncated_at map<uuid, blob>"""),
    ("system", "peers", "information about known peers in the cluster", "peer", "",
     """peer inet, data_center text, host_id uuid, preferred_ip inet, rack text,
     release_version text, rpc_address inet, schema_version uuid, tokens set<text>"""),
    ("system", "peers_v2", "information about known peers in the cluster", "peer",
     "peer_port",
     """peer inet, peer_port int, data_center text, host_id uuid, preferred_ip inet,
     preferred_port int, rack text, release_version text, native_address inet,
     native_port int, schema_version uuid, tokens set<text>"""),
    ("system_schema", "aggregates", "user defined aggregate definitions", "keyspace_name",
     "aggregate_name argument_types",
     """keyspace_name text, aggregate_name text, argument_types frozen<list<text>>,
     final_func text, initcond text, return_type text, state_func text, state_type text"""),
    ("system_schema", "column_masks", "column dynamic data masks", "keyspace_name",
     "table_name column_name",
     """keyspace_name text, table_name text, column_name text, function_keyspace text,
     function_name text, function_argument_types frozen<list<text>>,
     function_argument_values frozen<list<text>>,
     function_argument_nulls frozen<list<boolean>>"""),
    ("system_schema", "columns", "column definitions", "keyspace_name",
     "table_name column_name",
     """keyspace_name text, table_name text, column_name text, clustering_order text,
     column_name_bytes blob, kind text, position int, type text"""),
    ("system_schema", "dropped_columns", "dropped column registry", "keyspace_name",
     "table_name column_name",
     """keyspace_name text, table_name text, column_name text, dropped_time timestamp,
     kind text, type text"""),
    ("system_schema", "functions", "user defined function definitions", "keyspace_name",
     "function_name argument_types",
     """keyspace_name text, function_name text, argument_types frozen<list<text>>,
     argument_names frozen<list<text>>, body text, called_on_null_input boolean,
     language text, return_type text"""),
    ("system_schema", "indexes", "secondary index definitions", "keyspace_name",
     "table_name index_name",
     """keyspace_name text, table_name text, index_name text, kind text,
     options frozen<map<text, text>>"""),
    ("system_schema", "keyspaces", "keyspace definitions", "keyspace_name", "",
     """keyspace_name text, durable_writes boolean,
     replication frozen<map<text, text>>"""),
    ("system_schema", "tables", "table definitions", "keyspace_name", "table_name",
     "keyspace_name text, table_name text, flags frozen<set<text>>, "
     + _TABLE_OPTION_COLUMNS),
    ("system_schema", "triggers", "trigger definitions", "keyspace_name",
     "table_name trigger_name",
     """keyspace_name text, table_name text, trigger_name text,
     options frozen<map<text, text>>"""),
    ("system_schema", "types", "user defined type definitions", "keyspace_name", "type_name",
     """keyspace_name text, type_name text, field_names frozen<list<text>>,
     field_types frozen<list<text>>"""),
    ("system_schema", "views", "view definitions", "keyspace_name", "view_name",
     """keyspace_name text, view_name text, base_table_id uuid, base_table_name text,
     include_all_columns boolean, where_clause text, """ + _TABLE_OPTION_COLUMNS),
)


# --------------------------------------------------------------------------- definitions


def system_table_id(keyspace: str, table: str) -> uuid.UUID:
    """Cassandra's TableId.forSystemTable: Java's UUID.nameUUIDFromBytes(keyspace + table)."""
    digest = hashlib.md5((keyspace + table).encode("utf-8")).digest()
    return uuid.UUID(bytes=digest, version=3)


def _split_columns(text: str) -> list[tuple[str, str]]:
    """'a int, b map<text, int>' -> [('a', 'int'), ('b', 'map<text, int>')]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "<") - (ch == ">")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [tuple(p.split(None, 1)) for p in (p.strip() for p in parts) if p]  # type: ignore


def _build_table(keyspace: str, name: str, comment: str, partition_key: str,
                 clustering: str, columns_text: str) -> TableDef:
    types = {n: parse_type(t) for n, t in _split_columns(columns_text)}
    keys = partition_key.split()
    ckeys = clustering.split()
    options = dict(_SYSTEM_OPTIONS if keyspace == "system" else _SCHEMA_OPTIONS, comment=comment)
    return TableDef.build(
        keyspace, name,
        partition_key=[(n, types[n]) for n in keys],
        clustering=[(n, types[n], "asc") for n in ckeys],
        regular=[(n, t) for n, t in types.items() if n not in keys and n not in ckeys],
        options=options, table_id=system_table_id(keyspace, name))


VIRTUAL_KEYSPACES: dict[str, KeyspaceDef] = {
    name: KeyspaceDef(name, dict(LOCAL_REPLICATION), True) for name in ("system", "system_schema")}
VIRTUAL_TABLES: dict[tuple[str, str], TableDef] = {
    (spec[0], spec[1]): _build_table(*spec) for spec in _SPECS}


def is_virtual(keyspace: str) -> bool:
    """True for the keyspaces this module answers for: system, system_schema, and
    system_virtual_schema (whose every table is an InvalidRequest, see `virtual_table`)."""
    return keyspace in VIRTUAL_KEYSPACES or keyspace == UNSERVED_KEYSPACE


def virtual_table(keyspace: str, name: str) -> TableDef | None:
    """The definition of a served table, or None if `keyspace.name` is not one. Raises
    InvalidRequest for system_virtual_schema tables (the driver expects exactly that)."""
    if keyspace == UNSERVED_KEYSPACE:
        raise InvalidRequest(f"table {name} does not exist "
                             f"(no virtual keyspaces: {UNSERVED_KEYSPACE} is not served)")
    return VIRTUAL_TABLES.get((keyspace, name))


def virtual_tables(keyspace: str) -> list[TableDef]:
    """The served tables of one virtual keyspace, sorted by name."""
    return [t for (ks, _), t in sorted(VIRTUAL_TABLES.items()) if ks == keyspace]


def all_keyspaces(schema: Schema) -> list[KeyspaceDef]:
    """The virtual keyspaces and the schema's keyspaces, sorted by name (a schema keyspace
    may not shadow a virtual one)."""
    found = dict(VIRTUAL_KEYSPACES)
    for ks in schema.keyspaces():
        found.setdefault(ks.name, ks)
    return [found[name] for name in sorted(found)]


def all_tables(schema: Schema, keyspace: str | None = None) -> list[TableDef]:
    """Tables of one keyspace (or all), virtual ones included, sorted by (keyspace, name)."""
    out = [t for t in VIRTUAL_TABLES.values() if keyspace in (None, t.keyspace)]
    out += [t for t in schema.tables(keyspace) if t.keyspace not in VIRTUAL_KEYSPACES]
    return sorted(out, key=lambda t: (t.keyspace, t.name))


def table_in(schema: Schema, keyspace: str, name: str) -> TableDef | None:
    """A table of the schema or a virtual one."""
    if keyspace in VIRTUAL_KEYSPACES:
        return VIRTUAL_TABLES.get((keyspace, name))
    return schema.table(keyspace, name)


# --------------------------------------------------------------------------- values


class SortedTextSet(frozenset):
    """A frozenset that iterates in Cassandra's order for text elements (code point order =
    UTF-8 byte order), so serialized set bytes are the same in every process."""

    __slots__ = ()

    def __iter__(self):  # type: ignore[override]
        return iter(sorted(frozenset.__iter__(self)))

    def __repr__(self) -> str:
        return f"SortedTextSet({sorted(self)!r})"


def _text_map(m: dict) -> dict:
    return {k: m[k] for k in sorted(m)}


def _uuid(text: str | None) -> uuid.UUID | None:
    return uuid.UUID(text) if text else None


def _tokens(node: NodeView) -> SortedTextSet:
    return SortedTextSet(str(t) for t in node.tokens)


def _row(table: TableDef, **values: Any) -> dict[str, Any]:
    """A full row of `table`: every column present, None for null."""
    unknown = set(values) - {c.name for c in table.columns}
    assert not unknown, f"{table.keyspace}.{table.name} has no columns {sorted(unknown)}"
    return {c.name: values.get(c.name) for c in table.columns}


def _local_rows(schema: Schema, view: ClusterView) -> list[dict]:
    node = view.local
    version = node.schema_version or str(schema.version())
    return [_row(
        VIRTUAL_TABLES["system", "local"], key="local", bootstrapped="COMPLETED",
        broadcast_address=node.address, broadcast_port=node.internode_port,
        cluster_name=view.cluster_name, cql_version=CQL_VERSION, data_center=node.dc,
        gossip_generation=getattr(node, "gossip_generation", None),
        host_id=_uuid(node.host_id), listen_address=node.address,
        listen_port=node.internode_port, native_protocol_version=NATIVE_PROTOCOL_VERSION,
        partitioner=PARTITIONER, rack=node.rack,
        release_version=node.release_version or RELEASE_VERSION,
        rpc_address=node.native_address, rpc_port=node.native_port,
        schema_version=uuid.UUID(version), tokens=_tokens(node), truncated_at=None)]


def _valid_peers(view: ClusterView) -> list[NodeView]:
    """Peers the driver would accept (cql-compat 2.3): host id, DC, rack and tokens known.
    A node still choosing its tokens is not a peer yet, as in Cassandra."""
    return sorted((p for p in view.peers if p.host_id and p.dc and p.rack and p.tokens
                   and p.node_id != view.local.node_id),
                  key=lambda p: (_inet_order(p.address), p.internode_port))


def _inet_order(address: str) -> tuple:
    """A deterministic row order: IPv4 before IPv6, each by address bytes. (Cassandra lists
    partitions in token order; no client depends on the order of peer rows.)"""
    try:
        ip = ipaddress.ip_address(address)
        return (len(ip.packed), ip.packed)
    except ValueError:
        return (99, address.encode())


def _peers_v2_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system", "peers_v2"]
    return [_row(table, peer=p.address, peer_port=p.internode_port, data_center=p.dc,
                 host_id=_uuid(p.host_id), rack=p.rack,
                 release_version=p.release_version or RELEASE_VERSION,
                 native_address=p.native_address, native_port=p.native_port,
                 schema_version=_uuid(p.schema_version), tokens=_tokens(p))
            for p in _valid_peers(view)]


def _peers_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system", "peers"]
    rows, seen = [], set()
    for p in _valid_peers(view):
        if p.address in seen:  # no port in the key: the first node of an address stands
            continue
        seen.add(p.address)
        rows.append(_row(table, peer=p.address, data_center=p.dc, host_id=_uuid(p.host_id),
                         rack=p.rack, release_version=p.release_version or RELEASE_VERSION,
                         rpc_address=p.native_address, schema_version=_uuid(p.schema_version),
                         tokens=_tokens(p)))
    return rows


# --------------------------------------------------------------------------- system_schema


def _keyspace_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system_schema", "keyspaces"]
    return [_row(table, keyspace_name=ks.name, durable_writes=ks.durable_writes,
                 replication=_text_map(ks.replication))
            for ks in all_keyspaces(schema)]


def table_options(t: TableDef) -> dict[str, Any]:
    """Every option column of system_schema.tables for `t`, defaults filled in."""
    out: dict[str, Any] = {}
    for name in TABLE_OPTIONS:
        value = t.option(name)
        out[name] = _text_map(value) if isinstance(value, dict) else value
    out.update(FIXED_TABLE_OPTIONS)
    return out


def table_flags(t: TableDef) -> SortedTextSet:
    """Cassandra's TableMetadata.Flag set; always 'compound' (CQL tables are never compact)."""
    return SortedTextSet({"compound", "counter"} if t.is_counter else {"compound"})


def _tables_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system_schema", "tables"]
    return [_row(table, keyspace_name=t.keyspace, table_name=t.name, flags=table_flags(t),
                 id=t.id, **table_options(t))
            for t in all_tables(schema)]


def _column_row(table: TableDef, t: TableDef, c: ColumnDef) -> dict:
    return _row(table, keyspace_name=t.keyspace, table_name=t.name, column_name=c.name,
                clustering_order=c.clustering_order,
                column_name_bytes=c.name.encode("utf-8", "surrogatepass"), kind=c.kind,
                position=c.position, type=c.type.cql_name())


def _columns_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system_schema", "columns"]
    return [_column_row(table, t, c) for t in all_tables(schema)
            for c in sorted(t.columns, key=lambda c: c.name.encode("utf-8", "surrogatepass"))]


def _dropped_columns_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system_schema", "dropped_columns"]
    return [_row(table, keyspace_name=t.keyspace, table_name=t.name, column_name=name,
                 dropped_time=d.dropped_ts // 1000, kind=d.kind, type=d.type.cql_name())
            for t in all_tables(schema)
            for name, d in sorted(t.dropped.items(), key=lambda nd: nd[0].encode("utf-8", "surrogatepass"))]


def _type_row(table: TableDef, u: TypeDef) -> dict:
    return _row(table, keyspace_name=u.keyspace, type_name=u.name,
                field_names=list(u.field_names),
                field_types=[f.cql_name() for f in u.field_types])


def _types_rows(schema: Schema, view: ClusterView) -> list[dict]:
    table = VIRTUAL_TABLES["system_schema", "types"]
    return [_type_row(table, u) for u in schema.types()]


def _no_rows(schema: Schema, view: ClusterView) -> list[dict]:
    return []


_ROWS: dict[tuple[str, str], Callable[[Schema, ClusterView], list[dict]]] = {
    ("system", "local"): _local_rows,
    ("system", "peers_v2"): _peers_v2_rows,
    ("system", "peers"): _peers_rows,
    ("system_schema", "keyspaces"): _keyspace_rows,
    ("system_schema", "tables"): _tables_rows,
    ("system_schema", "columns"): _columns_rows,
    ("system_schema", "dropped_columns"): _dropped_columns_rows,
    ("system_schema", "types"): _types_rows,
}
assert set(_ROWS) <= set(VIRTUAL_TABLES)


def virtual_rows(keyspace: str, table: str, schema: Schema,
                 view: ClusterView) -> list[dict[str, Any]]:
    """Every row of a served table, in clustering order, each a dict of every column
    (None = null). Values follow the column types as `types.serialize` takes them: str,
    int, float, bool, bytes, uuid.UUID, inet as str, sets as (sorted) frozensets, maps as
    dicts in key order, lists as lists. Raises InvalidRequest for an unserved table."""
    if virtual_table(keyspace, table) is None:
        raise InvalidRequest(f"table {table} does not exist")
    return _ROWS.get((keyspace, table), _no_rows)(schema, view)


__all__ = [
    "CQL_VERSION", "NATIVE_PROTOCOL_VERSION", "PARTITIONER", "RELEASE_VERSION",
    "VIRTUAL_KEYSPACES", "VIRTUAL_TABLES", "SortedTextSet", "all_keyspaces", "all_tables",
    "is_virtual", "system_table_id", "table_flags", "table_in",
    "table_options", "virtual_rows", "virtual_table", "virtual_tables",
]
