"""The replica side of a tree request: scan a table's token range in bounded chunks, digest
every partition, and answer with the Merkle tree's leaves (Cassandra's `Validator` and
`ValidationManager`, without the compaction machinery).

Owns: the validations in progress on this node. Each one holds a `TreeBuilder` (the
finished leaf hashes and one running leaf hash), a scan cursor and at most one running
partition digest, never the range's data: a chunk of at most VALIDATION_CHUNK_ROWS stored
rows or VALIDATION_CHUNK_BYTES is read (`StorageScan`, split: a bigger partition comes in
pieces, digested as they come), digested and dropped before the next is asked for. Between chunks the validation waits
VALIDATION_CHUNK_PAUSE_MS on a timer, which hands the driver's event loop back to gossip
and client requests while a large range is hashed.

Partitions are digested as reads compare them: `reconcile.digest(reconcile.expire(p, now))`
of the whole stored partition, tombstones included (pieces through `reconcile.digest_begin`
and `digest_rows`, which give the same digest wherever the pieces were cut), so two replicas
holding the same data build the same tree whatever order it arrived in. It does not know who asked, beyond
answering the sender, nor what the coordinator does with the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agora.core import reconcile
from agora.core.antientropy.merkle import TreeBuilder
from agora.core.antientropy.messages import RepairTreeReq, RepairTreeRsp
from agora.core.effects import Send, SetTimer, StorageScan, StorageScanDone
from agora.core.errors import unknown_table_error
from agora.core.types import NodeId, Token

# Stored rows and bytes read per scan chunk (a partition counts its rows, at least 1; a
# larger partition is read in pieces). Bound the memory a validation holds and how long one
# chunk keeps the driver busy while other requests wait (100 rows: a millisecond or two), as
# RANGE_RSP_MAX_ROWS and RANGE_RSP_MAX_BYTES do for range reads. With 1,000, point requests
# at 1,000/s beside a repair saw a p99 of 1.4-3.4 s, with 100 of 86-143 ms (BENCHMARKS.md,
# ninth round); the repair takes about 15 % longer.
VALIDATION_CHUNK_ROWS = 100
VALIDATION_CHUNK_BYTES = 4 * 1024 * 1024
# Wait between two chunks of one validation, in milliseconds. 0 still yields the event loop
# (a timer is a separate turn); raise it to throttle validation, as Cassandra throttles it
# with compaction_throughput.
VALIDATION_CHUNK_PAUSE_MS = 0
# Validations one node runs at once, across every repair coordinator in the cluster; past
# this a tree request is refused (its range fails and says why) rather than queued without
# bound. A repair coordinator asks a replica for at most a few trees at a time.
MAX_CONCURRENT_VALIDATIONS = 8


@dataclass
class _Validation:
    source: NodeId
    req: RepairTreeReq
    builder: TreeBuilder
    cursor: tuple[Token, bytes | None, bytes | None]  # (token, key, inside it after this row)
    op_id: int = 0
    running: tuple[Token, bytes, Any] | None = None  # a partition cut by the last chunk


class Validator:
    def __init__(self, knows_table: Callable[[bytes], bool], new_op: Callable[[], int],
                 truncated_at: Callable[[bytes], int | None] = lambda table_id: None) -> None:
        self.knows_table = knows_table
        self.truncated_at = truncated_at  # what TRUNCATE removed is not digested
        self.new_op = new_op
        self._by_op: dict[int, _Validation] = {}
        self._paused: dict[int, _Validation] = {}  # validation id -> validation, between chunks
        self._next_id = 0
        self.stats = {"trees_built": 0, "partitions_hashed": 0, "refused": 0}

    @property
    def in_progress(self) -> int:
        return len(self._by_op) + len(self._paused)

    def owns_op(self, op_id: int) -> bool:
        return op_id in self._by_op

    def on_tree_req(self, source: NodeId, req: RepairTreeReq) -> list:
        if not self.knows_table(req.table_id):
            return [Send(source, RepairTreeRsp(req.req_id, (), b"", 0, unknown_table_error(req.table_id)))]
        if self.in_progress >= MAX_CONCURRENT_VALIDATIONS:
            self.stats["refused"] += 1
            return [Send(source, RepairTreeRsp(req.req_id, (), b"", 0,
                                               f"busy: {MAX_CONCURRENT_VALIDATIONS} validations in progress"))]
        job = _Validation(source, req, TreeBuilder(req.start_token, req.end_token, req.depth),
                          (req.start_token, None, None))
        return [self._scan(job)]

    def _scan(self, job: _Validation) -> StorageScan:
        job.op_id = self.new_op()
        self._by_op[job.op_id] = job
        return StorageScan(job.op_id, job.req.table_id, job.cursor[0], job.cursor[1],
                           job.req.end_token, VALIDATION_CHUNK_ROWS, VALIDATION_CHUNK_BYTES, True,
                           job.cursor[2], self.truncated_at(job.req.table_id))

    def on_scan_done(self, done: StorageScanDone, now_ms: int) -> list:
        job = self._by_op.pop(done.op_id)
        if done.error is not None:
            return [Send(job.source, RepairTreeRsp(job.req.req_id, (), b"", 0, done.error))]
        now_s = now_ms // 1000
        final = len(done.partitions) - 1
        truncated = self.truncated_at(job.req.table_id)
        for i, (token, stored) in enumerate(done.partitions):
            same = job.running is not None and job.running[1] == stored.key  # its next rows
            if truncated is not None and (stored := reconcile.drop_truncated(stored, truncated)) is None:
                # nothing of this piece is left: a partition nothing is left of is not in
                # the tree, as on a replica whose compaction has removed it already
                if not same:
                    self._finish_running(job)
            else:
                piece = reconcile.expire(stored, now_s)
                if same:
                    h = job.running[2]
                else:
                    self._finish_running(job)
                    h = reconcile.digest_begin(piece)
                reconcile.digest_rows(h, piece)
                job.running = (token, piece.key, h)
            if i < final or done.cut_ckey is None:
                self._finish_running(job)
        if done.exhausted:
            self._finish_running(job)
            return [self._answer(job)]
        last_token, last = done.partitions[-1]
        job.cursor = (last_token, last.key, done.cut_ckey)
        self._next_id += 1
        self._paused[self._next_id] = job
        return [SetTimer(("antientropy", "validate", self._next_id), VALIDATION_CHUNK_PAUSE_MS)]

    def _finish_running(self, job: _Validation) -> None:
        """Add the partition digested so far to the tree (the next piece is another's)."""
        if job.running is not None:
            token, _, h = job.running
            job.builder.add(token, h.digest())
            job.running = None
            self.stats["partitions_hashed"] += 1

    def on_timer(self, validation_id: int) -> list:
        job = self._paused.pop(validation_id, None)
        return [] if job is None else [self._scan(job)]

    def _answer(self, job: _Validation) -> Send:
        tree = job.builder.finish()
        indices = tuple(sorted(tree.leaves))
        hashes = b"".join(tree.leaves[i] for i in indices)
        self.stats["trees_built"] += 1
        return Send(job.source, RepairTreeRsp(job.req.req_id, indices, hashes, job.builder.partitions))
