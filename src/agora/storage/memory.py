"""In-memory storage engine, for unit tests and the deterministic simulator.

Owns: a dict-backed `StorageEngine` with a faithful enough model of durability for the
simulator to drop unsynced writes. It holds two views of the data:

- `current`: what reads see -- every applied write;
- `synced`:  what survives a power loss -- the state as of the last sync.

`apply(sync=False)` changes `current` only and marks the touched partitions dirty;
`sync()` (and `apply(sync=True)`, `put_meta` unless sync=False, `drop_table`, all synced, since
fsyncing a write-ahead log makes everything before it durable too) copies the dirty
partitions into `synced`. `crash()` models a power loss: `current` falls back to `synced`,
discarding every write applied with sync=False since the last sync. (A mere process crash
loses nothing in the RocksDB engine, so the simulator needs no model of it.)

Hints (`put_hints` ...) are modelled the same way, in a sorted map of their own: a sync makes
every put and delete so far durable, a crash falls back to the synced hints. So are batchlog
entries (`batchlog_put` ...) and compaction's `replace` (which touches `current` like apply).
The tables compaction may skip (`agora.storage.clean`) are kept in memory only, and a crash
forgets them all: every table is walked again.

It is deterministic: no clock, no randomness, and every iteration is over insertion-ordered
dicts or sorted keys. Stored partitions are canonical and never mutated in place (merges
build new ones, sharing untouched rows: `reconcile.merge_into`), so the two views share them
safely; reads and scans return copies.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import msgpack

from agora.core import reconcile
from agora.core.effects import Rewrite
from agora.core.plain import partition_to_plain
from agora.core.ring.partitioner import token_for_key
from agora.core.types import Partition, ReadCommand
from agora.storage import keys
from agora.storage.engine import StorageEngine, coalesce, token_segments
from agora.storage.clean import CleanTables

PartitionId = tuple[bytes, bytes]  # (table_id, partition key)


class MemoryEngine(StorageEngine):
    def __init__(self) -> None:
        self._current: dict[PartitionId, tuple[int, Partition]] = {}
        self._synced: dict[PartitionId, tuple[int, Partition]] = {}
        self._dirty: dict[PartitionId, None] = {}  # touched since the last sync, in order
        self._meta: dict[str, bytes] = {}  # synced
        self._meta_unsynced: dict[str, bytes] = {}  # put_meta(sync=False) since the last sync
        self._index: dict[bytes, list[tuple[bytes, PartitionId]]] = {}  # see _table_index
        self._hints: dict[bytes, bytes] = {}
        self._hint_keys: list[bytes] = []  # sorted keys of _hints
        self._synced_hints: dict[bytes, bytes] = {}
        self._hints_dirty: dict[bytes, None] = {}  # hint keys put or deleted since the last sync
        self._batchlog: dict[bytes, bytes] = {}  # batch id -> entry, as reads see it
        self._synced_batchlog: dict[bytes, bytes] = {}
        self._clean = CleanTables()  # not persisted: a crash forgets every clean record
        self._closed = False

    # ---- data ---------------------------------------------------------------------------

    def apply(self, partitions: Sequence[Partition], sync: bool = False) -> None:
        assert not self._closed, "engine closed"
        batch = coalesce(partitions).items() if len(partitions) != 1 \
            else (((partitions[0].table_id, partitions[0].key), partitions[0]),)  # the usual: one
        if self._clean.watching():
            self._clean.written(p for _, p in batch)
        for ident, p in batch:
            old = self._current.get(ident)
            if old is None:
                token, merged = token_for_key(p.key), reconcile.canonical(p)
                if reconcile.is_empty(merged):
                    continue
                self._index.pop(ident[0], None)
            else:  # a non-empty canonical partition stays non-empty whatever joins it
                token, merged = old[0], reconcile.merge_into(old[1], p)
            self._current[ident] = (token, merged)
            self._dirty[ident] = None
        if sync:
            self.sync()

    def read(self, cmd: ReadCommand) -> Partition | None:
        assert not self._closed, "engine closed"
        stored = self._current.get((cmd.table_id, cmd.key))
        if stored is None:
            return None
        result = reconcile.slice_partition(stored[1], cmd)
        return None if reconcile.is_empty(result) else result

    def scan(self, table_id: bytes, start_token: int,
             end_token: int) -> Iterator[tuple[int, Partition]]:
        assert not self._closed, "engine closed"
        index = self._table_index(table_id)
        for lo, hi in token_segments(start_token, end_token):
            if lo >= hi:
                continue
            first = bisect.bisect_left(index, (keys.token_position(table_id, lo + 1),))
            for _, ident in index[first:]:
                stored = self._current.get(ident)
                if stored is None:  # dropped while this scan was suspended
                    continue
                if stored[0] > hi:
                    break
                yield stored[0], reconcile.canonical(stored[1])

    def _table_index(self, table_id: bytes) -> list[tuple[bytes, PartitionId]]:
        """The table's partitions sorted by key prefix (token order), built on demand and
        forgotten whenever the table gains or loses a partition."""
        index = self._index.get(table_id)
        if index is None:
            index = sorted((keys.partition_prefix(table, token, key), (table, key))
                           for (table, key), (token, _) in self._current.items()
                           if table == table_id)
            self._index[table_id] = index
        return index

    def drop_table(self, table_id: bytes) -> None:
        for view in (self._current, self._synced):
            for ident in [ident for ident in view if ident[0] == table_id]:
                del view[ident]
        self._index.pop(table_id, None)
        self._clean.dropped(table_id)
        self.sync()

    def begin_walk(self, table_id: bytes) -> bool:
        return self._clean.begin_walk(table_id)

    def end_walk(self, table_id: bytes) -> None:
        self._clean.end_walk(table_id)

    # ---- durability ---------------------------------------------------------------------

    def flush_wal(self) -> None:
        """Nothing to do: the model only distinguishes synced from unsynced."""

    def sync(self) -> None:
        self._meta.update(self._meta_unsynced)
        self._meta_unsynced.clear()
        self._synced_batchlog = dict(self._batchlog)
        for key in self._hints_dirty:
            value = self._hints.get(key)
            if value is None:
                self._synced_hints.pop(key, None)
            else:
                self._synced_hints[key] = value
        self._hints_dirty.clear()
        for ident in self._dirty:
            stored = self._current.get(ident)
            if stored is None:
                self._synced.pop(ident, None)
            else:
                self._synced[ident] = stored
        self._dirty.clear()

    def crash(self) -> None:
        """Simulate a power loss: drop every write applied with sync=False since the last
        sync, metadata put with sync=False among them. The engine stays usable (it models the
        restarted node's store)."""
        self._meta_unsynced.clear()
        self._current = dict(self._synced)
        self._dirty.clear()
        self._index.clear()
        self._hints = dict(self._synced_hints)
        self._hint_keys = sorted(self._hints)
        self._hints_dirty.clear()
        self._batchlog = dict(self._synced_batchlog)
        self._clean = CleanTables()  # the writes a record vouched for may be lost

    def unsynced_count(self) -> int:
        """How many partitions a crash() now would roll back (for simulator checks)."""
        return len(self._dirty)

    # ---- tombstone compaction -------------------------------------------------------------

    def replace(self, pairs: Sequence[Rewrite], sync: bool = False, truncated_at: int | None = None,
                all_truncated: bool = False) -> int:
        assert not self._closed, "engine closed"
        replaced = 0
        for rw in pairs:
            ident = (rw.expected.table_id, rw.expected.key)
            stored = self._current.get(ident)
            if stored is None:
                continue  # gone since it was read
            whole = stored[1]
            spanned = Partition(whole.table_id, whole.key, whole.deletion, list(whole.range_tombstones),
                                whole.static, {c: r for c, r in whole.rows.items() if rw.spans(c)})
            if reconcile.canonical(spanned) != rw.expected:
                continue  # written to since it was read: the next pass decides
            new = rw.new
            rows = {c: r for c, r in whole.rows.items() if not rw.spans(c)}
            rows.update(new.rows)
            fresh = reconcile.canonical(Partition(whole.table_id, whole.key, new.deletion,
                                                  list(new.range_tombstones), new.static, rows))
            if reconcile.is_empty(fresh):
                del self._current[ident]
                self._index.pop(ident[0], None)
            else:
                self._current[ident] = (stored[0], fresh)
            self._dirty[ident] = None
            replaced += 1
        if sync:
            self.sync()
        return replaced

    # ---- batchlog -----------------------------------------------------------------------

    def batchlog_put(self, batch_id: bytes, entry: bytes, sync: bool = False) -> None:
        assert not self._closed, "engine closed"
        self._batchlog[bytes(batch_id)] = bytes(entry)
        if sync:
            self.sync()

    def batchlog_remove(self, batch_id: bytes) -> None:
        assert not self._closed, "engine closed"
        self._batchlog.pop(batch_id, None)

    def batchlog_items(self) -> list[tuple[bytes, bytes]]:
        return sorted(self._batchlog.items())

    # ---- hints --------------------------------------------------------------------------

    def put_hints(self, hints: Sequence[tuple[bytes, bytes]], sync: bool = False) -> None:
        assert not self._closed, "engine closed"
        for key, value in hints:
            if key not in self._hints:
                bisect.insort(self._hint_keys, key)
            self._hints[key] = bytes(value)
            self._hints_dirty[key] = None
        if sync:
            self.sync()

    def delete_hints(self, keys: Sequence[bytes]) -> None:
        assert not self._closed, "engine closed"
        for key in keys:
            if self._hints.pop(key, None) is not None:
                del self._hint_keys[bisect.bisect_left(self._hint_keys, key)]
                self._hints_dirty[key] = None

    def hints_after(self, prefix: bytes, after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        assert not self._closed, "engine closed"
        keys_ = self._hint_keys
        i = bisect.bisect_right(keys_, after) if after is not None and after >= prefix \
            else bisect.bisect_left(keys_, prefix)
        while i < len(keys_) and keys_[i].startswith(prefix):
            key = keys_[i]
            yield key, self._hints[key]
            i += 1

    def hint_sizes(self) -> Iterator[tuple[bytes, int]]:
        for key in list(self._hint_keys):
            yield key, len(self._hints[key])

    def unsynced_hints(self) -> bool:
        """Whether a crash() now would change the stored hints (for simulator checks)."""
        return bool(self._hints_dirty)

    # ---- metadata -----------------------------------------------------------------------

    def put_meta(self, key: str, value: bytes, sync: bool = True) -> None:
        if not sync:
            self._meta_unsynced[key] = bytes(value)
            return
        self._meta_unsynced.pop(key, None)
        self._meta[key] = bytes(value)
        self.sync()

    def get_meta(self, key: str) -> bytes | None:
        value = self._meta_unsynced.get(key)
        return self._meta.get(key) if value is None else value

    def meta_items(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in {**self._meta, **self._meta_unsynced}.items() if k.startswith(prefix))

    # ---- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True

    def load_bytes(self) -> int:
        return sum(len(msgpack.packb(partition_to_plain(p), use_bin_type=True))
                   for _, p in self._current.values())
