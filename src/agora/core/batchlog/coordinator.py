"""The coordinator side of LOGGED batches (Cassandra's StorageProxy.mutateAtomically and
BatchlogManager): store the batch on its batchlog holders, apply it, then remove it.

1. Unavailable first, as Cassandra: every partition's replicas must be able to meet the
   consistency level (ANY always can), or nothing happens at all.
2. Store: the holders are chosen by `batchlog_endpoints` (two live nodes of the local DC
   other than the coordinator, in other racks when possible, as Cassandra's
   ReplicaPlans.filterBatchlogEndpoints; the coordinator itself only in a one-node DC). Each
   is sent a BatchStoreReq; all must acknowledge within write_request_timeout, else the
   client gets WriteTimeout with write_type BATCH_LOG; a holder that answers with an error
   (its batchlog is full, its storage failed) fails the batch at once with WriteFailure,
   BATCH_LOG, and the coordinator applies nothing (what another holder stored is replayed
   later, as after a timeout). No live holder: Unavailable (at ONE, 1 required, 0 alive),
   or for ANY the coordinator keeps the batchlog itself.
3. Apply: the batch goes to the write coordinator as an ordinary write with write_type
   BATCH, under an internal client id (negative); its Reply is intercepted (`after_writes`).
4. Remove: on success the holders are sent BatchRemove and the client its answer. On a
   failure (WriteTimeout, or WriteFailure when replicas answered with errors) the client
   gets it with write_type BATCH and the entries stay: the holders replay the batch later
   (holder.py), which is what "logged" promises.

A batch of a single partition is applied directly (Cassandra: a one-partition mutation is
atomic without the batchlog). `crash_after_store` is the test-only fault of the
`debug_crash_after_batchlog` option: the process ends (`Halt`) right after step 2.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agora.core.batchlog.messages import BATCH_ID_BYTES, BatchRemove, BatchStoreReq, BatchStoreRsp
from agora.core.effects import CancelTimer, Halt, Log, Reply, Send, SetTimer
from agora.core.errors import InvalidRequest, Unavailable, WriteFailure, WriteTimeout, failure_code
from agora.core.quorum import requirement
from agora.core.types import ConsistencyLevel, NodeId, Partition

BATCHLOG_ENDPOINTS = 2  # holders per batch (Cassandra: two, so one failure cannot lose it)


class BatchPlacement(Protocol):
    local: NodeId
    local_dc: str

    def replicas_for(self, table_id: bytes, key: bytes): ...

    def dc_of(self, node: NodeId) -> str: ...

    def is_alive(self, node: NodeId) -> bool: ...

    def next_req_id(self) -> int: ...

    def dc_members(self) -> list[tuple[NodeId, str]]:
        """(node, rack) of every ring member of the local DC, the local node included."""


def batchlog_endpoints(local: NodeId, local_rack: str, members: list[tuple[NodeId, str]],
                       is_alive: Callable[[NodeId], bool], rng: random.Random) -> list[NodeId]:
    """Where a batch's batchlog goes (Cassandra's filterBatchlogEndpoints): [] if no holder
    is available. `members`: (node, rack) of the local DC's ring members."""
    if all(n == local for n, _ in members):
        return [local]  # a one-node DC: the coordinator is its own holder
    racks: dict[str, list[NodeId]] = {}
    for node, rack in sorted(members):
        if node != local and is_alive(node):
            racks.setdefault(rack, []).append(node)
    valid = sum(len(v) for v in racks.values())
    if valid <= BATCHLOG_ENDPOINTS:
        return sorted(n for nodes in racks.values() for n in nodes)
    if valid - len(racks.get(local_rack, [])) >= BATCHLOG_ENDPOINTS:
        racks.pop(local_rack, None)  # enough holders in other racks
    if len(racks) == 1:
        nodes = list(next(iter(racks.values())))
        rng.shuffle(nodes)
        return sorted(nodes[:BATCHLOG_ENDPOINTS])
    names = sorted(racks)
    if len(names) > BATCHLOG_ENDPOINTS:
        rng.shuffle(names)
    return sorted(rng.choice(racks[r]) for r in names[:BATCHLOG_ENDPOINTS])


@dataclass
class _Batch:
    client_id: int
    cl: ConsistencyLevel
    batch_id: bytes
    partitions: list[Partition]
    holders: list[NodeId]
    acked: set = field(default_factory=set)
    store_req: int = 0


class BatchlogCoordinator:
    def __init__(self, placement: BatchPlacement, local_rack: str, apply: Callable[..., list],
                 write_timeout_ms: int, rng: random.Random, crash_after_store: bool = False):
        """`apply(client_id, partitions, cl, now_ms)` starts the ordinary write (BATCH)."""
        self.p = placement
        self.local_rack = local_rack
        self.apply = apply
        self.write_timeout_ms = write_timeout_ms
        self.rng = rng
        self.crash_after_store = crash_after_store
        self._storing: dict[int, _Batch] = {}  # store req_id -> batch
        self._applying: dict[int, _Batch] = {}  # internal client id -> batch
        self._next_internal = -1
        self.stats = {"logged_batches": 0, "batchlog_timeouts": 0, "batchlog_failures": 0}

    def start(self, client_id: int, partitions: list[Partition], cl: ConsistencyLevel,
              now_ms: int) -> list:
        if len(partitions) <= 1:
            return self.apply(client_id, partitions, cl, now_ms)
        try:
            self._check_available(partitions, cl)
        except (Unavailable, InvalidRequest) as exc:
            return [Reply(client_id, exc.with_traceback(None))]  # an answer: no frames kept
        holders = batchlog_endpoints(self.p.local, self.local_rack, self.p.dc_members(),
                                     self.p.is_alive, self.rng)
        if not holders:
            if cl != ConsistencyLevel.ANY:
                return [Reply(client_id, Unavailable(int(ConsistencyLevel.ONE), 1, 0))]
            holders = [self.p.local]
        batch_id = self.rng.getrandbits(8 * BATCH_ID_BYTES).to_bytes(BATCH_ID_BYTES, "big")
        b = _Batch(client_id, cl, batch_id, list(partitions), holders, store_req=self.p.next_req_id())
        self._storing[b.store_req] = b
        self.stats["logged_batches"] += 1
        msg = BatchStoreReq(b.store_req, batch_id, tuple(partitions))
        return [*(Send(h, msg) for h in holders),
                SetTimer(("batchlog", "store", b.store_req), self.write_timeout_ms)]

    def _check_available(self, partitions: list[Partition], cl: ConsistencyLevel) -> None:
        """Unavailable before anything is written, as the write coordinator decides it."""
        if cl == ConsistencyLevel.ANY:
            return
        p = self.p
        for part in partitions:
            replicas, per_dc, rf = p.replicas_for(part.table_id, part.key)
            req = requirement(cl, rf, p.local_dc, per_dc)
            reached = req.reached_by([r for r in replicas if p.is_alive(r)], p.dc_of)
            if not req.satisfied(reached):
                raise Unavailable(int(cl), req.total, sum(reached.values()))

    def on_store_rsp(self, source: NodeId, rsp: BatchStoreRsp, now_ms: int) -> list:
        b = self._storing.get(rsp.req_id)
        if b is None or source not in b.holders or source in b.acked:
            return []
        if rsp.error is not None:
            del self._storing[rsp.req_id]
            self.stats["batchlog_failures"] += 1
            level, required = self._store_level(b)
            failure = WriteFailure(int(level), len(b.acked), required, {source: failure_code(rsp.error)},
                                   "BATCH_LOG")
            return [CancelTimer(("batchlog", "store", rsp.req_id)), Reply(b.client_id, failure)]
        b.acked.add(source)
        if len(b.acked) < len(b.holders):
            return []
        del self._storing[rsp.req_id]
        out: list = [CancelTimer(("batchlog", "store", rsp.req_id))]
        if self.crash_after_store:
            return out + [Log("warning", "debug_crash_after_batchlog: exiting after the batchlog "
                                         "write"), Halt("debug_crash_after_batchlog")]
        internal = self._next_internal
        self._next_internal -= 1
        self._applying[internal] = b
        return out + self.after_writes(self.apply(internal, b.partitions, b.cl, now_ms))

    def on_store_timeout(self, req_id: int) -> list:
        b = self._storing.pop(req_id, None)
        if b is None:
            return []
        self.stats["batchlog_timeouts"] += 1
        level, required = self._store_level(b)
        return [Reply(b.client_id, WriteTimeout(int(level), len(b.acked), required, "BATCH_LOG"))]

    @staticmethod
    def _store_level(b: _Batch) -> tuple[ConsistencyLevel, int]:
        """The level the batchlog write is held to: every holder (one or two) must store it."""
        required = len(b.holders)
        return (ConsistencyLevel.ONE if required == 1 else ConsistencyLevel.TWO), required

    def after_writes(self, effects: list) -> list:
        """The write coordinator's effects with the replies to our internal writes turned
        into removals and the client's answer."""
        if not self._applying:
            return effects
        out: list = []
        for eff in effects:
            b = self._applying.pop(eff.client_id, None) if isinstance(eff, Reply) else None
            if b is None:
                out.append(eff)
                continue
            if eff.result is None or not isinstance(eff.result, BaseException):
                out.extend(Send(h, BatchRemove(b.batch_id)) for h in b.holders)
            out.append(Reply(b.client_id, eff.result))
        return out
