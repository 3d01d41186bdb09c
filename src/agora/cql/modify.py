"""INSERT, UPDATE, DELETE and BATCH: from a parsed statement and its bound values to the
partition fragments the coordinator writes (Cassandra's ModificationStatement and
BatchStatement).

Owns: the statement-level rules — which key columns must be given, USING TTL / TIMESTAMP
(and the table's default_time_to_live), the client's timestamp, IN on keys, what each kind
of assignment or deletion does to cells (via `writes.PartitionWrite`), and merging a batch's
fragments per partition. Lightweight transactions (IF ...) and counter updates are refused
with a clear error.
List operations that address elements by position read the current list first, as
Cassandra does.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core import reconcile
from agora.core.errors import InvalidRequest
from agora.core.ring.partitioner import compose_partition_key
from agora.core.schema import types as T
from agora.core.types import Bound, ReadCommand, Slice
from agora.cql import ast
from agora.cql.plans import PlanCache
from agora.cql.requests import UNSET
from agora.cql.terms import TermContext, collection_elements, evaluate, int_value
from agora.cql.where import analyze
from agora.cql.writes import PartitionWrite, WriteClock

MAX_TTL_S = 20 * 365 * 86_400  # Cassandra's MAX_TTL: 20 years
COUNTERS_UNSUPPORTED = "Counters are not supported by Agora"


@dataclass
class ModContext:
    terms: TermContext
    default_ts: int  # the client's timestamp, or a fresh one from the coordinator
    now_s: int
    uniq: bytes
    read_list: object = None  # async (table, key, clustering, column) -> [(path, cell)]


def _using(term, t, ctx: ModContext):
    """A USING TIMESTAMP / TTL value: an int, None for a bound null, UNSET for a bound unset."""
    raw = evaluate(term, t, ctx.terms)
    return raw if raw is None or raw is UNSET else T.deserialize(t, raw)


def _clock(stmt, table, ctx: ModContext, batch_ts: int | None) -> WriteClock:
    """The statement's timestamp and TTL, as Cassandra's Attributes: a bound null timestamp is
    invalid and an unset one is the default; a null TTL is no TTL and an unset one the table's
    default_time_to_live."""
    ts = UNSET if stmt.timestamp is None else _using(stmt.timestamp, T.BIGINT, ctx)
    if ts is None:
        raise InvalidRequest("Invalid null value of timestamp")
    if ts is UNSET:
        ts = batch_ts if batch_ts is not None else ctx.default_ts
    ttl = UNSET if getattr(stmt, "ttl", None) is None else _using(stmt.ttl, T.INT, ctx)
    if ttl is UNSET:
        ttl = int(table.option("default_time_to_live") or 0)
    elif ttl is None:
        ttl = 0
    elif ttl < 0:
        raise InvalidRequest(f"A TTL must be greater or equal to 0, but was {ttl}")
    elif ttl > MAX_TTL_S:
        raise InvalidRequest(f"ttl is too large. requested ({ttl}) maximum ({MAX_TTL_S})")
    return WriteClock(ts, ttl, ctx.now_s, ctx.uniq)


def _refuse_conditions(stmt) -> None:
    if getattr(stmt, "if_exists", False) or getattr(stmt, "if_not_exists", False) or getattr(stmt, "conditions", ()):
        raise InvalidRequest("Conditional updates (IF ...) need lightweight transactions, which Agora does not provide")


def _key_value(col, term, ctx: ModContext) -> bytes:
    value = evaluate(term, col.type, ctx.terms)
    if value is None or value is UNSET:
        raise InvalidRequest(f"Invalid null value in condition for column {col.name}"
                             if value is None else f"Invalid unset value for column {col.name}")
    return value


@dataclass(frozen=True)
class _InsertPlan:
    """What an INSERT's statement and table decide once: the checks that do not depend on
    bound values, its key columns' terms in key order, and the other columns it sets."""

    pk: tuple  # (column, term) in partition key order
    ck: tuple  # (column, term) of the clustering columns given
    marker: bool  # whether it writes a row marker
    values: tuple  # (column, term, is_static) of the columns it sets


def _plan_insert(stmt: ast.Insert, table) -> _InsertPlan:
    _refuse_conditions(stmt)
    if len(stmt.columns) != len(stmt.values):
        raise InvalidRequest("Unmatched column names/values")
    cols = []
    for name in stmt.columns:
        col = table.column(name)
        if col is None:
            raise InvalidRequest(f"Undefined column name {name} in table {table.keyspace}.{table.name}")
        cols.append(col)
    given = dict(zip([c.name for c in cols], zip(cols, stmt.values)))
    for c in table.partition_key_columns:
        if c.name not in given:
            raise InvalidRequest(f"Some partition key parts are missing: {c.name}")
    only_static = not any(c.kind == "regular" for c, _ in given.values()) and any(
        c.kind == "static" for c, _ in given.values())
    given_ck = [c for c in table.clustering_columns if c.name in given]
    # an INSERT of static columns alone may leave out the whole clustering key (never part of it)
    if len(given_ck) != len(table.clustering_columns) and not (only_static and not given_ck):
        missing = [c.name for c in table.clustering_columns if c.name not in given]
        raise InvalidRequest(f"Some clustering keys are missing: {', '.join(missing)}")
    return _InsertPlan(
        pk=tuple(given[c.name] for c in table.partition_key_columns),
        ck=tuple(given[c.name] for c in given_ck),
        marker=not (only_static and table.clustering_columns and not given_ck),
        values=tuple((col, term, col.kind == "static") for col, term in given.values()
                     if col.kind not in ("partition_key", "clustering")))


_INSERT_PLANS = PlanCache(_plan_insert)


async def insert(stmt: ast.Insert, table, ctx: ModContext, batch_ts: int | None = None) -> list:
    plan = _INSERT_PLANS.get(stmt, table)
    pk = [_key_value(c, term, ctx) for c, term in plan.pk]
    clustering = tuple([_key_value(c, term, ctx) for c, term in plan.ck])
    pw = PartitionWrite(table, compose_partition_key(pk), _clock(stmt, table, ctx, batch_ts))
    if plan.marker:
        pw.marker(clustering)
    terms = ctx.terms
    for col, term, static in plan.values:
        value = evaluate(term, col.type, terms)
        if value is UNSET:
            continue
        pw.set(pw.static_row() if static else pw.row(clustering), col, value)
    return [pw.build()]


def _targets(stmt, table, ctx: ModContext, for_delete: bool, only_static: bool = False):
    """(partition keys, clustering prefixes, restrictions) of an UPDATE/DELETE's WHERE. An
    UPDATE that sets static columns only names the partition and no clustering columns."""
    r = analyze(table, stmt.where, ctx.terms, for_select=False)
    if r.filters or r.token_lower is not None or r.token_upper is not None:
        raise InvalidRequest("Non PRIMARY KEY columns found in where clause" if r.filters
                             else "The token function cannot be used in a modification statement")
    if len(r.pk) != len(table.partition_key_columns):
        missing = [c.name for c in table.partition_key_columns if c.name not in r.pk]
        raise InvalidRequest(f"Some partition key parts are missing: {', '.join(missing)}")
    if only_static and table.clustering_columns:
        if r.ck_eq or r.ck_lower or r.ck_upper:
            raise InvalidRequest("Invalid restrictions on clustering columns since the UPDATE statement "
                                 "modifies only static columns")
        return r.partition_keys(), [()], r
    if not for_delete and (r.ck_lower or r.ck_upper or len(r.ck_eq) != len(table.clustering_columns)):
        missing = [c.name for c in table.clustering_columns[len(r.ck_eq):]]
        if missing or r.ck_lower or r.ck_upper:
            raise InvalidRequest(f"Some clustering keys are missing: {', '.join(missing) or 'slice'}")
    return r.partition_keys(), r.clustering_prefixes(), r


async def update(stmt: ast.Update, table, ctx: ModContext, batch_ts: int | None = None) -> list:
    _refuse_conditions(stmt)
    _refuse_conflicting_assignments(stmt)
    columns = [table.column(asg.column) for asg in stmt.assignments]
    only_static = bool(columns) and all(c is not None and c.kind == "static" for c in columns)
    keys, prefixes, _ = _targets(stmt, table, ctx, for_delete=False, only_static=only_static)
    out = []
    for key in keys:
        pw = PartitionWrite(table, key, _clock(stmt, table, ctx, batch_ts))
        for clustering in prefixes:
            for asg in stmt.assignments:
                await _assign(pw, table, clustering, asg, ctx)
        out.append(pw.build())
    return out


def _refuse_conflicting_assignments(stmt) -> None:
    """`c = x` excludes any other operation on c in the same UPDATE (Cassandra's
    Operation.RawUpdate.isCompatibleWith); element and field operations combine freely."""
    setting = {asg.column for asg in stmt.assignments if isinstance(asg, ast.SetColumn)}
    for name in setting:
        if sum(asg.column == name for asg in stmt.assignments) > 1:
            raise InvalidRequest(f"Multiple incompatible setting of column {name}")


async def _assign(pw: PartitionWrite, table, clustering, asg, ctx: ModContext) -> None:
    col = table.column(asg.column)
    if col is None:
        raise InvalidRequest(f"Undefined column name {asg.column} in table {table.keyspace}.{table.name}")
    if col.kind in ("partition_key", "clustering"):
        raise InvalidRequest(f"PRIMARY KEY part {col.name} found in SET part")
    if T.is_counter(col.type):
        raise InvalidRequest(COUNTERS_UNSUPPORTED)
    row = pw.target(col, clustering)
    t = col.type
    if isinstance(asg, ast.SetColumn):
        value = evaluate(asg.value, t, ctx.terms)
        if value is not UNSET:
            pw.set(row, col, value)
    elif isinstance(asg, (ast.AddTo, ast.PrependTo, ast.RemoveFrom)):
        _require_multicell(col, asg)
        if isinstance(asg, ast.RemoveFrom) and isinstance(t, T.MapType):
            keys = collection_elements(asg.value, T.SetType(t.key), ctx.terms)
            pw.remove(row, col, keys)
        elif isinstance(asg, ast.RemoveFrom) and isinstance(t, T.ListType):
            doomed = set(collection_elements(asg.value, t, ctx.terms))
            for path, cell in await _current_list(pw, table, clustering, col, ctx):
                if cell.value in doomed:
                    pw.set_list_path(row, col, path, None)
        elif isinstance(asg, ast.RemoveFrom):
            pw.remove(row, col, collection_elements(asg.value, t, ctx.terms))
        elif isinstance(asg, ast.PrependTo):
            pw.prepend(row, col, collection_elements(asg.value, t, ctx.terms))
        else:
            pw.add(row, col, collection_elements(asg.value, t, ctx.terms))
    elif isinstance(asg, ast.SetElement):
        await _set_element(pw, table, clustering, row, col, asg.key, asg.value, ctx)
    elif isinstance(asg, ast.SetField):
        _field_op(pw, row, col, asg.field, asg.value, ctx)
    else:
        raise InvalidRequest(f"Unsupported assignment {type(asg).__name__}")


def _require_multicell(col, asg) -> None:
    if not T.is_multicell(col.type):
        raise InvalidRequest(f"Invalid operation ({col.name} = {col.name} + ...) for non list/set/map "
                             f"or frozen column {col.name}")


async def _set_element(pw, table, clustering, row, col, key_term, value_term, ctx: ModContext) -> None:
    t = col.type
    if isinstance(t, T.MapType) and T.is_multicell(t):
        key = _key_value_typed(t.key, key_term, ctx, col)
        value = None if value_term is None else evaluate(value_term, t.value, ctx.terms)
        if value is not UNSET:
            pw.put_entry(row, col, key, value)
    elif isinstance(t, T.ListType) and T.is_multicell(t):
        index = int_value(key_term, ctx.terms, "index")
        current = await _current_list(pw, table, clustering, col, ctx)
        if index is None or not 0 <= index < len(current):
            raise InvalidRequest(f"List index {index} out of bound, list has size {len(current)}")
        value = None if value_term is None else evaluate(value_term, t.element, ctx.terms)
        if value is not UNSET:
            pw.set_list_path(row, col, current[index][0], value)
    else:
        raise InvalidRequest(f"Invalid operation ({col.name}[?] = ?) for non list/map or frozen column {col.name}")


def _key_value_typed(t, term, ctx: ModContext, col) -> bytes:
    value = evaluate(term, t, ctx.terms)
    if value is None or value is UNSET:
        raise InvalidRequest(f"Invalid null map key for column {col.name}")
    return value


def _field_op(pw, row, col, field: str, value_term, ctx: ModContext) -> None:
    t = col.type
    if not isinstance(t, T.UserType) or not T.is_multicell(t):
        raise InvalidRequest(f"Invalid operation ({col.name}.{field} = ?) for non-UDT or frozen column {col.name}")
    if field not in t.field_names:
        raise InvalidRequest(f"UDT column {col.name} does not have a field named {field}")
    i = t.field_names.index(field)
    value = None if value_term is None else evaluate(value_term, t.field_types[i], ctx.terms)
    if value is not UNSET:
        pw.put_entry(row, col, T.udt_field_path(i), value)


async def _current_list(pw, table, clustering, col, ctx: ModContext) -> list:
    if ctx.read_list is None:
        raise InvalidRequest("List operations by position are not supported here")
    return await ctx.read_list(table, pw.key, clustering, col)


async def delete(stmt: ast.Delete, table, ctx: ModContext, batch_ts: int | None = None) -> list:
    _refuse_conditions(stmt)
    keys, prefixes, r = _targets(stmt, table, ctx, for_delete=True)
    columns = [table.column(d.column) for d in stmt.deletions]
    if columns and table.clustering_columns and all(c is not None and c.kind == "static" for c in columns) \
            and (r.ck_eq or r.ck_lower or r.ck_upper):
        raise InvalidRequest("Invalid restrictions on clustering columns since the DELETE statement "
                             "modifies only static columns")
    full = r.has_full_clustering() or not table.clustering_columns
    out = []
    for key in keys:
        pw = PartitionWrite(table, key, _clock(stmt, table, ctx, batch_ts))
        if stmt.deletions:
            if not full and any(table.column(d.column) is None or table.column(d.column).kind != "static"
                                for d in stmt.deletions):
                raise InvalidRequest("Range deletions are not supported for specific columns")
            for clustering in (prefixes if full else [()]):
                for d in stmt.deletions:
                    await _delete_part(pw, table, clustering, d, ctx)
        elif not r.ck_eq and r.ck_lower is None and r.ck_upper is None:
            pw.delete_partition()
        elif full:
            for clustering in prefixes:
                pw.delete_row(clustering)
        else:
            slices = r.slices()  # () when the range is empty: then nothing is deleted
            for s in (Slice(),) if slices is None else slices:
                pw.delete_range(s.start, s.end)
        out.append(pw.build())
    return out


async def _delete_part(pw, table, clustering, d, ctx: ModContext) -> None:
    col = table.column(d.column)
    if col is None:
        raise InvalidRequest(f"Undefined column name {d.column} in table {table.keyspace}.{table.name}")
    if col.kind in ("partition_key", "clustering"):
        raise InvalidRequest(f"Invalid identifier {col.name} for deletion (should not be a PRIMARY KEY part)")
    row = pw.target(col, clustering)
    if isinstance(d, ast.DeleteColumn):
        pw.delete_column(row, col)
    elif isinstance(d, ast.DeleteElement):
        t = col.type
        if isinstance(t, T.MapType) and T.is_multicell(t):
            pw.remove(row, col, [_key_value_typed(t.key, d.key, ctx, col)])
        elif isinstance(t, T.SetType) and T.is_multicell(t):
            pw.remove(row, col, [_key_value_typed(t.element, d.key, ctx, col)])
        else:
            await _set_element(pw, table, clustering, row, col, d.key, None, ctx)
    else:
        _field_op(pw, row, col, d.field, None, ctx)


def merge_by_partition(partitions: list) -> list:
    """One fragment per (table, key): what a batch sends, in first-seen order."""
    merged: dict[tuple[bytes, bytes], object] = {}
    for p in partitions:
        k = (p.table_id, p.key)
        merged[k] = p if k not in merged else reconcile.merge_partitions(merged[k], p)
    return list(merged.values())


def list_read_command(table, key: bytes, clustering: tuple[bytes, ...], column: str) -> ReadCommand:
    ckey = T.encode_ckey(table.ckey_types(), list(clustering)) if clustering else b""
    slices = (Slice(Bound(ckey, True), Bound(ckey, True)),) if clustering else None
    return ReadCommand(table.id.bytes, key, slices, (column,))
