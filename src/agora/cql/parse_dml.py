"""Tree-to-AST rules for data statements: SELECT, INSERT, UPDATE, DELETE, BATCH.

Owns: selectors, relations, LWT conditions, assignments, deletions, USING clauses and the
checks Cassandra makes on them before it looks at any schema (matching INSERT column/value
counts, `X = X + v` shapes, one TTL/TIMESTAMP each, no TTL on a BATCH or DELETE, what may be
called inside a selector). Deliberately does not know tables, columns or types.

Rules from: Cassandra 4/5 Parser.g (`selectStatement`, `selector`, `relation`,
`columnOperation`, `deleteSelection`, `batchStatement`, `usingClause`), UpdateStatement and
BatchStatement (their parse-time errors and messages).
"""

from __future__ import annotations

from typing import Any

from agora.core.errors import InvalidRequest
from agora.cql.ast import (
    AddTo, Batch, BatchKind, BindMarker, Cast, ColumnRef, ColumnRelation, Condition, CountRows,
    Delete, DeleteColumn, DeleteElement, DeleteField, FieldRef, FunctionCall, InValues, Insert,
    InsertJson, Literal, LiteralKind, MultiColumnRelation, Operator, Ordering, PrependTo,
    RemoveFrom, Select, Selector, SetColumn, SetElement, SetField, TokenRelation, Ttl, TypeRef,
    Update, WriteTime,
)
from agora.cql.parse_lexer import MAX_NESTING_DEPTH
from agora.cql.parse_terms import QName, native_type

_SELECTOR_FUNCTIONS_ON_ONE_COLUMN = {"writetime": WriteTime, "ttl": Ttl}


class _Flag:
    """Marks an optional clause's result among positional children."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any = True) -> None:
        self.name, self.value = name, value


def _using(items: list[_Flag] | None, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        if item.name in out:
            raise InvalidRequest(f"Multiple definitions of {item.name.upper()} in {where}")
        out[item.name] = item.value
    return out


def _column_of(expr: Any, function: str) -> str:
    if len(expr) != 1 or not isinstance(expr[0], ColumnRef):
        raise InvalidRequest(f"{function.upper()}() takes exactly one column name")
    return expr[0].name


class SelectRules:
    # ---------------------------------------------------------------- selectors

    def json_flag(self) -> bool:
        return True

    def distinct_flag(self) -> bool:
        return True

    def select_star(self, _star: Any) -> tuple:
        return ()

    def selectors(self, *selectors: Selector) -> tuple[Selector, ...]:
        return selectors

    def selector(self, expr: Any, alias: str | None) -> Selector:
        return Selector(expr, alias)

    def sel_dotted(self, names: tuple[str, ...]) -> Any:
        if len(names) > MAX_NESTING_DEPTH:
            raise InvalidRequest(f"Field selection nested deeper than {MAX_NESTING_DEPTH}")
        expr: Any = ColumnRef(names[0])
        for name in names[1:]:
            expr = FieldRef(expr, name)
        return expr

    def sel_call(self, names: tuple[str, ...], args: tuple | None) -> Any:
        args = args or ()
        if len(names) > 2:
            raise InvalidRequest(f"Invalid function name {'.'.join(names)}")
        if len(names) == 1 and names[0] in _SELECTOR_FUNCTIONS_ON_ONE_COLUMN:
            return _SELECTOR_FUNCTIONS_ON_ONE_COLUMN[names[0]](_column_of(args, names[0]))
        if len(names) == 1 and names[0] == "count" and args == (
                Literal(LiteralKind.INTEGER, 1, "1"),):
            return CountRows()
        return FunctionCall(names[-1], args, names[0] if len(names) == 2 else None)

    def sel_call_star(self, names: tuple[str, ...], _star: Any) -> CountRows:
        if names != ("count",):
            raise InvalidRequest(f"Only COUNT(*) may take '*' as argument, not "
                                 f"{'.'.join(names)}(*)")
        return CountRows()

    def sel_cast(self, names: tuple[str, ...], expr: Any, ref: TypeRef) -> Cast:
        if names != ("cast",):
            raise InvalidRequest(f"Unexpected AS inside {'.'.join(names)}(...)")
        return Cast(expr, native_type(ref))

    def sel_args(self, *args: Any) -> tuple[Any, ...]:
        return args

    # ---------------------------------------------------------------- WHERE

    def where(self, *relations: Any) -> tuple[Any, ...]:
        return relations

    def rel_op(self, tok: Any) -> Operator:
        return Operator(tok.value)

    def rel_simple(self, column: str, op: Operator, value: Any) -> ColumnRelation:
        return ColumnRelation(column, op, value)

    def rel_in(self, column: str, values: Any) -> ColumnRelation:
        return ColumnRelation(column, Operator.IN, values)

    def rel_contains(self, column: str, value: Any) -> ColumnRelation:
        return ColumnRelation(column, Operator.CONTAINS, value)

    def rel_contains_key(self, column: str, value: Any) -> ColumnRelation:
        return ColumnRelation(column, Operator.CONTAINS_KEY, value)

    def rel_like(self, column: str, value: Any) -> ColumnRelation:
        return ColumnRelation(column, Operator.LIKE, value)

    def rel_element(self, column: str, key: Any, op: Operator, value: Any) -> ColumnRelation:
        return ColumnRelation(column, op, value, key)

    def rel_token(self, function: str, columns: tuple[str, ...], op: Operator,
                  value: Any) -> TokenRelation:
        if function != "token":
            raise InvalidRequest(f"Only the token() function may be restricted, not {function}()")
        return TokenRelation(columns, op, value)

    def rel_multi(self, columns: tuple[str, ...], op: Operator, value: Any) -> Any:
        return MultiColumnRelation(columns, op, value)

    def rel_multi_in(self, columns: tuple[str, ...], values: Any) -> MultiColumnRelation:
        return MultiColumnRelation(columns, Operator.IN, values)

    def in_list(self, items: tuple | None) -> InValues:
        return InValues(items or ())

    def tuple_values(self, *items: Any) -> tuple[Any, ...]:
        return items

    def in_tuple_list(self, items: tuple | None) -> InValues:
        return InValues(items or ())

    def in_values(self, marker: BindMarker) -> BindMarker:
        return marker

    def in_tuples(self, marker: BindMarker) -> BindMarker:
        return marker

    # ---------------------------------------------------------------- the rest of SELECT

    def group_by(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        return columns

    def order_by(self, orderings: tuple[Ordering, ...]) -> tuple[Ordering, ...]:
        return orderings

    def orderings(self, *orderings: Ordering) -> tuple[Ordering, ...]:
        return orderings

    def order_asc(self, column: str) -> Ordering:
        return Ordering(column, False)

    def order_desc(self, column: str) -> Ordering:
        return Ordering(column, True)

    def per_partition_limit(self, value: Any) -> Any:
        return value

    def limit(self, value: Any) -> Any:
        return value

    def allow_filtering(self) -> bool:
        return True

    def select_tail(self, *clauses: Any) -> tuple[Any, ...]:
        return clauses

    def select(self, json: bool | None, distinct: bool | None, selection: tuple, q: QName,
               tail: tuple) -> Select:
        where, group_by, order_by, per_partition_limit, limit, allow_filtering = tail
        return Select(q[0], q[1], selection, where or (), bool(json), bool(distinct),
                      group_by or (), order_by or (), per_partition_limit, limit,
                      bool(allow_filtering))


class ModificationRules:
    def if_not_exists(self) -> bool:
        return True

    def if_exists(self) -> bool:
        return True

    def using(self, *items: _Flag) -> list[_Flag]:
        return list(items)

    def using_ttl(self, value: Any) -> _Flag:
        return _Flag("ttl", value)

    def using_timestamp(self, value: Any) -> _Flag:
        return _Flag("timestamp", value)

    def delete_using(self, value: Any) -> list[_Flag]:
        return [_Flag("timestamp", value)]

    def insert_tail(self, if_not_exists: Any, using: list | None) -> tuple[bool, list | None]:
        return bool(if_not_exists), using

    def insert(self, q: QName, columns: tuple[str, ...], values: tuple,
               tail: tuple[bool, list | None]) -> Insert:
        if_not_exists, using = tail
        if len(columns) != len(values):
            raise InvalidRequest("Unmatched column names/values")
        seen: set[str] = set()
        for column in columns:
            if column in seen:
                raise InvalidRequest(f"Multiple definitions found for column {column}")
            seen.add(column)
        u = _using(using, "INSERT")
        return Insert(q[0], q[1], columns, values, if_not_exists, u.get("ttl"),
                      u.get("timestamp"))

    def default_null(self, _null: Any) -> bool:
        return False

    def default_unset(self) -> bool:
        return True

    def insert_json(self, q: QName, json: Any, default_unset: bool | None,
                    tail: tuple[bool, list | None]) -> InsertJson:
        if_not_exists, using = tail
        if isinstance(json, Literal) and json.kind is not LiteralKind.STRING:
            raise InvalidRequest(f"Invalid {json.kind} constant ({json.text}) for INSERT JSON: "
                                 "a string is required")
        u = _using(using, "INSERT")
        return InsertJson(q[0], q[1], json, bool(default_unset), if_not_exists,
                          u.get("ttl"), u.get("timestamp"))

    # ---------------------------------------------------------------- UPDATE

    def assign_set(self, column: str, _eq: Any, value: Any) -> SetColumn:
        return SetColumn(column, value)

    def assign_add(self, column: str, _eq: Any, same: str, _plus: Any, value: Any) -> AddTo:
        _same_column(column, same, "X = X + <value>")
        return AddTo(column, value)

    def assign_sub(self, column: str, _eq: Any, same: str, _minus: Any,
                   value: Any) -> RemoveFrom:
        _same_column(column, same, "X = X - <value>")
        return RemoveFrom(column, value)

    def assign_sub_glued(self, column: str, _eq: Any, same: str, number: Any) -> RemoveFrom:
        literal = number.value
        if literal.value >= 0:
            raise InvalidRequest(f"Only expressions of the form X = X +/- <value> are "
                                 f"supported (got {column} = {same} {literal.text})")
        _same_column(column, same, "X = X - <value>")
        positive = literal.text[1:]
        return RemoveFrom(column, Literal(LiteralKind.INTEGER, -literal.value, positive))

    def assign_prepend(self, column: str, _eq: Any, value: Any, _plus: Any,
                       same: str) -> PrependTo:
        _same_column(column, same, "X = <value> + X")
        return PrependTo(column, value)

    def assign_element(self, column: str, key: Any, _eq: Any, value: Any) -> SetElement:
        return SetElement(column, key, value)

    def assign_field(self, column: str, field: str, _eq: Any, value: Any) -> SetField:
        return SetField(column, field, value)

    def lwt(self, *children: Any) -> tuple[bool, tuple[Condition, ...]]:
        if children == (True,):
            return (True, ())
        return (False, children)

    def cond_simple(self, column: str, op: Operator, value: Any) -> Condition:
        return Condition(column, op, value)

    def cond_in(self, column: str, values: Any) -> Condition:
        return Condition(column, Operator.IN, values)

    def cond_element(self, column: str, key: Any, op: Operator, value: Any) -> Condition:
        return Condition(column, op, value, key=key)

    def cond_element_in(self, column: str, key: Any, values: Any) -> Condition:
        return Condition(column, Operator.IN, values, key=key)

    def cond_field(self, column: str, field: str, op: Operator, value: Any) -> Condition:
        return Condition(column, op, value, field=field)

    def cond_field_in(self, column: str, field: str, values: Any) -> Condition:
        return Condition(column, Operator.IN, values, field=field)

    def update(self, q: QName, using: list | None, *rest: Any) -> Update:
        *assignments, where, lwt = rest
        u = _using(using, "UPDATE")
        if_exists, conditions = lwt or (False, ())
        return Update(q[0], q[1], tuple(assignments), where, u.get("ttl"), u.get("timestamp"),
                      if_exists, conditions)

    # ---------------------------------------------------------------- DELETE and BATCH

    def deletions(self, *items: Any) -> tuple[Any, ...]:
        return items

    def del_column(self, column: str) -> DeleteColumn:
        return DeleteColumn(column)

    def del_element(self, column: str, key: Any) -> DeleteElement:
        return DeleteElement(column, key)

    def del_field(self, column: str, field: str) -> DeleteField:
        return DeleteField(column, field)

    def delete(self, deletions: tuple | None, q: QName, using: list | None, where: tuple,
               lwt: Any) -> Delete:
        u = _using(using, "DELETE")
        if_exists, conditions = lwt or (False, ())
        return Delete(q[0], q[1], deletions or (), where, u.get("timestamp"), if_exists,
                      conditions)

    def unlogged(self) -> BatchKind:
        return BatchKind.UNLOGGED

    def counter(self) -> BatchKind:
        return BatchKind.COUNTER

    def batch(self, kind: BatchKind | None, using: list | None, *statements: Any) -> Batch:
        u = _using(using, "BATCH")
        if "ttl" in u:
            raise InvalidRequest("Global TTL on the BATCH statement is not supported.")
        return Batch(kind or BatchKind.LOGGED, statements, u.get("timestamp"))


def _same_column(column: str, other: str, shape: str) -> None:
    if column != other:
        raise InvalidRequest(f"Only expressions of the form {shape} are supported "
                             f"(got {column} = ... {other})")
