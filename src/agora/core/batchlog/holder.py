"""The holder side of the batchlog (Cassandra's BatchStoreVerbHandler, BatchRemoveVerbHandler
and BatchlogManager.replayFailedBatches): keep the batches coordinators log here, forget
them when told they are applied, and replay those nobody removed in time.

Owns: the entries (in storage through BatchlogStore/BatchlogRemove/BatchlogLoad, and an
index in memory with what replay needs), acknowledging a store only once storage reports
it (synced per commitlog_sync, like a mutation), and replay.

Replay: every BATCHLOG_REPLAY_INTERVAL_MS the holder replays each entry older than twice
write_request_timeout (Cassandra's batchlog timeout: the coordinator had time to apply and
remove it, so it probably died). The entry's age is measured on the holder's own clock from
when it stored the entry, so clock skew between nodes does not matter. Replay sends each
partition as a MutationReq to its live replicas and removes the entry once they all
acknowledged, or, when write_request_timeout passes, once every partition was acknowledged
by at least one replica (the rest is left to read repair and repair; replay does not store
hints). A partition with no live replica, or one no replica acknowledged, keeps the entry
for the next round. Partitions of dropped tables, and partitions older than their table's
gc_grace_seconds (their deletions may be purged: replaying them could resurrect data, as
Cassandra also refuses), are skipped. Batches carry their own timestamps, so a replay that
races the coordinator's own write, or a second holder's replay, changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgpack

from agora.core.batchlog.messages import BatchRemove, BatchStoreReq, BatchStoreRsp
from agora.core.effects import (BatchlogDone, BatchlogLoad, BatchlogRemove, BatchlogStore,
                                CancelTimer, Log, Send, SetTimer)
from agora.core.errors import AgoraError
from agora.core.messages import MutationReq, MutationRsp
from agora.core.plain import partition_from_plain, partition_to_plain
from agora.core.types import NodeId, Partition

BATCHLOG_REPLAY_INTERVAL_MS = 10_000  # Cassandra's BatchlogManager.REPLAY_INTERVAL
# Entries a holder keeps at once; past it a store is refused (its coordinator answers
# WriteTimeout BATCH_LOG) rather than letting dead coordinators fill memory and disk.
BATCHLOG_MAX_ENTRIES = 10_000
# Batches replayed at once per holder: bounds the replay traffic after a coordinator died
# with many batches in flight (Cassandra throttles replay by bytes; this is simpler).
BATCHLOG_REPLAY_MAX_IN_FLIGHT = 16

REPLAY_TIMER = ("batchlog", "replay")


class HolderPlacement(Protocol):
    def replicas_for(self, table_id: bytes, key: bytes): ...

    def is_alive(self, node: NodeId) -> bool: ...

    def next_req_id(self) -> int: ...


@dataclass
class _Entry:
    coordinator: NodeId
    stored_at_ms: int  # the holder's clock when it stored the entry
    partitions: tuple[Partition, ...]

    def to_bytes(self) -> bytes:
        return msgpack.packb([self.coordinator, self.stored_at_ms,
                              [partition_to_plain(p) for p in self.partitions]], use_bin_type=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> _Entry:
        coordinator, stored_at_ms, parts = msgpack.unpackb(raw, raw=False)
        return cls(coordinator, int(stored_at_ms), tuple(partition_from_plain(p) for p in parts))


@dataclass
class _Replay:
    batch_id: bytes
    pending: dict[int, set] = field(default_factory=dict)  # req_id -> replicas yet to ack
    acked: dict[int, int] = field(default_factory=dict)  # req_id -> acks so far


class BatchlogHolder:
    def __init__(self, placement: HolderPlacement, gc_grace_of: Callable[[bytes], int | None],
                 write_timeout_ms: int, sync_writes: bool):
        self.p = placement
        self.gc_grace_of = gc_grace_of
        self.write_timeout_ms = write_timeout_ms
        self.sync_writes = sync_writes
        self.entries: dict[bytes, _Entry] = {}
        self._storing: dict[int, tuple[NodeId, int, bytes, _Entry]] = {}  # op -> request
        self._load_op: int | None = None
        self._next_op = 1
        self._replays: dict[bytes, _Replay] = {}
        self._by_req: dict[int, _Replay] = {}
        self.stats = {"stored": 0, "removed": 0, "replayed": 0, "skipped_partitions": 0}

    def _op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def owns_op(self, op_id: int) -> bool:
        return op_id == self._load_op or op_id in self._storing

    # ---- storing and removing ---------------------------------------------------------

    def start(self, now_ms: int) -> list:
        self._load_op = self._op()
        return [BatchlogLoad(self._load_op), SetTimer(REPLAY_TIMER, BATCHLOG_REPLAY_INTERVAL_MS)]

    def on_store_req(self, source: NodeId, req: BatchStoreReq, now_ms: int) -> list:
        if req.batch_id in self.entries:  # a retransmission: it is stored already
            return [Send(source, BatchStoreRsp(req.req_id))]
        if len(self.entries) + len(self._storing) >= BATCHLOG_MAX_ENTRIES:
            return [Send(source, BatchStoreRsp(req.req_id, "batchlog full"))]
        entry = _Entry(source, now_ms, req.partitions)
        op = self._op()
        self._storing[op] = (source, req.req_id, req.batch_id, entry)
        return [BatchlogStore(op, req.batch_id, entry.to_bytes(), self.sync_writes)]

    def on_done(self, done: BatchlogDone) -> list:
        if done.op_id == self._load_op:
            self._load_op = None
            return self._loaded(done)
        source, req_id, batch_id, entry = self._storing.pop(done.op_id)
        if done.error is None:
            self.entries[batch_id] = entry
            self.stats["stored"] += 1
        return [Send(source, BatchStoreRsp(req_id, done.error))]

    def _loaded(self, done: BatchlogDone) -> list:
        if done.error is not None:
            return [Log("error", f"batchlog: cannot read stored entries: {done.error}")]
        out: list = []
        for batch_id, raw in done.entries:
            try:
                self.entries.setdefault(batch_id, _Entry.from_bytes(raw))
            except (AgoraError, ValueError, TypeError) as exc:  # a damaged entry: drop it
                out += [Log("error", f"batchlog: dropping unreadable entry {batch_id.hex()}: {exc}"),
                        BatchlogRemove(batch_id)]
        if self.entries:
            out.append(Log("info", f"batchlog: {len(self.entries)} entries to replay if not removed"))
        return out

    def on_remove(self, msg: BatchRemove) -> list:
        if self.entries.pop(msg.batch_id, None) is None:
            return []
        self.stats["removed"] += 1
        return [BatchlogRemove(msg.batch_id), *self._forget_replay(msg.batch_id)]

    # ---- replay -----------------------------------------------------------------------

    def on_timer(self, timer_id, now_ms: int) -> list:
        if timer_id == REPLAY_TIMER:
            return [SetTimer(REPLAY_TIMER, BATCHLOG_REPLAY_INTERVAL_MS), *self.replay_due(now_ms)]
        return self._on_replay_timeout(timer_id[2])

    def replay_due(self, now_ms: int) -> list:
        """Start replaying the entries nobody removed within the batchlog timeout."""
        timeout = 2 * self.write_timeout_ms
        due = sorted((e.stored_at_ms, bid) for bid, e in self.entries.items()
                     if now_ms - e.stored_at_ms >= timeout and bid not in self._replays)
        out: list = []
        for _, batch_id in due[:max(0, BATCHLOG_REPLAY_MAX_IN_FLIGHT - len(self._replays))]:
            out += self._replay(batch_id, now_ms)
        return out

    def _replay(self, batch_id: bytes, now_ms: int) -> list:
        entry = self.entries[batch_id]
        age_s = (now_ms - entry.stored_at_ms) // 1000
        plans, out = [], []
        for part in entry.partitions:
            grace = self.gc_grace_of(part.table_id)
            if grace is None or age_s > grace:
                self.stats["skipped_partitions"] += 1
                out.append(Log("warning", f"batchlog: not replaying a partition of batch {batch_id.hex()}: "
                                          + ("its table is gone" if grace is None else "older than gc_grace")))
                continue
            replicas, _, _ = self.p.replicas_for(part.table_id, part.key)
            live = sorted(r for r in replicas if self.p.is_alive(r))
            if not live:
                return []  # not now: the next round tries again
            plans.append((part, live))
        if not plans:
            del self.entries[batch_id]
            return out + [BatchlogRemove(batch_id)]
        rp = _Replay(batch_id)
        self._replays[batch_id] = rp
        for part, live in plans:
            req_id = self.p.next_req_id()
            rp.pending[req_id], rp.acked[req_id] = set(live), 0
            self._by_req[req_id] = rp
            out.extend(Send(r, MutationReq(req_id, (part,))) for r in live)
        out.append(SetTimer(("batchlog", "replayed", batch_id), self.write_timeout_ms))
        return out

    def on_mutation_rsp(self, source: NodeId, rsp: MutationRsp) -> list:
        rp = self._by_req.get(rsp.req_id)
        if rp is None or rsp.error is not None or source not in rp.pending[rsp.req_id]:
            return []
        rp.pending[rsp.req_id].discard(source)
        rp.acked[rsp.req_id] += 1
        if any(rp.pending.values()):
            return []
        return self._replayed(rp)

    def _on_replay_timeout(self, batch_id: bytes) -> list:
        rp = self._replays.get(batch_id)
        if rp is None:
            return []
        if all(n > 0 for n in rp.acked.values()):
            return self._replayed(rp)
        return self._forget_replay(batch_id)  # the entry stays for the next round

    def _replayed(self, rp: _Replay) -> list:
        self.stats["replayed"] += 1
        self.entries.pop(rp.batch_id, None)
        return [BatchlogRemove(rp.batch_id), *self._forget_replay(rp.batch_id)]

    def _forget_replay(self, batch_id: bytes) -> list:
        rp = self._replays.pop(batch_id, None)
        if rp is None:
            return []
        for req_id in rp.pending:
            self._by_req.pop(req_id, None)
        return [CancelTimer(("batchlog", "replayed", batch_id))]
