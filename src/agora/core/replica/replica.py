"""The replica side of the data path: applies mutations and serves data and digest reads
and token-range reads through storage effects (Cassandra's MutationVerbHandler and
ReadCommandVerbHandler, the latter also serving PartitionRangeReadCommand).

Owns: the bookkeeping between a request from a coordinator, the storage operation it
causes and the response. It answers a mutation only after storage reports it applied
(house habit 2), so an acknowledgement always means "on this replica's disk (WAL)".
A replayed hint (`HintReq`, agora.core.hints) is applied exactly like a mutation and
answered with a `HintRsp`.
It does not know about consistency levels or about other replicas.

What it reads of a truncated table (TRUNCATE, `Schema.truncated_at`) leaves without what
the truncation covers (`reconcile.drop_truncated`), so every replica answers and digests
alike whether its tombstone compaction has freed that data yet or not.

A range read is answered in bounded pieces: storage returns partitions up to
RANGE_RSP_MAX_ROWS stored rows or RANGE_RSP_MAX_BYTES, and the replica stops earlier once it
holds the command's `limit_rows` live rows by its own account. Either way it says so (`more`)
and names the last partition it looked at, so the coordinator can go on from there. A
partition bigger than the bounds is cut after a row, named too (`last_ckey`); the next
command resumes after it (`RangeCommand.start_ckey`).
"""

from __future__ import annotations

from collections.abc import Callable

from agora.core import reconcile
from agora.core.effects import (Send, StorageGet, StorageGetDone, StoragePut, StoragePutDone,
                                StorageScan, StorageScanDone)
from agora.core.errors import unknown_table_error
from agora.core.hints.messages import HintReq, HintRsp
from agora.core.messages import (MutationReq, MutationRsp, RangeReadReq, RangeReadRsp, ReadReq,
                                 ReadRsp)
from agora.core.types import NodeId, Partition, ReadCommand

# Stored rows (tombstoned ones included; a partition counts at least 1) and stored bytes one
# range-read answer carries at most, about, before slicing: they bound the storage scan, the
# memory and the frame one request costs a replica whatever the table holds, a partition
# bigger than that being sent in several answers (Cassandra bounds range answers by the
# command's limits and its page size; 4 MiB is a quarter of an internode frame). The row
# bound also bounds how long one answer holds the replica's event loop, and its merge the
# coordinator's, while other requests wait: about a millisecond or two for 100 rows. With
# 1,000, point requests at 1,000/s beside full scans saw a p99 of 87-128 ms, with 100 (and
# select.INTERNAL_PAGE_ROWS 500) of 15-36 ms (BENCHMARKS.md, ninth round); scans are no slower.
RANGE_RSP_MAX_ROWS = 100
RANGE_RSP_MAX_BYTES = 4 * 1024 * 1024
# Stored bytes one page of a single-partition read (a read with a row limit) carries at most,
# about: a page of big rows stops early and says where (ReadPage.more_after), so a page of
# 5,000 one-MiB rows is read in answers that fit an internode frame.
READ_RSP_MAX_BYTES = RANGE_RSP_MAX_BYTES


def live_row_count(view: Partition, per_partition_limit: int = 0) -> int:
    """The rows a client sees in a live view, as CQL LIMIT counts them: its clustering rows,
    or 1 for a partition that has only a live static row; at most `per_partition_limit`
    (when set). The range-read coordinator counts its limits with the same rule."""
    n = len(view.rows) if view.rows else (1 if view.static is not None else 0)
    return min(n, per_partition_limit) if per_partition_limit else n


class Replica:
    def __init__(self, knows_table: Callable[[bytes], bool], sync_writes: bool,
                 truncated_at: Callable[[bytes], int | None] = lambda table_id: None):
        self.knows_table = knows_table
        self.truncated_at = truncated_at
        self.sync_writes = sync_writes
        self._next_op = 1
        self._pending: dict[int, tuple] = {}  # op_id -> (source, request)
        self.stats = {"mutations": 0, "hints": 0, "reads": 0, "digest_reads": 0, "range_reads": 0}

    def _op(self) -> int:
        op = self._next_op
        self._next_op += 1
        return op

    def on_mutation(self, source: NodeId, req: MutationReq | HintReq) -> list:
        ack = HintRsp if isinstance(req, HintReq) else MutationRsp
        unknown = [p.table_id for p in req.partitions if not self.knows_table(p.table_id)]
        if unknown:
            return [Send(source, ack(req.req_id, unknown_table_error(unknown[0])))]
        op = self._op()
        self._pending[op] = (source, req)
        self.stats["hints" if ack is HintRsp else "mutations"] += 1
        return [StoragePut(op, req.partitions, self.sync_writes)]

    def on_read(self, source: NodeId, req: ReadReq) -> list:
        if not self.knows_table(req.command.table_id):
            err = unknown_table_error(req.command.table_id)
            return [Send(source, ReadRsp(req.req_id, None, None, err))]
        op = self._op()
        self._pending[op] = (source, req)
        self.stats["digest_reads" if req.digest_only else "reads"] += 1
        return [StorageGet(op, req.command, READ_RSP_MAX_BYTES)]

    def owns_op(self, op_id: int) -> bool:
        return op_id in self._pending

    def on_put_done(self, done: StoragePutDone) -> list:
        source, req = self._pending.pop(done.op_id)
        ack = HintRsp if isinstance(req, HintReq) else MutationRsp
        return [Send(source, ack(req.req_id, done.error))]

    def on_get_done(self, done: StorageGetDone, now_ms: int) -> list:
        source, req = self._pending.pop(done.op_id)
        if done.error is not None:
            return [Send(source, ReadRsp(req.req_id, None, None, done.error))]
        part = done.partition
        if part is not None and (truncated := self.truncated_at(part.table_id)) is not None:
            part = reconcile.drop_truncated(part, truncated)
        if part is not None:
            part = reconcile.expire(part, now_ms // 1000)
        if req.digest_only:
            return [Send(source, ReadRsp(req.req_id, None, reconcile.page_digest(part, done.more_after)))]
        return [Send(source, ReadRsp(req.req_id, part, None, None, done.more_after))]

    def on_range_read(self, source: NodeId, req: RangeReadReq) -> list:
        cmd = req.command
        if not self.knows_table(cmd.table_id):
            err = unknown_table_error(cmd.table_id)
            return [Send(source, RangeReadRsp(req.req_id, (), error=err))]
        op = self._op()
        self._pending[op] = (source, req)
        self.stats["range_reads"] += 1
        return [StorageScan(op, cmd.table_id, cmd.start_token, cmd.start_key, cmd.end_token,
                            RANGE_RSP_MAX_ROWS, RANGE_RSP_MAX_BYTES, True, cmd.start_ckey,
                            self.truncated_at(cmd.table_id))]

    def on_scan_done(self, done: StorageScanDone, now_ms: int) -> list:
        source, req = self._pending.pop(done.op_id)
        if done.error is not None:
            return [Send(source, RangeReadRsp(req.req_id, (), error=done.error))]
        assert done.partitions or done.exhausted, "a scan stopped before its first partition"
        cmd, now_s = req.command, now_ms // 1000
        found: list[Partition] = []
        live = 0
        more = not done.exhausted
        last = None
        final = len(done.partitions) - 1
        truncated = self.truncated_at(cmd.table_id)
        # the scan's partitions are canonical, and expiring keeps them so: only a slice or a
        # column list needs slice_partition's canonical copy
        cut = cmd.slices is not None or cmd.columns is not None
        for i, (token, stored) in enumerate(done.partitions):
            last = (token, stored.key, done.cut_ckey if i == final else None)
            if truncated is not None and (stored := reconcile.drop_truncated(stored, truncated)) is None:
                continue
            part = reconcile.expire(stored, now_s)
            if cut:
                part = reconcile.slice_partition(part, ReadCommand(cmd.table_id, stored.key, cmd.slices,
                                                                   cmd.columns))
            if reconcile.is_empty(part):
                continue
            found.append(part)
            n = reconcile.live_row_total(part, now_s)  # live_row_count of its live view
            live += min(n, cmd.per_partition_limit) if cmd.per_partition_limit else n
            if cmd.limit_rows and live >= cmd.limit_rows:
                more = more or i + 1 < len(done.partitions)
                break
        if not more:
            return [Send(source, RangeReadRsp(req.req_id, tuple(found)))]
        return [Send(source, RangeReadRsp(req.req_id, tuple(found), True, last[0], last[1],
                                          last_ckey=last[2]))]
