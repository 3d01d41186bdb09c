"""The statement processor: what the CQL server calls for QUERY, PREPARE, EXECUTE and BATCH
(Cassandra's QueryProcessor). Parses, resolves keyspaces and tables, and runs each statement
kind against the node through the `Backend`.

Owns: dispatch by statement kind, prepared statements (ids identical on every node: MD5 of
the text, plus the prepare-time keyspace only when the text names a table without one —
cql-compat.md 5.1), consistency levels and client timestamps taken from each request,
system tables and DESCRIBE, DDL with schema agreement before answering, TRUNCATE, and
answering SCHEMA_CHANGE results.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass

from agora.core.errors import ConfigurationError, InvalidRequest, TruncateError, Unavailable, Unprepared
from agora.core.schema import ddl
from agora.core.schema import types as T
from agora.core.types import ConsistencyLevel, Partition
from agora.cql import ast, describe, modify, select, system_tables
from agora.cql.bind import Binder, bind_statement, pk_indexes
from agora.cql.parser import parse
from agora.cql.requests import BatchRequest, QueryParams, Session
from agora.cql.results import ColumnSpec, Prepared, Rows, SchemaChange, SetKeyspace, Void
from agora.cql.rowview import RowView, matches
from agora.cql.schema_events import schema_events
from agora.cql.terms import TermContext

PREPARED_CACHE_ENTRIES = 10_000  # prepared statements kept per node (LRU); evicted ones re-prepare
SCHEMA_AGREEMENT_TIMEOUT_S = 10.0  # a DDL waits this long for every live node to have its schema
# TRUNCATE answers Truncate_error after this long without every node: under cqlsh's (and the
# driver's) 10 s request timeout, so the client hears why rather than timing out itself
TRUNCATE_AGREEMENT_TIMEOUT_S = 8.0
NO_KEYSPACE = "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"


def quoted(name: str) -> str:
    """A final name in the form `identifier()` maps back to itself."""
    return name if name == name.lower() and name.replace("_", "").isalnum() else '"' + name.replace('"', '""') + '"'


@dataclass
class PreparedStatement:
    statement: ast.Statement
    keyspace: str | None
    result: Prepared


class Processor:
    def __init__(self, backend, rng: random.Random | None = None):
        self.backend = backend
        self.rng = rng or random.Random()
        self._prepared: OrderedDict[bytes, PreparedStatement] = OrderedDict()

    # ---- entry points (the CQL server) ------------------------------------------------

    async def query(self, text: str, params: QueryParams, session: Session):
        stmt = parse(text)
        if len(params.values) < len(stmt.bind_markers):
            raise InvalidRequest(f"There were {len(stmt.bind_markers)} markers(?) in CQL but "
                                 f"{len(params.values)} bound variables")
        return await self.run(stmt, params, session)

    async def prepare(self, text: str, keyspace: str | None, session: Session) -> Prepared:
        stmt = parse(text)
        keyspace = keyspace or session.keyspace
        sid = hashlib.md5(((keyspace or "") if _unqualified(stmt) else "").encode() + text.encode()).digest()
        binds, pks, results = self._metadata(stmt, keyspace)
        rmid = hashlib.md5(repr([(c.name, c.type.cql_name()) for c in results]).encode()).digest()
        prepared = Prepared(sid, rmid, binds, pks, results)
        self._prepared[sid] = PreparedStatement(stmt, keyspace, prepared)
        self._prepared.move_to_end(sid)
        while len(self._prepared) > PREPARED_CACHE_ENTRIES:
            self._prepared.popitem(last=False)
        return prepared

    async def execute(self, statement_id: bytes, result_metadata_id, params: QueryParams, session: Session):
        entry = self._prepared.get(statement_id)
        if entry is None:
            raise Unprepared(statement_id)
        self._prepared.move_to_end(statement_id)
        if len(params.values) != len(entry.statement.bind_markers):
            raise InvalidRequest(f"There were {len(entry.statement.bind_markers)} markers(?) in CQL but "
                                 f"{len(params.values)} bound variables")
        view = Session(entry.keyspace or session.keyspace, session.protocol_version)
        result = await self.run(entry.statement, params, view)
        if isinstance(result, SetKeyspace):
            session.keyspace = result.keyspace
        return result

    async def batch(self, req: BatchRequest, session: Session):
        if req.batch_type == 2:
            raise InvalidRequest(modify.COUNTERS_UNSUPPORTED)
        ks = req.params.keyspace or session.keyspace
        now_ms = self.backend.now_s() * 1000
        ts = req.params.timestamp if req.params.timestamp is not None else self.backend.timestamp()
        partitions: list[Partition] = []
        for child in req.children:
            if child.statement_id is not None:
                entry = self._prepared.get(child.statement_id)
                if entry is None:
                    raise Unprepared(child.statement_id)
                stmt, child_ks = entry.statement, entry.keyspace or ks
            else:
                stmt, child_ks = parse(child.query), ks
            if not isinstance(stmt, (ast.Insert, ast.Update, ast.Delete)):
                raise InvalidRequest("Only INSERT, UPDATE and DELETE statements are allowed in a BATCH")
            ctx = self._mod_context(child.values, ts, now_ms, req.params.consistency)
            partitions += await self._modify(stmt, child_ks, ctx)
        cl = _cl(req.params.consistency)
        kind = {0: "BATCH", 1: "UNLOGGED_BATCH", 2: "COUNTER"}.get(req.batch_type, "BATCH")
        await self.backend.write(modify.merge_by_partition(partitions), cl, kind)
        return Void()

    def schema_events(self, old, new) -> list[SchemaChange]:
        return schema_events(old, new)

    # ---- dispatch ----------------------------------------------------------------------

    async def run(self, stmt, params: QueryParams, session: Session):
        ks = params.keyspace or session.keyspace
        if isinstance(stmt, ast.Select):
            return await self._select(stmt, params, ks)
        if isinstance(stmt, (ast.Insert, ast.Update, ast.Delete)):
            ts = params.timestamp if params.timestamp is not None else self.backend.timestamp()
            ctx = self._mod_context(params.values, ts, self.backend.now_s() * 1000, params.consistency)
            partitions = await self._modify(stmt, ks, ctx)
            await self.backend.write(partitions, _cl(params.consistency))
            return Void()
        if isinstance(stmt, ast.Batch):
            return await self._text_batch(stmt, params, ks)
        if isinstance(stmt, ast.Use):
            if self.backend.schema.keyspace(stmt.keyspace) is None and not system_tables.is_virtual(stmt.keyspace):
                raise InvalidRequest(f"Keyspace '{stmt.keyspace}' does not exist")
            session.keyspace = stmt.keyspace
            return SetKeyspace(stmt.keyspace)
        if isinstance(stmt, ast.Describe):
            return describe.describe(stmt.kind.value.lower().replace(" ", "_") if stmt.kind != ast.DescribeKind.SCHEMA
                                     else ("full_schema" if stmt.full else "schema"),
                                     self.backend.schema, self.backend.cluster_view(), keyspace=stmt.keyspace,
                                     name=stmt.name, session_keyspace=ks, only=stmt.only,
                                     with_internals=stmt.with_internals)
        if isinstance(stmt, ast.Truncate):
            return await self._truncate(stmt, ks, params)
        return await self._ddl(stmt, ks)

    def _terms(self, values, now_ms: int) -> TermContext:
        return TermContext(values, now_ms, self.rng)

    def _mod_context(self, values, ts: int, now_ms: int, consistency: int) -> modify.ModContext:
        """What a write statement evaluates with. A list operation by position (l[i] = x,
        l = l - [x]) reads the list at the statement's own consistency level, as Cassandra's
        readRequiredLists does, so a QUORUM write sees what earlier QUORUM writes left."""
        uniq = self.backend.host_uniq() if hasattr(self.backend, "host_uniq") else b"\0\0\0\0"
        cl = _cl(consistency)
        read_cl = ConsistencyLevel.ONE if cl == ConsistencyLevel.ANY else cl

        async def read_list(table, key, clustering, col):
            return await self._read_list(table, key, clustering, col, read_cl)
        return modify.ModContext(self._terms(values, now_ms), ts, now_ms // 1000, uniq, read_list)

    def _table(self, keyspace: str | None, name: str, for_write: bool = False):
        if keyspace is None:
            raise InvalidRequest(NO_KEYSPACE)
        if system_tables.is_virtual(keyspace):
            table = system_tables.virtual_table(keyspace, name)
            if table is None:
                raise InvalidRequest(f"table {name} does not exist")
            if for_write:
                raise InvalidRequest(f"Modification to table {keyspace}.{name} is not allowed")
            return table
        schema = self.backend.schema
        if schema.keyspace(keyspace) is None:
            raise InvalidRequest(f"Keyspace {keyspace} does not exist")
        table = schema.table(keyspace, name)
        if table is None:
            raise InvalidRequest(f"table {name} does not exist")
        return table

    def _metadata(self, stmt, keyspace):
        count = len(stmt.bind_markers)
        b = Binder(count)
        results: list[ColumnSpec] = []
        pks: list[int] = []
        if isinstance(stmt, ast.Batch):
            for child in stmt.statements:
                bind_statement(b, child, self._table(child.keyspace or keyspace, child.table))
        elif isinstance(stmt, (ast.Select, ast.Insert, ast.Update, ast.Delete)):
            table = self._table(stmt.keyspace or keyspace, stmt.table)
            bind_statement(b, stmt, table)
            pks = pk_indexes(b, table)
            if isinstance(stmt, ast.Select):
                results = [o.spec for o in select._outputs(stmt, table)] if not stmt.json else \
                    [ColumnSpec(table.keyspace, table.name, "[json]", T.TEXT)]
        missing = [i for i, s in enumerate(b.specs) if s is None]
        if missing:
            raise InvalidRequest(f"Bind marker {missing[0]} is not supported in this position")
        return list(b.specs), pks, results

    # ---- reads --------------------------------------------------------------------------

    async def _select(self, stmt: ast.Select, params: QueryParams, ks: str | None):
        ks = stmt.keyspace or ks
        table = self._table(ks, stmt.table)
        terms = self._terms(params.values, self.backend.now_s() * 1000)
        if system_tables.is_virtual(table.keyspace):
            return self._virtual_select(stmt, table, terms)
        return await select.execute(stmt, table, terms, self.backend, _cl(params.consistency), params,
                                    self.backend.now_s())

    def _virtual_select(self, stmt: ast.Select, table, terms: TermContext) -> Rows:
        p = select.plan(stmt, table, terms)
        data = system_tables.virtual_rows(table.keyspace, table.name, self.backend.schema, self.backend.cluster_view())
        r = p.r
        rows = []
        for d in data:
            values = {name: (None if v is None else T.serialize(table.column(name).type, v)) for name, v in d.items()}
            rows.append(RowView(b"", b"", values, {}))
        keep = []
        for row in rows:
            ok = all(row.values.get(c) in vals for c, vals in r.pk.items())
            for c, vals in zip(table.clustering_columns, r.ck_eq):
                ok = ok and row.values.get(c.name) in vals
            if ok and matches(row, p.filters, table):
                keep.append(row)
        if p.limit is not None:
            keep = keep[:p.limit]
        if p.aggregate:
            return Rows([o.spec for o in p.outputs], [select._aggregate(p.outputs, keep, 0)])
        return Rows([o.spec for o in p.outputs], [[row.values.get(o.column.name) for o in p.outputs] for row in keep])

    async def _read_list(self, table, key: bytes, clustering, col, cl: ConsistencyLevel = ConsistencyLevel.ONE):
        part = await self.backend.read(modify.list_read_command(table, key, clustering, col.name), cl)
        if part is None:
            return []
        row = part.static if col.kind == "static" else next(iter(part.rows.values()), None)
        if row is None:
            return []
        return sorted(((path, c) for (name, path), c in row.cells.items()  # not elements from before a drop
                       if name == col.name and path and c.value is not None and not table.hides(name, c.ts)),
                      key=lambda pc: pc[0])

    # ---- writes -------------------------------------------------------------------------

    async def _modify(self, stmt, ks: str | None, ctx: modify.ModContext, batch_ts: int | None = None) -> list:
        table = self._table(stmt.keyspace or ks, stmt.table, for_write=True)
        if isinstance(stmt, ast.Insert):
            return await modify.insert(stmt, table, ctx, batch_ts)
        if isinstance(stmt, ast.Update):
            return await modify.update(stmt, table, ctx, batch_ts)
        return await modify.delete(stmt, table, ctx, batch_ts)

    async def _text_batch(self, stmt: ast.Batch, params: QueryParams, ks: str | None):
        from agora.cql.terms import int_value
        if stmt.kind == ast.BatchKind.COUNTER:
            raise InvalidRequest(modify.COUNTERS_UNSUPPORTED)
        now_ms = self.backend.now_s() * 1000
        ts = params.timestamp if params.timestamp is not None else self.backend.timestamp()
        ctx = self._mod_context(params.values, ts, now_ms, params.consistency)
        batch_ts = int_value(stmt.timestamp, ctx.terms, "timestamp") if stmt.timestamp is not None else None
        if stmt.timestamp is not None and any(child.timestamp is not None for child in stmt.statements):
            raise InvalidRequest("Timestamp must be set either on BATCH or individual statements")
        partitions = []
        for child in stmt.statements:
            partitions += await self._modify(child, ks, ctx, batch_ts)
        kind = {"LOGGED": "BATCH", "UNLOGGED": "UNLOGGED_BATCH", "COUNTER": "COUNTER"}[stmt.kind.value]
        await self.backend.write(modify.merge_by_partition(partitions), _cl(params.consistency), kind)
        return Void()

    async def _truncate(self, stmt: ast.Truncate, ks: str | None, params: QueryParams):
        """TRUNCATE as a schema change: the table's data written up to now is gone on every
        node at once (`Schema.truncate_table`), however big the table; each node's tombstone
        compaction then frees the space. Like Cassandra, it needs every node up (Unavailable
        at ALL otherwise), and answers once every node has it (Truncate_error if they do not
        within the schema agreement timeout; the truncation still spreads to them)."""
        table = self._table(stmt.keyspace or ks, stmt.table, for_write=True)
        view = self.backend.cluster_view()
        nodes = 1 + len(view.peers)
        alive = 1 + sum(1 for peer in view.peers if peer.up)
        if alive < nodes:
            raise Unavailable(ConsistencyLevel.ALL, nodes, alive)
        await self.backend.schema_change(ddl.truncate_table({"keyspace": table.keyspace, "name": table.name}))
        if not await self.backend.wait_schema_agreement(TRUNCATE_AGREEMENT_TIMEOUT_S):
            raise TruncateError(f"Truncation of {table.keyspace}.{table.name} did not reach every "
                                f"node within {TRUNCATE_AGREEMENT_TIMEOUT_S:g} s; it applies on each "
                                "as it catches up with the schema")
        return Void()

    # ---- schema ---------------------------------------------------------------------------

    async def _ddl(self, stmt, ks: str | None):
        change = self._ddl_change(stmt, ks)
        old = self.backend.schema
        await self.backend.schema_change(change)
        await self.backend.wait_schema_agreement(SCHEMA_AGREEMENT_TIMEOUT_S)
        events = schema_events(old, self.backend.schema)
        return events[0] if events else Void()

    def _ddl_change(self, stmt, ks: str | None):
        S = ast
        if isinstance(stmt, S.CreateKeyspace):
            opts = stmt.options_dict()
            return ddl.create_keyspace({"name": quoted(stmt.name), "replication": self._replication(opts, stmt.name),
                                        "durable_writes": opts.get("durable_writes", True),
                                        "if_not_exists": stmt.if_not_exists})
        if isinstance(stmt, S.AlterKeyspace):
            opts = stmt.options_dict()
            args = {"name": quoted(stmt.name)}
            if "replication" in opts:
                args["replication"] = self._replication(opts, stmt.name)
            if "durable_writes" in opts:
                args["durable_writes"] = opts["durable_writes"]
            return ddl.alter_keyspace(args)
        if isinstance(stmt, S.DropKeyspace):
            return ddl.drop_keyspace({"name": quoted(stmt.name), "if_exists": stmt.if_exists})
        if isinstance(stmt, (S.CreateIndex, S.DropIndex)):
            raise InvalidRequest("Secondary indexes are not supported by Agora")
        target_ks = getattr(stmt, "keyspace", None) or ks
        if target_ks is None:
            raise InvalidRequest(NO_KEYSPACE)
        if system_tables.is_virtual(target_ks):
            raise InvalidRequest(f"Cannot alter system keyspace {target_ks}")
        return self._table_ddl(stmt, target_ks)

    def _table_ddl(self, stmt, ks: str):
        S = ast
        base = {"keyspace": quoted(ks)}
        if isinstance(stmt, S.CreateTable):
            order = {o.column: ("desc" if o.descending else "asc") for o in stmt.clustering_order}
            return ddl.create_table({**base, "name": quoted(stmt.table),
                                     "columns": [[quoted(c.name), c.type.text] for c in stmt.columns],
                                     "partition_key": [quoted(c) for c in stmt.partition_key],
                                     "clustering": [[quoted(c), order.get(c, "asc")] for c in stmt.clustering],
                                     "static": [quoted(c.name) for c in stmt.columns if c.static],
                                     "options": stmt.options_dict(), "if_not_exists": stmt.if_not_exists})
        if isinstance(stmt, S.DropTable):
            return ddl.drop_table({**base, "name": quoted(stmt.table), "if_exists": stmt.if_exists})
        if isinstance(stmt, S.AlterTableAdd):
            return ddl.alter_table_add({**base, "name": quoted(stmt.table),
                                        "columns": [[quoted(c.name), c.type.text, c.static] for c in stmt.columns]})
        if isinstance(stmt, S.AlterTableDrop):
            return ddl.alter_table_drop({**base, "name": quoted(stmt.table), "columns": [quoted(c) for c in stmt.columns],
                                         "timestamp": stmt.timestamp})
        if isinstance(stmt, S.AlterTableRename):
            return ddl.alter_table_rename({**base, "name": quoted(stmt.table),
                                           "renames": [[quoted(a), quoted(b)] for a, b in stmt.renames]})
        if isinstance(stmt, S.AlterTableWith):
            return ddl.alter_table_with({**base, "name": quoted(stmt.table), "options": stmt.options_dict()})
        if isinstance(stmt, S.CreateType):
            return ddl.create_type({**base, "name": quoted(stmt.name), "if_not_exists": stmt.if_not_exists,
                                    "fields": [[quoted(f), t.text] for f, t in stmt.fields]})
        if isinstance(stmt, S.AlterTypeAdd):
            return ddl.alter_type({**base, "name": quoted(stmt.name), "add": [quoted(stmt.field_name), stmt.type.text]})
        if isinstance(stmt, S.AlterTypeRename):
            return ddl.alter_type({**base, "name": quoted(stmt.name),
                                   "renames": [[quoted(a), quoted(b)] for a, b in stmt.renames]})
        if isinstance(stmt, S.DropType):
            return ddl.drop_type({**base, "name": quoted(stmt.name), "if_exists": stmt.if_exists})
        raise InvalidRequest(f"Unsupported statement {type(stmt).__name__}")

    def _replication(self, opts: dict, keyspace: str) -> dict:
        """The replication map with NetworkTopologyStrategy's `replication_factor` expanded to
        every known datacenter; a datacenter nobody is in is refused, as Cassandra 4+ does."""
        replication = dict(opts.get("replication") or {})
        cls = str(replication.get("class", ""))
        if cls.split(".")[-1] != "NetworkTopologyStrategy":
            return replication
        view = self.backend.cluster_view()
        dcs = sorted({view.local.dc, *(p.dc for p in view.peers)} - {""})
        for key in sorted(replication):
            if key not in ("class", "replication_factor") and key not in dcs:
                raise ConfigurationError(f"Unrecognized strategy option {{{key}}} passed to "
                                         f"NetworkTopologyStrategy for keyspace {keyspace}")
        if "replication_factor" in replication:
            rf = replication.pop("replication_factor")
            for dc in dcs:
                replication.setdefault(dc, rf)
        return replication


def _unqualified(stmt) -> bool:
    if isinstance(stmt, ast.Batch):
        return any(child.keyspace is None for child in stmt.statements)
    return getattr(stmt, "table", None) is not None and getattr(stmt, "keyspace", "x") is None


_CONSISTENCY_LEVELS = {int(level): level for level in ConsistencyLevel}  # a dict: Enum() is slow


def _cl(code: int) -> ConsistencyLevel:
    level = _CONSISTENCY_LEVELS.get(code)
    if level is None:
        raise InvalidRequest(f"Unknown consistency level {code}")
    return level
