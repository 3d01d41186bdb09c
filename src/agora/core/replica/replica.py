"""The replica side of the data path: applies mutations and serves data and digest reads
through storage effects (Cassandra's MutationVerbHandler and ReadCommandVerbHandler).

Owns: the bookkeeping between a request from a coordinator, the storage operation it
causes and the response. It answers a mutation only after storage reports it applied
(house habit 2), so an acknowledgement always means "on this replica's disk (WAL)".
It does not know about consistency levels or about other replicas.
"""

from __future__ import annotations

from collections.abc import Callable

from agora.core import reconcile
from agora.core.effects import Send, StorageGet, StorageGetDone, StoragePut, StoragePutDone
from agora.core.messages import MutationReq, MutationRsp, ReadReq, ReadRsp
from agora.core.types import NodeId


class Replica:
    def __init__(self, knows_table: Callable[[bytes], bool], sync_writes: bool):
        self.knows_table = knows_table
        self.sync_writes = sync_writes
        self._next_op = 1
        self._pending: dict[int, tuple] = {}  # op_id -> (source, request)
        self.stats = {"mutations": 0, "reads": 0, "digest_reads": 0}

    def _op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def on_mutation(self, source: NodeId, req: MutationReq) -> list:
        unknown = [p.table_id for p in req.partitions if not self.knows_table(p.table_id)]
        if unknown:
            return [Send(source, MutationRsp(req.req_id, f"unknown table id {unknown[0].hex()}"))]
        op = self._op()
        self._pending[op] = (source, req)
        self.stats["mutations"] += 1
        return [StoragePut(op, req.partitions, self.sync_writes)]

    def on_read(self, source: NodeId, req: ReadReq) -> list:
        if not self.knows_table(req.command.table_id):
            err = f"unknown table id {req.command.table_id.hex()}"
            return [Send(source, ReadRsp(req.req_id, None, None, err))]
        op = self._op()
        self._pending[op] = (source, req)
        self.stats["digest_reads" if req.digest_only else "reads"] += 1
        return [StorageGet(op, req.command)]

    def owns_op(self, op_id: int) -> bool:
        return op_id in self._pending

    def on_put_done(self, done: StoragePutDone) -> list:
        source, req = self._pending.pop(done.op_id)
        return [Send(source, MutationRsp(req.req_id, done.error))]

    def on_get_done(self, done: StorageGetDone, now_ms: int) -> list:
        source, req = self._pending.pop(done.op_id)
        if done.error is not None:
            return [Send(source, ReadRsp(req.req_id, None, None, done.error))]
        part = done.partition
        if part is not None:
            part = reconcile.expire(part, now_ms // 1000)
        if req.digest_only:
            return [Send(source, ReadRsp(req.req_id, None, reconcile.digest(part)))]
        return [Send(source, ReadRsp(req.req_id, part, None))]
