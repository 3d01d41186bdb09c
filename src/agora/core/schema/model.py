"""Schema definitions and the replicated schema itself: keyspaces, tables, user types.

Owns: `KeyspaceDef`, `ColumnDef`, `TableDef` and its `DroppedColumn`s, `TypeDef` (validated on
construction), CQL name
rules, table option defaults, deterministic table ids, and `Schema`: an immutable collection in
which every keyspace, table and type is an entry with a write timestamp (microseconds) and a
dropped flag. Two schemas merge per entry by last-write-wins (`merge`), which is commutative,
associative and idempotent, so nodes that exchange schemas in any order converge; `version()`
digests the live content so equal schemas give equal versions on every node.

Merge rules (as `agora.core.reconcile` does for cells): the higher timestamp wins; at equal
timestamps a drop beats a definition, then the greater canonical encoding wins. Dropping a
keyspace at ts also records a *drop horizon*: any table or type of that keyspace written at or
before ts is dead, even one the dropping node never saw (Cassandra's partition tombstone over
the keyspace's schema rows). Granularity is the whole object: two concurrent ALTERs of one
table keep only the later (Cassandra merges per column; schema changes are rare and drivers
wait for agreement after each one).

Does not know: CQL statements (the CQL layer validates IF [NOT] EXISTS and builds defs),
how schemas travel between nodes (schema agreement machine), system tables, or storage.

Rules from: Cassandra 4 `SchemaConstants` (names `\\w{1,48}`), `CreateTableStatement` and
`CreateTypeStatement` validation, `TableParams` defaults, `system_schema` layout
(shared/cql-compat.md section 2.7).
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgpack

from agora.core.coordinator import speculation
from agora.core.errors import InvalidRequest, ProtocolError, SchemaError
from agora.core.schema.types import (
    COUNTER, DURATION, RESERVED_TYPE_NAMES, CqlType, UserType, is_multicell, references,
    type_from_plain, type_to_plain,
)

MAX_NAME_CHARS = 48  # Cassandra's SchemaConstants.NAME_LENGTH; such names become directory names
MAX_COLUMN_NAME_BYTES = 65535  # a column name travels as a [short bytes] in system tables
MAX_TTL_S = 20 * 365 * 86400  # Cassandra's Attributes.MAX_TTL (20 years)
MAX_COLUMNS = 4096  # Cassandra orders columns by a 12-bit position; no real table comes close

SYSTEM_KEYSPACES = frozenset({"system", "system_schema", "system_auth", "system_distributed",
                              "system_traces", "system_views", "system_virtual_schema"})
COLUMN_KINDS = ("partition_key", "clustering", "static", "regular")
CLUSTERING_ORDERS = ("asc", "desc", "none")
# Namespace of table ids (uuid5): any fixed value works, it only has to be the same everywhere.
TABLE_ID_NAMESPACE = uuid.UUID("6a1f7c3e-9b52-4d0e-8f21-5c4b9e0d7a13")

_NAME = re.compile(r"[A-Za-z0-9_]{1,%d}" % MAX_NAME_CHARS)
_UNQUOTED = re.compile(r"[A-Za-z0-9_]+")


# --------------------------------------------------------------------------- names


def identifier(text: str) -> str:
    """A CQL identifier as written -> the name it denotes: unquoted is case-insensitive
    (lowercased), "double-quoted" keeps its case with "" standing for one quote."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if not inner or '"' in inner.replace('""', ""):
            raise InvalidRequest(f"Invalid quoted identifier {text}")
        return inner.replace('""', '"')
    if not _UNQUOTED.fullmatch(text):
        raise InvalidRequest(f"Invalid identifier {text!r}: "
                             "use letters, digits and _, or double quotes")
    return text.lower()


def check_name(name: str, what: str) -> str:
    """Keyspace, table and type names: `[a-zA-Z_0-9]{1,48}` (after `identifier`)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"{what} name must not be empty, more than {MAX_NAME_CHARS} "
                             f"characters long, or contain non-alphanumeric-underscore characters "
                             f"(got {name!r})")
    return name


def check_column_name(name: str, what: str = "Column") -> str:
    size = len(name.encode("utf-8", "surrogatepass")) if isinstance(name, str) else 0
    if not 1 <= size <= MAX_COLUMN_NAME_BYTES:
        raise InvalidRequest(f"{what} name must be 1 to {MAX_COLUMN_NAME_BYTES} bytes "
                             f"(got {name!r})")
    return name


# --------------------------------------------------------------------------- keyspaces

_STRATEGY_PREFIX = "org.apache.cassandra.locator."
STRATEGIES = ("SimpleStrategy", "NetworkTopologyStrategy", "LocalStrategy")


def replication_options(raw: Mapping[str, Any]) -> dict[str, str]:
    """Validate and normalise a keyspace's replication map as Cassandra stores it: the full
    class name and string replication factors. NetworkTopologyStrategy keys other than
    'class' are datacenter names ('replication_factor' is left for the caller to expand)."""
    options = {str(k): str(v) for k, v in raw.items()}
    cls = options.pop("class", None)
    if cls is None:
        raise InvalidRequest("Missing replication strategy class")
    short = cls[len(_STRATEGY_PREFIX):] if cls.startswith(_STRATEGY_PREFIX) else cls
    if short not in STRATEGIES:
        raise InvalidRequest(f"Unable to find replication strategy class '{cls}'")
    if short == "SimpleStrategy" and set(options) != {"replication_factor"}:
        raise InvalidRequest("SimpleStrategy requires exactly the option 'replication_factor'")
    for key, rf in options.items():
        if not rf.isdigit():
            raise InvalidRequest("Replication factor must be a non-negative integer; "
                                 f"found {key}: {rf!r}")
        options[key] = str(int(rf))
    return {"class": _STRATEGY_PREFIX + short, **dict(sorted(options.items()))}


@dataclass(frozen=True)
class KeyspaceDef:
    name: str
    replication: dict[str, str]  # as system_schema.keyspaces.replication; see replication_options
    durable_writes: bool = True

    def __post_init__(self) -> None:
        check_name(self.name, "Keyspace")
        normal = isinstance(self.replication, dict) and replication_options(self.replication)
        if normal != self.replication:
            raise InvalidRequest(f"Keyspace {self.name}: replication {self.replication!r} "
                                 "is not in the normal form of replication_options()")
        if not isinstance(self.durable_writes, bool):
            raise InvalidRequest("durable_writes must be a boolean")

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def strategy(self) -> str:
        """Short class name: SimpleStrategy, NetworkTopologyStrategy or LocalStrategy."""
        return self.replication["class"].rsplit(".", 1)[-1]

    def to_plain(self) -> dict:
        return {"name": self.name, "replication": dict(self.replication),
                "durable_writes": self.durable_writes}

    @classmethod
    def from_plain(cls, p: Any) -> KeyspaceDef:
        return _from_plain_checked(
            lambda: cls(p["name"], dict(p["replication"]), p["durable_writes"]), p)


def _from_plain_checked(build: Any, p: Any) -> Any:
    try:
        return build()
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, InvalidRequest) as e:
        raise ProtocolError(f"malformed schema object {p!r:.200}: {e}") from None


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class TypeDef:
    """A user-defined type (system_schema.types)."""

    keyspace: str
    name: str
    field_names: tuple[str, ...]
    field_types: tuple[CqlType, ...]

    def __post_init__(self) -> None:
        check_name(self.keyspace, "Keyspace")
        check_name(self.name, "Type")
        if self.name.lower() in RESERVED_TYPE_NAMES:
            raise InvalidRequest(f"{self.name} is a reserved type name")
        object.__setattr__(self, "field_names", tuple(self.field_names))
        object.__setattr__(self, "field_types", tuple(self.field_types))
        if not self.field_names or len(self.field_names) != len(self.field_types):
            raise InvalidRequest(f"Type {self.name} needs one type per field, "
                                 "and at least one field")
        for n in self.field_names:
            check_column_name(n, "Field")
        if len(set(self.field_names)) != len(self.field_names):
            raise InvalidRequest(f"Duplicate field name in type {self.name}")
        for t in self.field_types:
            if references(t, lambda x: x == COUNTER):
                raise InvalidRequest("A user type cannot contain counters")
            if isinstance(t, UserType) and not t.frozen:
                raise InvalidRequest("A user type cannot contain non-frozen UDTs")

    def __hash__(self) -> int:
        return hash((self.keyspace, self.name))

    def user_type(self, frozen: bool = False) -> UserType:
        return UserType(self.keyspace, self.name, self.field_names, self.field_types, frozen)

    def to_plain(self) -> dict:
        return {"keyspace": self.keyspace, "name": self.name, "field_names": list(self.field_names),
                "field_types": [type_to_plain(t) for t in self.field_types]}

    @classmethod
    def from_plain(cls, p: Any) -> TypeDef:
        return _from_plain_checked(lambda: cls(
            p["keyspace"], p["name"], tuple(p["field_names"]),
            tuple(type_from_plain(t) for t in p["field_types"])), p)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class ColumnDef:
    """One column, as a row of system_schema.columns."""

    name: str
    type: CqlType
    kind: str  # one of COLUMN_KINDS
    position: int = -1  # component index for partition key and clustering columns, else -1
    clustering_order: str = "none"  # 'asc' | 'desc' for clustering columns, else 'none'

    def __post_init__(self) -> None:
        check_column_name(self.name)
        if self.kind not in COLUMN_KINDS:
            raise InvalidRequest(f"Column {self.name}: unknown kind {self.kind!r}")
        if not isinstance(self.type, CqlType):
            raise InvalidRequest(f"Column {self.name}: not a CQL type: {self.type!r}")
        keyed = self.kind in ("partition_key", "clustering")
        if not isinstance(self.position, int) or isinstance(self.position, bool) or (
                self.position < 0 if keyed else self.position != -1):
            raise InvalidRequest(f"Column {self.name}: bad position {self.position!r} "
                                 f"for a {self.kind} column")
        want = ("asc", "desc") if self.kind == "clustering" else ("none",)
        if self.clustering_order not in want:
            raise InvalidRequest(f"Column {self.name}: clustering order {self.clustering_order!r} "
                                 f"for a {self.kind} column")

    @property
    def is_primary_key(self) -> bool:
        return self.kind in ("partition_key", "clustering")

    @property
    def descending(self) -> bool:
        return self.clustering_order == "desc"

    def to_plain(self) -> list:
        return [self.name, type_to_plain(self.type), self.kind, self.position,
                self.clustering_order]

    @classmethod
    def from_plain(cls, p: Any) -> ColumnDef:
        name, t, kind, position, order = p
        if isinstance(position, bool):
            raise ValueError("position must be an int")
        return cls(name, type_from_plain(t), kind, position, order)


# name -> (default, check); the defaults are Cassandra 4's TableParams.
def _int_at_least(lo: int, hi: int = 2**31 - 1) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _chance(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def _str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str)
                                       for k, x in v.items())


TABLE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "additional_write_policy": ("99p", lambda v: isinstance(v, str)),
    "bloom_filter_fp_chance": (0.01, _chance),
    "caching": ({"keys": "ALL", "rows_per_partition": "NONE"}, _str_map),
    "cdc": (False, lambda v: isinstance(v, bool)),
    "comment": ("", lambda v: isinstance(v, str)),
    "compaction": ({"class": "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
                    "max_threshold": "32", "min_threshold": "4"}, _str_map),
    "compression": ({"chunk_length_in_kb": "16",
                     "class": "org.apache.cassandra.io.compress.LZ4Compressor"}, _str_map),
    "crc_check_chance": (1.0, _chance),
    "dclocal_read_repair_chance": (0.0, _chance),
    "default_time_to_live": (0, _int_at_least(0, MAX_TTL_S)),
    "extensions": ({}, lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, bytes) for k, x in v.items())),
    "gc_grace_seconds": (864000, _int_at_least(0)),
    "max_index_interval": (2048, _int_at_least(1)),
    "memtable_flush_period_in_ms": (0, _int_at_least(0)),
    "min_index_interval": (128, _int_at_least(1)),
    "read_repair": ("BLOCKING", lambda v: v in ("BLOCKING", "NONE")),  # honoured by both read coordinators
    "read_repair_chance": (0.0, _chance),
    # honoured (agora.core.coordinator.speculation); checked strictly only when set by DDL
    # (ddl_options): a stored or a peer's value this version cannot read means the default
    "speculative_retry": ("99p", lambda v: isinstance(v, str)),
}


def ddl_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Table options as CREATE or ALTER TABLE set them, in the form Cassandra stores them:
    `speculative_retry` checked and shown as Cassandra shows it ('99PERCENTILE' is '99p'),
    `read_repair` in capitals. Only new values go through this: a schema read from disk or
    from a peer keeps its values as they are (validate_table_options)."""
    out = dict(options)
    if isinstance(out.get("speculative_retry"), str):
        try:
            out["speculative_retry"] = speculation.normalized(out["speculative_retry"])
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    if isinstance(out.get("read_repair"), str):
        out["read_repair"] = out["read_repair"].upper()
    return out


def validate_table_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check table options (as set by WITH ...); returns a plain dict of them."""
    out = {}
    for name, value in options.items():
        if name not in TABLE_OPTIONS:
            raise InvalidRequest(f"Unknown property '{name}'")
        if not TABLE_OPTIONS[name][1](value):
            raise InvalidRequest(f"Invalid value for property '{name}': {value!r}")
        out[name] = dict(value) if isinstance(value, dict) else value
    return out


def table_id_for(keyspace: str, name: str, created_ts: int) -> uuid.UUID:
    """The id a table created at created_ts (µs) gets: the same CREATE, applied on any node,
    yields the same id; re-creating a dropped table (another ts) yields a new one."""
    return uuid.uuid5(TABLE_ID_NAMESPACE, f"{keyspace}.{name}@{created_ts}")


@dataclass(frozen=True)
class DroppedColumn:
    """A column that `ALTER TABLE ... DROP` removed (system_schema.dropped_columns): its cells
    written at or before `dropped_ts` (µs) are no longer the table's data, even after a column
    of that name is added again (Cassandra's DroppedColumn)."""

    dropped_ts: int
    type: CqlType
    kind: str  # "regular" or "static"

    def __post_init__(self) -> None:
        if not isinstance(self.dropped_ts, int) or isinstance(self.dropped_ts, bool):
            raise InvalidRequest(f"dropped time must be an int, not {self.dropped_ts!r}")
        if not isinstance(self.type, CqlType):
            raise InvalidRequest(f"not a CQL type: {self.type!r}")
        if self.kind not in ("regular", "static"):
            raise InvalidRequest(f"a dropped column is regular or static, not {self.kind!r}")

    def shadows(self, ts: int) -> bool:
        """Whether a cell of this column written at `ts` was dropped with it."""
        return ts <= self.dropped_ts


@dataclass(frozen=True)
class TableDef:
    """A table: identity, columns (in declaration order), options (only those set
    explicitly; `option(name)` falls back to the defaults in TABLE_OPTIONS) and the columns
    dropped from it, by name."""

    keyspace: str
    name: str
    id: uuid.UUID
    columns: tuple[ColumnDef, ...]
    options: dict[str, Any] = field(default_factory=dict)
    dropped: Mapping[str, DroppedColumn] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "options", validate_table_options(self.options))
        object.__setattr__(self, "dropped", dict(self.dropped))
        for name, d in self.dropped.items():
            if not isinstance(name, str) or not isinstance(d, DroppedColumn):
                raise InvalidRequest(f"Table {self.name}: bad dropped column {name!r}")
        check_name(self.keyspace, "Keyspace")
        check_name(self.name, "Table")
        if not isinstance(self.id, uuid.UUID):
            raise InvalidRequest(f"Table {self.name}: id must be a UUID")
        _check_columns(self)

    def __hash__(self) -> int:
        return hash((self.keyspace, self.name, self.id))

    @classmethod
    def build(cls, keyspace: str, name: str, *, partition_key: Iterable[tuple[str, CqlType]],
              clustering: Iterable[tuple[str, CqlType, str]] = (),
              static: Iterable[tuple[str, CqlType]] = (),
              regular: Iterable[tuple[str, CqlType]] = (),
              options: Mapping[str, Any] | None = None, table_id: uuid.UUID | None = None,
              created_ts: int = 0) -> TableDef:
        """Convenience constructor; without table_id the id is table_id_for(..., created_ts)."""
        columns = [ColumnDef(n, t, "partition_key", i) for i, (n, t) in enumerate(partition_key)]
        columns += [ColumnDef(n, t, "clustering", i, o) for i, (n, t, o) in enumerate(clustering)]
        columns += [ColumnDef(n, t, "static") for n, t in static]
        columns += [ColumnDef(n, t, "regular") for n, t in regular]
        tid = table_id if table_id is not None else table_id_for(keyspace, name, created_ts)
        return cls(keyspace, name, tid, tuple(columns), dict(options or {}))

    @functools.cached_property
    def _by_name(self) -> dict[str, ColumnDef]:
        return {c.name: c for c in self.columns}

    def _of_kind(self, kind: str) -> tuple[ColumnDef, ...]:
        return tuple(sorted((c for c in self.columns if c.kind == kind), key=lambda c: c.position))

    @functools.cached_property
    def partition_key_columns(self) -> tuple[ColumnDef, ...]:
        return self._of_kind("partition_key")

    @functools.cached_property
    def clustering_columns(self) -> tuple[ColumnDef, ...]:
        return self._of_kind("clustering")

    @functools.cached_property
    def static_columns(self) -> tuple[ColumnDef, ...]:
        return tuple(c for c in self.columns if c.kind == "static")

    @functools.cached_property
    def regular_columns(self) -> tuple[ColumnDef, ...]:
        return tuple(c for c in self.columns if c.kind == "regular")

    def column(self, name: str) -> ColumnDef | None:
        return self._by_name.get(name)

    @functools.cached_property
    def multicell_by_name(self) -> dict[str, bool]:
        """name -> whether the column is stored as one cell per element or field: what a
        read asks of every cell it turns into a value."""
        return {c.name: is_multicell(c.type) for c in self.columns}

    def hides(self, column: str, ts: int) -> bool:
        """Whether a cell of `column` written at `ts` was dropped with that column (and so is
        not the table's data, even if a column of that name was added again)."""
        dropped = self.dropped.get(column)
        return dropped is not None and dropped.shadows(ts)

    def ckey_types(self) -> list[tuple[CqlType, bool]]:
        """[(type, descending)] of the clustering columns: the `types` of encode_ckey."""
        return [(c.type, c.descending) for c in self.clustering_columns]

    def option(self, name: str) -> Any:
        return self.options[name] if name in self.options else TABLE_OPTIONS[name][0]

    @property
    def is_counter(self) -> bool:
        return any(c.type == COUNTER for c in self.columns)

    def select_order(self) -> tuple[ColumnDef, ...]:
        """Cassandra's `SELECT *` order: partition key, clustering, then static and regular
        columns each with simple before multi-cell columns, by name bytes."""
        def rest(cols: tuple[ColumnDef, ...]) -> list[ColumnDef]:
            return sorted(cols, key=lambda c: (is_multicell(c.type),
                                               c.name.encode("utf-8", "surrogatepass")))
        return (self.partition_key_columns + self.clustering_columns
                + tuple(rest(self.static_columns)) + tuple(rest(self.regular_columns)))

    def to_plain(self) -> dict:
        plain = {"keyspace": self.keyspace, "name": self.name, "id": self.id.bytes,
                 "columns": [c.to_plain() for c in self.columns], "options": dict(self.options)}
        if self.dropped:  # only when there are some: a table's version is unchanged otherwise
            plain["dropped"] = {name: [d.dropped_ts, type_to_plain(d.type), d.kind]
                                for name, d in sorted(self.dropped.items())}
        return plain

    @classmethod
    def from_plain(cls, p: Any) -> TableDef:
        return _from_plain_checked(lambda: cls(
            p["keyspace"], p["name"], uuid.UUID(bytes=p["id"]),
            tuple(ColumnDef.from_plain(c) for c in p["columns"]), dict(p["options"]),
            {name: DroppedColumn(ts, type_from_plain(t), kind)
             for name, (ts, t, kind) in dict(p.get("dropped") or {}).items()}), p)


def _check_columns(t: TableDef) -> None:
    """Cassandra's CreateTableStatement rules."""
    where = f"{t.keyspace}.{t.name}"
    if not 1 <= len(t.columns) <= MAX_COLUMNS:
        raise InvalidRequest(f"Table {where} must have 1 to {MAX_COLUMNS} columns")
    if len(t._by_name) != len(t.columns):
        dup = next(c.name for c in t.columns if sum(d.name == c.name for d in t.columns) > 1)
        raise InvalidRequest(f"Duplicate column '{dup}' declaration for table {where}")
    for kind in ("partition_key", "clustering"):
        if [c.position for c in t._of_kind(kind)] != list(range(len(t._of_kind(kind)))):
            raise InvalidRequest(f"Table {where}: {kind} positions must be 0..n-1")
    if not t.partition_key_columns:
        raise InvalidRequest(f"No PRIMARY KEY specified for table {where} (exactly one required)")
    for c in t.partition_key_columns + t.clustering_columns:
        if is_multicell(c.type):
            raise InvalidRequest(f"Invalid non-frozen {c.type.cql_name()} type "
                                 f"for PRIMARY KEY column '{c.name}'")
        if c.type == COUNTER:
            raise InvalidRequest(f"counter type is not supported for PRIMARY KEY column '{c.name}'")
        if references(c.type, lambda x: x == DURATION):
            raise InvalidRequest("duration type is not supported for PRIMARY KEY column "
                                 f"'{c.name}'")
    if t.static_columns and not t.clustering_columns:
        raise InvalidRequest("Static columns are only useful (and thus allowed) if the table has "
                             "at least one clustering column")
    values = t.static_columns + t.regular_columns
    counters = sum(c.type == COUNTER for c in values)
    if counters and counters != len(values):
        raise InvalidRequest("Cannot mix counter and non counter columns in the same table")
    if counters and t.option("default_time_to_live"):
        raise InvalidRequest("Cannot set default_time_to_live on a table with counters")


# --------------------------------------------------------------------------- the schema

T = TypeVar("T")
_NEVER = -(2**63)  # a timestamp before every real one


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """One schema object's latest known state: a definition, or a drop (value None)."""

    ts: int  # microseconds
    value: T | None

    @property
    def dropped(self) -> bool:
        return self.value is None


def _canonical(obj: Any) -> bytes:
    """Deterministic bytes of a plain value (dict keys sorted at every level)."""
    def norm(o: Any) -> Any:
        if isinstance(o, dict):
            return [[k, norm(v)] for k, v in sorted(o.items())]
        if isinstance(o, (list, tuple)):
            return [norm(x) for x in o]
        return o
    return msgpack.packb(norm(obj), use_bin_type=True)


def _winner(a: Entry | None, b: Entry) -> Entry:
    """Last write wins; at equal ts a drop wins, then the greater canonical encoding."""
    if a is None:
        return b
    if a.ts != b.ts:
        return a if a.ts > b.ts else b
    if a.dropped or b.dropped:
        return a if a.dropped else b
    return a if _canonical(a.value.to_plain()) >= _canonical(b.value.to_plain()) else b


Key = tuple[str, str]  # (keyspace, name) of a table or type


class Schema:
    """Keyspaces, tables and types, each an `Entry`, plus per-keyspace drop horizons and
    per-table truncations. Immutable: every change returns a new Schema. A change older than
    the entry it would replace is a no-op (last write wins), so callers pick ts above
    `max_timestamp()`.

    A truncation (TRUNCATE) is the write timestamp, in µs, up to which a table's data is
    gone: what was written at or before it reads as if a partition deletion at that time
    covered every partition of the table (`agora.core.reconcile.drop_truncated`). It is
    kept by table id, for good, and merges by taking the newer; a table re-created under
    its name has a new id and starts with none."""

    __slots__ = ("_keyspaces", "_tables", "_types", "_horizons", "_truncations", "_cache")

    def __init__(self, keyspaces: Mapping[str, Entry[KeyspaceDef]] | None = None,
                 tables: Mapping[Key, Entry[TableDef]] | None = None,
                 types: Mapping[Key, Entry[TypeDef]] | None = None,
                 horizons: Mapping[str, int] | None = None,
                 truncations: Mapping[bytes, int] | None = None) -> None:
        self._keyspaces = dict(keyspaces or {})
        self._tables = dict(tables or {})
        self._types = dict(types or {})
        self._horizons = dict(horizons or {})
        self._truncations = dict(truncations or {})
        self._cache: dict[str, Any] = {}

    # ---- changes

    def _with(self, keyspaces: dict | None = None, tables: dict | None = None,
              types: dict | None = None, horizons: dict | None = None,
              truncations: dict | None = None) -> Schema:
        return Schema(self._keyspaces if keyspaces is None else keyspaces,
                      self._tables if tables is None else tables,
                      self._types if types is None else types,
                      self._horizons if horizons is None else horizons,
                      self._truncations if truncations is None else truncations)

    @staticmethod
    def _put(entries: dict, key: Any, entry: Entry) -> dict:
        out = dict(entries)
        out[key] = _winner(entries.get(key), entry)
        return out

    def with_keyspace(self, ks: KeyspaceDef, ts: int) -> Schema:
        """Create or replace (ALTER KEYSPACE) a keyspace."""
        return self._with(keyspaces=self._put(self._keyspaces, ks.name, Entry(ts, ks)))

    def drop_keyspace(self, name: str, ts: int) -> Schema:
        """Drop a keyspace and, through its drop horizon, every table and type in it."""
        horizons = dict(self._horizons)
        horizons[name] = max(horizons.get(name, _NEVER), ts)
        keyspaces = self._put(self._keyspaces, name, Entry(ts, None))
        return self._with(keyspaces=keyspaces, horizons=horizons)

    def with_table(self, table: TableDef, ts: int) -> Schema:
        """Create or replace (ALTER TABLE) a table; its keyspace must exist."""
        self._require_keyspace(table.keyspace)
        key = (table.keyspace, table.name)
        return self._with(tables=self._put(self._tables, key, Entry(ts, table)))

    def drop_table(self, keyspace: str, name: str, ts: int) -> Schema:
        return self._with(tables=self._put(self._tables, (keyspace, name), Entry(ts, None)))

    def truncate_table(self, table_id: bytes, ts: int) -> Schema:
        """TRUNCATE: the table's data written at or before `ts` (µs) is gone."""
        truncations = dict(self._truncations)
        truncations[table_id] = max(truncations.get(table_id, _NEVER), ts)
        return self._with(truncations=truncations)

    def with_type(self, typedef: TypeDef, ts: int) -> Schema:
        """Create or replace (ALTER TYPE) a user type. Tables keep the UserType they were
        built with: an ALTER TYPE must also rewrite `tables_using_type(...)`."""
        self._require_keyspace(typedef.keyspace)
        key = (typedef.keyspace, typedef.name)
        return self._with(types=self._put(self._types, key, Entry(ts, typedef)))

    def drop_type(self, keyspace: str, name: str, ts: int) -> Schema:
        return self._with(types=self._put(self._types, (keyspace, name), Entry(ts, None)))

    def _require_keyspace(self, name: str) -> None:
        if self.keyspace(name) is None:
            raise SchemaError(f"Keyspace '{name}' doesn't exist")

    def merge(self, other: Schema) -> Schema:
        return merge(self, other)

    # ---- lookups (live objects only)

    def keyspace(self, name: str) -> KeyspaceDef | None:
        e = self._keyspaces.get(name)
        return None if e is None else e.value

    def keyspaces(self) -> list[KeyspaceDef]:
        return [e.value for _, e in sorted(self._keyspaces.items()) if not e.dropped]

    def _live(self, entries: dict, key: Key) -> Any:
        e = entries.get(key)
        if e is None or e.dropped or self.keyspace(key[0]) is None:
            return None
        return e.value if e.ts > self._horizons.get(key[0], _NEVER) else None

    def table(self, keyspace: str, name: str) -> TableDef | None:
        return self._live(self._tables, (keyspace, name))

    def tables(self, keyspace: str | None = None) -> list[TableDef]:
        """Live tables of one keyspace (or of all), sorted by (keyspace, name)."""
        return [t for k in sorted(self._tables) if keyspace in (None, k[0])
                and (t := self._live(self._tables, k)) is not None]

    def table_by_id(self, table_id: uuid.UUID | bytes) -> TableDef | None:
        by_id = self._cache.get("by_id")
        if by_id is None:
            by_id = self._cache["by_id"] = {t.id.bytes: t for t in self.tables()}
        if type(table_id) is bytes:  # the hot path: ids as they come off the wire
            return by_id.get(table_id)
        return by_id.get(table_id.bytes if isinstance(table_id, uuid.UUID) else bytes(table_id))

    def truncated_at(self, table_id: bytes) -> int | None:
        """The timestamp (µs) at or before which the table's data is gone, if truncated."""
        return self._truncations.get(table_id)

    def truncations(self) -> dict[bytes, int]:
        """Every truncation by table id, dropped tables' included (a drop truncates)."""
        return dict(self._truncations)

    def type(self, keyspace: str, name: str) -> TypeDef | None:
        return self._live(self._types, (keyspace, name))

    def types(self, keyspace: str | None = None) -> list[TypeDef]:
        return [t for k in sorted(self._types) if keyspace in (None, k[0])
                and (t := self._live(self._types, k)) is not None]

    def tables_using_type(self, keyspace: str, name: str) -> list[TableDef]:
        def uses(t: CqlType) -> bool:
            return isinstance(t, UserType) and (t.keyspace, t.name) == (keyspace, name)
        return [t for t in self.tables(keyspace)
                if any(references(c.type, uses) for c in t.columns)]

    def max_timestamp(self) -> int:
        """The newest timestamp of any entry (or _NEVER): a new change should use more."""
        stamps = [e.ts for d in (self._keyspaces, self._tables, self._types) for e in d.values()]
        return max(stamps, default=_NEVER)

    # ---- identity

    def version(self) -> uuid.UUID:
        """Digest of the live content only (no entry timestamps, no tombstones): equal on
        every node holding the same keyspaces, tables, types and truncations of live
        tables."""
        if "version" not in self._cache:
            content = [[k.to_plain() for k in self.keyspaces()],
                       [t.to_plain() for t in self.tables()],
                       [t.to_plain() for t in self.types()]]
            truncated = [[t.id.bytes, ts] for t in self.tables()
                         if (ts := self._truncations.get(t.id.bytes)) is not None]
            if truncated:  # only then: an untruncated schema keeps the version it had
                content.append(truncated)
            digest = hashlib.blake2b(_canonical(content), digest_size=16,
                                     person=b"agora-schema").digest()
            self._cache["version"] = uuid.UUID(bytes=digest, version=4)
        return self._cache["version"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.to_plain() == other.to_plain()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Schema(version={self.version()}, keyspaces={[k.name for k in self.keyspaces()]}, "
                f"tables={len(self.tables())}, types={len(self.types())})")

    # ---- plain form

    def to_plain(self) -> dict:
        """msgpack-friendly, deterministic (everything sorted), tombstones included."""
        def plain(e: Entry) -> Any:
            return None if e.value is None else e.value.to_plain()
        return {
            "keyspaces": [[k, e.ts, plain(e)] for k, e in sorted(self._keyspaces.items())],
            "tables": [[k[0], k[1], e.ts, plain(e)] for k, e in sorted(self._tables.items())],
            "types": [[k[0], k[1], e.ts, plain(e)] for k, e in sorted(self._types.items())],
            "horizons": [[k, ts] for k, ts in sorted(self._horizons.items())],
            "truncations": [[k, ts] for k, ts in sorted(self._truncations.items())],
        }

    @classmethod
    def from_plain(cls, p: Any) -> Schema:
        """Inverse of to_plain; ProtocolError on anything malformed."""
        try:
            keyspaces = {_str(k): _entry(ts, v, KeyspaceDef, (k,)) for k, ts, v in p["keyspaces"]}
            tables = {(_str(ks), _str(n)): _entry(ts, v, TableDef, (ks, n))
                      for ks, n, ts, v in p["tables"]}
            types = {(_str(ks), _str(n)): _entry(ts, v, TypeDef, (ks, n))
                     for ks, n, ts, v in p["types"]}
            horizons = {_str(k): _int(ts) for k, ts in p["horizons"]}
            # absent from the schema a node wrote before TRUNCATE kept truncations
            truncations = {_table_id(k): _int(ts) for k, ts in p.get("truncations", ())}
        except (TypeError, ValueError, KeyError) as e:
            raise ProtocolError(f"malformed schema: {e}") from None
        return cls(keyspaces, tables, types, horizons, truncations)


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _table_id(v: Any) -> bytes:
    if type(v) is not bytes or len(v) != 16:
        raise ValueError(f"expected a 16-byte table id, got {v!r}")
    return v


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not -(2**63) <= v < 2**63:
        raise ValueError(f"expected a 64-bit int, got {v!r}")
    return v


def _entry(ts: Any, value: Any, cls: Any, key: tuple) -> Entry:
    if value is None:
        return Entry(_int(ts), None)
    obj = cls.from_plain(value)
    if (obj.name,) != key and (getattr(obj, "keyspace", None), obj.name) != key:
        raise ValueError(f"entry {key} holds {obj.name}")
    return Entry(_int(ts), obj)


def merge(a: Schema, b: Schema) -> Schema:
    """Per-entry last-write-wins union; horizons and truncations take the max. Commutative,
    associative, idempotent."""
    def union(x: dict, y: dict) -> dict:
        out = dict(x)
        for k, e in y.items():
            out[k] = _winner(out.get(k), e)
        return out
    horizons = dict(a._horizons)
    for k, ts in b._horizons.items():
        horizons[k] = max(horizons.get(k, _NEVER), ts)
    truncations = dict(a._truncations)
    for k, ts in b._truncations.items():
        truncations[k] = max(truncations.get(k, _NEVER), ts)
    return Schema(union(a._keyspaces, b._keyspaces), union(a._tables, b._tables),
                  union(a._types, b._types), horizons, truncations)
