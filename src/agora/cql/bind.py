"""Bind metadata of a prepared statement: for every bind marker, the column spec (name and
type) a client must encode its value with, and which markers carry the partition key (the
routing key token-aware drivers hash). Cassandra's `VariableSpecifications` and
`getPartitionKeyBindVariableIndexes`.

Owns: the receiver of each term position in each statement kind. Names follow Cassandra's:
the column's name, `[limit]`, `[ttl]`, `[timestamp]`, `partition key token`, `in(c)`,
`key(m)`, `value(m)`, `idx(l)` — or the marker's own name for `:name` (drivers bind a dict
of values by these names).
"""

from __future__ import annotations

from agora.core.errors import InvalidRequest
from agora.core.schema import types as T
from agora.cql import ast
from agora.cql.results import ColumnSpec


class Binder:
    def __init__(self, count: int):
        self.specs: list[ColumnSpec | None] = [None] * count
        self.pk_markers: dict[str, int] = {}

    def visit(self, term, spec: ColumnSpec) -> None:
        if term is None:
            return
        if isinstance(term, ast.BindMarker):  # a `:name` marker is known by its own name
            self.specs[term.index] = spec if term.name is None else _spec(spec, term.name, spec.type)
        elif isinstance(term, ast.TypeHint):
            self.visit(term.term, spec)
        elif isinstance(term, (ast.ListLiteral, ast.SetLiteral)):
            t = spec.type
            elem = getattr(t, "element", None) or getattr(t, "key", None) or t
            for item in term.items:
                self.visit(item, _spec(spec, spec.name, elem))
        elif isinstance(term, ast.MapLiteral) and isinstance(spec.type, T.MapType):
            for k, v in term.entries:
                self.visit(k, _spec(spec, f"key({spec.name})", spec.type.key))
                self.visit(v, _spec(spec, f"value({spec.name})", spec.type.value))
        elif isinstance(term, ast.TupleLiteral) and isinstance(spec.type, T.TupleType):
            for item, t in zip(term.items, spec.type.elements):
                self.visit(item, _spec(spec, spec.name, t))
        elif isinstance(term, ast.UdtLiteral) and isinstance(spec.type, T.UserType):
            for name, item in term.fields:
                if name in spec.type.field_names:
                    self.visit(item, _spec(spec, f"{spec.name}.{name}", spec.type.field_types[spec.type.field_names.index(name)]))
        elif isinstance(term, ast.InValues):
            for item in term.items:
                self.visit(item, spec)


def _spec(base: ColumnSpec, name: str, t) -> ColumnSpec:
    return ColumnSpec(base.keyspace, base.table, name, t)


def _col_spec(table, name: str) -> ColumnSpec:
    col = table.column(name)
    if col is None:
        raise InvalidRequest(f"Undefined column name {name} in table {table.keyspace}.{table.name}")
    return ColumnSpec(table.keyspace, table.name, col.name, col.type)


def _extra(table, name: str, t) -> ColumnSpec:
    return ColumnSpec(table.keyspace, table.name, name, t)


def bind_relations(b: Binder, table, where: tuple) -> None:
    for rel in where:
        if isinstance(rel, ast.TokenRelation):
            if isinstance(rel.value, ast.FunctionCall) and rel.value.name.lower() == "token":
                for arg, col in zip(rel.value.args, table.partition_key_columns):  # token(k) > token(?)
                    b.visit(arg, _col_spec(table, col.name))
            else:
                b.visit(rel.value, _extra(table, "partition key token", T.BIGINT))
        elif isinstance(rel, ast.MultiColumnRelation):
            types = tuple(table.column(c).type for c in rel.columns)
            spec = _extra(table, f"({','.join(rel.columns)})", T.TupleType(types))
            if isinstance(rel.value, ast.InValues):
                for item in rel.value.items:
                    b.visit(item, spec)
            elif rel.op == ast.Operator.IN:
                b.visit(rel.value, _extra(table, f"in({','.join(rel.columns)})", T.ListType(T.TupleType(types))))
            else:
                b.visit(rel.value, spec)
        else:
            spec = _col_spec(table, rel.column)
            t = spec.type
            if rel.key is not None and isinstance(t, T.MapType):
                b.visit(rel.key, _spec(spec, f"key({spec.name})", t.key))
                b.visit(rel.value, _spec(spec, f"value({spec.name})", t.value))
            elif rel.op == ast.Operator.IN and isinstance(rel.value, ast.BindMarker):
                b.visit(rel.value, _spec(spec, f"in({spec.name})", T.ListType(t)))
            elif rel.op == ast.Operator.CONTAINS_KEY and isinstance(t, T.MapType):
                b.visit(rel.value, _spec(spec, f"key({spec.name})", t.key))
            elif rel.op == ast.Operator.CONTAINS:
                inner = t.value if isinstance(t, T.MapType) else getattr(t, "element", t)
                b.visit(rel.value, _spec(spec, f"value({spec.name})", inner))
            else:
                b.visit(rel.value, spec)
                if rel.op == ast.Operator.EQ and isinstance(rel.value, ast.BindMarker):
                    b.pk_markers.setdefault(spec.name, rel.value.index)


def _bind_using(b: Binder, table, stmt) -> None:
    if getattr(stmt, "ttl", None) is not None:
        b.visit(stmt.ttl, _extra(table, "[ttl]", T.INT))
    if getattr(stmt, "timestamp", None) is not None:
        b.visit(stmt.timestamp, _extra(table, "[timestamp]", T.BIGINT))


def _bind_assignment(b: Binder, table, asg) -> None:
    spec = _col_spec(table, asg.column)
    t = spec.type
    if isinstance(asg, ast.SetElement):
        if isinstance(t, T.ListType):
            b.visit(asg.key, _spec(spec, f"idx({spec.name})", T.INT))
            b.visit(asg.value, _spec(spec, f"value({spec.name})", t.element))
        elif isinstance(t, T.MapType):
            b.visit(asg.key, _spec(spec, f"key({spec.name})", t.key))
            b.visit(asg.value, _spec(spec, f"value({spec.name})", t.value))
    elif isinstance(asg, ast.SetField) and isinstance(t, T.UserType) and asg.field in t.field_names:
        b.visit(asg.value, _spec(spec, f"{spec.name}.{asg.field}", t.field_types[t.field_names.index(asg.field)]))
    elif isinstance(asg, ast.RemoveFrom) and isinstance(t, T.MapType):
        b.visit(asg.value, _spec(spec, spec.name, T.SetType(t.key)))
    else:
        b.visit(asg.value, spec)


def bind_statement(b: Binder, stmt, table) -> None:
    if isinstance(stmt, ast.Insert):
        for name, term in zip(stmt.columns, stmt.values):
            spec = _col_spec(table, name)
            b.visit(term, spec)
            if isinstance(term, ast.BindMarker):
                b.pk_markers.setdefault(spec.name, term.index)
        _bind_using(b, table, stmt)
    elif isinstance(stmt, ast.Update):
        _bind_using(b, table, stmt)
        for asg in stmt.assignments:
            _bind_assignment(b, table, asg)
        bind_relations(b, table, stmt.where)
    elif isinstance(stmt, ast.Delete):
        _bind_using(b, table, stmt)
        for d in stmt.deletions:
            if isinstance(d, ast.DeleteElement):
                spec = _col_spec(table, d.column)
                t = spec.type
                key_t = t.key if isinstance(t, T.MapType) else (T.INT if isinstance(t, T.ListType) else getattr(t, "element", t))
                b.visit(d.key, _spec(spec, f"key({spec.name})", key_t))
        bind_relations(b, table, stmt.where)
    elif isinstance(stmt, ast.Select):
        bind_relations(b, table, stmt.where)
        if stmt.per_partition_limit is not None:
            b.visit(stmt.per_partition_limit, _extra(table, "[per_partition_limit]", T.INT))
        if stmt.limit is not None:
            b.visit(stmt.limit, _extra(table, "[limit]", T.INT))


def pk_indexes(b: Binder, table) -> list[int]:
    idx = []
    for col in table.partition_key_columns:
        if col.name not in b.pk_markers:
            return []
        idx.append(b.pk_markers[col.name])
    return idx
