"""WHERE clauses against a table: which partitions, which clustering slices, which token range,
and which leftover conditions need filtering (Cassandra's StatementRestrictions, simplified).

Owns: the rules for what a WHERE clause may restrict — partition key columns by = or IN (or a
token() range instead), clustering columns as an equality prefix followed by at most one
slice or IN, multi-column (tuple) slices, and everything else only with ALLOW FILTERING — and
turning restrictions into partition keys and `Slice`s over encoded clustering keys. Values
are evaluated through `terms.evaluate` so bind markers and literals behave alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from agora.core import reconcile
from agora.core.errors import InvalidRequest
from agora.core.ring.partitioner import compose_partition_key, token_for_key
from agora.core.schema import types as T
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Bound, Slice
from agora.cql import ast
from agora.cql.plans import PlanCache
from agora.cql.requests import UNSET
from agora.cql.terms import TermContext, evaluate

MAX_CARTESIAN_KEYS = 10_000  # IN lists multiply; past this the statement is refused (as Cassandra's limit)
_RANGE_OPS = (ast.Operator.GT, ast.Operator.GTE, ast.Operator.LT, ast.Operator.LTE)


@dataclass
class Filter:
    """A condition checked row by row (ALLOW FILTERING): column op value(s)."""

    column: object  # ColumnDef
    op: ast.Operator
    values: list  # serialized values (one, or several for IN)
    key: bytes | None = None  # m[key] = value


@dataclass
class Restrictions:
    table: object
    pk: dict[str, list[bytes]] = field(default_factory=dict)  # column -> candidate values
    ck_eq: list[list[bytes]] = field(default_factory=list)  # equality prefix: candidates per column
    # (c1, c2) IN ((..), (..)): the first ck_eq column it covers and the tuples it allows, so the
    # prefixes are those tuples and not every combination of their columns' values
    ck_in_tuples: tuple[int, frozenset] | None = None
    ck_lower: tuple[list[bytes], bool] | None = None  # (values of a prefix, inclusive) after ck_eq
    ck_upper: tuple[list[bytes], bool] | None = None
    token_lower: tuple[int, bool] | None = None
    token_upper: tuple[int, bool] | None = None
    filters: list[Filter] = field(default_factory=list)
    empty: bool = False  # a contradiction (e.g. IN ()): nothing can match

    @property
    def single_partitions(self) -> bool:
        return len(self.pk) == len(self.table.partition_key_columns) and self.token_lower is None \
            and self.token_upper is None

    def partition_keys(self) -> list[bytes]:
        cols = self.table.partition_key_columns
        if len(cols) == 1:  # one key column: no combinations to form
            values = self.pk[cols[0].name]
            if len(values) == 1:
                return [compose_partition_key(values)]
        combos = _product([self.pk[c.name] for c in cols])
        return list(dict.fromkeys(compose_partition_key(list(c)) for c in combos))

    def clustering_prefixes(self) -> list[tuple[bytes, ...]]:
        prefixes = [tuple(c) for c in _product(self.ck_eq)]
        if self.ck_in_tuples is not None:
            start, allowed = self.ck_in_tuples
            width = len(next(iter(allowed)))
            prefixes = [c for c in prefixes if c[start:start + width] in allowed]
        return prefixes

    def has_full_clustering(self) -> bool:
        return len(self.ck_eq) == len(self.table.clustering_columns) and self.ck_lower is None \
            and self.ck_upper is None

    def slices(self) -> tuple[Slice, ...] | None:
        """The clustering slices, or None for the whole partition."""
        if not self.ck_eq and self.ck_lower is None and self.ck_upper is None:
            return None
        types = self.table.ckey_types()
        out = []
        for prefix in self.clustering_prefixes():
            if self._mixed_order(types, len(prefix)):
                out.extend(_mixed_order_slices(types, list(prefix), self.ck_lower, self.ck_upper))
                continue
            base = T.encode_ckey(types, list(prefix))
            start, end = Bound(base, True), Bound(base, True)
            depth = len(prefix)
            for bound, is_lower in ((self.ck_lower, True), (self.ck_upper, False)):
                if bound is None:
                    continue
                values, inclusive = bound
                encoded = T.encode_ckey(types, list(prefix) + values)
                descending = types[depth][1]
                if is_lower != descending:  # a lower bound in byte order
                    start = Bound(encoded, inclusive)
                else:
                    end = Bound(encoded, inclusive)
            out.append(Slice(start, end))
        return tuple(sorted(out, key=lambda s: s.start.prefix))

    def _mixed_order(self, types, depth: int) -> bool:
        """True when a (multi-column) slice spans clustering columns of both orders."""
        width = max((len(b[0]) for b in (self.ck_lower, self.ck_upper) if b is not None), default=0)
        return len({desc for _, desc in types[depth:depth + width]}) > 1

    def token_range(self) -> tuple[int, int]:
        """(start exclusive, end inclusive) over the ring for a range scan."""
        start, end = MIN_TOKEN, MAX_TOKEN
        if self.token_lower is not None:
            value, inclusive = self.token_lower
            start = value - 1 if inclusive else value
        if self.token_upper is not None:
            value, inclusive = self.token_upper
            end = value if inclusive else value - 1
        return max(start, MIN_TOKEN), end


def _tuple_bound_intervals(types, prefix: list[bytes], values: list[bytes], inclusive: bool,
                           is_lower: bool) -> list:
    """`(c_d, .., c_d+n) > (v_0, .., v_n)` (or >=, <, <=) after an equality prefix, as disjoint
    byte intervals of encoded clustering keys: for each i, the rows equal to v on the first i
    columns and beyond v_i on the next (beyond in value order, which a DESC column flips in
    byte order), plus the rows equal on all of v when inclusive (Cassandra's
    MultiColumnRestriction.Slice over columns of mixed order)."""
    out = []
    depth = len(prefix)
    for i in range(len(values)):
        group = T.encode_ckey(types, prefix + values[:i])  # b"" (everything) for i = 0 without a prefix
        at = T.encode_ckey(types, prefix + values[:i + 1])
        closed = inclusive and i == len(values) - 1
        if is_lower != types[depth + i][1]:  # beyond v_i lies after `at` in byte order
            interval = reconcile.clustering_interval(Bound(at, closed), Bound(group, True))
        else:
            interval = reconcile.clustering_interval(Bound(group, True), Bound(at, closed))
        if interval is not None:
            out.append(interval)
    return sorted(out, key=lambda iv: iv[0])


def _mixed_order_slices(types, prefix: list[bytes], lower, upper) -> list[Slice]:
    """The slices of a multi-column slice over clustering columns of mixed order: the
    intersection of what the lower and the upper bound each allow."""
    allowed = None
    for bound, is_lower in ((lower, True), (upper, False)):
        if bound is None:
            continue
        intervals = _tuple_bound_intervals(types, prefix, bound[0], bound[1], is_lower)
        if allowed is None:
            allowed = intervals
            continue
        meet = []
        for a_lo, a_hi in allowed:
            for b_lo, b_hi in intervals:
                lo = max(a_lo, b_lo)
                hi = a_hi if b_hi is None else (b_hi if a_hi is None else min(a_hi, b_hi))
                if hi is None or lo < hi:
                    meet.append((lo, hi))
        allowed = sorted(meet, key=lambda iv: iv[0])
    return [Slice(Bound(lo, True), Bound(b"", True) if hi is None else Bound(hi, False)) for lo, hi in allowed or ()]


def _product(lists: list[list[bytes]]) -> list[tuple[bytes, ...]]:
    total = 1
    for values in lists:
        total *= max(1, len(values))
    if total > MAX_CARTESIAN_KEYS:
        raise InvalidRequest(f"IN restrictions would select {total} keys; at most {MAX_CARTESIAN_KEYS} are allowed")
    return list(itertools.product(*lists))


def _values(rel_value, t, ctx: TermContext, op: ast.Operator) -> list[bytes]:
    """The serialized value(s) of a relation's right-hand side."""
    if op == ast.Operator.IN:
        if isinstance(rel_value, ast.InValues):
            items = [evaluate(item, t, ctx) for item in rel_value.items]
        else:  # IN ? binds a list
            raw = evaluate(rel_value, T.ListType(t), ctx)
            items = [] if raw is None or raw is UNSET else T.split_collection(T.ListType(t), raw)
    else:
        items = [evaluate(rel_value, t, ctx)]
    for v in items:
        if v is None or v is UNSET:
            raise InvalidRequest("Invalid null value in condition for column")
    return items


def _partition_equalities(where: tuple, table) -> tuple | None:
    """(column, term) per partition key column, in key order, when the WHERE clause is only
    `pk = term` once for each of them (a single partition: the most common read and
    UPDATE/DELETE shape); None for every other shape."""
    pk_cols = table.partition_key_columns
    if len(where) != len(pk_cols):
        return None
    by_name = {}
    for rel in where:
        if type(rel) is not ast.ColumnRelation or rel.op != ast.Operator.EQ or rel.key is not None:
            return None
        col = table.column(rel.column)
        if col is None or col.kind != "partition_key" or col.name in by_name:
            return None
        by_name[col.name] = (col, rel.value)
    return tuple(by_name[c.name] for c in pk_cols)


_PARTITION_EQUALITIES = PlanCache(_partition_equalities)


def analyze(table, where: tuple, ctx: TermContext, for_select: bool = True) -> Restrictions:
    r = Restrictions(table)
    simple = _PARTITION_EQUALITIES.get(where, table)
    if simple is not None:
        for col, term in simple:
            r.pk[col.name] = _values(term, col.type, ctx, ast.Operator.EQ)
        return r
    ck_names = [c.name for c in table.clustering_columns]
    ck_rel: dict[str, list] = {}
    for rel in where:
        if isinstance(rel, ast.TokenRelation):
            _token_relation(r, rel, ctx)
        elif isinstance(rel, ast.MultiColumnRelation):
            _multi_relation(r, rel, ctx, ck_names)
        else:
            col = table.column(rel.column)
            if col is None:
                raise InvalidRequest(f"Undefined column name {rel.column} in table {table.keyspace}.{table.name}")
            if col.kind == "partition_key" and rel.op in (ast.Operator.EQ, ast.Operator.IN):
                if col.name in r.pk:
                    raise InvalidRequest(f"{col.name} cannot be restricted by more than one relation if it includes an Equal")
                r.pk[col.name] = _values(rel.value, col.type, ctx, rel.op)
                r.empty |= not r.pk[col.name]
            elif col.kind == "clustering" and rel.op in (ast.Operator.EQ, ast.Operator.IN, *_RANGE_OPS):
                ck_rel.setdefault(col.name, []).append(rel)
            else:
                r.filters.append(_filter(col, rel, ctx))
    _clustering(r, ck_rel, ck_names, ctx)
    if r.pk and len(r.pk) != len(table.partition_key_columns):
        missing = [c.name for c in table.partition_key_columns if c.name not in r.pk]
        if for_select:  # a partial partition key can only be filtered
            for name in list(r.pk):
                col = table.column(name)
                r.filters.append(Filter(col, ast.Operator.IN, r.pk.pop(name)))
        else:
            raise InvalidRequest(f"Some partition key parts are missing: {', '.join(missing)}")
    return r


def _filter(col, rel: ast.ColumnRelation, ctx: TermContext) -> Filter:
    op = rel.op
    if op in (ast.Operator.CONTAINS, ast.Operator.CONTAINS_KEY):
        t = col.type
        inner = t.key if (op == ast.Operator.CONTAINS_KEY or not isinstance(t, T.MapType)) and isinstance(t, T.MapType) \
            else (t.value if isinstance(t, T.MapType) else getattr(t, "element", None))
        if inner is None:
            raise InvalidRequest(f"Cannot use {op.value} on non-collection column {col.name}")
        return Filter(col, op, [evaluate(rel.value, inner, ctx)])
    if rel.key is not None:
        if not isinstance(col.type, T.MapType):
            raise InvalidRequest(f"Column {col.name} is not a map")
        return Filter(col, op, [evaluate(rel.value, col.type.value, ctx)], evaluate(rel.key, col.type.key, ctx))
    if op == ast.Operator.LIKE:
        raise InvalidRequest("LIKE restrictions are only supported on SASI indexes")
    return Filter(col, op, _values(rel.value, col.type, ctx, op))


def _token_relation(r: Restrictions, rel: ast.TokenRelation, ctx: TermContext) -> None:
    names = tuple(c.name for c in r.table.partition_key_columns)
    if tuple(rel.columns) != names:
        raise InvalidRequest(f"The token function arguments must be the partition key columns in order: token({', '.join(names)})")
    if isinstance(rel.value, ast.FunctionCall) and rel.value.name.lower() == "token":
        value = _token_of(r.table, rel.value, ctx)  # token(k) > token(?): the key's own token
    else:
        raw = evaluate(rel.value, T.BIGINT, ctx)
        if raw is None or raw is UNSET:
            raise InvalidRequest("Invalid null value for token")
        value = T.deserialize(T.BIGINT, raw)
    if rel.op in (ast.Operator.GT, ast.Operator.GTE):
        r.token_lower = (value, rel.op == ast.Operator.GTE)
    elif rel.op in (ast.Operator.LT, ast.Operator.LTE):
        r.token_upper = (value, rel.op == ast.Operator.LTE)
    elif rel.op == ast.Operator.EQ:
        r.token_lower, r.token_upper = (value, True), (value, True)
    else:
        raise InvalidRequest(f"Unsupported operator {rel.op.value} on token()")


def _token_of(table, call: ast.FunctionCall, ctx: TermContext) -> int:
    """The value of `token(v1, v2 ...)` on the right of a token relation: the Murmur3 token
    of the partition key those values make."""
    cols = table.partition_key_columns
    if len(call.args) != len(cols):
        raise InvalidRequest(f"Invalid number of arguments in call to function system.token: "
                             f"{len(cols)} required but {len(call.args)} provided")
    parts = [evaluate(arg, col.type, ctx) for arg, col in zip(call.args, cols)]
    if any(v is None or v is UNSET for v in parts):
        raise InvalidRequest("Invalid null value for token")
    return token_for_key(compose_partition_key(parts))


def _multi_relation(r: Restrictions, rel: ast.MultiColumnRelation, ctx: TermContext, ck_names: list[str]) -> None:
    cols = list(rel.columns)
    start = len(r.ck_eq)
    if cols != ck_names[start:start + len(cols)]:
        raise InvalidRequest("Clustering columns must appear in the PRIMARY KEY order in multi-column relations")
    table = r.table
    types = [table.column(c).type for c in cols]
    tuple_t = T.TupleType(tuple(types))

    def tuple_values(term) -> list[bytes]:
        raw = evaluate(term, tuple_t, ctx)
        if raw is None or raw is UNSET:
            raise InvalidRequest("Invalid null value in multi-column relation")
        fields = _tuple_fields(tuple_t, raw)
        if any(f is None for f in fields):
            raise InvalidRequest("Invalid null value in multi-column relation")
        return fields
    if rel.op == ast.Operator.EQ:
        r.ck_eq.extend([v] for v in tuple_values(rel.value))
    elif rel.op == ast.Operator.IN:
        items = rel.value.items if isinstance(rel.value, ast.InValues) else ()
        if not isinstance(rel.value, ast.InValues):
            raise InvalidRequest("IN ? over multiple columns is not supported")
        combos = [tuple_values(item) for item in items]
        if len(cols) != len(ck_names) - start:
            raise InvalidRequest("Multi-column IN must restrict every remaining clustering column")
        r.ck_eq.extend([list(dict.fromkeys(c[i] for c in combos)) for i in range(len(cols))])
        r.ck_in_tuples = (start, frozenset(tuple(c) for c in combos)) if combos else None
        r.empty |= not combos
    elif rel.op in _RANGE_OPS:
        values = tuple_values(rel.value)
        lower = rel.op in (ast.Operator.GT, ast.Operator.GTE)
        if (r.ck_lower if lower else r.ck_upper) is not None:
            raise InvalidRequest(f"More than one restriction was found for the {'start' if lower else 'end'} "
                                 f"bound on {', '.join(cols)}")
        if lower:
            r.ck_lower = (values, rel.op == ast.Operator.GTE)
        else:
            r.ck_upper = (values, rel.op == ast.Operator.LTE)
    else:
        raise InvalidRequest(f"Unsupported operator {rel.op.value} in multi-column relation")


def _tuple_fields(t: T.TupleType, raw: bytes) -> list[bytes | None]:
    value = T.deserialize(t, raw)
    return [None if v is None else T.serialize(et, v) for v, et in zip(value, t.elements)]


def _clustering(r: Restrictions, ck_rel: dict[str, list], ck_names: list[str], ctx: TermContext) -> None:
    table = r.table
    sliced = False
    for name in ck_names[len(r.ck_eq):]:
        rels = ck_rel.pop(name, None)
        if not rels:
            break
        col = table.column(name)
        eq = [x for x in rels if x.op in (ast.Operator.EQ, ast.Operator.IN)]
        if eq:
            if len(rels) > 1:
                raise InvalidRequest(f"{name} cannot be restricted by more than one relation if it includes an Equal")
            r.ck_eq.append(_values(eq[0].value, col.type, ctx, eq[0].op))
            r.empty |= not r.ck_eq[-1]
            continue
        for rel in rels:
            value = _values(rel.value, col.type, ctx, rel.op)
            lower = rel.op in (ast.Operator.GT, ast.Operator.GTE)
            if (r.ck_lower if lower else r.ck_upper) is not None:
                raise InvalidRequest(f"More than one restriction was found for the {'start' if lower else 'end'} "
                                     f"bound on {name}")
            if lower:
                r.ck_lower = (value, rel.op == ast.Operator.GTE)
            else:
                r.ck_upper = (value, rel.op == ast.Operator.LTE)
        sliced = True
        break
    for name, rels in ck_rel.items():  # restrictions after a gap or a slice: filtering only
        if sliced or name in ck_names:
            for rel in rels:
                r.filters.append(_filter(table.column(name), rel, ctx))
