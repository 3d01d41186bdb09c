"""What `Node` talks to for everything about tombstones' lifetime: the compaction pass and
its purge guards (compaction.py), the downtime check (downtime.py), and their gossip
(PURGE_HORIZON, REPAIR_NEEDED) and messages (PurgeHorizonReq/Rsp).

Owns: the glue between those two machines and the node -- which inputs go where, which
replica requests a node in quarantine refuses, the gossip states they publish, and whether
a peer may serve reads (`serves_reads`, which the read coordinators ask).
Does not know: storage, the ring's layout beyond its members, or how repair runs.
"""

from __future__ import annotations

from agora.core.effects import Send, StorageDropTable, StorageReplaceDone, StorageScanDone
from agora.core.hints.messages import HintReq, HintRsp
from agora.core.messages import (MutationReq, MutationRsp, RangeReadReq, RangeReadRsp, ReadReq,
                                 ReadRsp)
from agora.core.tombstones.compaction import (GC_FIRST_PASS_GOSSIP_ROUNDS, PURGE_HORIZON_META_KEY,
                                              PURGE_HORIZON_STATE, REPAIR_FLAG_STATE, PurgeGuards,
                                              TombstoneCompaction, parse_repair_flag)
from agora.core.tombstones.downtime import (DECIDING, DOWNTIME_META_KEY, GUARDED, HEARTBEAT_TIMER,
                                            LAST_ALIVE_META_KEY, REBUILDING, RETRY_TIMER, SERVING,
                                            Downtime, suspect_tables)
from agora.core.schema.model import TABLE_OPTIONS
from agora.core.tombstones.messages import PurgeHorizonReq, PurgeHorizonRsp
from agora.core.types import NodeId

MESSAGES = (PurgeHorizonReq, PurgeHorizonRsp)
TAKES_ALL = (SERVING, GUARDED)  # downtime states that serve reads and take writes
NOT_SERVING = "needs repair: this replica was down longer than gc_grace_seconds"


def _int_meta(meta: dict[str, bytes], key: str) -> int | None:
    raw = meta.get(key)
    return int(raw) if raw and raw.isdigit() else None


class Tombstones:
    def __init__(self, node, meta: dict[str, bytes], now_s: int):
        """`node`: the Node (its schema, gossiper, ring, ids); `meta`: what its last run
        persisted; `now_s`: the wall clock at boot."""
        self.node = node
        cfg = node.cfg
        self.guards = PurgeGuards(node.gossiper, node.local)
        self.compaction = TombstoneCompaction(
            self.compacted_tables, self.guards, cfg.tombstone_gc_interval,
            GC_FIRST_PASS_GOSSIP_ROUNDS * cfg.gossip_interval,
            _int_meta(meta, PURGE_HORIZON_META_KEY) or 0, truncated_at=node.truncated_at)
        last_alive = _int_meta(meta, LAST_ALIVE_META_KEY)
        resumed = parse_repair_flag((meta.get(DOWNTIME_META_KEY) or b"").decode())
        if resumed is not None:  # the last run stopped before its check ended: resume it
            last_alive = resumed[0]
        self.downtime = Downtime(self, node.identity.generation, last_alive,
                                 suspect_tables(self.tables(), last_alive, now_s),
                                 resumed[1] if resumed else None)

    # ---- the host protocols of the two machines ---------------------------------------

    @property
    def local(self) -> NodeId:
        return self.node.local

    def tables(self) -> list[tuple[bytes, int]]:
        return [(t.id.bytes, int(t.option("gc_grace_seconds"))) for t in self.node.schema.schema.tables()]

    def compacted_tables(self) -> list[tuple[bytes, int]]:
        """What compaction walks: the live tables, and the dropped ones (a drop truncates
        the table, so their walk frees their data; the default gc_grace for what is left)."""
        live = self.tables()
        ids = {tid for tid, _ in live}
        grace = int(TABLE_OPTIONS["gc_grace_seconds"][0])
        return live + [(tid, grace) for tid in sorted(self.node.schema.schema.truncations()) if tid not in ids]

    def ring_members(self) -> list[NodeId]:
        return sorted(self.node.ring.nodes)

    def is_alive(self, node: NodeId) -> bool:
        return self.node.is_alive(node)

    def next_req_id(self) -> int:
        return self.node.next_req_id()

    def gossip_state(self, node: NodeId, key: str) -> str | None:
        return self.node.gossiper.app_state(node, key)

    # ---- what the node and the coordinators ask -------------------------------------------

    @property
    def needs_repair(self) -> bool:
        return self.downtime.needs_repair

    def serves_reads(self, node: NodeId) -> bool:
        """Whether `node` may be asked for data: alive and not in quarantine."""
        if node == self.local:
            return self.downtime.serves_reads
        if not self.node.is_alive(node):
            return False
        parsed = parse_repair_flag(self.node.gossiper.app_state(node, REPAIR_FLAG_STATE))
        return parsed is None or parsed[1] not in (DECIDING, REBUILDING)

    def owns_op(self, op_id: int) -> bool:
        return self.compaction.owns_op(op_id)

    # ---- inputs -------------------------------------------------------------------------

    def start(self, now_ms: int) -> list:
        return self._published([*self.compaction.start(now_ms), *self.downtime.start(now_ms)])

    def shutdown(self, now_ms: int) -> list:
        return self.downtime.heartbeat(now_ms)[:1]  # record the last-alive time, no timer

    def refuse(self, source: NodeId, msg) -> list | None:
        """The answer to a replica request this node must not serve now, else None."""
        d = self.downtime
        if d.state in TAKES_ALL:  # serves reads and takes writes: the usual case
            return None
        if isinstance(msg, ReadReq) and not d.serves_reads:
            return [Send(source, ReadRsp(msg.req_id, None, None, NOT_SERVING))]
        if isinstance(msg, RangeReadReq) and not d.serves_reads:
            return [Send(source, RangeReadRsp(msg.req_id, (), error=NOT_SERVING))]
        if isinstance(msg, MutationReq) and not d.accepts_writes:
            return [Send(source, MutationRsp(msg.req_id, NOT_SERVING))]
        if isinstance(msg, HintReq) and not d.accepts_writes:  # it may be dropped in a moment
            return [Send(source, HintRsp(msg.req_id, NOT_SERVING))]
        return None

    def on_message(self, source: NodeId, msg, now_ms: int) -> list:
        if isinstance(msg, PurgeHorizonReq):
            # The guard holds from this instant: every later chunk computes its gc_before
            # with it, and the horizon already counts every chunk computed before.
            self.guards.add(source, msg.generation, msg.since_s)
            return [Send(source, PurgeHorizonRsp(msg.req_id, self.compaction.horizon_s))]
        return self._published(self.downtime.on_horizon_rsp(source, msg))

    def on_timer(self, timer_id, now_ms: int) -> list:
        if timer_id == HEARTBEAT_TIMER:
            return self.downtime.heartbeat(now_ms)
        if timer_id == RETRY_TIMER:
            return self._published(self.downtime.on_retry(now_ms))
        return self._published(self.compaction.on_timer(timer_id, now_ms))

    def on_storage_done(self, done, now_ms: int) -> list:
        if isinstance(done, StorageScanDone):
            return self._published(self.compaction.on_scan_done(done, now_ms))
        assert isinstance(done, StorageReplaceDone)
        return self.compaction.on_replace_done(done)

    def run_pass(self, now_ms: int) -> list:
        """Start a compaction pass now (tests, admin)."""
        return self._published(self.compaction.run_pass(now_ms))

    def compact_soon(self, table_ids: list[bytes], now_ms: int) -> list:
        """Walk these tables soon (`TombstoneCompaction.compact_soon`)."""
        return self._published(self.compaction.compact_soon(table_ids, now_ms))

    def mark_repaired(self) -> list:
        return self._published(self.downtime.mark_repaired())

    def _published(self, effects: list) -> list:
        """`effects`, plus gossip of the horizon and the repair flag where they changed. A
        StorageDropTable among them (the downtime check's) abandons compaction's walk."""
        if any(isinstance(eff, StorageDropTable) for eff in effects):
            self.compaction.data_dropped()
        g = self.node.gossiper
        horizon = str(self.compaction.horizon_s)
        if g.app_state(self.local, PURGE_HORIZON_STATE) != horizon:
            effects = effects + g.set_local_state(PURGE_HORIZON_STATE, horizon)
        flag = self.downtime.flag()
        current = g.app_state(self.local, REPAIR_FLAG_STATE)
        if current != flag and (flag or current):
            effects = effects + g.set_local_state(REPAIR_FLAG_STATE, flag)
        return effects
