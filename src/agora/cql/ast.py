"""The typed syntax tree of CQL 3 statements: what `agora.cql.parser.parse` returns and the
statement processor executes.

Owns: immutable node classes (frozen dataclasses) for terms, selectors, relations,
assignments and every statement form Agora accepts, plus the Python value conventions of
literals. Names in the tree are final: unquoted identifiers are already lowercased and
"quoted" ones already unescaped, so never pass them through `schema.model.identifier` again.

Deliberately does not know schema: nothing here says which column a term binds to, whether a
table exists, or what type a literal must take. `TypeRef` keeps a column type as text until the
processor resolves it against the keyspace's user types.

Where the rules come from: Cassandra 4/5 `Cql.g`/`Parser.g` (statement shapes), `Constants`
(literal kinds), `Duration` (duration literals), `Operator` (relation operators).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

from agora.core.schema.types import CqlType, UserType, parse_type

# --------------------------------------------------------------------------- terms


class LiteralKind(enum.StrEnum):
    """Cassandra's Constants.Type, plus NULL. Value conventions (Literal.value):
    STRING str, INTEGER int, FLOAT float (NaN/Infinity included), BOOLEAN bool, UUID uuid.UUID,
    HEX bytes (0x... blob literal), DURATION `Duration`, NULL None."""

    STRING = "STRING"
    INTEGER = "INTEGER"
    FLOAT = "FLOAT"
    BOOLEAN = "BOOLEAN"
    UUID = "UUID"
    HEX = "HEX"
    DURATION = "DURATION"
    NULL = "NULL"


class Duration(NamedTuple):
    """A duration literal; attribute names as cassandra.util.Duration (what types.serialize
    reads), and equal to the plain tuple (months, days, nanoseconds)."""

    months: int
    days: int
    nanoseconds: int


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant. `text` is the literal as written, without quotes (string content, digits
    of a number, 0x... of a blob): use it for decimal/varint receivers (Decimal(text) keeps
    every digit a float would lose) and in error messages ("Invalid STRING constant (x)")."""

    kind: LiteralKind
    value: Any
    text: str


@dataclass(frozen=True, slots=True)
class BindMarker:
    """`?` (name None) or `:name`. `index` is the marker's position among all markers of the
    statement in order of appearance (0-based; across every child of a BATCH), which is the
    position of its value in QUERY/EXECUTE values. A repeated `:name` gets one index per
    occurrence."""

    index: int
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ListLiteral:
    items: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class SetLiteral:
    """`{a, b}`. The empty `{}` is a SetLiteral with no items, as in Cassandra's Parser.g:
    a map receiver must accept it as the empty map."""

    items: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class MapLiteral:
    """`{k: v, ...}` (never empty: `{}` is an empty SetLiteral)."""

    entries: tuple[tuple[Term, Term], ...]


@dataclass(frozen=True, slots=True)
class UdtLiteral:
    """`{field: term, ...}` (field names are identifiers, not strings)."""

    fields: tuple[tuple[str, Term], ...]


@dataclass(frozen=True, slots=True)
class TupleLiteral:
    items: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """`name(args)` or `ks.name(args)`: now(), uuid(), toTimestamp(now()), token(a, b),
    min(c) ... In selectors the args are selector expressions (ColumnRef etc.), in terms they
    are terms. Names are lowercased like every unquoted identifier."""

    name: str
    args: tuple[Any, ...] = ()
    keyspace: str | None = None


@dataclass(frozen=True, slots=True)
class TypeHint:
    """`(type) term`, e.g. `(int) ?` or `(bigint) 3`."""

    type: TypeRef
    term: Term


Term = Union[Literal, BindMarker, ListLiteral, SetLiteral, MapLiteral, UdtLiteral, TupleLiteral,
             FunctionCall, TypeHint]


@dataclass(frozen=True, slots=True)
class InValues:
    """The parenthesised list of `col IN (a, b)` / `(c1, c2) IN ((..), (..))`; `IN ?` binds
    the whole list to one BindMarker instead."""

    items: tuple[Term, ...]


# --------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A CQL type as written, normalised to text `parse_type` reads (`frozen<map<text, int>>`,
    `"MyType"`, `ks.addr`). `udt_names` lists the user types it mentions, spelled as
    parse_type hands them to its `udts` callback ("name" or "ks.name"). The parser has already
    checked the type's shape (arity, frozen<> placement, nesting rules)."""

    text: str
    udt_names: tuple[str, ...] = ()

    def resolve(self, udts: Callable[[str], UserType | None] | None = None) -> CqlType:
        """The CqlType; unknown user types raise InvalidRequest("Unknown type ...")."""
        return parse_type(self.text, udts)


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class ColumnRef:
    name: str


@dataclass(frozen=True, slots=True)
class FieldRef:
    """`expr.field` (a field of a UDT column: `SELECT addr.city`)."""

    expr: Any
    field: str


@dataclass(frozen=True, slots=True)
class CountRows:
    """COUNT(*) or COUNT(1); Cassandra names the result column `count`."""


@dataclass(frozen=True, slots=True)
class WriteTime:
    column: str


@dataclass(frozen=True, slots=True)
class Ttl:
    column: str


@dataclass(frozen=True, slots=True)
class Cast:
    """CAST(expr AS type); the target is always a native type."""

    expr: Any
    type: CqlType


SelectorExpr = Union[ColumnRef, FieldRef, CountRows, WriteTime, Ttl, Cast, FunctionCall,
                     Literal, BindMarker, ListLiteral, SetLiteral, MapLiteral, TypeHint]


@dataclass(frozen=True, slots=True)
class Selector:
    expr: SelectorExpr
    alias: str | None = None


# --------------------------------------------------------------------------- relations


class Operator(enum.StrEnum):
    EQ = "="
    NEQ = "!="
    LT = "<"
    LTE = "<="
    GT = ">"
    GTE = ">="
    IN = "IN"
    CONTAINS = "CONTAINS"
    CONTAINS_KEY = "CONTAINS KEY"
    LIKE = "LIKE"


@dataclass(frozen=True, slots=True)
class ColumnRelation:
    """`col op value`. For IN, value is InValues or a BindMarker (`IN ?`). `key` is set for a
    map-entry restriction `m[key] = value`."""

    column: str
    op: Operator
    value: Term | InValues
    key: Term | None = None


@dataclass(frozen=True, slots=True)
class MultiColumnRelation:
    """`(c1, c2) op (v1, v2)`: value is a TupleLiteral or BindMarker; for IN an InValues of
    them, or one BindMarker."""

    columns: tuple[str, ...]
    op: Operator
    value: Term | InValues


@dataclass(frozen=True, slots=True)
class TokenRelation:
    """`token(a, b) op value` (op is never IN/CONTAINS)."""

    columns: tuple[str, ...]
    op: Operator
    value: Term


Relation = Union[ColumnRelation, MultiColumnRelation, TokenRelation]


@dataclass(frozen=True, slots=True)
class Condition:
    """A lightweight-transaction condition `IF col op value` (also `col[key] op value`,
    `col.field op value`); for IN, value is InValues or a BindMarker."""

    column: str
    op: Operator
    value: Term | InValues
    key: Term | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Ordering:
    column: str
    descending: bool = False


# --------------------------------------------------------------------------- assignments


@dataclass(frozen=True, slots=True)
class SetColumn:
    """`c = value`."""

    column: str
    value: Term


@dataclass(frozen=True, slots=True)
class SetElement:
    """`c[key] = value`: map put, or list element set by index."""

    column: str
    key: Term
    value: Term


@dataclass(frozen=True, slots=True)
class SetField:
    """`c.field = value` on a non-frozen UDT column."""

    column: str
    field: str
    value: Term


@dataclass(frozen=True, slots=True)
class AddTo:
    """`c = c + value`: list append, set union, map merge, counter increment."""

    column: str
    value: Term


@dataclass(frozen=True, slots=True)
class PrependTo:
    """`c = value + c` (lists only)."""

    column: str
    value: Term


@dataclass(frozen=True, slots=True)
class RemoveFrom:
    """`c = c - value`: list/set element removal, map key removal, counter decrement.
    `c = c -5` (no space) arrives here as value 5."""

    column: str
    value: Term


Assignment = Union[SetColumn, SetElement, SetField, AddTo, PrependTo, RemoveFrom]


@dataclass(frozen=True, slots=True)
class DeleteColumn:
    column: str


@dataclass(frozen=True, slots=True)
class DeleteElement:
    """`DELETE m[key]`: map entry, or list element by index."""

    column: str
    key: Term


@dataclass(frozen=True, slots=True)
class DeleteField:
    column: str
    field: str


Deletion = Union[DeleteColumn, DeleteElement, DeleteField]

# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    """Base of every statement. `bind_markers` lists the statement's markers by index (for a
    BATCH: every child's). It is filled by `parse` and left out of equality and repr."""

    bind_markers: tuple[BindMarker, ...] = field(default=(), kw_only=True, compare=False,
                                                 repr=False)


@dataclass(frozen=True)
class Select(Statement):
    """selectors == () means `SELECT *`."""

    keyspace: str | None
    table: str
    selectors: tuple[Selector, ...] = ()
    where: tuple[Relation, ...] = ()
    json: bool = False
    distinct: bool = False
    group_by: tuple[str, ...] = ()
    order_by: tuple[Ordering, ...] = ()
    per_partition_limit: Term | None = None
    limit: Term | None = None
    allow_filtering: bool = False

    @property
    def is_star(self) -> bool:
        return not self.selectors


@dataclass(frozen=True)
class Insert(Statement):
    keyspace: str | None
    table: str
    columns: tuple[str, ...]
    values: tuple[Term, ...]
    if_not_exists: bool = False
    ttl: Term | None = None
    timestamp: Term | None = None


@dataclass(frozen=True)
class InsertJson(Statement):
    """`INSERT INTO t JSON '...' [DEFAULT NULL | DEFAULT UNSET]`; json is a STRING Literal or
    a BindMarker."""

    keyspace: str | None
    table: str
    json: Term
    default_unset: bool = False
    if_not_exists: bool = False
    ttl: Term | None = None
    timestamp: Term | None = None


@dataclass(frozen=True)
class Update(Statement):
    """LWT: if_exists for `IF EXISTS`, conditions for `IF c = x AND ...`."""

    keyspace: str | None
    table: str
    assignments: tuple[Assignment, ...]
    where: tuple[Relation, ...]
    ttl: Term | None = None
    timestamp: Term | None = None
    if_exists: bool = False
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Delete(Statement):
    """deletions == () deletes whole rows (or the partition)."""

    keyspace: str | None
    table: str
    deletions: tuple[Deletion, ...]
    where: tuple[Relation, ...]
    timestamp: Term | None = None
    if_exists: bool = False
    conditions: tuple[Condition, ...] = ()


class BatchKind(enum.StrEnum):
    LOGGED = "LOGGED"
    UNLOGGED = "UNLOGGED"
    COUNTER = "COUNTER"


ModificationStatement = Union[Insert, InsertJson, Update, Delete]


@dataclass(frozen=True)
class Batch(Statement):
    kind: BatchKind
    statements: tuple[ModificationStatement, ...]
    timestamp: Term | None = None


@dataclass(frozen=True)
class Use(Statement):
    keyspace: str


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in options.items()}


@dataclass(frozen=True)
class _WithOptions(Statement):
    """Options of `WITH name = value AND ...`: a read-only mapping. A constant keeps its
    Python value (durable_writes = true -> True, default_time_to_live = 10 -> 10); a map
    literal becomes a read-only mapping of str to str, as Cassandra turns `{'class':
    'SimpleStrategy', 'replication_factor': 1}` into text ({'replication_factor': '1'})."""

    options: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    def options_dict(self) -> dict[str, Any]:
        """The options as fresh plain dicts (what schema.model's validators expect)."""
        return _plain(self.options)


@dataclass(frozen=True)
class CreateKeyspace(_WithOptions):
    name: str
    if_not_exists: bool = False


@dataclass(frozen=True)
class AlterKeyspace(_WithOptions):
    name: str


@dataclass(frozen=True)
class DropKeyspace(Statement):
    name: str
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    name: str
    type: TypeRef
    static: bool = False


@dataclass(frozen=True)
class CreateTable(_WithOptions):
    """Checked already: exactly one PRIMARY KEY, key columns declared, no duplicate columns,
    static only outside the key and only with clustering columns, CLUSTERING ORDER naming a
    prefix of the clustering columns in order. `columns` keeps declaration order;
    `clustering_order` is as written (columns it leaves out are ascending)."""

    keyspace: str | None
    table: str
    columns: tuple[ColumnSpec, ...]
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...] = ()
    clustering_order: tuple[Ordering, ...] = ()
    if_not_exists: bool = False

    def is_descending(self, column: str) -> bool:
        return any(o.column == column and o.descending for o in self.clustering_order)


@dataclass(frozen=True)
class AlterTableAdd(Statement):
    keyspace: str | None
    table: str
    columns: tuple[ColumnSpec, ...]


@dataclass(frozen=True)
class AlterTableDrop(Statement):
    keyspace: str | None
    table: str
    columns: tuple[str, ...]
    timestamp: int | None = None  # DROP ... USING TIMESTAMP n


@dataclass(frozen=True)
class AlterTableRename(Statement):
    keyspace: str | None
    table: str
    renames: tuple[tuple[str, str], ...]  # (old, new)


@dataclass(frozen=True)
class AlterTableWith(_WithOptions):
    keyspace: str | None
    table: str


@dataclass(frozen=True)
class DropTable(Statement):
    keyspace: str | None
    table: str
    if_exists: bool = False


@dataclass(frozen=True)
class Truncate(Statement):
    keyspace: str | None
    table: str


@dataclass(frozen=True)
class CreateType(Statement):
    keyspace: str | None
    name: str
    fields: tuple[tuple[str, TypeRef], ...]
    if_not_exists: bool = False


@dataclass(frozen=True)
class AlterTypeAdd(Statement):
    keyspace: str | None
    name: str
    field_name: str
    type: TypeRef


@dataclass(frozen=True)
class AlterTypeRename(Statement):
    keyspace: str | None
    name: str
    renames: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DropType(Statement):
    keyspace: str | None
    name: str
    if_exists: bool = False


class IndexTargetKind(enum.StrEnum):
    VALUES = "values"  # `(c)` or `(values(c))`
    KEYS = "keys"
    ENTRIES = "entries"
    FULL = "full"


@dataclass(frozen=True)
class CreateIndex(_WithOptions):
    """`CREATE [CUSTOM] INDEX [IF NOT EXISTS] [name] ON t (target) [USING 'cls' [WITH
    OPTIONS = {...}]]`; options holds {'options': {...}} when given."""

    keyspace: str | None
    table: str
    index_name: str | None
    column: str
    target: IndexTargetKind = IndexTargetKind.VALUES
    custom_class: str | None = None
    if_not_exists: bool = False


@dataclass(frozen=True)
class DropIndex(Statement):
    keyspace: str | None
    name: str
    if_exists: bool = False


class DescribeKind(enum.StrEnum):
    KEYSPACES = "KEYSPACES"
    KEYSPACE = "KEYSPACE"  # name None: the session's keyspace
    TABLES = "TABLES"
    TABLE = "TABLE"
    TYPES = "TYPES"
    TYPE = "TYPE"
    FUNCTIONS = "FUNCTIONS"
    FUNCTION = "FUNCTION"
    AGGREGATES = "AGGREGATES"
    AGGREGATE = "AGGREGATE"
    CLUSTER = "CLUSTER"
    SCHEMA = "SCHEMA"
    INDEX = "INDEX"
    MATERIALIZED_VIEW = "MATERIALIZED VIEW"
    NAME = "NAME"  # DESCRIBE name / DESCRIBE ks.name: whatever object has that name


@dataclass(frozen=True)
class Describe(Statement):
    kind: DescribeKind
    keyspace: str | None = None
    name: str | None = None
    full: bool = False  # DESCRIBE FULL SCHEMA
    only: bool = False  # DESCRIBE ONLY KEYSPACE
    with_internals: bool = False


ANY_STATEMENT = (Select, Insert, InsertJson, Update, Delete, Batch, Use, CreateKeyspace,
                 AlterKeyspace, DropKeyspace, CreateTable, AlterTableAdd, AlterTableDrop,
                 AlterTableRename, AlterTableWith, DropTable, Truncate, CreateType,
                 AlterTypeAdd, AlterTypeRename, DropType, CreateIndex, DropIndex, Describe)
