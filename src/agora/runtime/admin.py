"""Admin verbs a node answers for the `agora` CLI and tests: status, schema, and row-level
write/read/delete that go down the very coordinator path the CQL server calls.

Owns: decoding a ClientReq's arguments, calling NodeRuntime, and encoding the ClientRsp.
Every error becomes an error answer naming its class (Unavailable, WriteTimeout,
InvalidRequest ...) with its fields; nothing a client sends can stop the node.
"""

from __future__ import annotations

import asyncio
import math
import os
import dataclasses
import logging

from agora.core import codec, reconcile, rowmaps
from agora.core.errors import AgoraError, InvalidRequest
from agora.core.messages import ClientReq, ClientRsp
from agora.core.ring.strategies import strategy_from_options
from agora.core.schema import ddl
from agora.core.types import ConsistencyLevel
from agora.runtime.server import now_ms

log = logging.getLogger("agora.admin")
COMPACT_POLL_S = 0.05  # how often `compact` looks whether its pass has finished


def _cl(args: dict) -> ConsistencyLevel:
    name = str(args.get("cl", "ONE")).upper()
    try:
        return ConsistencyLevel[name]
    except KeyError:
        raise InvalidRequest(f"unknown consistency level {name!r}") from None


class AdminVerbs:
    def __init__(self, runtime):
        self.rt = runtime
        self._tasks: set = set()

    def handle(self, source: str, req: ClientReq) -> None:
        task = asyncio.ensure_future(self._answer(source, req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, source: str, req: ClientReq) -> None:
        handler = getattr(self, f"op_{req.op}", None)
        try:
            if handler is None:
                raise InvalidRequest(f"unknown admin op {req.op!r}")
            rsp = ClientRsp(req.req_id, await handler(req.args))
        except AgoraError as exc:
            fields = dataclasses.asdict(exc) if dataclasses.is_dataclass(exc) else {}
            rsp = ClientRsp(req.req_id, None, [type(exc).__name__, str(exc), fields])
        except Exception as exc:  # our bug: answer ServerError, keep serving
            log.exception("admin op %s failed", req.op)
            rsp = ClientRsp(req.req_id, None, ["ServerError", f"{type(exc).__name__}: {exc}", {}])
        self.rt.transport.send(source, codec.encode(rsp))

    def _table(self, args: dict):
        schema = self.rt.node.schema.schema
        table = schema.table(str(args.get("keyspace")), str(args.get("table")))
        if table is None:
            raise InvalidRequest(f"unknown table {args.get('keyspace')}.{args.get('table')}")
        return table

    # ---- status ---------------------------------------------------------------------------

    async def op_status(self, args: dict):
        node = self.rt.node
        g = node.gossiper
        owns = node.ring.ownership()
        ks = args.get("keyspace")
        if ks:
            ksdef = node.schema.schema.keyspace(ks)
            if ksdef is None:
                raise InvalidRequest(f"Keyspace '{ks}' does not exist")
            from agora.core.ring.strategies import ownership as effective
            owns = effective(node.ring, strategy_from_options(dict(ksdef.replication)))
        rows = []
        for n in sorted(set(g.known_nodes()) | {node.local}):
            info = node._infos.get(n)
            rows.append({
                "node": n, "address": n.rsplit(":", 1)[0], "up": node.is_alive(n),
                "dc": g.app_state(n, "DC") or (info.dc if info else ""),
                "rack": g.app_state(n, "RACK") or (info.rack if info else ""),
                "state": "N" if (g.app_state(n, "STATUS") == "NORMAL") else "J",
                "load": int(g.app_state(n, "LOAD") or 0), "tokens": len(info.tokens) if info else 0,
                "owns": owns.get(n), "host_id": g.app_state(n, "HOST_ID"),
                "schema": g.app_state(n, "SCHEMA"), "phi": self._phi(n),
            })
        return {"local": node.local, "pid": os.getpid(), "schema": node.schema.version, "nodes": rows,
                "hints": node.hints.pending_by_target(),
                "tombstones": {"state": node.tombstones.downtime.state, "needs_repair": node.needs_repair,
                               "purge_horizon_s": node.tombstones.compaction.horizon_s,
                               "guarded_peers": node.tombstones.guards.guarded(),
                               **node.tombstones.compaction.stats},
                "batchlog": {"entries": len(node.batchlog.holder.entries),
                             **node.batchlog.holder.stats, **node.batchlog.coordinator.stats},
                "stats": {"reads": dict(node.reads.stats), "replica": dict(node.replica.stats),
                          "hints": dict(node.hints.stats),
                          "runtime": {"oversized": self.rt.oversized, "failed_messages": self.rt.failed_messages},
                          "transport": self.rt.transport.stats() if hasattr(self.rt.transport, "stats") else {}}}

    def _phi(self, node_id: str) -> float | None:
        """The failure detector's suspicion of a peer now (Cassandra's `nodetool
        failuredetector`): it is convicted above phi_convict_threshold (8). None for this
        node and for a peer with no heartbeat history."""
        node = self.rt.node
        if node_id == node.local:
            return None
        phi = node.gossiper.detector.phi(node_id, now_ms())  # the clock gossip is fed
        return None if math.isinf(phi) else round(phi, 3)

    # ---- schema ---------------------------------------------------------------------------

    async def op_schema(self, args: dict):
        schema = self.rt.node.schema.schema
        return {"version": self.rt.node.schema.version,
                "keyspaces": {k.name: {"replication": dict(k.replication),
                                       "tables": [t.name for t in schema.tables(k.name)]}
                              for k in schema.keyspaces()}}

    async def op_create_keyspace(self, args: dict):
        change = ddl.create_keyspace(args)
        return await self.rt.schema_change(change)

    async def op_create_table(self, args: dict):
        return await self.rt.schema_change(ddl.create_table(args))

    async def op_drop_keyspace(self, args: dict):
        return await self.rt.schema_change(ddl.drop_keyspace(args))

    async def op_drop_table(self, args: dict):
        return await self.rt.schema_change(ddl.drop_table(args))

    # ---- anti-entropy repair ---------------------------------------------------------------

    async def op_repair(self, args: dict):
        """Start a repair coordinated by this node (keyspace, table, node, start_token,
        end_token); answers at once with its first report, whose `id` repair_status follows."""
        return await self.rt.repair(dict(args))

    async def op_repair_status(self, args: dict):
        """One repair's report ({"id": N}), or every repair this node knows of ({})."""
        session_id = args.get("id")
        if session_id is not None and (isinstance(session_id, bool) or not isinstance(session_id, int)):
            raise InvalidRequest("repair_status: id must be an integer")
        return self.rt.repair_status(session_id)

    # ---- tombstones -----------------------------------------------------------------------

    async def op_compact(self, args: dict):
        """Run a tombstone compaction pass now (as its timer would) and answer once it has
        walked every table: {"passes", "chunks", "partitions_rewritten", "tables_skipped",
        "purge_horizon_s", "skipped"}, the last the "keyspace.table" names this pass skipped
        as clean (nothing for compaction written since their last walk)."""
        compaction = self.rt.node.tombstones.compaction
        self.rt._feed(lambda t: self.rt.node.tombstones.run_pass(t))
        while compaction.running:
            await asyncio.sleep(COMPACT_POLL_S)
        schema = self.rt.node.schema.schema
        skipped = sorted(f"{t.keyspace}.{t.name}" for tid in compaction.skipped
                         if (t := schema.table_by_id(tid)) is not None)
        return {**compaction.stats, "purge_horizon_s": compaction.horizon_s, "skipped": skipped}

    # ---- rows -----------------------------------------------------------------------------

    async def op_write(self, args: dict):
        table = self._table(args)
        ts = args.get("timestamp") or self.rt.timestamp()
        part = rowmaps.insert(table, dict(args.get("values") or {}), int(ts), int(args.get("ttl") or 0),
                              self.rt.now_s())
        await self.rt.write([part], _cl(args))
        return {"timestamp": ts}

    async def op_delete(self, args: dict):
        table = self._table(args)
        ts = args.get("timestamp") or self.rt.timestamp()
        part = rowmaps.delete(table, dict(args.get("key") or {}), int(ts), self.rt.now_s())
        await self.rt.write([part], _cl(args))
        return {"timestamp": ts}

    async def op_read(self, args: dict):
        table = self._table(args)
        cmd = rowmaps.read_command(table, dict(args.get("key") or {}))
        part = await self.rt.read(cmd, _cl(args))
        return rowmaps.rows_of(table, part, bool(args.get("writetime")))

    async def op_inspect(self, args: dict):
        """This node's own copy, straight from local storage (no coordinator, no repair)."""
        table = self._table(args)
        cmd = rowmaps.read_command(table, dict(args.get("key") or {}))
        raw = self.rt.engine.read(cmd)
        view = reconcile.live_view(raw, self.rt.now_s()) if raw is not None else None
        return rowmaps.rows_of(table, view, bool(args.get("writetime")))
