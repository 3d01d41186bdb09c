"""Server-side DESCRIBE: the result sets cqlsh 6.x prints, and the CREATE statements in them.

Owns: what each DESCRIBE form lists and in which order, the CREATE KEYSPACE / TABLE / TYPE
text (Cassandra's layout, so that running the statements again recreates the schema), the
DESCRIBE CLUSTER row with its range ownership, and the error wording.

Deliberately does not know the DESCRIBE grammar (the parser hands over `kind`, keyspace and
name), paging, or how the cluster view is gathered.

Where the rules come from: Cassandra 5.0 `cql3/statements/DescribeStatement.java` (forms,
result columns `system.describe`, ordering by case-insensitive name, errors such as
"'x' not found in keyspaces"), `schema/KeyspaceMetadata.toCqlString`,
`TableMetadata.appendCqlTo` and `TableParams.appendCqlTo` (layout, alphabetical options,
CLUSTERING ORDER first), `db/marshal/UserType.toCqlString`, `ColumnIdentifier.maybeQuote`
with `cql3/reserved_keywords.txt`; what cqlsh reads from the rows: shared/cql-compat.md
section 7. Deviations: only the table options Agora models are printed (5.0 also prints
allow_auto_snapshot, incremental_backups and memtable, which Agora's CREATE TABLE would
reject), and the long-deprecated read_repair_chance options only when not at their default.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from agora.cql.backend import ClusterView
from agora.cql.results import ColumnSpec, Rows
from agora.cql.system_tables import PARTITIONER, all_keyspaces, all_tables
from agora.core.errors import InvalidRequest
from agora.core.ring.strategies import strategy_from_options
from agora.core.ring.token_ring import NodeInfo, TokenRing
from agora.core.schema.model import (
    SYSTEM_KEYSPACES, TABLE_OPTIONS, ColumnDef, KeyspaceDef, Schema, TableDef, TypeDef,
)
from agora.core.schema.types import (
    TEXT, CqlType, ListType, MapType, UserType, serialize, subtypes,
)

SNITCH = "DynamicEndpointSnitch"  # what Cassandra reports with its default dynamic snitch
_STRATEGY_PACKAGE = "org.apache.cassandra.locator."
RESERVED_KEYWORDS = frozenset("""
    add allow alter and apply asc authorize batch begin by columnfamily create delete desc
    describe drop entries execute from full grant if in index infinity insert into is keyspace
    limit materialized modify nan norecursive not null of on or order primary rename revoke
    schema select set table to token truncate unlogged update use using view where with
""".split())
_PLAIN = re.compile(r"[a-z][a-z0-9_]*")
# Options printed only when set to something other than the default (Cassandra 4+ prints
# them never; Agora still accepts them, so a non-default value must survive a round trip).
_DEPRECATED_OPTIONS = ("dclocal_read_repair_chance", "read_repair_chance")

KINDS = ("keyspaces", "keyspace", "tables", "table", "types", "type", "functions", "function",
         "aggregates", "aggregate", "index", "materialized_view", "cluster", "schema",
         "full_schema", "name")


def maybe_quote(name: str) -> str:
    """Cassandra's ColumnIdentifier.maybeQuote: bare when lowercase-plain and not reserved."""
    if _PLAIN.fullmatch(name) and name not in RESERVED_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _quote_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- CREATE text


def keyspace_cql(ks: KeyspaceDef) -> str:
    """CREATE KEYSPACE as Cassandra prints it (the two spaces before AND are Cassandra's)."""
    options = dict(ks.replication)
    cls = options.pop("class")
    if cls.startswith(_STRATEGY_PACKAGE):
        cls = cls[len(_STRATEGY_PACKAGE):]
    parts = [f"'class': {_quote_text(cls)}"]
    parts += [f"{_quote_text(k)}: {_quote_text(v)}" for k, v in sorted(options.items())]
    durable = "true" if ks.durable_writes else "false"
    return (f"CREATE KEYSPACE {maybe_quote(ks.name)} WITH replication = {{{', '.join(parts)}}}"
            f"  AND durable_writes = {durable};")


def type_text(t: CqlType) -> str:
    """A column or field type as DESCRIBE writes it (Cassandra's CQL3Type.toString())."""
    return t.cql_name(force_frozen=False)


def type_cql(u: TypeDef) -> str:
    fields = ",\n".join(f"    {maybe_quote(n)} {type_text(t)}"
                        for n, t in zip(u.field_names, u.field_types))
    return f"CREATE TYPE {maybe_quote(u.keyspace)}.{maybe_quote(u.name)} (\n{fields}\n);"


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def create_order(t: TableDef) -> list:
    """Cassandra's allColumnsInCreateOrder: partition key, clustering, then static and
    regular columns each by name."""
    def by_name(cols: tuple) -> list:
        return sorted(cols, key=lambda c: _name_bytes(c.name))
    return (list(t.partition_key_columns) + list(t.clustering_columns)
            + by_name(t.static_columns) + by_name(t.regular_columns))


def table_cql(t: TableDef, with_internals: bool = False) -> str:
    """CREATE TABLE for `t`; with internals also its id and, as Cassandra prints them, its
    dropped columns: declared in the CREATE (unless a column of that name exists now),
    then an ALTER TABLE ... DROP ... USING TIMESTAMP each, and an ALTER TABLE ... ADD for
    those added again, so running the text gives the same table with the same hidden data."""
    single_key = len(t.partition_key_columns) == 1 and not t.clustering_columns
    columns = create_order(t)
    if with_internals and t.dropped:
        gone = [ColumnDef(name, d.type, d.kind) for name, d in t.dropped.items() if t.column(name) is None]
        columns = create_order(TableDef(t.keyspace, t.name, t.id, t.columns + tuple(gone), t.options))
    lines = []
    for c in columns:
        line = f"    {maybe_quote(c.name)} {type_text(c.type)}"
        if c.kind == "static":
            line += " static"
        if single_key and c.kind == "partition_key":
            line += " PRIMARY KEY"
        lines.append(line)
    if not single_key:
        lines.append(f"    PRIMARY KEY ({_primary_key(t)})")
    body = ",\n".join(lines)
    props = []
    if with_internals:
        props.append(f"ID = {t.id}")
    if t.clustering_columns:
        order = ", ".join(f"{maybe_quote(c.name)} {c.clustering_order.upper()}"
                          for c in t.clustering_columns)
        props.append(f"CLUSTERING ORDER BY ({order})")
    props += [f"{name} = {option_text(name, t.option(name))}" for name in _printed_options(t)]
    name = f"{maybe_quote(t.keyspace)}.{maybe_quote(t.name)}"
    text = f"CREATE TABLE {name} (\n{body}\n) WITH " + "\n    AND ".join(props) + ";"
    if with_internals:
        for column, d in sorted(t.dropped.items(), key=lambda cd: _name_bytes(cd[0])):
            text += f"\nALTER TABLE {name} DROP {maybe_quote(column)} USING TIMESTAMP {d.dropped_ts};"
            now = t.column(column)
            if now is not None:
                text += (f"\nALTER TABLE {name} ADD {maybe_quote(column)} {type_text(now.type)}"
                         + (" static" if now.kind == "static" else "") + ";")
    return text


def _primary_key(t: TableDef) -> str:
    pk = [maybe_quote(c.name) for c in t.partition_key_columns]
    parts = [pk[0] if len(pk) == 1 else "(" + ", ".join(pk) + ")"]
    parts += [maybe_quote(c.name) for c in t.clustering_columns]
    return ", ".join(parts)


def _printed_options(t: TableDef) -> list[str]:
    return [name for name in sorted(TABLE_OPTIONS)
            if name not in _DEPRECATED_OPTIONS or t.option(name) != TABLE_OPTIONS[name][0]]


def option_text(name: str, value: Any) -> str:
    """A table option value as CQL: quoted strings, Java-style doubles, maps with sorted keys
    (extensions' blob values as 0x hex)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        render = (lambda v: "0x" + v.hex()) if name == "extensions" else _quote_text
        return "{" + ", ".join(f"{_quote_text(k)}: {render(value[k])}"
                               for k in sorted(value)) + "}"
    if isinstance(value, str):
        return _quote_text(value)
    if isinstance(TABLE_OPTIONS[name][0], float):
        return java_double(float(value))
    return str(value)


def java_double(x: float) -> str:
    """Java's Double.toString for finite values: plain between 1e-3 and 1e7, else d.dddE±n."""
    if x == 0:
        return "0.0"
    if 1e-3 <= abs(x) < 1e7:
        return repr(x)  # Python's shortest repr is plain in this range, as Java's is
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    mantissa = "".join(map(str, digits))
    power = len(digits) - 1 + exponent
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{power}"


# --------------------------------------------------------------------------- result sets

_LIST_COLUMNS = ("keyspace_name", "type", "name")
_ELEMENT_COLUMNS = _LIST_COLUMNS + ("create_statement",)


def _specs(names: tuple[str, ...]) -> list[ColumnSpec]:
    return [ColumnSpec("system", "describe", n, TEXT) for n in names]


def _rows(names: tuple[str, ...], rows: list[tuple[str, ...]]) -> Rows:
    return Rows(_specs(names), [[serialize(TEXT, v) for v in row] for row in rows])


def _by_name(items: list, name: Any = lambda x: x.name) -> list:
    """Cassandra's SchemaElement.NAME_COMPARATOR (case-insensitive); stable otherwise."""
    return sorted(items, key=lambda x: name(x).lower())


def _keyspace(schema: Schema, name: str) -> KeyspaceDef:
    for ks in all_keyspaces(schema):
        if ks.name == name:
            return ks
    raise InvalidRequest(f"'{name}' not found in keyspaces")


def _types_in_create_order(schema: Schema, keyspace: str) -> list[TypeDef]:
    """Types by name, each after the types it uses (Cassandra's Types.sortedStream)."""
    pending = {u.name: u for u in schema.types(keyspace)}
    done: list[TypeDef] = []

    def visit(u: TypeDef) -> None:
        if pending.pop(u.name, None) is None:
            return
        for f in u.field_types:
            for dep in _user_types_in(f):
                if dep.keyspace == keyspace and dep.name in pending:
                    visit(pending[dep.name])
        done.append(u)

    for u in _by_name(list(pending.values())):
        visit(u)
    return done


def _user_types_in(t: CqlType) -> list[UserType]:
    """The user types a type mentions directly (not those inside the UDTs themselves)."""
    if isinstance(t, UserType):
        return [t]
    return [u for s in subtypes(t) for u in _user_types_in(s)]


def _keyspace_elements(schema: Schema, ks: KeyspaceDef, only: bool,
                       with_internals: bool) -> list[tuple[str, ...]]:
    quoted = maybe_quote(ks.name)
    rows = [(quoted, "keyspace", quoted, keyspace_cql(ks))]
    if only:
        return rows
    rows += [(quoted, "type", maybe_quote(u.name), type_cql(u))
             for u in _types_in_create_order(schema, ks.name)]
    rows += [(quoted, "table", maybe_quote(t.name), table_cql(t, with_internals))
             for t in _by_name(all_tables(schema, ks.name))]
    return rows


def _session_keyspace(keyspace: str | None, session_keyspace: str | None) -> str:
    ks = keyspace if keyspace is not None else session_keyspace
    if ks is None:
        raise InvalidRequest("No keyspace specified and no current keyspace")
    return ks


def _table_element(schema: Schema, ks: str, name: str, with_internals: bool) -> Rows:
    t = next((t for t in all_tables(schema, ks) if t.name == name), None)
    if t is None:
        raise InvalidRequest(f"Table '{name}' not found in keyspace '{ks}'")
    return _rows(_ELEMENT_COLUMNS, [(maybe_quote(ks), "table", maybe_quote(t.name),
                                     table_cql(t, with_internals))])


def _type_element(schema: Schema, ks: str, name: str) -> Rows:
    u = schema.type(ks, name)
    if u is None:
        raise InvalidRequest(f"User defined type '{name}' not found in '{ks}'")
    return _rows(_ELEMENT_COLUMNS, [(maybe_quote(ks), "type", maybe_quote(u.name),
                                     type_cql(u))])


def _generic(schema: Schema, keyspace: str | None, name: str, session_keyspace: str | None,
             with_internals: bool) -> Rows:
    """DESCRIBE <name>: a keyspace, else a table (index and view: none exist in Agora)."""
    names = {ks.name for ks in all_keyspaces(schema)}
    if keyspace is None and name in names:
        ks_def = _keyspace(schema, name)
        return _rows(_ELEMENT_COLUMNS, _keyspace_elements(schema, ks_def, False, with_internals))
    ks = keyspace if keyspace is not None else (session_keyspace or name)
    _keyspace(schema, ks)
    if any(t.name == name for t in all_tables(schema, ks)):
        return _table_element(schema, ks, name, with_internals)
    raise InvalidRequest(f"'{name}' not found in keyspace '{ks}'")


def _listing(schema: Schema, session_keyspace: str | None, kind: str) -> Rows:
    """DESCRIBE TABLES / TYPES / FUNCTIONS / AGGREGATES: the session keyspace's, or every
    keyspace's in name order."""
    if session_keyspace is not None:
        keyspaces = [_keyspace(schema, session_keyspace)]
    else:
        keyspaces = _by_name(all_keyspaces(schema))
    rows = []
    for ks in keyspaces:
        if kind == "tables":
            rows += [(maybe_quote(ks.name), "table", maybe_quote(t.name))
                     for t in _by_name(all_tables(schema, ks.name))]
        elif kind == "types":
            rows += [(maybe_quote(ks.name), "type", maybe_quote(u.name))
                     for u in _by_name(schema.types(ks.name))]
    return _rows(_LIST_COLUMNS, rows)


def _schema(schema: Schema, full: bool, with_internals: bool) -> Rows:
    rows = []
    for ks in _by_name(all_keyspaces(schema)):
        if full or ks.name not in SYSTEM_KEYSPACES:
            rows += _keyspace_elements(schema, ks, False, with_internals)
    return _rows(_ELEMENT_COLUMNS, rows)


# --------------------------------------------------------------------------- cluster

RANGE_OWNERSHIP_TYPE = MapType(TEXT, ListType(TEXT))


def range_ownership(schema: Schema, view: ClusterView, keyspace: str) -> dict[str, list[str]]:
    """Ring token (range end) -> replica endpoints ('/ip:port', Cassandra's
    InetAddressAndPort text), in ring order: StorageService.getRangeToAddressMap."""
    ks = _keyspace(schema, keyspace)
    nodes = {n.node_id: n for n in (view.local, *view.peers) if n.tokens}
    ring = TokenRing({node_id: NodeInfo(n.dc, n.rack, n.tokens) for node_id, n in nodes.items()})
    if ring.is_empty:
        return {}
    strategy = strategy_from_options(ks.replication, ring.datacenters())
    out = {}
    for index, token in enumerate(ring.sorted_tokens):
        replicas = strategy.replicas_for_token_index(ring, index)
        out[str(token)] = [f"/{nodes[r].address}:{nodes[r].internode_port}" for r in replicas]
    return out


def _cluster(schema: Schema, view: ClusterView, session_keyspace: str | None) -> Rows:
    names = ("cluster", "partitioner", "snitch")
    values = [serialize(TEXT, v) for v in
              (view.cluster_name, PARTITIONER.rsplit(".", 1)[-1], SNITCH)]
    specs = _specs(names)
    if session_keyspace is not None and session_keyspace not in SYSTEM_KEYSPACES:
        specs.append(ColumnSpec("system", "describe", "range_ownership", RANGE_OWNERSHIP_TYPE))
        values.append(serialize(RANGE_OWNERSHIP_TYPE,
                                range_ownership(schema, view, session_keyspace)))
    return Rows(specs, [values])


# --------------------------------------------------------------------------- entry point


def describe(kind: str, schema: Schema, view: ClusterView, *, keyspace: str | None = None,
             name: str | None = None, session_keyspace: str | None = None,
             only: bool = False, with_internals: bool = False) -> Rows:
    """Answer one DESCRIBE. `kind` is one of KINDS; `keyspace`/`name` are the (unquoted)
    target names as written (`DESC TABLE ks.t` -> keyspace 'ks', name 't'; `DESC KEYSPACE k`
    -> keyspace 'k'); `only` is DESCRIBE ONLY KEYSPACE; `with_internals` is
    `... WITH INTERNALS`. Raises InvalidRequest with Cassandra's wording."""
    if kind == "keyspaces":
        return _rows(_LIST_COLUMNS, [(maybe_quote(k.name), "keyspace", maybe_quote(k.name))
                                     for k in _by_name(all_keyspaces(schema))])
    if kind in ("tables", "types", "functions", "aggregates"):
        return _listing(schema, session_keyspace, kind)
    if kind == "cluster":
        return _cluster(schema, view, session_keyspace)
    if kind in ("schema", "full_schema"):
        return _schema(schema, kind == "full_schema", with_internals)
    if kind == "keyspace":
        ks = _keyspace(schema, _session_keyspace(keyspace or name, session_keyspace))
        return _rows(_ELEMENT_COLUMNS, _keyspace_elements(schema, ks, only, with_internals))
    if name is None:
        raise InvalidRequest(f"DESCRIBE {kind.upper()} needs a name")
    if kind == "name":
        return _generic(schema, keyspace, name, session_keyspace, with_internals)
    ks = _keyspace(schema, _session_keyspace(keyspace, session_keyspace)).name
    if kind == "table":
        return _table_element(schema, ks, name, with_internals)
    if kind == "type":
        return _type_element(schema, ks, name)
    return _missing_element(kind, ks, name)


def _missing_element(kind: str, ks: str, name: str) -> Rows:
    """Functions, aggregates, indexes and views: Agora has none, so every lookup fails."""
    messages = {
        "function": f"User defined function '{name}' not found in '{ks}'",
        "aggregate": f"User defined aggregate '{name}' not found in '{ks}'",
        "index": f"Table for existing index '{name}' not found in '{ks}'",
        "materialized_view": f"Materialized view '{name}' not found in '{ks}'",
    }
    if kind not in messages:
        raise ValueError(f"unknown DESCRIBE kind {kind!r}; expected one of {KINDS}")
    raise InvalidRequest(messages[kind])
