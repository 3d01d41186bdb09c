"""Tree-to-AST rules for schema statements (USE, keyspaces, tables, types, indexes) and
server-side DESCRIBE.

Owns: building the DDL nodes and the checks Cassandra makes without looking at the schema:
one PRIMARY KEY naming declared columns, no duplicate columns, static columns only outside
the key and only with clustering columns, CLUSTERING ORDER naming clustering columns in order,
no duplicate options, COMPACT STORAGE and column type changes refused. Deliberately does not
know whether keyspaces or tables exist, or which options and replication settings are valid
(schema.model and schema.ddl check those).

Rules from: Cassandra 4/5 Parser.g (`createKeyspaceStatement`, `createTableStatement`,
`alterTableStatement`, `createTypeStatement`, `createIndexStatement`, `describeStatement`),
CreateTableStatement.Raw (its messages), PropertyDefinitions (option values as text inside
maps, SyntaxException on a repeated option).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agora.core.errors import CqlSyntaxError, InvalidRequest
from agora.cql.ast import (
    AlterKeyspace, AlterTableAdd, AlterTableDrop, AlterTableRename, AlterTableWith, AlterTypeAdd,
    AlterTypeRename, ColumnSpec, CreateIndex, CreateKeyspace, CreateTable, CreateType, Describe,
    DescribeKind, DropIndex, DropKeyspace, DropTable, DropType, IndexTargetKind, Literal,
    MapLiteral, Ordering, SetLiteral, Truncate, TypeRef, Use,
)
from agora.cql.parse_terms import QName, checked_type


class _Option:
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value


class _KeyDef:
    """PRIMARY KEY ((partition...), clustering...) as declared."""

    __slots__ = ("partition", "clustering")

    def __init__(self, partition: tuple[str, ...], clustering: tuple[str, ...]) -> None:
        self.partition, self.clustering = partition, clustering


_CLUSTERING, _COMPACT = object(), object()


def _option_value(name: str, value: Any) -> Any:
    """A constant keeps its Python value; a map literal of constants becomes str -> str."""
    if isinstance(value, Literal):
        return value.value
    if isinstance(value, SetLiteral) and not value.items:  # `{}`
        return MappingProxyType({})
    if isinstance(value, MapLiteral):
        entries = {}
        for k, v in value.entries:
            if not (isinstance(k, Literal) and isinstance(v, Literal)):
                raise CqlSyntaxError(f"Invalid value for property '{name}': map keys and "
                                     "values must be constants")
            entries[str(k.text)] = str(v.text)
        return MappingProxyType(entries)
    raise CqlSyntaxError(f"Invalid value for property '{name}': expected a constant or a map")


def _options(items: tuple[Any, ...]) -> MappingProxyType:
    out: dict[str, Any] = {}
    for item in items:
        if item.name in out:
            raise CqlSyntaxError(f"Multiple definition for property {item.name}")
        out[item.name] = item.value
    return MappingProxyType(out)


def _check_clustering_order(order: tuple[Ordering, ...], clustering: tuple[str, ...]) -> None:
    named = [o.column for o in order]
    strays = [c for c in named if c not in clustering]
    if strays:
        raise InvalidRequest("Only clustering key columns can be defined in CLUSTERING ORDER "
                             f"directive: {strays} are not clustering columns")
    if len(set(named)) != len(named):
        raise InvalidRequest("Duplicate column in CLUSTERING ORDER directive")
    for n, column in enumerate(named):
        expected = clustering[n]
        if column != expected:
            if expected in named:
                raise InvalidRequest("The order of columns in the CLUSTERING ORDER directive "
                                     f"must match that of the clustering columns ({expected} "
                                     f"must appear before {column})")
            raise InvalidRequest(f"Missing CLUSTERING ORDER for column {expected}")


def _check_table(name: str, columns: list[ColumnSpec], key: _KeyDef) -> None:
    declared = {c.name for c in columns}
    if len(declared) != len(columns):
        dup = next(c.name for c in columns if sum(d.name == c.name for d in columns) > 1)
        raise InvalidRequest(f"Duplicate column '{dup}' declaration for table {name}")
    key_columns = key.partition + key.clustering
    if len(set(key_columns)) != len(key_columns):
        raise InvalidRequest(f"Duplicate definition in PRIMARY KEY of table {name}")
    for column in key_columns:
        if column not in declared:
            raise InvalidRequest(f"Unknown definition {column} referenced in PRIMARY KEY")
    for c in columns:
        if c.static and c.name in key_columns:
            raise InvalidRequest(f"Static column {c.name} cannot be part of the PRIMARY KEY")
        if c.static and not key.clustering:
            raise InvalidRequest("Static columns are only useful (and thus allowed) if the "
                                 "table has at least one clustering column")


class SchemaRules:
    # ---------------------------------------------------------------- shared pieces

    def property(self, name: str, _eq: Any, value: Any) -> _Option:
        return _Option(name, _option_value(name, value))

    def properties(self, *items: _Option) -> MappingProxyType:
        return _options(items)

    def table_kw(self) -> None:
        return None

    def static(self) -> bool:
        return True

    def renames(self, *pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return pairs

    def rename(self, old: str, new: str) -> tuple[str, str]:
        return (old, new)

    # ---------------------------------------------------------------- keyspaces

    def use(self, name: str) -> Use:
        return Use(name)

    def create_keyspace(self, if_not_exists: Any, name: str, options: Any) -> CreateKeyspace:
        return CreateKeyspace(name, bool(if_not_exists), options=options)

    def alter_keyspace(self, name: str, options: Any) -> AlterKeyspace:
        return AlterKeyspace(name, options=options)

    def drop_keyspace(self, if_exists: Any, name: str) -> DropKeyspace:
        return DropKeyspace(name, bool(if_exists))

    # ---------------------------------------------------------------- tables

    def column_def(self, name: str, ref: TypeRef, static: Any, inline_key: Any) -> Any:
        spec = ColumnSpec(name, checked_type(ref), bool(static))
        return (spec, _KeyDef((name,), ()) if inline_key else None)

    def inline_key(self) -> bool:
        return True

    def key_def(self, key: _KeyDef) -> _KeyDef:
        return key

    def key_spec(self, partition: tuple[str, ...], *clustering: str) -> _KeyDef:
        return _KeyDef(partition, clustering)

    def partition_key(self, names: Any) -> tuple[str, ...]:
        return names if isinstance(names, tuple) else (names,)

    def table_defs(self, *defs: Any) -> tuple[list[ColumnSpec], list[_KeyDef]]:
        columns, keys = [], []
        for d in defs:
            if isinstance(d, _KeyDef):
                keys.append(d)
            elif d is not None:
                columns.append(d[0])
                if d[1] is not None:
                    keys.append(d[1])
        return columns, keys

    def table_with(self, options: Any) -> Any:
        return options

    def clustering_order(self, orderings: tuple[Ordering, ...]) -> tuple[Any, tuple[Ordering, ...]]:
        return (_CLUSTERING, orderings)

    def compact_storage(self) -> Any:
        raise InvalidRequest("COMPACT STORAGE tables are not supported")

    def table_option(self, option: Any) -> Any:
        return option

    def table_options(self, *items: Any) -> tuple[tuple[Ordering, ...], MappingProxyType]:
        order = [i[1] for i in items if isinstance(i, tuple) and i[0] is _CLUSTERING]
        if len(order) > 1:
            raise CqlSyntaxError("Multiple definition for property clustering order")
        options = _options(tuple(i for i in items if isinstance(i, _Option)))
        return (order[0] if order else ()), options

    def create_table(self, _kw: Any, if_not_exists: Any, q: QName,
                     defs: tuple[list[ColumnSpec], list[_KeyDef]], with_: Any) -> CreateTable:
        columns, keys = defs
        name = q[1] if q[0] is None else f"{q[0]}.{q[1]}"
        if len(keys) != 1:
            raise InvalidRequest(f"{'No' if not keys else 'Multiple'} PRIMARY KEY specified "
                                 f"for table '{name}' (exactly one required)")
        _check_table(name, columns, keys[0])
        order, options = with_ or ((), MappingProxyType({}))
        _check_clustering_order(order, keys[0].clustering)
        return CreateTable(q[0], q[1], tuple(columns), keys[0].partition, keys[0].clustering,
                           order, bool(if_not_exists), options=options)

    def add_column(self, name: str, ref: TypeRef, static: Any) -> ColumnSpec:
        return ColumnSpec(name, checked_type(ref), bool(static))

    def alter_add(self, *columns: ColumnSpec) -> Any:
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise InvalidRequest("Duplicate column in ALTER TABLE ... ADD")
        return lambda q: AlterTableAdd(q[0], q[1], columns)

    def drop_columns(self, names: Any) -> tuple[str, ...]:
        return names if isinstance(names, tuple) else (names,)

    def drop_timestamp(self, tok: Any) -> int:
        return tok.value.value

    def alter_drop(self, columns: tuple[str, ...], timestamp: int | None) -> Any:
        return lambda q: AlterTableDrop(q[0], q[1], columns, timestamp)

    def alter_rename(self, renames: tuple[tuple[str, str], ...]) -> Any:
        return lambda q: AlterTableRename(q[0], q[1], renames)

    def alter_with(self, options: tuple[tuple[Ordering, ...], MappingProxyType]) -> Any:
        if options[0]:
            raise InvalidRequest("CLUSTERING ORDER cannot be changed by ALTER TABLE")
        return lambda q: AlterTableWith(q[0], q[1], options=options[1])

    def alter_column_type(self, column: str, ref: TypeRef) -> Any:
        raise InvalidRequest("Altering column types is no longer supported")

    def alter_table(self, _kw: Any, q: QName, build: Any) -> Any:
        return build(q)

    def drop_table(self, _kw: Any, if_exists: Any, q: QName) -> DropTable:
        return DropTable(q[0], q[1], bool(if_exists))

    def truncate(self, _kw: Any, q: QName) -> Truncate:
        return Truncate(q[0], q[1])

    # ---------------------------------------------------------------- types and indexes

    def type_field(self, name: str, ref: TypeRef) -> tuple[str, TypeRef]:
        return (name, checked_type(ref))

    def type_fields(self, *fields: tuple[str, TypeRef]) -> tuple[tuple[str, TypeRef], ...]:
        return fields

    def create_type(self, if_not_exists: Any, q: QName,
                    fields: tuple[tuple[str, TypeRef], ...]) -> CreateType:
        names = [f[0] for f in fields]
        if len(set(names)) != len(names):
            raise InvalidRequest(f"Duplicate field name in type {q[1]}")
        return CreateType(q[0], q[1], fields, bool(if_not_exists))

    def alter_type_add(self, q: QName, field: str, ref: TypeRef) -> AlterTypeAdd:
        return AlterTypeAdd(q[0], q[1], field, checked_type(ref))

    def alter_type_rename(self, q: QName, renames: tuple) -> AlterTypeRename:
        return AlterTypeRename(q[0], q[1], renames)

    def drop_type(self, if_exists: Any, q: QName) -> DropType:
        return DropType(q[0], q[1], bool(if_exists))

    def custom(self) -> bool:
        return True

    def index_target(self, first: str, column: str | None = None) -> tuple[IndexTargetKind, str]:
        if column is None:
            return (IndexTargetKind.VALUES, first)
        try:
            return (IndexTargetKind(first), column)
        except ValueError:
            raise InvalidRequest(f"Invalid index target {first}({column}): use keys(), "
                                 "values(), entries() or full()") from None

    def index_options(self, _eq: Any, value: Any) -> Any:
        return value

    def index_using(self, cls: Any, options: Any) -> tuple[str, Any]:
        if not isinstance(cls, Literal) or not isinstance(cls.value, str):
            raise InvalidRequest("USING of CREATE CUSTOM INDEX takes a class name string")
        return (cls.value, options)

    def index_on(self, q: QName, target: tuple[IndexTargetKind, str]) -> tuple[QName, Any]:
        return q, target

    def create_index(self, custom: Any, if_not_exists: Any, name: str | None,
                     on: tuple[QName, tuple[IndexTargetKind, str]], using: Any) -> CreateIndex:
        q, target = on
        cls, raw_options = using or (None, None)
        if bool(custom) != (cls is not None):
            raise InvalidRequest("CUSTOM index requires USING 'class', and USING requires "
                                 "CUSTOM")
        options = {} if raw_options is None else {"options": _option_value("options",
                                                                           raw_options)}
        return CreateIndex(q[0], q[1], name, target[1], target[0], cls, bool(if_not_exists),
                           options=MappingProxyType(options))

    def drop_index(self, if_exists: Any, q: QName) -> DropIndex:
        return DropIndex(q[0], q[1], bool(if_exists))


def _describe(kind: DescribeKind) -> Any:
    return lambda self, *a: Describe(kind)


def _describe_named(kind: DescribeKind) -> Any:
    return lambda self, q: Describe(kind, q[0], q[1])


class DescribeRules:
    """DESCRIBE/DESC forms cqlsh 6 sends to the server (shared/cql-compat.md section 7)."""

    d_keyspaces = _describe(DescribeKind.KEYSPACES)
    d_tables = _describe(DescribeKind.TABLES)
    d_types = _describe(DescribeKind.TYPES)
    d_functions = _describe(DescribeKind.FUNCTIONS)
    d_aggregates = _describe(DescribeKind.AGGREGATES)
    d_cluster = _describe(DescribeKind.CLUSTER)
    d_type = _describe_named(DescribeKind.TYPE)
    d_function = _describe_named(DescribeKind.FUNCTION)
    d_aggregate = _describe_named(DescribeKind.AGGREGATE)
    d_index = _describe_named(DescribeKind.INDEX)
    d_view = _describe_named(DescribeKind.MATERIALIZED_VIEW)
    d_name = _describe_named(DescribeKind.NAME)

    def d_table(self, _kw: Any, q: QName) -> Describe:
        return Describe(DescribeKind.TABLE, q[0], q[1])

    def d_keyspace(self, only: Any, name: str | None) -> Describe:
        return Describe(DescribeKind.KEYSPACE, keyspace=name, only=bool(only))

    def d_schema(self, full: Any) -> Describe:
        return Describe(DescribeKind.SCHEMA, full=bool(full))

    def only(self) -> bool:
        return True

    def full(self) -> bool:
        return True

    def with_internals(self) -> bool:
        return True

    def describe_kw(self) -> None:
        return None

    def describe(self, _kw: Any, target: Describe, internals: Any) -> Describe:
        if not internals:
            return target
        return Describe(target.kind, target.keyspace, target.name, target.full, target.only,
                        True)
