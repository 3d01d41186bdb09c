"""What `Node` talks to for LOGGED batches: the coordinator side (coordinator.py: store ->
apply -> remove) and the holder side (holder.py: keep, remove, replay), and which input
goes to which.

Owns: only that routing and the node-facing names. Timers are ("batchlog", "replay"),
("batchlog", "store", req_id) and ("batchlog", "replayed", batch_id).
"""

from __future__ import annotations

import random

from agora.core.batchlog.coordinator import BatchlogCoordinator
from agora.core.batchlog.holder import BatchlogHolder
from agora.core.batchlog.messages import BatchRemove, BatchStoreReq, BatchStoreRsp
from agora.core.effects import BatchlogDone
from agora.core.messages import MutationRsp
from agora.core.types import ConsistencyLevel, NodeId, Partition

MESSAGES = (BatchStoreReq, BatchStoreRsp, BatchRemove)


class Batchlog:
    def __init__(self, node, apply, rng: random.Random):
        """`node`: the Node (placement, config, schema); `apply(client_id, partitions, cl,
        now_ms)`: the ordinary write of a batch (write_type BATCH)."""
        cfg = node.cfg
        placement = _Placement(node)
        self.coordinator = BatchlogCoordinator(placement, cfg.rack, apply, cfg.write_request_timeout,
                                               rng, cfg.debug_crash_after_batchlog)
        self.holder = BatchlogHolder(placement, placement.gc_grace_of, cfg.write_request_timeout,
                                     sync_writes=cfg.commitlog_sync == "batch")
        # every write's answer passes here: the coordinator's method itself, not a call more
        self.after_writes = self.coordinator.after_writes

    def start(self, now_ms: int) -> list:
        return self.holder.start(now_ms)

    def client_batch(self, client_id: int, partitions: list[Partition], cl: ConsistencyLevel,
                     now_ms: int) -> list:
        return self.coordinator.start(client_id, partitions, cl, now_ms)

    def on_message(self, source: NodeId, msg, now_ms: int) -> list:
        if isinstance(msg, BatchStoreReq):
            return self.holder.on_store_req(source, msg, now_ms)
        if isinstance(msg, BatchStoreRsp):
            return self.coordinator.on_store_rsp(source, msg, now_ms)
        return self.holder.on_remove(msg)

    def on_mutation_rsp(self, source: NodeId, rsp: MutationRsp) -> list:
        return self.holder.on_mutation_rsp(source, rsp)

    def on_timer(self, timer_id, now_ms: int) -> list:
        if timer_id[1] == "store":
            return self.coordinator.on_store_timeout(timer_id[2])
        return self.holder.on_timer(timer_id, now_ms)

    def owns_done(self, done) -> bool:
        return isinstance(done, BatchlogDone)

    def on_storage_done(self, done: BatchlogDone, now_ms: int) -> list:
        return self.holder.on_done(done)


class _Placement:
    """The node as both sides see it: its placement plus the local DC's members and each
    table's gc_grace_seconds."""

    def __init__(self, node):
        self.node = node
        self.local = node.local
        self.local_dc = node.local_dc

    def replicas_for(self, table_id: bytes, key: bytes):
        return self.node.replicas_for(table_id, key)

    def dc_of(self, node: NodeId) -> str:
        return self.node.dc_of(node)

    def is_alive(self, node: NodeId) -> bool:
        return self.node.is_alive(node)

    def next_req_id(self) -> int:
        return self.node.next_req_id()

    def dc_members(self) -> list[tuple[NodeId, str]]:
        ring = self.node.ring
        members = [(n, ring.rack_of(n)) for n in ring.nodes_in(self.local_dc)]
        return members if members else [(self.local, self.node.cfg.rack)]

    def gc_grace_of(self, table_id: bytes) -> int | None:
        table = self.node.schema.schema.table_by_id(table_id)
        return None if table is None else int(table.option("gc_grace_seconds"))
