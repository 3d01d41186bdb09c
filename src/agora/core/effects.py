"""Effects: what a protocol machine asks its driver (the asyncio runtime or the simulator)
to do, and the completions the driver feeds back.

Owns: the vocabulary between pure protocol code and I/O. A machine returns a list of
effects from each input; it never performs I/O itself (DESIGN.md section 2). Completions
(`StoragePutDone`, `StorageGetDone`, `StorageScanDone`, `TimerFired`) come back into `Node`
as inputs.

One effect needs a little more than I/O from its driver: `StorageScan` must cut the engine's
scan at a position and a size, and both drivers must cut it identically (the simulator's
answer must be the real node's). That shared, pure part is `StorageScan.token_range` and
`StorageScan.collect`; a driver's whole job is `eff.collect(engine.scan_pieces(eff.table_id,
*eff.token_range(), eff.resume(), eff.max_rows, piece_bytes))` (agora.storage.completions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from agora.core.frozen import fast_init
from agora.core.types import MIN_TOKEN, NodeId, Partition, ReadCommand, Token


@fast_init
@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to `target`. Sending to ourselves is delivered locally by the driver."""

    target: NodeId
    message: Any


@fast_init
@dataclass(frozen=True, slots=True)
class Reply:
    """Answer client request `client_id` with `result` (a value or an AgoraError)."""

    client_id: int
    result: Any


@fast_init
@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire `TimerFired(timer_id)` after `delay_ms`. Setting an existing id re-arms it."""

    timer_id: Any
    delay_ms: int


@fast_init
@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: Any


@fast_init
@dataclass(frozen=True, slots=True)
class StoragePut:
    """Merge `partitions` into local storage as one batch, then report StoragePutDone(op_id).
    `sync=True` means fsync before reporting (commitlog_sync: batch)."""

    op_id: int
    partitions: tuple[Partition, ...]
    sync: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class StorageGet:
    """Read `command` from local storage, then report StorageGetDone(op_id, partition). A
    read with a row limit also stops before a row that would take the stored bytes it read
    past `max_bytes` (0: no byte bound; its first row is always read), and says where
    (`more_after`)."""

    op_id: int
    command: ReadCommand
    max_bytes: int = 0


# What `StorageEngine.scan_pieces` yields: (token, piece, complete, alone, size, last). A
# piece is a run of a partition's rows in clustering order with its deletion and range
# tombstones (each piece is canonical on its own, so rows those shadow are not in it), the
# first piece with its static row too; `complete` on its last piece. `alone`, read on a
# piece that is not complete: no other partition of the table has this token. `size`: the
# stored bytes behind the piece, about. `last`: the clustering key of the last stored row
# read for it (kept or shadowed; None if none was read), where a scan cut after it resumes.
ScanPiece = tuple[Token, Partition, bool, bool, int, "bytes | None"]


@fast_init
@dataclass(frozen=True, slots=True)
class StorageScan:
    """Read from local storage the partitions of `table_id` whose position lies after
    (start_token, start_key) and whose token is <= end_token, then report StorageScanDone.

    Positions are ordered by (token, partition key bytes), as Cassandra orders decorated keys;
    start_key None means "after every key of start_token". The range wraps like a Cassandra
    range when token_range() does (its start >= its end). The scan returns partitions
    canonical, tombstones included, in ring order from the start, and stops after the
    partition that brings the stored rows it returns to `max_rows` (a partition counts its
    clustering rows plus its static row, at least 1), or before one that would take its
    stored bytes past `max_bytes` (0: no byte bound; the first partition is always taken);
    it never stops between partitions that share one token, so "continue after the last
    partition" is exact.

    Partitions are whole unless `split`: then a partition that alone holds more than the
    bounds allow is cut after a row (`StorageScanDone.cut_ckey`), so one answer stays
    bounded whatever a partition holds; `start_ckey` resumes inside partition start_key
    after that row (its header comes again). A partition sharing its token with another is
    never cut (a resume inside it could not tell which of them came before).

    `truncated_at` (the table's `Schema.truncated_at`, for a scan whose reader drops what
    the truncation covers with `reconcile.drop_truncated`): the engine may return a stored
    row the truncation covers entirely as a stand-in that drop_truncated drops, without
    decoding it. The answer is otherwise the same: the same rows, bounds and positions.

    `walk_start`: the first scan of a compaction walk over the whole table (one never
    truncated). The engine may answer it at once, empty, exhausted and `skipped`, if the
    table is recorded clean (`agora.storage.clean`); otherwise it watches the table's writes
    for this walk (`StorageWalkClean` ends it)."""

    op_id: int
    table_id: bytes
    start_token: Token
    start_key: bytes | None
    end_token: Token
    max_rows: int
    max_bytes: int = 0
    split: bool = False
    start_ckey: bytes | None = None
    truncated_at: int | None = None
    walk_start: bool = False

    def token_range(self) -> tuple[Token, Token]:
        """(exclusive start, inclusive end) to hand `StorageEngine.scan_pieces`."""
        if self.start_key is None or self.start_token == MIN_TOKEN:  # no key has MIN_TOKEN
            return self.start_token, self.end_token
        return self.start_token - 1, self.end_token

    def resume(self) -> tuple[bytes, bytes | None] | None:
        """(partition key, clustering key or None) to hand `StorageEngine.scan_pieces`: where
        in the first token the scan starts (inside that partition, or after it)."""
        if self.start_key is None or self.start_token == MIN_TOKEN:
            return None
        return self.start_key, self.start_ckey

    def collect(self, pieces: Iterable[ScanPiece]) -> StorageScanDone:
        """The completion, from what `engine.scan_pieces(table_id, *token_range(), resume(),
        max_rows, piece_bytes)` yields (in the engine's key order: token, then key length,
        then key), pieces of at most `max_bytes`."""
        lo, _ = self.token_range()
        taken: list[tuple[Token, Partition]] = []
        rows = size = 0
        last_token = None
        current: Partition | None = None  # the partition whose pieces are still coming
        start_key, resuming = self.start_key, self.start_ckey is not None
        max_bytes = self.max_bytes or 2**62
        read_up_to: bytes | None = None  # the current partition's last stored row read
        cuttable = False  # the current partition's pieces so far say it is alone at its token
        for token, piece, complete, alone, piece_size, last in pieces:
            if current is not None and piece.key == current.key:
                if self.split and cuttable and read_up_to is not None and size + piece_size > max_bytes:
                    return StorageScanDone(self.op_id, _ring_order(taken, lo), False,
                                           cut_ckey=read_up_to)  # before these rows
                current.rows.update(piece.rows)  # the next rows of the same partition
            else:
                current = read_up_to = None
                if taken and (rows >= self.max_rows or size + piece_size > max_bytes) \
                        and token != last_token:
                    return StorageScanDone(self.op_id, _ring_order(taken, lo), False)
                if token == self.start_token and start_key is not None \
                        and (piece.key < start_key or piece.key == start_key and not resuming):
                    continue
                current = piece if complete else Partition(  # more rows will join this one
                    piece.table_id, piece.key, piece.deletion, list(piece.range_tombstones),
                    piece.static, dict(piece.rows))
                taken.append((token, current))
                rows += 1 if piece.static is not None or not piece.rows else 0
            rows += len(piece.rows)
            size += piece_size
            last_token = token
            read_up_to = last if last is not None else read_up_to
            cuttable = alone and not complete
            if complete:
                current = read_up_to = None
            elif self.split and alone and read_up_to is not None and (rows >= self.max_rows or size >= max_bytes):
                return StorageScanDone(self.op_id, _ring_order(taken, lo), False, cut_ckey=read_up_to)
        return StorageScanDone(self.op_id, _ring_order(taken, lo), True)


def _ring_order(taken: list[tuple[Token, Partition]], lo: Token) -> tuple:
    """Position order from `lo` clockwise: tokens after lo first (a wrapping scan's second
    part comes after the first), then token, then key bytes."""
    return tuple(sorted(taken, key=lambda tp: (tp[0] <= lo, tp[0], tp[1].key)))


@fast_init
@dataclass(frozen=True, slots=True)
class PersistMeta:
    """Durably store a piece of node metadata (schema, tokens, generation) under `key`.
    `sync=False` stores it with the next sync instead (a kill -9 keeps it, a power loss may
    not), for a record whose loss errs on the safe side and that is written often: the
    last-alive heartbeat, which must not fsync on the event loop every ten seconds."""

    key: str
    value: bytes
    sync: bool = True


@fast_init
@dataclass(frozen=True, slots=True)
class Log:
    """A line for the node's log."""

    level: str  # "debug" | "info" | "warning" | "error"
    text: str


@fast_init
@dataclass(frozen=True, slots=True)
class Event:
    """Something observers (CQL server pushing EVENTs, metrics, tests) may care about:
    kind is e.g. "status_change" (UP/DOWN), "topology_change", "schema_change"."""

    kind: str
    detail: Any


# ---- completions fed back into the machines -------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class StoragePutDone:
    op_id: int
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class StorageGetDone:
    op_id: int
    partition: Partition | None
    error: str | None = None
    more_after: bytes | None = None  # a limited read's ReadPage.more_after


@fast_init
@dataclass(frozen=True, slots=True)
class StorageScanDone:
    """`partitions`: (token, partition) in position order; `exhausted`: the scan reached
    end_token (False: it stopped at a bound and more may follow the last partition);
    `cut_ckey`: the last partition was cut after this row (a split scan), its later rows
    are not here. `skipped`: a `walk_start` scan the engine answered at once, the table
    being clean (nothing is here, and nothing needs walking)."""

    op_id: int
    partitions: tuple[tuple[Token, Partition], ...]
    exhausted: bool
    error: str | None = None
    cut_ckey: bytes | None = None
    skipped: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class TimerFired:
    timer_id: Any


# ---- hints (agora.core.hints): the coordinator's own store of missed writes ---------------
# Hints are an ordered map of opaque bytes, kept apart from table data (the RocksDB engine:
# its own column family). Keys start with the target node id and a NUL; agora.core.hints.hint
# owns what the bytes mean. Like StorageScan, the scans carry their pure cutting rule, so
# both drivers answer identically: `eff.collect(engine.hints_after(...))`.


@fast_init
@dataclass(frozen=True, slots=True)
class HintPut:
    """Store these (key, value) hints in one batch, then report HintPutDone(op_id).
    `sync=True` means fsync before reporting (commitlog_sync: batch); otherwise a process
    crash loses nothing once reported but a power loss may lose it until the next sync."""

    op_id: int
    hints: tuple[tuple[bytes, bytes], ...]
    sync: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class HintDelete:
    """Forget these hints (replayed or dropped). No completion and no fsync: a delete a
    crash undoes only makes a hint replay twice, which the merge makes harmless."""

    keys: tuple[bytes, ...]


@fast_init
@dataclass(frozen=True, slots=True)
class HintScan:
    """Read the hints whose key starts with `prefix` and sorts after `after` (None: from the
    first), in key order; stop before the hint that would exceed `max_hints`, or after the
    one that brings the values read to `max_bytes`. Report HintScanDone."""

    op_id: int
    prefix: bytes
    after: bytes | None
    max_hints: int
    max_bytes: int

    def collect(self, items: Iterable[tuple[bytes, bytes]]) -> HintScanDone:
        """The completion, from what `engine.hints_after(prefix, after)` yields."""
        taken: list[tuple[bytes, bytes]] = []
        size = 0
        for key, value in items:
            if len(taken) >= self.max_hints or size >= self.max_bytes:
                return HintScanDone(self.op_id, tuple(taken), False)
            taken.append((key, value))
            size += len(value)
        return HintScanDone(self.op_id, tuple(taken), True)


@fast_init
@dataclass(frozen=True, slots=True)
class HintIndex:
    """Total the stored hints per target (count and value bytes), then report
    HintIndexDone. A node asks once, at start, to learn what its last run left pending."""

    op_id: int

    def collect(self, sizes: Iterable[tuple[bytes, int]]) -> HintIndexDone:
        """The completion, from what `engine.hint_sizes()` yields: (key, value length)."""
        totals: dict[bytes, list[int]] = {}
        for key, size in sizes:
            target = key.partition(b"\x00")[0]
            entry = totals.setdefault(target, [0, 0])
            entry[0] += 1
            entry[1] += size
        return HintIndexDone(self.op_id, tuple((t, c, b) for t, (c, b) in sorted(totals.items())))


@fast_init
@dataclass(frozen=True, slots=True)
class HintPutDone:
    op_id: int
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class HintScanDone:
    """`hints`: (key, value) in key order; `exhausted`: no more hints matched."""

    op_id: int
    hints: tuple[tuple[bytes, bytes], ...]
    exhausted: bool
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class HintIndexDone:
    """`targets`: (target id bytes, hint count, value bytes), sorted by target."""

    op_id: int
    targets: tuple[tuple[bytes, int, int], ...]
    error: str | None = None


# ---- tombstone compaction and the batchlog (agora.core.tombstones, agora.core.batchlog) -----


class Rewrite(NamedTuple):
    """One compare-and-set of a StorageReplace: `expected` as a StorageScan returned it,
    `new` to store in its place. With `after` or `up_to` it covers a fragment of a
    partition that a split scan cut: its header (deletion, range tombstones, static row) and
    its rows with after < clustering key <= up_to (None: unbounded on that side); rows
    outside the span are neither compared nor touched."""

    expected: Partition
    new: Partition
    after: bytes | None = None
    up_to: bytes | None = None

    def spans(self, ckey: bytes) -> bool:
        return (self.after is None or ckey > self.after) and (self.up_to is None or ckey <= self.up_to)


@fast_init
@dataclass(frozen=True, slots=True)
class StorageReplace:
    """Compare-and-set rewrite (what tombstone compaction needs, and what a merge cannot do:
    it removes data). For each `Rewrite`: if the stored partition, or the fragment of it the
    rewrite spans, still equals `expected`
    (canonical, as a StorageScan returned it), store `new` in its place; an empty `new`
    deletes what it spans. A partition written to since it was read is left alone. Report
    StorageReplaceDone(op_id, replaced). `truncated_at`: the one the scan that read
    `expected` was given (`StorageScan.truncated_at`), so the stored rows are read back
    the same way for the comparison.

    `all_truncated`: every pair deletes a whole partition that `truncated_at` covers
    entirely, and they are every partition the scan returned. An engine may then, under its
    write lock, check that everything it stores from the first of them to the last (in its
    own order) still is covered, and if so delete it all at once (one range deletion); if
    not, it does the pairs one by one. Either way only what the truncation covers goes."""

    op_id: int
    pairs: tuple[Rewrite, ...]
    sync: bool = False
    truncated_at: int | None = None
    all_truncated: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class StorageReplaceDone:
    op_id: int
    replaced: int
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class StorageDropTable:
    """Forget every local partition of `table_id`, durably, at once (no completion): the
    downtime check's wipe of data that may hold zombies."""

    table_id: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class StorageWalkClean:
    """A compaction walk begun by a `walk_start` scan of `table_id` reached the table's end
    and found nothing for compaction in any partition (no completion): the engine records
    the table clean, unless a write since the walk began had something for compaction
    (`agora.storage.clean`)."""

    table_id: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class BatchlogStore:
    """Store one batchlog entry (opaque bytes owned by agora.core.batchlog) under `batch_id`,
    apart from table data; then report BatchlogDone(op_id). `sync` as StoragePut's."""

    op_id: int
    batch_id: bytes
    entry: bytes
    sync: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class BatchlogRemove:
    """Forget a batchlog entry. No completion and no fsync: a removal a crash undoes only
    makes the batch replay once more, which the merge makes harmless."""

    batch_id: bytes


@fast_init
@dataclass(frozen=True, slots=True)
class BatchlogLoad:
    """Read every stored batchlog entry; report BatchlogDone(op_id, entries) (at start)."""

    op_id: int


@fast_init
@dataclass(frozen=True, slots=True)
class BatchlogDone:
    """Completion of BatchlogStore (entries empty) or BatchlogLoad ((batch_id, entry) pairs
    in batch_id order)."""

    op_id: int
    entries: tuple[tuple[bytes, bytes], ...] = ()
    error: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Halt:
    """FOR TESTS ONLY (the `debug_crash_after_batchlog` option): end this node's process at
    once, as kill -9 would; the runtime exits, the simulator crashes the host."""

    reason: str
