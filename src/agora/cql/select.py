"""SELECT: plan the reads a statement needs (single partitions for a restricted partition key,
token-range scans otherwise), fetch one page, and shape the rows the client asked for
(Cassandra's SelectStatement, Selection and QueryPager, simplified).

Owns: selectors (columns, aliases, WRITETIME, TTL, token(), COUNT and the simple aggregates,
JSON as Cassandra's toJSONString renders it), GROUP BY, ORDER BY (merging IN partitions),
LIMIT and PER PARTITION LIMIT, DISTINCT, ALLOW FILTERING, and paging with a state that any
node can continue: the position of the last row returned (partition index or token and key,
then clustering key) and how many rows have been returned so far. A partition read by key is
fetched in pieces of what the page still takes (ReadCommand.limit_rows, from its end for an
ORDER BY against the clustering order), never whole for every page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import msgpack

from agora.core import reconcile
from agora.core.errors import InvalidRequest
from agora.core.replica.replica import live_row_count
from agora.core.ring.partitioner import token_for_key
from agora.core.schema import types as T
from agora.core.types import Bound, RangeCommand, ReadCommand, Slice
from agora.cql import ast
from agora.cql.plans import PlanCache
from agora.cql.results import ColumnSpec, Rows
from agora.cql.rowview import RowView, matches, rows_of
from agora.cql.terms import TermContext, int_value
from agora.cql.where import Restrictions, analyze

PAGING_STATE_VERSION = 1
# Scans read in chunks of this many rows (aggregates, unpaged queries, and each page of a
# paged one): the CQL layer's work on one chunk is one stretch of its node's event loop, and
# other requests wait behind it (500 rows: a few milliseconds; a full scan is no slower).
INTERNAL_PAGE_ROWS = 500
MAX_UNPAGED_ROWS = 1_000_000  # an unpaged SELECT past this is refused rather than exhausting memory
FILTERING_MIN_FETCH_ROWS = 100  # with ALLOW FILTERING a scan fetches at least this many rows per round
AGGREGATES = ("count", "min", "max", "sum", "avg")


@dataclass
class PagePosition:
    """Where the previous page stopped. Encoded into the opaque paging_state."""

    index: int = 0  # single-partition queries: index into the partition key list
    token: int | None = None  # range scans: last partition's position
    key: bytes | None = None
    ckey: bytes | None = None  # last row returned in that partition (None: partition done)
    returned: int = 0  # rows returned so far (LIMIT)
    in_partition: int = 0  # rows returned so far from the current partition (PER PARTITION LIMIT)

    def encode(self) -> bytes:
        return msgpack.packb([PAGING_STATE_VERSION, self.index, self.token, self.key, self.ckey,
                              self.returned, self.in_partition], use_bin_type=True)

    @classmethod
    def decode(cls, raw: bytes | None) -> "PagePosition":
        if not raw:
            return cls()
        try:
            v, index, token, key, ckey, returned, in_part = msgpack.unpackb(raw, raw=False)
            assert v == PAGING_STATE_VERSION
            return cls(int(index), token, key, ckey, int(returned), int(in_part))
        except Exception:
            raise InvalidRequest("Invalid value for the paging state") from None


@dataclass
class Output:
    """One result column: its spec and how to compute it from a row."""

    spec: ColumnSpec
    kind: str  # "column" | "writetime" | "ttl" | "token" | "field" | "aggregate"
    column: object = None
    arg: object = None


@dataclass
class Plan:
    table: object
    r: Restrictions
    outputs: list[Output]
    reversed: bool
    limit: int | None
    per_partition_limit: int | None
    distinct: bool
    aggregate: bool
    json: bool
    filters: list = field(default_factory=list)
    ordered: bool = False  # ORDER BY given: rows of several partitions are merged in that order
    group_width: int = 0  # GROUP BY: how many leading primary key columns a group shares (0: none)


# ---- planning -----------------------------------------------------------------------------


def _spec(table, name: str, t) -> ColumnSpec:
    return ColumnSpec(table.keyspace, table.name, name, t)


def _outputs(stmt: ast.Select, table) -> list[Output]:
    if not stmt.selectors:
        # Cassandra's select order: keys as declared, then statics, then regulars, by name
        cols = list(table.partition_key_columns) + list(table.clustering_columns) + sorted(
            (c for c in table.columns if c.kind in ("static", "regular")),
            key=lambda c: (c.kind != "static", c.name.encode()))
        if stmt.distinct:
            cols = [c for c in cols if c.kind in ("partition_key", "static")]
        return [Output(_spec(table, c.name, c.type), "column", c) for c in cols]
    return [_output(table, sel) for sel in stmt.selectors]


def _col(table, name: str):
    col = table.column(name)
    if col is None:
        raise InvalidRequest(f"Undefined column name {name} in table {table.keyspace}.{table.name}")
    return col


def _output(table, sel: ast.Selector) -> Output:
    e = sel.expr
    if isinstance(e, ast.ColumnRef):
        col = _col(table, e.name)
        return Output(_spec(table, sel.alias or col.name, col.type), "column", col)
    if isinstance(e, (ast.WriteTime, ast.Ttl)):
        col = _col(table, e.column)
        if col.kind in ("partition_key", "clustering"):
            raise InvalidRequest(f"Cannot use selection function {'writeTime' if isinstance(e, ast.WriteTime) else 'ttl'} "
                                 f"on PRIMARY KEY part {col.name}")
        if T.is_multicell(col.type):
            raise InvalidRequest(f"Cannot use selection function on non-frozen collection {col.name}")
        kind, t = ("writetime", T.BIGINT) if isinstance(e, ast.WriteTime) else ("ttl", T.INT)
        return Output(_spec(table, sel.alias or f"{kind}({col.name})", t), kind, col)
    if isinstance(e, ast.CountRows):
        return Output(_spec(table, sel.alias or "count", T.BIGINT), "aggregate", None, "count")
    if isinstance(e, ast.FieldRef) and isinstance(e.expr, ast.ColumnRef):
        col = _col(table, e.expr.name)
        t = col.type
        if not isinstance(t, T.UserType) or e.field not in t.field_names:
            raise InvalidRequest(f"Invalid field selection: {col.name} of type {t.cql_name()} has no field {e.field}")
        i = t.field_names.index(e.field)
        return Output(_spec(table, sel.alias or f"{col.name}.{e.field}", t.field_types[i]), "field", col, i)
    if isinstance(e, ast.FunctionCall):
        return _function_output(table, sel, e)
    raise InvalidRequest(f"Unsupported selector {type(e).__name__}")


def _function_output(table, sel: ast.Selector, e: ast.FunctionCall) -> Output:
    name = e.name.lower()
    if name == "token":
        cols = [a.name for a in e.args if isinstance(a, ast.ColumnRef)]
        if cols != [c.name for c in table.partition_key_columns]:
            raise InvalidRequest("Type error: token() needs the partition key columns in order")
        return Output(_spec(table, sel.alias or f"system.token({', '.join(cols)})", T.BIGINT), "token")
    if name in AGGREGATES and len(e.args) == 1:
        arg = e.args[0]
        if name == "count" and (isinstance(arg, ast.CountRows) or isinstance(arg, ast.Literal)):
            return Output(_spec(table, sel.alias or "count", T.BIGINT), "aggregate", None, "count")
        if not isinstance(arg, ast.ColumnRef):
            raise InvalidRequest(f"{name}() takes a column")
        col = _col(table, arg.name)
        t = T.BIGINT if name == "count" else col.type
        return Output(_spec(table, sel.alias or f"system.{name}({col.name})", t), "aggregate", col, name)
    raise InvalidRequest(f"Unknown function {e.name}")


def _selection(stmt: ast.Select, table) -> tuple[list[Output], bool, int]:
    """What a SELECT's selectors and GROUP BY decide for a version of the table (kept in
    _SELECTIONS): its outputs, whether it aggregates, and its group width."""
    outputs = _outputs(stmt, table)
    aggregate = any(o.kind == "aggregate" for o in outputs)
    if aggregate and not all(o.kind in ("aggregate", "column") for o in outputs):
        raise InvalidRequest("Aggregates cannot be mixed with writetime/ttl/token selectors")
    return outputs, aggregate, _group_width(stmt, table)


_SELECTIONS = PlanCache(_selection)


def plan(stmt: ast.Select, table, terms: TermContext) -> Plan:
    r = analyze(table, stmt.where, terms, for_select=True)
    if r.filters and not stmt.allow_filtering:
        raise InvalidRequest("Cannot execute this query as it might involve data filtering and thus may have "
                             "unpredictable performance. If you want to execute this query despite the "
                             "performance unpredictability, use ALLOW FILTERING")
    outputs, aggregate, group_width = _SELECTIONS.get(stmt, table)
    rev = _reversed(stmt, table, r)
    limit = int_value(stmt.limit, terms, "limit") if stmt.limit is not None else None
    ppl = int_value(stmt.per_partition_limit, terms, "limit") if stmt.per_partition_limit is not None else None
    for name, value in (("LIMIT", limit), ("PER PARTITION LIMIT", ppl)):
        if value is not None and value <= 0:
            raise InvalidRequest(f"{name} must be strictly positive")
    if stmt.distinct and (r.ck_eq or r.ck_lower or r.ck_upper):
        raise InvalidRequest("SELECT DISTINCT with WHERE clause only supports restriction by partition key "
                             "and/or static columns.")
    return Plan(table, r, outputs, rev, limit, 1 if stmt.distinct else ppl, stmt.distinct, aggregate,
                stmt.json, r.filters, bool(stmt.order_by), group_width)


def _group_width(stmt: ast.Select, table) -> int:
    """GROUP BY names the partition key and then a prefix of the clustering columns, in
    primary key order (Cassandra's rule, without its skipping of columns fixed by =)."""
    if not stmt.group_by:
        return 0
    key = [c.name for c in table.partition_key_columns] + [c.name for c in table.clustering_columns]
    names = list(stmt.group_by)
    if names != key[:len(names)] or len(names) < len(table.partition_key_columns):
        raise InvalidRequest("Group by currently only support groups of columns following their declared order "
                             "in the PRIMARY KEY")
    if stmt.per_partition_limit is not None or stmt.distinct:
        raise InvalidRequest("GROUP BY with PER PARTITION LIMIT or DISTINCT is not supported")
    return len(names)


def _reversed(stmt: ast.Select, table, r: Restrictions) -> bool:
    if not stmt.order_by:
        return False
    if not r.single_partitions:
        raise InvalidRequest("ORDER BY is only supported when the partition key is restricted by an EQ or an IN.")
    ck = table.clustering_columns
    flips = set()
    for i, o in enumerate(stmt.order_by):
        if i >= len(ck) or ck[i].name != o.column:
            raise InvalidRequest("Order by currently only supports the ordering of columns following their "
                                 "declared order in the PRIMARY KEY")
        flips.add(o.descending != (ck[i].clustering_order == "desc"))
    if len(flips) > 1:
        raise InvalidRequest("Unsupported order by relation")
    return flips.pop()


# ---- fetching ----------------------------------------------------------------------------


def _after(slices, last: bytes, reverse: bool):
    """The slices restricted to rows after `last` (before it when reading in reverse), as
    byte intervals of encoded clustering keys: a bound that is a prefix of `last` must not
    bring back the rows already returned."""
    rest = reconcile.clustering_interval(Bound(b"", True), Bound(last, False)) if reverse else \
        reconcile.clustering_interval(Bound(last, False), Bound(b"", True))
    out = []
    for s in slices if slices is not None else (Slice(),):
        interval = reconcile.clustering_interval(s.start, s.end)
        if interval is None or rest is None:
            continue
        lo = max(interval[0], rest[0])
        hi = interval[1] if rest[1] is None else (rest[1] if interval[1] is None else min(interval[1], rest[1]))
        if hi is None or lo < hi:
            out.append(Slice(Bound(lo, True), Bound(b"", True) if hi is None else Bound(hi, False)))
    return tuple(out)


def _resume_ckey(table, row: RowView) -> bytes | None:
    """The clustering key a page that ends on `row` resumes after; None when `row` ends its
    partition: a row of a table without clustering columns, or a static-only row (its ckey
    b"", which as a bound would mean the whole partition)."""
    return None if row.static_only or not table.clustering_columns else row.ckey


class Pager:
    """Fetches rows for one page, honouring limits, starting from a PagePosition."""

    def __init__(self, p: Plan, backend, cl, pos: PagePosition, want: int | None, now_s: int):
        self.p, self.backend, self.cl, self.pos, self.want, self.now_s = p, backend, cl, pos, want, now_s
        self.rows: list[RowView] = []
        self.more = False
        # a partition with only static data is a row only when whole partitions are asked for
        # (no clustering or regular column restrictions: Cassandra's queriesFullPartitions)
        self.static_rows = p.r.slices() is None and all(f.column.kind in ("partition_key", "static")
                                                         for f in p.filters)
        # PER PARTITION LIMIT counts rows that pass the filters: a range read cut at it before
        # a filter on clustering or regular columns ran would drop rows that pass (_take
        # applies it then), as Cassandra filters first
        self.range_per_partition_limit = 0 if any(f.column.kind in ("clustering", "regular")
                                                  for f in p.filters) else p.per_partition_limit or 0
        # COUNT(*) alone, unfiltered and ungrouped, needs which rows there are, not their values
        self.bare = p.aggregate and not p.group_width and not p.filters \
            and all(o.kind == "aggregate" and o.column is None for o in p.outputs)

    def _take(self, rows: list[RowView], key: bytes, fresh_partition: bool) -> bool:
        """Add rows of one partition; True when the page is full."""
        p = self.p
        if fresh_partition:
            self.pos.in_partition = 0
        for row in rows:
            if p.filters and not matches(row, p.filters, p.table):
                continue
            if p.per_partition_limit is not None and self.pos.in_partition >= p.per_partition_limit:
                break
            self.rows.append(row)
            self.pos.in_partition += 1
            self.pos.returned += 1
            self.pos.key = key
            self.pos.ckey = _resume_ckey(p.table, row)
            if p.limit is not None and self.pos.returned >= p.limit:
                self.more = False
                return True
            if self.want is not None and len(self.rows) >= self.want:
                self.more = True
                return True
        self.pos.ckey = None
        return False

    def _read_limit(self) -> int:
        """Clustering rows to read next: what the page and the limits still take (at least
        FILTERING_MIN_FETCH_ROWS when rows may be filtered out), at most INTERNAL_PAGE_ROWS."""
        p = self.p
        room = INTERNAL_PAGE_ROWS if self.want is None else self.want - len(self.rows)
        if p.limit is not None:
            room = min(room, p.limit - self.pos.returned)
        if p.filters:
            room = max(room, FILTERING_MIN_FETCH_ROWS)
        return max(1, min(room, INTERNAL_PAGE_ROWS))

    async def single_partitions(self) -> None:
        p = self.p
        keys = p.r.partition_keys()
        for i in range(self.pos.index, len(keys)):
            key = keys[i]
            slices = p.r.slices()
            resume = i == self.pos.index and self.pos.ckey is not None
            if resume:
                slices = _after(slices, self.pos.ckey, p.reversed)
            self.pos.index = i
            if p.table.clustering_columns or resume:
                full = await self._partition(key, slices, resume)
            else:  # one row at most: read inline (the common point read, without a coroutine)
                part = await self.backend.read(ReadCommand(p.table.id.bytes, key, slices), self.cl)
                full = self._take(rows_of(p.table, part, self.static_rows, self.bare), key, fresh_partition=True)
            if full:
                if self.pos.ckey is None:  # the page ended on the partition's last row
                    self.pos.index = i + 1
                return
            self.pos.index = i + 1

    async def _partition(self, key: bytes, slices, resume: bool) -> bool:
        """Take the rows of partition `key` within `slices` (`resume`: the previous page
        stopped inside it); True when the page is full. A wide partition is read a page at a
        time (ReadCommand.limit_rows), not whole, from its end for ORDER BY against the
        clustering order; a partition of a table without clustering columns is one row."""
        p = self.p
        first, produced = True, False
        short = 0  # reads in a row that stored rows a client does not see cut short
        while True:
            if p.table.clustering_columns:
                limit = self._read_limit()
                if short:  # deleted (or truncated) rows took the last read: read twice as many
                    limit = min(INTERNAL_PAGE_ROWS, max(limit, limit << min(short, 16)))
                page = await self.backend.read(ReadCommand(p.table.id.bytes, key, slices, None,
                                                           limit, p.reversed), self.cl)
                part, more_after = page.partition, page.more_after
            else:
                limit = 0
                part = await self.backend.read(ReadCommand(p.table.id.bytes, key, slices), self.cl)
                more_after = None
            last = more_after is None
            # the static-only row: for a partition without rows, known at its last page
            rows = rows_of(p.table, part, self.static_rows and not resume and last and not produced, self.bare)
            short = short + 1 if not last and len(rows) < limit else 0
            if p.reversed:
                rows.reverse()
            produced = produced or bool(rows)
            if self._take(rows, key, fresh_partition=not resume and first):
                return True
            if last or (p.per_partition_limit is not None and self.pos.in_partition >= p.per_partition_limit):
                return False  # its end, or its PER PARTITION LIMIT: no more of it to read
            slices, first = _after(slices, more_after, p.reversed), False

    async def token_range(self) -> None:
        p = self.p
        start_token, end_token = p.r.token_range()
        start_key = None
        if self.pos.key is not None:
            start_token, start_key = self.pos.token, self.pos.key
            if self.pos.ckey is not None:  # finish the partition the last page stopped in
                if await self._partition(self.pos.key, _after(p.r.slices(), self.pos.ckey, False), True):
                    return
        while True:
            room = None if self.want is None else self.want - len(self.rows)
            if p.limit is not None:
                left = p.limit - self.pos.returned
                room = left if room is None else min(room, left)
            fetch = max(min(room or INTERNAL_PAGE_ROWS, INTERNAL_PAGE_ROWS), FILTERING_MIN_FETCH_ROWS if p.filters else 1)
            cmd = RangeCommand(p.table.id.bytes, start_token, start_key, end_token, p.r.slices(), None,
                               fetch, self.range_per_partition_limit)
            parts = await self.backend.read_range(cmd, self.cl)
            got = 0  # live rows as the coordinator counts them against `fetch`, hidden ones too
            for part in parts:
                rows = rows_of(p.table, part, self.static_rows, self.bare)
                got += live_row_count(part, cmd.per_partition_limit)
                if self._take(rows, part.key, fresh_partition=True):
                    self.pos.token = token_for_key(part.key)
                    return
            if parts:  # where the next range read starts, and a page ending here resumes
                start_key = parts[-1].key
                self.pos.token = start_token = token_for_key(start_key)
            if not parts or got < fetch:
                return
            last = parts[-1]  # the scan stopped at `fetch` rows, perhaps inside this partition
            ppl = p.per_partition_limit
            if p.table.clustering_columns and last.rows and (ppl is None or self.pos.in_partition < ppl):
                # (rows a filter dropped left the page short): finish it before going on
                if await self._partition(last.key, _after(p.r.slices(), max(last.rows), False), True):
                    return


# ---- shaping -----------------------------------------------------------------------------


def _cell_value(o: Output, row: RowView, now_s: int):
    if o.kind == "column":
        return row.values.get(o.column.name)
    if o.kind == "writetime":
        cell = row.cells.get(o.column.name)
        return None if cell is None else T.serialize(T.BIGINT, cell.ts)
    if o.kind == "ttl":
        cell = row.cells.get(o.column.name)
        if cell is None or not cell.ttl_s:
            return None
        return T.serialize(T.INT, max(0, cell.ldt_s - now_s))
    if o.kind == "token":
        return T.serialize(T.BIGINT, token_for_key(row.key))
    if o.kind == "field":
        raw = row.values.get(o.column.name)
        if raw is None:
            return None
        fields = T.split_collection(o.column.type, raw)
        return fields[o.arg] if o.arg < len(fields) else None
    raise AssertionError(o.kind)


class _Aggregates:
    """The aggregates of a SELECT, fed rows a page at a time (`add`), so a COUNT over any
    number of rows holds one page of them, as in Cassandra; `values()` gives the result
    row. A plain column among them takes its value from the first row."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs
        self.first: RowView | None = None
        self.counts = [0] * len(outputs)  # rows (COUNT(*)) or non-null values seen
        self.best: list[bytes | None] = [None] * len(outputs)  # MIN / MAX so far (raw)
        self.totals: list = [0] * len(outputs)  # SUM / AVG so far (deserialized)

    def add(self, rows: list[RowView]) -> None:
        if rows and self.first is None:
            self.first = rows[0]
        for i, o in enumerate(self.outputs):
            if o.kind == "column":
                continue
            if o.column is None:  # COUNT(*)
                self.counts[i] += len(rows)
                continue
            name, t = o.column.name, o.column.type
            raws = [raw for r in rows if (raw := r.values.get(name)) is not None]
            self.counts[i] += len(raws)
            if o.arg in ("min", "max"):
                best = self.best[i]
                for raw in raws:
                    if best is None:
                        best = raw
                        continue
                    c = T.compare(t, raw, best)
                    if (c < 0) if o.arg == "min" else (c > 0):
                        best = raw
                self.best[i] = best
            elif o.arg in ("sum", "avg"):
                for raw in raws:
                    self.totals[i] += T.deserialize(t, raw)

    def values(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        for i, o in enumerate(self.outputs):
            if o.kind == "column":
                out.append(self.first.values.get(o.column.name) if self.first is not None else None)
            elif o.arg == "count":
                out.append(T.serialize(T.BIGINT, self.counts[i]))
            elif o.arg in ("min", "max"):
                out.append(self.best[i])
            elif o.arg == "sum":
                out.append(T.serialize(o.column.type, self.totals[i]))
            else:  # avg: integer types truncate, as in Cassandra
                total, n = self.totals[i], self.counts[i]
                avg = total / n if isinstance(total, float) else (int(total / n) if n else 0)
                out.append(T.serialize(o.column.type, avg))
        return out


def _json_row(outputs: list[Output], values: list[bytes | None]) -> bytes:
    """One SELECT JSON row: an object of the selected columns, rendered per CQL type as
    Cassandra's AbstractType.toJSONString does."""
    parts = []
    for o, raw in zip(outputs, values):
        name = o.spec.name
        key = json.dumps(name if name == name.lower() else f'"{name}"', ensure_ascii=False)
        value = "null" if raw is None else _json_text(o.spec.type, T.deserialize(o.spec.type, raw))
        parts.append(f"{key}: {value}")
    return ("{" + ", ".join(parts) + "}").encode()


_JSON_BARE = ("int", "bigint", "smallint", "tinyint", "varint", "counter", "decimal", "boolean")


def _json_text(t, v) -> str:
    """A deserialized value of type t as JSON text: numbers bare (NaN and infinities null),
    blobs '0x..', temporal values as Cassandra formats them, collections and tuples as
    arrays, maps and UDTs as objects (non-string map keys quoted)."""
    if v is None:
        return "null"
    if isinstance(t, T.NativeType):
        return _json_native(t.name, v)
    if isinstance(t, (T.ListType, T.SetType)):
        return "[" + ", ".join(_json_text(t.element, x) for x in v) + "]"
    if isinstance(t, T.MapType):
        entries = []
        for k, x in v.items():
            key = _json_text(t.key, k)
            entries.append(f"{key if key.startswith(chr(34)) else json.dumps(key)}: {_json_text(t.value, x)}")
        return "{" + ", ".join(entries) + "}"
    if isinstance(t, T.UserType):
        fields = []
        for name, ft, x in zip(t.field_names, t.field_types, tuple(v)):
            label = name if name == name.lower() else f'"{name}"'
            fields.append(f"{json.dumps(label, ensure_ascii=False)}: {_json_text(ft, x)}")
        return "{" + ", ".join(fields) + "}"
    if isinstance(t, T.TupleType):
        return "[" + ", ".join(_json_text(et, x) for et, x in zip(t.elements, tuple(v))) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def _json_native(name: str, v) -> str:
    import datetime
    import math
    import struct
    if name in _JSON_BARE:
        return ("true" if v else "false") if name == "boolean" else str(v)
    if name in ("float", "double"):
        if math.isnan(v) or math.isinf(v):
            return "null"  # JSON has no NaN or Infinity; Cassandra writes null
        if name == "float":  # the shortest text that reads back as the same float32
            for digits in range(1, 10):
                text = repr(float(f"{v:.{digits}g}"))
                try:
                    if struct.pack(">f", float(text)) == struct.pack(">f", v):
                        return text
                except OverflowError:  # rounded past the largest float32
                    continue
        return repr(v)
    if name == "blob":
        return json.dumps("0x" + bytes(v).hex())
    if name == "timestamp":
        if isinstance(v, datetime.datetime):
            return json.dumps(v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z")
        return str(v)  # past what datetime holds: the driver's raw milliseconds
    if name == "date":
        try:
            return json.dumps(v.date().isoformat())
        except (ValueError, OverflowError):
            return json.dumps(str(v.days_from_epoch))
    if name == "time":
        ns = v.nanosecond_time
        return json.dumps(f"{ns // 3_600_000_000_000:02d}:{ns // 60_000_000_000 % 60:02d}:"
                          f"{ns // 1_000_000_000 % 60:02d}.{ns % 1_000_000_000:09d}")
    if name == "duration":
        return json.dumps(_duration_text(v.months, v.days, v.nanoseconds))
    return json.dumps(str(v), ensure_ascii=False)


def _duration_text(months: int, days: int, nanos: int) -> str:
    """Cassandra's Duration.toString: 1y2mo3d4h5m6s7ms8us9ns, '-' first when negative."""
    out = "-" if months < 0 or days < 0 or nanos < 0 else ""
    units = [(abs(months), ((12, "y"), (1, "mo"))), (abs(days), ((1, "d"),)),
             (abs(nanos), ((3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"),
                           (1_000_000, "ms"), (1_000, "us"), (1, "ns")))]
    for amount, steps in units:
        for size, unit in steps:
            if amount >= size and amount:
                out += f"{amount // size}{unit}"
                amount %= size
    return out


async def execute(stmt: ast.Select, table, terms: TermContext, backend, cl, params, now_s: int) -> Rows:
    p = plan(stmt, table, terms)
    specs = [o.spec for o in p.outputs]
    if p.r.empty:
        return Rows(_result_specs(p, specs))
    if p.group_width:
        return await _grouped(p, backend, cl, now_s, specs, _page_size(params), params.paging_state)
    if p.aggregate:  # LIMIT counts result rows, so it does not cut what is aggregated
        aggregates = _Aggregates(p.outputs)
        await _each_page(replace(p, limit=None), backend, cl, now_s, aggregates.add)
        values = aggregates.values()
        return Rows(_result_specs(p, specs), [[_json_row(p.outputs, values)] if p.json else values])
    page_size = _page_size(params)
    if p.ordered and p.r.single_partitions and len(p.r.partition_keys()) > 1:
        return await _merged_in_order(p, backend, cl, now_s, page_size, specs)
    pos = PagePosition.decode(params.paging_state)
    pager = Pager(p, backend, cl, pos, page_size or MAX_UNPAGED_ROWS + 1, now_s)
    await (pager.single_partitions() if p.r.single_partitions else pager.token_range())
    if page_size is None and pager.more:
        raise InvalidRequest(f"Unpaged SELECT returns more than {MAX_UNPAGED_ROWS} rows; use paging or LIMIT")
    out = []
    for row in pager.rows:
        values = [_cell_value(o, row, now_s) for o in p.outputs]
        out.append([_json_row(p.outputs, values)] if p.json else values)
    return Rows(_result_specs(p, specs), out, pos.encode() if pager.more else None)


def _page_size(params) -> int | None:
    return params.page_size if params.page_size and params.page_size > 0 else None


async def _grouped(p: Plan, backend, cl, now_s: int, specs, page_size: int | None,
                   paging_state: bytes | None) -> Rows:
    """GROUP BY: rows sharing the grouped key columns (they come consecutively) make one
    result row: aggregated, or the group's first row without aggregates. As in Cassandra,
    LIMIT and the page size count groups, and rows are read an internal page at a time, so a
    query holds one group's aggregates and one internal page of rows, whatever the table's
    size. A group is complete when the next group's first row (or the end) is read; a page
    ends after its last complete group, and its paging state points just after that group's
    last row, so the rows read past it are read again by the next page (a page of n groups
    first reads n + 1 rows, then twice as many each time, up to INTERNAL_PAGE_ROWS)."""
    n_pk = len(p.table.partition_key_columns)
    ck_names = [c.name for c in p.table.clustering_columns][:p.group_width - n_pk]
    start = PagePosition.decode(paging_state)
    emitted = start.returned  # groups returned by the pages before this one
    want = p.limit - emitted if p.limit is not None else None
    if page_size is not None:
        want = page_size if want is None else min(want, page_size)
    cap = MAX_UNPAGED_ROWS if want is None else want
    index_of = {key: i for i, key in enumerate(p.r.partition_keys())} if p.r.single_partitions else {}
    out: list = []
    group = None  # the group read so far: its key, first row, aggregates, last row
    unfed: list[RowView] = []  # rows of the current group not yet fed to its aggregates
    resume: PagePosition | None = None

    def close_group() -> None:
        nonlocal group, resume
        key, first, aggregates, last = group
        if aggregates is not None:
            aggregates.add(unfed)
            values = aggregates.values()
        else:
            values = [_cell_value(o, first, now_s) for o in p.outputs]
        unfed.clear()
        out.append([_json_row(p.outputs, values)] if p.json else values)
        ckey = _resume_ckey(p.table, last)  # just after the group's last row
        if p.r.single_partitions:
            i = index_of[last.key]
            resume = PagePosition(i if ckey is not None else i + 1, None, last.key, ckey)
        else:
            resume = PagePosition(0, token_for_key(last.key), last.key, ckey)
        group = None

    pos = replace(start, returned=0)
    inner = replace(p, limit=None)
    full = False
    fetch = max(1, min(INTERNAL_PAGE_ROWS, cap + 1))  # rows per read: doubles while groups span reads
    while not full:
        pager = Pager(inner, backend, cl, pos, fetch, now_s)
        fetch = min(INTERNAL_PAGE_ROWS, fetch * 2)
        await (pager.single_partitions() if p.r.single_partitions else pager.token_range())
        for row in pager.rows:
            key = (row.key, tuple(row.values.get(name) for name in ck_names))
            if group is not None and group[0] != key:
                close_group()
                if len(out) >= cap:
                    full = True
                    break
            if group is None:
                group = [key, row, _Aggregates(p.outputs) if p.aggregate else None, row]
            group[3] = row
            if p.aggregate:
                unfed.append(row)
        else:
            if group is not None and p.aggregate:  # the page's rows of it, fed before the next page
                group[2].add(unfed)
                unfed.clear()
            if not pager.more:
                break
    if not full and group is not None:
        close_group()
    state = None
    if full and want is None:
        raise InvalidRequest(f"Unpaged SELECT returns more than {MAX_UNPAGED_ROWS} rows; use paging or LIMIT")
    if full and page_size is not None and (p.limit is None or emitted + len(out) < p.limit):
        state = replace(resume, returned=emitted + len(out)).encode()
    return Rows(_result_specs(p, specs), out, state)


async def _merged_in_order(p: Plan, backend, cl, now_s: int, page_size: int | None, specs) -> Rows:
    """ORDER BY over several partitions (IN on the partition key): every row is read, sorted
    across partitions, then LIMIT applies — so, as in Cassandra, only when it fits one page."""
    if page_size is not None and (p.limit is None or p.limit > page_size):
        raise InvalidRequest("Cannot page queries with both ORDER BY and a IN restriction on the partition key; "
                             "you must either remove the ORDER BY or the IN and sort client side, or disable "
                             "paging for this query")
    rows = await _all_rows(replace(p, limit=None), backend, cl, now_s)
    rows.sort(key=lambda row: row.ckey, reverse=p.reversed)  # stable: ties keep partition order
    out = []
    for row in rows[:p.limit]:
        values = [_cell_value(o, row, now_s) for o in p.outputs]
        out.append([_json_row(p.outputs, values)] if p.json else values)
    return Rows(_result_specs(p, specs), out)


def _result_specs(p: Plan, specs: list[ColumnSpec]) -> list[ColumnSpec]:
    if p.json:
        return [ColumnSpec(p.table.keyspace, p.table.name, "[json]", T.TEXT)]
    return specs


async def _each_page(p: Plan, backend, cl, now_s: int, consume) -> None:
    """Every row the plan selects, handed to `consume` an internal page at a time."""
    pos = PagePosition()
    while True:
        pager = Pager(p, backend, cl, pos, INTERNAL_PAGE_ROWS, now_s)
        await (pager.single_partitions() if p.r.single_partitions else pager.token_range())
        consume(pager.rows)
        if not pager.more:
            return


async def _all_rows(p: Plan, backend, cl, now_s: int) -> list[RowView]:
    """Every row the plan selects, in memory (ORDER BY across partitions): at most
    MAX_UNPAGED_ROWS of them."""
    rows: list[RowView] = []

    def keep(page: list[RowView]) -> None:
        rows.extend(page)
        if len(rows) > MAX_UNPAGED_ROWS:
            raise InvalidRequest(f"ORDER BY across partitions over more than {MAX_UNPAGED_ROWS} rows is not supported")
    await _each_page(p, backend, cl, now_s, keep)
    return rows
