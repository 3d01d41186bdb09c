"""The storage engine interface: what a node's local store does, synchronously.

Owns: the contract both engines (`memory.py` for tests and the simulator, `rocks.py` for
real nodes) fulfil, and the few helpers they share (batch coalescing, token ranges).
It deliberately knows nothing of replication or consistency levels: the store merges
whatever it is given with the rules of `agora.core.reconcile`, as a Cassandra replica's
memtable does, and returns raw data (tombstones included) for the coordinator to resolve.

Durability follows Cassandra's commitlog: `apply(sync=False)` survives a process crash
(`kill -9`) once it returns, but a power loss may drop it until the next `sync()`;
`apply(sync=True)` fsyncs before returning. A sync makes every earlier write durable too.
Hints follow the same rules: `put_hints(sync=False)` survives a process crash, a sync makes
it survive a power loss; so do batchlog entries (`batchlog_put`) and compaction's
`replace`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator, Sequence

from agora.core import reconcile
from agora.core.effects import Rewrite, ScanPiece
from agora.core.plain import partition_size_bound, row_size_bound
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Partition, ReadCommand, ReadPage


class StorageEngine(abc.ABC):
    """A node's local store of partitions plus a small durable metadata map."""

    @abc.abstractmethod
    def apply(self, partitions: Sequence[Partition], sync: bool = False) -> None:
        """Merge each partition into what is stored, all in one atomic batch.
        sync=True: fsync before returning (and so make every earlier write durable)."""

    @abc.abstractmethod
    def read(self, cmd: ReadCommand) -> Partition | None:
        """The stored data of one partition restricted to cmd's slices and columns, in
        canonical form, tombstones included; None if nothing is stored there."""

    def read_page(self, cmd: ReadCommand, max_bytes: int = 0) -> ReadPage:
        """`read` honouring cmd.limit_rows: at most that many clustering rows, the first in
        clustering order (the last when reversed), fewer where the next row would take their
        stored bytes past `max_bytes` (0: no byte bound; the first row is always read);
        `more_after` names the last one when rows after it may exist. This version cuts a
        whole read (right for an in-memory engine); an engine on disk reads only what it
        returns."""
        whole = self.read(dataclasses.replace(cmd, limit_rows=0, reversed=False) if cmd.limit_rows else cmd)
        if whole is None or not cmd.limit_rows:
            return ReadPage(whole)
        ordered = sorted(whole.rows, reverse=cmd.reversed)
        kept = ordered[:cmd.limit_rows]
        budget = max_bytes
        for n, ckey in enumerate(kept if max_bytes else ()):
            budget -= row_size_bound(whole.rows[ckey])
            if budget < 0 and n:  # the first row is always read
                kept = kept[:n]
                break
        if len(kept) == len(ordered):
            return ReadPage(whole)
        kept.sort()
        page = Partition(whole.table_id, whole.key, whole.deletion, list(whole.range_tombstones),
                         whole.static, {ckey: whole.rows[ckey] for ckey in kept})
        return ReadPage(page, kept[0] if cmd.reversed else kept[-1])

    @abc.abstractmethod
    def scan(self, table_id: bytes, start_token: int,
             end_token: int) -> Iterator[tuple[int, Partition]]:
        """(token, whole canonical partition) for every partition of `table_id` with
        start_token < token <= end_token, in key order (token, then partition key).
        start_token >= end_token wraps around the ring, as Cassandra ranges do
        (start == end is the whole ring)."""

    def scan_pieces(self, table_id: bytes, start_token: int, end_token: int,
                    resume: tuple[bytes, bytes | None] | None = None, piece_rows: int = 1_000,
                    piece_bytes: int = 0, truncated_at: int | None = None) -> Iterator[ScanPiece]:
        """`scan`, as `agora.core.effects.ScanPiece`s of at most `piece_rows` rows and about
        `piece_bytes` bytes (0: no byte bound) each, so a caller can stop inside a partition
        without the rest of it being read. `resume` = (key, ckey): partition `key` (of the
        range's first token) yields only its header and its rows after ckey (with ckey None:
        nothing); other partitions of that token come as always. A piece holds more than
        `piece_bytes` only when one row alone does. This version cuts whole partitions from
        `scan` (right for an in-memory engine); an engine on disk reads only the pieces
        taken. `truncated_at`: see `StorageScan` (this version returns rows as stored)."""
        ahead = self.scan(table_id, start_token, end_token)
        nxt = next(ahead, None)
        prev_token = None
        while nxt is not None:
            token, whole = nxt
            nxt = next(ahead, None)
            alone = token != prev_token and (nxt is None or nxt[0] != token)
            prev_token = token
            ckeys = sorted(whole.rows)
            if resume is not None and token == start_token + 1 and whole.key == resume[0]:
                if resume[1] is None:
                    continue  # the scan starts after it
                ckeys = [c for c in ckeys if c > resume[1]]
            yield from _pieces(token, whole, ckeys, alone, piece_rows, piece_bytes)

    @abc.abstractmethod
    def put_meta(self, key: str, value: bytes, sync: bool = True) -> None:
        """Store a piece of node metadata durably (synced before returning), or with
        `sync=False` as an unsynced write: kept by a process crash, lost by a power loss
        until the next sync."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def meta_items(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every metadata (key, value) whose key starts with `prefix`, sorted by key."""

    @abc.abstractmethod
    def drop_table(self, table_id: bytes) -> None:
        """Forget every partition of `table_id`, durably."""

    # ---- hints (agora.core.hints): an ordered map of opaque bytes, apart from table data --

    @abc.abstractmethod
    def put_hints(self, hints: Sequence[tuple[bytes, bytes]], sync: bool = False) -> None:
        """Store these (key, value) hints in one atomic batch, with apply()'s durability."""

    @abc.abstractmethod
    def delete_hints(self, keys: Sequence[bytes]) -> None:
        """Forget these hints (not synced: a crash may bring them back)."""

    @abc.abstractmethod
    def hints_after(self, prefix: bytes, after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every hint whose key starts with `prefix` and is greater than
        `after` (None: all of them), in key byte order."""

    @abc.abstractmethod
    def hint_sizes(self) -> Iterator[tuple[bytes, int]]:
        """(key, value length) of every stored hint, in key order."""

    # ---- tombstone compaction (agora.core.tombstones) --------------------------------------

    @abc.abstractmethod
    def replace(self, pairs: Sequence[Rewrite], sync: bool = False, truncated_at: int | None = None,
                all_truncated: bool = False) -> int:
        """Compare-and-set rewrite, per partition or fragment (`agora.core.effects.Rewrite`),
        in one atomic batch: where the stored partition (whole, canonical), or its header and
        the rows the rewrite spans, still equals `expected`, store `new` instead -- rows and
        tombstones `new` lacks are deleted, an empty `new` deletes what it spans. Partitions
        written to since `expected` was read are left alone (the next compaction pass sees
        them again). Returns how many were replaced. This is the one write that removes data,
        so it runs under the same read-modify-write discipline as `apply`. `truncated_at`:
        the scan's (`StorageScan.truncated_at`), for an engine that may have returned stand-ins
        for the rows it covers: it reads the stored rows back the same way to compare them.
        `all_truncated`: see `StorageReplace` (an engine may ignore it: the pairs do the same)."""

    @abc.abstractmethod
    def begin_walk(self, table_id: bytes) -> bool:
        """A compaction walk of the table begins (`StorageScan.walk_start`): True if it may be
        skipped, the table being clean (`agora.storage.clean`)."""

    @abc.abstractmethod
    def end_walk(self, table_id: bytes) -> None:
        """The walk found nothing for compaction (`StorageWalkClean`): record the table clean,
        unless a write since the walk began had something for compaction."""

    # ---- the batchlog (agora.core.batchlog): opaque entries by batch id, apart from data --

    @abc.abstractmethod
    def batchlog_put(self, batch_id: bytes, entry: bytes, sync: bool = False) -> None:
        """Store a batchlog entry, with apply()'s durability."""

    @abc.abstractmethod
    def batchlog_remove(self, batch_id: bytes) -> None:
        """Forget a batchlog entry (not synced: a crash may bring it back)."""

    @abc.abstractmethod
    def batchlog_items(self) -> list[tuple[bytes, bytes]]:
        """(batch id, entry) of every stored batchlog entry, in batch id order."""

    @abc.abstractmethod
    def flush_wal(self) -> None:
        """Make every applied write survive a process crash (not a power loss)."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every applied write survive a power loss (fsync)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; calling it twice is harmless."""

    @abc.abstractmethod
    def load_bytes(self) -> int:
        """Approximate size of the stored data, for status displays."""


def coalesce(partitions: Sequence[Partition]) -> dict[tuple[bytes, bytes], Partition]:
    """The batch with fragments of one partition merged together, in first-seen order."""
    merged: dict[tuple[bytes, bytes], Partition] = {}
    for p in partitions:
        ident = (p.table_id, p.key)
        old = merged.get(ident)
        merged[ident] = p if old is None else reconcile.merge_partitions(old, p)
    return merged


def token_segments(start_token: int, end_token: int) -> list[tuple[int, int]]:
    """The ring range (start, end] as non-wrapping (exclusive start, inclusive end) pieces."""
    if start_token < end_token:
        return [(start_token, end_token)]
    segments = []
    if start_token < MAX_TOKEN:
        segments.append((start_token, MAX_TOKEN))
    segments.append((MIN_TOKEN, end_token))
    return segments


def _pieces(token: int, whole: Partition, ckeys: list[bytes], alone: bool, piece_rows: int,
            piece_bytes: int) -> Iterator[ScanPiece]:
    """`whole`'s rows `ckeys` (in order) as pieces within the bounds, as the RocksDB engine
    cuts them: each with the partition's deletion and range tombstones, the first with its
    static row; nothing at all when there is nothing to yield."""
    deletion, rts = whole.deletion, whole.range_tombstones
    piece = Partition(whole.table_id, whole.key, deletion, list(rts), whole.static)
    size = partition_size_bound(piece)
    for ckey in ckeys:
        row = whole.rows[ckey]
        row_size = len(ckey) + row_size_bound(row)
        if piece.rows and (len(piece.rows) >= piece_rows or piece_bytes and size + row_size > piece_bytes):
            yield token, piece, False, alone, size, max(piece.rows)
            piece, size = Partition(whole.table_id, whole.key, deletion, list(rts)), 0
        piece.rows[ckey] = row
        size += row_size
    if not reconcile.is_empty(piece):
        yield token, piece, True, alone, size, max(piece.rows) if piece.rows else None
