"""Streaming for repair: a replica pushes its partitions of some token ranges to a peer, in
bounded chunks, and the peer merges them (Cassandra's SyncTask and StreamSession, reduced
to what repair needs).

Owns: both ends of a push. The sender (`StreamSender`, one `_Push` per RepairSyncReq) scans
the ranges in chunks of at most STREAM_CHUNK_ROWS stored rows or STREAM_CHUNK_BYTES (a
partition bigger than that is read and sent in pieces, cut after a row: each piece is a
fragment of the partition with its deletion and range tombstones, and merges like any
write), cuts each chunk into RepairStreamData messages of at most STREAM_MESSAGE_MAX_BYTES
of partitions (a larger piece travels alone), sends them and waits until the peer has
acknowledged all of them before reading the next chunk, so a push holds at most one chunk
in memory and on the wire.
When every range is sent and acknowledged it answers the coordinator with RepairSyncRsp:
partitions, rows and bytes pushed (bytes: the plain msgpack form of the partitions, what
the messages carry). A peer silent for STREAM_ACK_TIMEOUT_MS fails the push.

The receiver (`StreamReceiver`) merges each chunk with a StoragePut, the ordinary merge,
and acknowledges it once applied. Partitions are sent whole and canonical, tombstones
included; the merge is idempotent, so data the peer already had costs bytes, never
correctness, and a deletion the peer missed arrives as the tombstone that shadows its stale
copy (it is not resurrected).

Echoes: the two pushes of a differing pair run at once, so a replica often scans, for its
push to X, partitions X has just pushed to it. The receiver remembers, for ECHO_MEMORY_MS,
the digest of each partition X pushed; the sender skips a partition whose stored digest is
still exactly that (its copy is then what X sent, and X holds at least that, since the merge
only ever adds). A partition merged with anything else has another digest and is sent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from agora.core import reconcile
from agora.core.antientropy.messages import (RepairStreamAck, RepairStreamData, RepairSyncReq,
                                             RepairSyncRsp)
from agora.core.effects import (CancelTimer, Send, SetTimer, StoragePut, StoragePutDone,
                                StorageScan, StorageScanDone)
from agora.core.errors import unknown_table_error
from agora.core.plain import partition_to_plain
from agora.core.types import NodeId, Partition, Token

# Stored rows and bytes read per chunk of a push: bound the memory a push holds (as
# VALIDATION_CHUNK_ROWS and VALIDATION_CHUNK_BYTES; a bigger partition goes in pieces).
# Unlike validation, 1,000 rows here did not delay requests beside a repair more than 100
# (p99 39 and 38 ms; BENCHMARKS.md, ninth round): a push travels in STREAM_MESSAGE_MAX_BYTES
# messages, each applied as it comes.
STREAM_CHUNK_ROWS = 1_000
STREAM_CHUNK_BYTES = 4 * 1024 * 1024
# Partition bytes per RepairStreamData message, far under MAX_FRAME_BYTES so a chunk of wide
# rows becomes several frames instead of one the transport would refuse.
STREAM_MESSAGE_MAX_BYTES = 1024 * 1024
# How long a push waits for its peer to acknowledge a chunk, in milliseconds. Applying 1000
# rows takes milliseconds; a peer this late is down or partitioned away, and the range fails.
STREAM_ACK_TIMEOUT_MS = 30_000
# How long, in milliseconds, a receiver remembers what a peer pushed (for skipping echoes),
# and how many such partitions at most (the oldest forgotten first; forgetting only costs
# bytes). A minute covers the concurrent pushes of one range; 100,000 entries are ~20 MiB.
ECHO_MEMORY_MS = 60_000
MAX_ECHO_ENTRIES = 100_000
# Pushes one node runs at once; past this a sync request is refused (its range fails and
# says why). A coordinator asks for two per differing pair of a range.
MAX_CONCURRENT_PUSHES = 16


def partition_bytes(p: Partition) -> int:
    """A partition's size as it is streamed: its plain msgpack form."""
    return len(msgpack.packb(partition_to_plain(p), use_bin_type=True))


def stored_rows(p: Partition) -> int:
    """Rows as scans count them: clustering rows plus the static row, at least 1."""
    return max(1, len(p.rows) + (p.static is not None))


@dataclass
class _Push:
    coordinator: NodeId
    req: RepairSyncReq
    push_id: int
    range_index: int = 0
    cursor: tuple[Token, bytes | None, bytes | None] = (0, None, None)  # (.., inside it after this row)
    op_id: int = 0
    unacked: set = field(default_factory=set)  # ids of sent, unacknowledged messages
    scanned_all: bool = False
    partitions: int = 0
    rows: int = 0
    bytes: int = 0
    last_key: bytes | None = None  # the partition sent last (its next piece may follow)


# (peer, table id, partition, now_ms) -> whether that peer pushed us exactly this version
EchoCheck = Callable[[NodeId, bytes, Partition, int], bool]


class StreamSender:
    def __init__(self, knows_table: Callable[[bytes], bool], is_alive: Callable[[NodeId], bool],
                 new_op: Callable[[], int], next_req_id: Callable[[], int],
                 pushed_by: EchoCheck = lambda peer, table_id, p, now_ms: False,
                 holds_suspect_data: Callable[[], bool] = lambda: False,
                 truncated_at: Callable[[bytes], int | None] = lambda table_id: None) -> None:
        self.pushed_by = pushed_by
        self.truncated_at = truncated_at  # what TRUNCATE removed is not streamed
        self.holds_suspect_data = holds_suspect_data
        self.knows_table = knows_table
        self.is_alive = is_alive
        self.new_op = new_op
        self.next_req_id = next_req_id
        self._by_op: dict[int, _Push] = {}
        self._by_msg: dict[int, _Push] = {}
        self._pushes: dict[int, _Push] = {}
        self.stats = {"pushes": 0, "partitions_sent": 0, "bytes_sent": 0, "echoes_skipped": 0,
                      "refused": 0}

    def owns_op(self, op_id: int) -> bool:
        return op_id in self._by_op

    def on_sync_req(self, source: NodeId, req: RepairSyncReq) -> list:
        error = None
        if not self.knows_table(req.table_id):
            error = unknown_table_error(req.table_id)
        elif not self.is_alive(req.peer):
            error = f"peer {req.peer} is down"
        elif self.holds_suspect_data():  # back from a long downtime: it only receives (docs/tombstones.md)
            self.stats["refused"] += 1
            return [Send(source, RepairSyncRsp(req.req_id, 0, 0, 0, None))]
        elif len(self._pushes) >= MAX_CONCURRENT_PUSHES:
            self.stats["refused"] += 1
            error = f"busy: {MAX_CONCURRENT_PUSHES} pushes in progress"
        if error is not None:
            return [Send(source, RepairSyncRsp(req.req_id, 0, 0, 0, error))]
        push = _Push(source, req, self.next_req_id(), cursor=(req.ranges[0][0], None, None))
        self._pushes[push.push_id] = push
        self.stats["pushes"] += 1
        return [self._scan(push)]

    def _scan(self, push: _Push) -> StorageScan:
        push.op_id = self.new_op()
        self._by_op[push.op_id] = push
        end = push.req.ranges[push.range_index][1]
        return StorageScan(push.op_id, push.req.table_id, push.cursor[0], push.cursor[1], end,
                           STREAM_CHUNK_ROWS, STREAM_CHUNK_BYTES, True, push.cursor[2],
                           self.truncated_at(push.req.table_id))

    def on_scan_done(self, done: StorageScanDone, now_ms: int) -> list:
        push = self._by_op.pop(done.op_id)
        if done.error is not None:
            return self._finish(push, done.error)
        peer, table_id = push.req.peer, push.req.table_id
        truncated = self.truncated_at(table_id)
        kept = [p for _, p in done.partitions] if truncated is None else \
            [q for _, p in done.partitions if (q := reconcile.drop_truncated(p, truncated)) is not None]
        fresh = [p for p in kept if not self.pushed_by(peer, table_id, p, now_ms)]
        self.stats["echoes_skipped"] += len(kept) - len(fresh)
        effects = self._send_chunk(push, fresh)
        if not done.exhausted:
            last_token, last = done.partitions[-1]
            push.cursor = (last_token, last.key, done.cut_ckey)
        elif push.range_index + 1 < len(push.req.ranges):
            push.range_index += 1
            push.cursor = (push.req.ranges[push.range_index][0], None, None)
        else:
            push.scanned_all = True
        if push.unacked:
            return effects + [SetTimer(("antientropy", "push", push.push_id), STREAM_ACK_TIMEOUT_MS)]
        return effects + self._next(push)

    def _send_chunk(self, push: _Push, partitions: list[Partition]) -> list:
        """Cut one chunk into messages of at most STREAM_MESSAGE_MAX_BYTES and send them."""
        effects, batch, batch_bytes = [], [], 0
        for p in partitions:
            size = partition_bytes(p)
            if batch and batch_bytes + size > STREAM_MESSAGE_MAX_BYTES:
                effects.append(self._send(push, batch))
                batch, batch_bytes = [], 0
            batch.append(p)
            batch_bytes += size
            later = p.key == push.last_key  # a partition's later pieces add their rows only
            push.partitions += not later
            push.rows += len(p.rows) if later else stored_rows(p)
            push.last_key = p.key
            push.bytes += size
        if batch:
            effects.append(self._send(push, batch))
        return effects

    def _send(self, push: _Push, batch: list[Partition]) -> Send:
        msg_id = self.next_req_id()
        push.unacked.add(msg_id)
        self._by_msg[msg_id] = push
        return Send(push.req.peer, RepairStreamData(msg_id, push.req.table_id, tuple(batch)))

    def _next(self, push: _Push) -> list:
        """Everything sent so far is acknowledged: read the next chunk, or report."""
        if push.scanned_all:
            return self._finish(push, None)
        return [self._scan(push)]

    def on_ack(self, source: NodeId, ack: RepairStreamAck) -> list:
        push = self._by_msg.get(ack.req_id)
        if push is None or source != push.req.peer:
            return []
        del self._by_msg[ack.req_id]
        push.unacked.discard(ack.req_id)
        if ack.error is not None:
            return self._finish(push, f"{source} could not apply a chunk: {ack.error}")
        if push.unacked:
            return []
        return [CancelTimer(("antientropy", "push", push.push_id)), *self._next(push)]

    def on_timer(self, push_id: int) -> list:
        push = self._pushes.get(push_id)
        if push is None or not push.unacked:
            return []
        return self._finish(push, f"{push.req.peer} did not acknowledge a chunk within "
                                  f"{STREAM_ACK_TIMEOUT_MS} ms")

    def _finish(self, push: _Push, error: str | None) -> list:
        self._pushes.pop(push.push_id, None)
        self._by_op.pop(push.op_id, None)
        for msg_id in push.unacked:
            self._by_msg.pop(msg_id, None)
        push.unacked.clear()
        self.stats["partitions_sent"] += push.partitions
        self.stats["bytes_sent"] += push.bytes
        rsp = RepairSyncRsp(push.req.req_id, push.partitions, push.rows, push.bytes, error)
        return [CancelTimer(("antientropy", "push", push.push_id)), Send(push.coordinator, rsp)]


class StreamReceiver:
    def __init__(self, knows_table: Callable[[bytes], bool], new_op: Callable[[], int],
                 sync_writes: bool) -> None:
        self.knows_table = knows_table
        self.new_op = new_op
        self.sync_writes = sync_writes
        self._pending: dict[int, tuple[NodeId, int]] = {}  # op id -> (sender, message id)
        # (sender, table id, key) -> (digest of what it pushed, forget after this time)
        self._pushed: OrderedDict[tuple, tuple[bytes, int]] = OrderedDict()
        self.stats = {"chunks_received": 0, "partitions_received": 0}

    def owns_op(self, op_id: int) -> bool:
        return op_id in self._pending

    def on_data(self, source: NodeId, msg: RepairStreamData, now_ms: int) -> list:
        if not self.knows_table(msg.table_id):
            return [Send(source, RepairStreamAck(msg.req_id, unknown_table_error(msg.table_id)))]
        self._forget_expired(now_ms)
        for p in msg.partitions:
            ident = (source, msg.table_id, p.key)
            self._pushed.pop(ident, None)
            self._pushed[ident] = (reconcile.digest(p), now_ms + ECHO_MEMORY_MS)
        while len(self._pushed) > MAX_ECHO_ENTRIES:
            self._pushed.popitem(last=False)
        op = self.new_op()
        self._pending[op] = (source, msg.req_id)
        self.stats["chunks_received"] += 1
        self.stats["partitions_received"] += len(msg.partitions)
        return [StoragePut(op, msg.partitions, self.sync_writes)]

    def on_put_done(self, done: StoragePutDone) -> list:
        source, msg_id = self._pending.pop(done.op_id)
        return [Send(source, RepairStreamAck(msg_id, done.error))]

    def pushed_by(self, peer: NodeId, table_id: bytes, p: Partition, now_ms: int) -> bool:
        """Whether `peer` pushed us, within ECHO_MEMORY_MS, exactly the version `p` is."""
        hit = self._pushed.get((peer, table_id, p.key))
        return hit is not None and hit[1] > now_ms and hit[0] == reconcile.digest(p)

    def _forget_expired(self, now_ms: int) -> None:
        while self._pushed:
            ident, (_, until) = next(iter(self._pushed.items()))
            if until > now_ms:
                return
            del self._pushed[ident]
