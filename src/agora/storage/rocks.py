"""The RocksDB storage engine (through `rocksdict`), for real nodes.

Owns: the mapping of partitions onto RocksDB keys and values, the read-modify-write merge
on `apply`, and the database options. It is the only module that imports rocksdict.
Key layout: `agora.storage.keys` (one value per partition header and one per clustering
row, so a table's token range is one contiguous scan). Values are msgpack of
`agora.core.plain` shapes:

    header  [deletion|None, [range tombstone, ...], static row|None]
    row     plain Row

`apply` multi-gets the header and the touched rows of every partition in the batch, merges
them with the incoming fragments by `agora.core.reconcile`, and writes the results in one
WriteBatch (atomic). The usual write (rows newer than everything stored for them, no
header) skips building the stored rows: `_supersedes` proves the merge would return the
incoming row unchanged, and it is written as it came. Rows shadowed by a newer header deletion are not rewritten eagerly;
`read` and `scan` reassemble partitions and return them in canonical form, so such rows are
dropped on the way out (and by the next write that touches them). Every stored row is
canonical on its own, so `read` of a partition without a header returns its rows as stored
(cut to the columns asked for), without building a canonical copy. `read_page` stops after
the command's row limit (stored rows, tombstoned ones included), iterating backwards for a
reversed command, and names the last key it read.

Most tables never store a header (no partition deletion, range tombstone or static row
ever reached them), and looking up a header that is not there costs as much as finding one.
So the engine lists, in `TABLES_COLUMN_FAMILY`, the tables that may store headers, writing a
table's entry in the same WriteBatch as its first header (and before any reader could find
that header, in memory too). `apply` and point reads look up no header for a table not
listed. A database written before that list existed (data stored, no `_HEADERS_KNOWN`
marker) is not listed completely, so for it every table counts as headed, for good (the list
is never rebuilt). An Agora from before the `tables` column family cannot open a database
that has it (RocksDB refuses to open it without all its column families), so the upgrade is
one way. The same column family holds the tables compaction may skip
(`agora.storage.clean`): a write that ends a table's clean record deletes it in the write's
own batch.

Data blocks read from SST files are kept uncompressed in a block cache of
`block_cache_bytes` (node option `file_cache_size`); metadata, hints and the batchlog share
a small cache of their own.

`apply` and `drop_table` hold a lock for their read-modify-write, so a runtime may call the
engine from worker threads; reads take no lock (RocksDB reads are consistent snapshots).
`apply(sync=True)` writes under the lock and fsyncs the WAL after releasing it (SyncWAL
does not block other writers), so one caller's fsync never stalls another's write.

Durability: the WAL is always on. A write is in the OS once `apply` returns, so a process
crash (`kill -9`) cannot lose it; `sync=True` or `sync()` fsyncs the WAL, so a power loss
cannot either (Cassandra's commitlog_sync batch / periodic). Node metadata lives in a
separate column family, `META_COLUMN_FAMILY`, written with sync=True. Hints (agora.core.hints)
live in `HINTS_COLUMN_FAMILY`, opaque keys and values in key order, with apply()'s durability
(the WAL is shared, so one sync covers data and hints alike). Batchlog entries
(agora.core.batchlog) live in `BATCHLOG_COLUMN_FAMILY` under their batch id, likewise.

`replace` (tombstone compaction) is a compare-and-set under the same write lock as `apply`:
it re-reads the partition, or the header and the rows of the fragment it spans, and only if
that still equals what the compaction pass read does it write the purged version, deleting
the keys that version no longer has. A chunk of whole partitions that a truncation covers
entirely (`all_truncated`) goes in one range deletion instead, if every key stored from the
chunk's first partition to its last still is covered when re-read under the lock. Scans and
replaces told a truncation (`truncated_at`) read a row it covers entirely as a stand-in, a
bare marker at the row's newest timestamp (`_row_unless_truncated`), without decoding it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import msgpack
from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    ReadOptions,
    Rdict,
    WriteBatch,
    WriteOptions,
)

from agora.core import packing, reconcile
from agora.core.effects import Rewrite, ScanPiece
from agora.core.plain import (
    deletion_from_plain,
    deletion_to_plain,
    range_tombstone_from_plain,
    range_tombstone_to_plain,
    row_from_plain,
    row_to_plain,
)
from agora.core.ring.partitioner import token_for_key
from agora.core.types import MAX_TOKEN, Cell, Partition, ReadCommand, ReadPage, Row
from agora.storage import keys
from agora.storage.clean import CleanTables
from agora.storage.engine import StorageEngine, coalesce, token_segments

META_COLUMN_FAMILY = "meta"
HINTS_COLUMN_FAMILY = "hints"
BATCHLOG_COLUMN_FAMILY = "batchlog"
TABLES_COLUMN_FAMILY = "tables"  # what the engine knows of each table's keys (below)
_HEADERS_KNOWN = b"headers-known"  # in TABLES_COLUMN_FAMILY: every headed table is listed
_HEADED = b"headed:"  # + table id, in TABLES_COLUMN_FAMILY: the table may store headers
_CLEAN = b"clean:"  # + table id, in TABLES_COLUMN_FAMILY: the table is clean (clean.py)
WRITE_BUFFER_BYTES = 32 << 20  # per memtable: modest, several nodes may share one machine
MAX_WRITE_BUFFERS = 3  # memtables in memory at once (one filling, two flushing)
BLOCK_CACHE_BYTES = 512 << 20  # uncompressed blocks cached for reads (node option file_cache_size)
SMALL_CACHE_BYTES = 8 << 20  # the same for node metadata, hints and the batchlog
MEMTABLE_BLOOM_RATIO = 0.02  # of the write buffer's size, for the memtable bloom filter
BLOOM_BITS_PER_KEY = 10  # ~1% false positives: apply's lookups of absent rows skip SSTs
BACKGROUND_JOBS = 2  # flush + compaction threads
_WHOLE = 2**62  # piece_rows that keeps every partition one piece (scan)
KEEP_INFO_LOG_FILES = 3  # RocksDB's own LOG files kept on disk

_ROWS_END = bytes((keys.KIND_ROW[0] + 1,))  # appended to a partition prefix: after its rows


_pack = packing.pack  # msgpack.packb(obj, use_bin_type=True) without a new Packer per call


def _unpack(raw: bytes) -> object:
    return msgpack.unpackb(raw, raw=False)


def _header_to_bytes(p: Partition) -> bytes | None:
    if reconcile.rows_only(p):
        return None
    return _pack([deletion_to_plain(p.deletion),
                  [range_tombstone_to_plain(rt) for rt in p.range_tombstones],
                  None if p.static is None else row_to_plain(p.static)])


def _header_from_bytes(raw: bytes | None, p: Partition) -> None:
    """Fill p's deletion, range tombstones and static row from a stored header."""
    if raw is None:
        return
    deletion, rts, static = _unpack(raw)
    p.deletion = deletion_from_plain(deletion)
    p.range_tombstones = [range_tombstone_from_plain(rt) for rt in rts]
    p.static = None if static is None else row_from_plain(static)


def _row_from_bytes(raw: bytes) -> Row:
    return row_from_plain(_unpack(raw))


def _row_decoder(truncated_at: int | None):
    """How a scan (and replace's read-back of what it scanned) turns a stored row into a Row:
    in full, or, given a truncation, with rows it covers entirely as stand-ins."""
    if truncated_at is None:
        return _row_from_bytes
    return lambda raw: _row_unless_truncated(raw, truncated_at)


def _row_unless_truncated(raw: bytes, truncated_at: int) -> Row:
    """The stored row, or, if a truncation at `truncated_at` covers all of it (its marker,
    deletion and every cell written at or before it), a stand-in: a bare row marker at the
    row's newest timestamp. A scan of a truncated table that compaction has not walked yet
    so steps over such rows without building them. The stand-in is shadowed by exactly the
    tombstones that shadow the whole row, so pieces keep the same rows and cut at the same
    places, and the reader's `reconcile.drop_truncated` drops it as it would the row."""
    plain = _unpack(raw)
    if _is_stored_row(plain) and (newest := _newest_at_or_before(plain, truncated_at)) is not None:
        return Row(tuple(plain[0]), Cell(newest, b""))
    return row_from_plain(plain)


def _options(cache: Cache) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_max_write_buffer_number(MAX_WRITE_BUFFERS)
    opts.set_max_background_jobs(BACKGROUND_JOBS)
    opts.set_keep_log_file_num(KEEP_INFO_LOG_FILES)
    opts.set_compression_type(DBCompressionType.lz4())
    # A bloom filter over the memtables' keys: apply's lookups of keys that are not there
    # (most partitions have no header; new rows) skip the skiplist search.
    opts.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)
    opts.set_memtable_whole_key_filtering(True)
    table = BlockBasedOptions()
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
    table.set_block_cache(cache)
    opts.set_block_based_table_factory(table)
    return opts


class RocksEngine(StorageEngine):
    def __init__(self, path: str, block_cache_bytes: int = BLOCK_CACHE_BYTES) -> None:
        self.block_cache_bytes = block_cache_bytes
        self._cache = Cache(block_cache_bytes)  # the data's; the other families share a small one
        small = Cache(min(block_cache_bytes, SMALL_CACHE_BYTES))
        self._db: Rdict | None = Rdict(str(path), _options(self._cache),
                                       column_families={META_COLUMN_FAMILY: _options(small),
                                                        HINTS_COLUMN_FAMILY: _options(small),
                                                        BATCHLOG_COLUMN_FAMILY: _options(small),
                                                        TABLES_COLUMN_FAMILY: _options(small)})
        self._meta = self._db.get_column_family(META_COLUMN_FAMILY)
        self._hints = self._db.get_column_family(HINTS_COLUMN_FAMILY)
        self._hints_handle = self._db.get_column_family_handle(HINTS_COLUMN_FAMILY)
        self._batchlog = self._db.get_column_family(BATCHLOG_COLUMN_FAMILY)
        self._tables = self._db.get_column_family(TABLES_COLUMN_FAMILY)
        self._tables_handle = self._db.get_column_family_handle(TABLES_COLUMN_FAMILY)
        self._write_async = WriteOptions()
        self._write_async.sync = False
        self._write_async.disable_wal = False  # the WAL is what survives kill -9
        self._write_sync = WriteOptions()
        self._write_sync.sync = True
        self._write_sync.disable_wal = False
        self._write_lock = threading.Lock()  # serialises read-modify-write batches
        self._headed = {key[len(_HEADED):] for key in self._tables.keys(from_key=_HEADED)
                        if key.startswith(_HEADED)}
        self._clean = CleanTables({key[len(_CLEAN):] for key in self._tables.keys(from_key=_CLEAN)
                                   if key.startswith(_CLEAN)})
        self._all_headed = False  # true for a database stored before headed tables were listed
        if self._tables.get(_HEADERS_KNOWN) is None:
            if self._no_data():
                self._tables.put(_HEADERS_KNOWN, b"", self._write_sync)
            else:
                self._all_headed = True

    def _no_data(self) -> bool:
        it = self._db.iter()
        it.seek_to_first()
        return not it.valid()

    def _may_have_headers(self, table_id: bytes) -> bool:
        return self._all_headed or table_id in self._headed

    def _note_headed(self, batch: WriteBatch, table_id: bytes) -> None:
        """List table_id as headed, in `batch` (which writes its first header) and at once in
        memory, so no reader skips a header that is about to exist."""
        if not self._may_have_headers(table_id):
            batch.put(_HEADED + table_id, b"", self._tables_handle)
            self._headed.add(table_id)

    # ---- writes -------------------------------------------------------------------------

    def apply(self, partitions: Sequence[Partition], sync: bool = False) -> None:
        plans = []
        lookup: list[bytes] = []
        for (table_id, key), p in coalesce(partitions).items():
            prefix = keys.partition_prefix(table_id, token_for_key(key), key)
            plans.append((prefix, p, len(lookup)))
            lookup.append(prefix + keys.KIND_HEADER)
            row_prefix = prefix + keys.KIND_ROW
            lookup.extend([row_prefix + ckey for ckey in p.rows])
        with self._write_lock:  # (a header another writer adds is listed under this lock)
            batch = WriteBatch(raw_mode=True)
            if lookup:
                # where lookup holds a header that cannot be stored
                headless = [at for _, p, at in plans if not self._may_have_headers(p.table_id)]
                alternate = len(headless) == len(plans) == len(lookup) // 2 \
                    and all(len(p.rows) == 1 for _, p, _ in plans)
                existing = self._lookup(lookup, headless, alternate)
                if self._clean.watching():
                    for table_id in self._clean.written(p for _, p, _ in plans):
                        batch.delete(_CLEAN + table_id, self._tables_handle)
                for prefix, p, at in plans:
                    if not reconcile.rows_only(p):  # it may write the partition's header
                        self._note_headed(batch, p.table_id)
                    self._merge_into(batch, prefix, p, lookup, existing, at)
            if not batch.is_empty():
                self._db.write(batch, self._write_async)
        if sync:  # outside the lock: other writers need not wait for our fsync
            self.sync()

    def _lookup(self, lookup: list[bytes], skipped: list[int], alternate: bool) -> list:
        """The stored values of `lookup`, None at the `skipped` places without looking.
        `alternate`: every other key is skipped, from the first (headless partitions of one
        row each, the usual write)."""
        if not skipped:
            return self._db.get(lookup)
        if alternate:
            existing = [None] * len(lookup)
            existing[1::2] = self._db.get(lookup[1::2])
            return existing
        skip = set(skipped)
        found = iter(self._db.get([key for i, key in enumerate(lookup) if i not in skip]))
        return [None if i in skip else next(found) for i in range(len(lookup))]

    @staticmethod
    def _merge_into(batch: WriteBatch, prefix: bytes, incoming: Partition,
                    lookup: list[bytes], existing: list, at: int) -> None:
        """Merge one incoming partition with the stored header and rows it touches
        (lookup[at] is the header key, the row keys follow in incoming.rows order)."""
        if existing[at] is None and incoming.deletion is None and not incoming.range_tombstones \
                and incoming.static is None:
            # The common write: rows only, no stored header. Rows that supersede what is
            # stored are written as they come, without building the stored row (below).
            slow = False
            for i, (ckey, row) in enumerate(incoming.rows.items(), start=at + 1):
                raw = existing[i]
                if _supersedes(row, raw):
                    new = _pack(row_to_plain(row))
                    if new != raw:
                        batch.put(lookup[i], new)
                else:
                    slow = True
                    break
            if not slow:
                return
        stored = Partition(incoming.table_id, incoming.key)
        _header_from_bytes(existing[at], stored)
        for i, ckey in enumerate(incoming.rows, start=at + 1):
            raw = existing[i]
            if raw is not None:
                stored.rows[ckey] = _row_from_bytes(raw)
        merged = reconcile.merge_partitions(stored, incoming)
        _put_if_changed(batch, lookup[at], existing[at], _header_to_bytes(merged))
        merged_rows = merged.rows
        for i, ckey in enumerate(incoming.rows, start=at + 1):
            row = merged_rows.get(ckey)
            new = None if row is None else _pack(row_to_plain(row))
            _put_if_changed(batch, lookup[i], existing[i], new)

    def drop_table(self, table_id: bytes) -> None:
        end = keys.table_end(table_id)
        with self._write_lock:
            batch = WriteBatch(raw_mode=True)
            if end is not None:
                batch.delete_range(table_id, end)
            else:  # an all-0xFF id: every key from table_id on is this table's
                for key in self._db.keys(from_key=table_id):
                    batch.delete(key)
            batch.delete(_HEADED + table_id, self._tables_handle)
            batch.delete(_CLEAN + table_id, self._tables_handle)
            self._clean.dropped(table_id)
            self._db.write(batch, self._write_sync)
            self._headed.discard(table_id)  # its headers are gone

    # ---- reads --------------------------------------------------------------------------

    def read(self, cmd: ReadCommand) -> Partition | None:
        return self._read(cmd, 0)[0]

    def read_page(self, cmd: ReadCommand, max_bytes: int = 0) -> ReadPage:
        """Reads no more than cmd.limit_rows stored clustering rows (tombstoned ones count),
        and, with `max_bytes`, stops before a row that would take the stored bytes read past
        it (the first row is always read)."""
        return ReadPage(*self._read(cmd, cmd.limit_rows, max_bytes))

    def _read(self, cmd: ReadCommand, limit: int, max_bytes: int = 0) -> tuple[Partition | None, bytes | None]:
        """The partition read, and the last clustering key read if `limit` (when > 0) or
        `max_bytes` (when > 0, with a limit) stopped the read before the slices' end."""
        prefix = keys.partition_prefix(cmd.table_id, token_for_key(cmd.key), cmd.key)
        p = Partition(cmd.table_id, cmd.key)
        rows = p.rows
        row_prefix = prefix + keys.KIND_ROW
        if cmd.slices is None:
            # Point lookups first: a row under the empty clustering key is the row of a table
            # without clustering columns, so it is the partition's only row, and no iterator
            # (which would visit every memtable and SST file) is needed.
            if self._may_have_headers(cmd.table_id):
                header, only = self._db.get([prefix + keys.KIND_HEADER, row_prefix])
            else:
                header, only = None, self._db.get(row_prefix)
            if only is not None:
                rows[b""] = _row_from_bytes(only)
                intervals: list[reconcile.Interval] = []
            else:
                intervals = [(b"", None)]
        else:
            header = self._db.get(prefix + keys.KIND_HEADER) \
                if self._may_have_headers(cmd.table_id) else None
            intervals = [iv for s in cmd.slices
                         if (iv := reconcile.clustering_interval(s.start, s.end)) is not None]
        _header_from_bytes(header, p)
        skip = len(row_prefix)
        more_after = None
        budget = max_bytes or _WHOLE
        if limit and cmd.reversed:
            more_after = self._read_backwards(prefix, row_prefix, intervals, limit, budget, rows)
            p.rows = rows = dict(sorted(rows.items()))  # read from the end: put in ckey order
            intervals = []
        elif limit:  # rows in clustering order, whatever order the slices came in
            intervals.sort(key=lambda iv: iv[0])
        for lo, hi in intervals:
            bounds = ReadOptions()
            bounds.set_iterate_upper_bound(prefix + _ROWS_END if hi is None else row_prefix + hi)
            for key, raw in self._db.items(from_key=row_prefix + lo, read_opt=bounds):
                if limit and (len(rows) == limit or rows and len(raw) > budget):
                    more_after = max(rows)
                    break
                rows[key[skip:]] = _row_from_bytes(raw)
                budget -= len(raw)
            if more_after is not None:
                break
        if header is None:
            # No partition deletion, range tombstone or static row: every stored row is
            # canonical as written (apply stores merge results or rows that `_supersedes`
            # proved canonical) and nothing shadows it, so the answer is the rows in the
            # slices, cut to the columns read: no canonical copy of the partition to build.
            if cmd.columns is not None:
                columns = frozenset(cmd.columns)
                rows = {ckey: row for ckey, stored in rows.items()
                        if (row := reconcile.project_row(stored, columns)) is not None}
            if not rows:
                return None, more_after
            if len(intervals) > 1:  # slices may come in any order: rows leave in ckey order
                rows = {ckey: rows[ckey] for ckey in sorted(rows)}
            p.rows = rows
            return p, more_after
        if reconcile.is_empty(p):
            return None, more_after
        result = reconcile.slice_partition(p, cmd)
        return (None if reconcile.is_empty(result) else result), more_after

    def _read_backwards(self, prefix: bytes, row_prefix: bytes, intervals: list, limit: int,
                        budget: int, rows: dict) -> bytes | None:
        """Fill `rows` with the last `limit` stored rows of `intervals` (fewer where the next
        would take their bytes past `budget`), from the end; the smallest key read if rows
        before it may exist. (No iterate bounds: rocksdict's lower bound does not hold for
        backward iteration; the loop stops at each interval's start.)"""
        skip = len(row_prefix)
        for lo, hi in sorted(intervals, key=lambda iv: iv[0], reverse=True):
            start, end = row_prefix + lo, (prefix + _ROWS_END if hi is None else row_prefix + hi)
            for key, raw in self._db.items(backwards=True, from_key=end):
                if key >= end:  # seeking for `end` finds `end` itself if stored: excluded
                    continue
                if key < start:
                    break
                if len(rows) == limit or rows and len(raw) > budget:
                    return min(rows)
                rows[key[skip:]] = _row_from_bytes(raw)
                budget -= len(raw)
        return None

    def scan(self, table_id: bytes, start_token: int,
             end_token: int) -> Iterator[tuple[int, Partition]]:
        for token, partition, *_ in self.scan_pieces(table_id, start_token, end_token,
                                                     piece_rows=_WHOLE):
            yield token, partition  # each partition is one piece

    def scan_pieces(self, table_id: bytes, start_token: int, end_token: int,
                    resume: tuple[bytes, bytes | None] | None = None, piece_rows: int = 1_000,
                    piece_bytes: int = 0, truncated_at: int | None = None) -> Iterator[ScanPiece]:
        for lo, hi in token_segments(start_token, end_token):
            if lo < hi:
                yield from self._scan_segment(table_id, lo, hi, resume if lo == start_token else None,
                                              piece_rows, piece_bytes, truncated_at)

    def _scan_segment(self, table_id: bytes, lo: int, hi: int, resume: tuple[bytes, bytes | None] | None,
                      piece_rows: int, piece_bytes: int, truncated_at: int | None = None) -> Iterator[ScanPiece]:
        """Pieces of the partitions with lo < token <= hi (lo < hi, no wrap). Every piece of
        a partition carries its deletion and range tombstones (so each is canonical on its
        own); the first one its static row, and none holds more than `piece_bytes` of rows
        unless one row alone does. Resuming inside a partition seeks to the row after the
        resume point when the scan meets that partition, and resuming after one (ckey None)
        seeks past it: what either skips is not read. Other partitions of the token are read
        as always (`StorageScan.collect` orders them). With `truncated_at`, a row the truncation
        covers entirely comes as a stand-in (`_row_unless_truncated`)."""
        decode = _row_decoder(truncated_at)
        end = keys.token_position(table_id, hi + 1) if hi < MAX_TOKEN \
            else keys.table_end(table_id)
        bounds = ReadOptions()
        if end is not None:
            bounds.set_iterate_upper_bound(end)
        start: bytes | None = keys.token_position(table_id, lo + 1)
        prefix: bytes | None = None  # the current partition's key prefix
        token, piece, size, alone, plen = 0, None, 0, None, 0
        last: bytes | None = None  # the last row key read into the current piece
        resumed, after = resume if resume is not None else (None, None)  # in token lo + 1
        while start is not None:
            from_key, start = start, None
            for key, raw in self._db.items(from_key=from_key, read_opt=bounds):
                if prefix is None or not key.startswith(prefix):
                    if not key.startswith(table_id):
                        break
                    if piece is not None and (done := _piece(token, piece, True, alone is not False, size,
                                                             last)) is not None:
                        yield done
                    last = None
                    token, pk, plen = keys.parse_partition(key)
                    prefix, piece, size, alone = key[:plen], Partition(table_id, pk), 0, None
                    if pk == resumed and token == lo + 1:  # seek rather than read what it skips
                        resumed = None
                        if after is None:  # the scan starts after it
                            start, prefix, piece = key[:plen] + _ROWS_END, None, None
                            break
                        if key[plen:plen + 1] == keys.KIND_HEADER:
                            _header_from_bytes(raw, piece)
                            size += len(key) + len(raw)
                        start = prefix + keys.KIND_ROW + after + b"\x00"  # the first key after that row
                        break
                if key[plen:plen + 1] == keys.KIND_HEADER:
                    _header_from_bytes(raw, piece)
                else:
                    if piece.rows and (len(piece.rows) >= piece_rows
                                       or piece_bytes and size + len(raw) > piece_bytes):
                        if alone is None:
                            alone = self._alone(table_id, token, prefix)
                        if (done := _piece(token, piece, False, alone, size, last)) is not None:
                            yield done
                        piece, size = Partition(table_id, piece.key, piece.deletion,
                                                list(piece.range_tombstones)), 0
                    last = key[plen + 1:]
                    piece.rows[last] = decode(raw)
                size += len(key) + len(raw)
        if piece is not None and (done := _piece(token, piece, True, alone is not False, size,
                                                 last)) is not None:
            yield done

    def _alone(self, table_id: bytes, token: int, prefix: bytes) -> bool:
        """Whether the partition with key prefix `prefix` is the only one of `token`."""
        it = self._db.iter()
        it.seek(keys.token_position(table_id, token))
        if not (it.valid() and it.key().startswith(prefix)):
            return False
        end = keys.token_position(table_id, token + 1) if token < MAX_TOKEN else keys.table_end(table_id)
        if end is None:
            it.seek_to_last()
        else:
            it.seek_for_prev(end)  # no stored key equals a bare token position
        return it.valid() and it.key().startswith(prefix)

    # ---- tombstone compaction -------------------------------------------------------------

    def replace(self, pairs: Sequence[Rewrite], sync: bool = False, truncated_at: int | None = None,
                all_truncated: bool = False) -> int:
        decode = _row_decoder(truncated_at)  # as the scan read them
        replaced = 0
        with self._write_lock:  # nothing may merge into a partition between our read and write
            batch = WriteBatch(raw_mode=True)
            if all_truncated and truncated_at is not None and pairs:
                prefixes = [keys.partition_prefix(rw.expected.table_id, token_for_key(rw.expected.key),
                                                  rw.expected.key) for rw in pairs]
                lo, hi = min(prefixes), max(prefixes) + _ROWS_END
                if self._all_truncated(lo, hi, truncated_at):
                    batch.delete_range(lo, hi)
                    replaced, pairs = len(pairs), ()  # every pair at once
            for rw in pairs:
                expected = rw.expected
                prefix = keys.partition_prefix(expected.table_id, token_for_key(expected.key),
                                               expected.key)
                stored_raw = self._partition_items(prefix, rw.after, rw.up_to)
                stored = Partition(expected.table_id, expected.key)
                for key, raw in stored_raw.items():
                    if key == prefix + keys.KIND_HEADER:
                        _header_from_bytes(raw, stored)
                    else:
                        stored.rows[key[len(prefix) + 1:]] = decode(raw)
                # without a header each stored row is canonical as stored, and so is the whole
                if reconcile.rows_only(stored):
                    if stored != expected:
                        continue  # written to since it was read: the next pass decides
                elif reconcile.canonical(stored) != expected:
                    continue
                fresh = reconcile.canonical(rw.new)
                wanted = {prefix + keys.KIND_HEADER: _header_to_bytes(fresh)}
                if wanted[prefix + keys.KIND_HEADER] is not None:
                    self._note_headed(batch, expected.table_id)
                row_prefix = prefix + keys.KIND_ROW
                for ckey, row in fresh.rows.items():
                    wanted[row_prefix + ckey] = _pack(row_to_plain(row))
                for key in sorted(set(stored_raw) | set(wanted)):
                    _put_if_changed(batch, key, stored_raw.get(key), wanted.get(key))
                replaced += 1
            if not batch.is_empty():
                self._db.write(batch, self._write_async)
        if sync:
            self.sync()
        return replaced

    def begin_walk(self, table_id: bytes) -> bool:
        with self._write_lock:  # no write between the record's check and the watch's start
            return self._clean.begin_walk(table_id)

    def end_walk(self, table_id: bytes) -> None:
        with self._write_lock:
            if self._clean.end_walk(table_id):
                self._tables.put(_CLEAN + table_id, b"", self._write_async)

    def _all_truncated(self, lo: bytes, hi: bytes, truncated_at: int) -> bool:
        """Whether everything stored from key lo (inclusive) to hi (exclusive), headers and
        rows, was written at or before `truncated_at` (what `replace` may then delete at
        once): read now, under the write lock."""
        bounds = ReadOptions()
        bounds.set_iterate_upper_bound(hi)
        for key, raw in self._db.items(from_key=lo, read_opt=bounds):
            _, _, plen = keys.parse_partition(key)
            plain = _unpack(raw)
            kind = key[plen:plen + 1]
            if kind == keys.KIND_HEADER:
                if not _header_written_at_or_before(plain, truncated_at):
                    return False
            elif kind != keys.KIND_ROW or not _is_stored_row(plain) \
                    or _newest_at_or_before(plain, truncated_at) is None:
                return False
        return True

    def _partition_items(self, prefix: bytes, after: bytes | None = None,
                         up_to: bytes | None = None) -> dict[bytes, bytes]:
        """The stored keys of one partition with their raw values: its header and its rows
        with after < clustering key <= up_to (None: unbounded on that side)."""
        row_prefix = prefix + keys.KIND_ROW
        bounds = ReadOptions()
        bounds.set_iterate_upper_bound(prefix + _ROWS_END if up_to is None else row_prefix + up_to + b"\x00")
        if after is None:
            return dict(self._db.items(from_key=prefix, read_opt=bounds))
        items = {}
        header = self._db.get(prefix + keys.KIND_HEADER)
        if header is not None:
            items[prefix + keys.KIND_HEADER] = header
        items.update(self._db.items(from_key=row_prefix + after + b"\x00", read_opt=bounds))
        return items

    # ---- batchlog -----------------------------------------------------------------------

    def batchlog_put(self, batch_id: bytes, entry: bytes, sync: bool = False) -> None:
        self._batchlog.put(bytes(batch_id), bytes(entry),
                           self._write_sync if sync else self._write_async)

    def batchlog_remove(self, batch_id: bytes) -> None:
        self._batchlog.delete(bytes(batch_id), self._write_async)

    def batchlog_items(self) -> list[tuple[bytes, bytes]]:
        return list(self._batchlog.items())

    # ---- hints --------------------------------------------------------------------------

    def put_hints(self, hints: Sequence[tuple[bytes, bytes]], sync: bool = False) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.set_default_column_family(self._hints_handle)
        for key, value in hints:
            batch.put(key, value)
        self._db.write(batch, self._write_sync if sync else self._write_async)

    def delete_hints(self, keys: Sequence[bytes]) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.set_default_column_family(self._hints_handle)
        for key in keys:
            batch.delete(key)
        self._db.write(batch, self._write_async)

    def hints_after(self, prefix: bytes, after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        start = after + b"\x00" if after is not None and after >= prefix else prefix
        for key, value in self._hints.items(from_key=start):
            if not key.startswith(prefix):
                break
            yield key, value

    def hint_sizes(self) -> Iterator[tuple[bytes, int]]:
        for key, value in self._hints.items():
            yield key, len(value)

    # ---- metadata -----------------------------------------------------------------------

    def put_meta(self, key: str, value: bytes, sync: bool = True) -> None:
        self._meta.put(key.encode(), bytes(value), self._write_sync if sync else self._write_async)

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key.encode())

    def meta_items(self, prefix: str) -> list[tuple[str, bytes]]:
        start = prefix.encode()
        found = []
        for key, value in self._meta.items(from_key=start):
            if not key.startswith(start):
                break
            found.append((key.decode(), value))
        return found

    # ---- durability and lifecycle -------------------------------------------------------

    def flush_wal(self) -> None:
        """Writes reach the OS as part of every apply (no manual WAL flushing), so a process
        crash already loses nothing; this only pushes RocksDB's buffers out once more."""
        self._db.flush_wal(sync=False)

    def sync(self) -> None:
        self._db.flush_wal(sync=True)

    def close(self) -> None:
        if self._db is not None:
            self._meta.close()
            self._hints.close()
            self._batchlog.close()
            self._tables.close()
            self._tables_handle = None
            self._hints_handle = None
            self._db.close()
            self._db = None

    def block_cache_usage(self) -> int:
        """Bytes of data blocks the block cache holds now (at most `block_cache_bytes`)."""
        return self._cache.get_usage()

    def load_bytes(self) -> int:
        live = self._db.property_int_value("rocksdb.estimate-live-data-size") or 0
        memtables = self._db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
        return live + memtables


def _supersedes(row: Row, raw: bytes | None) -> bool:
    """True when merging `row` into the stored row `raw` (under no header) gives `row`
    itself: `row` is canonical on its own (no row deletion, no collection-wide tombstone,
    not empty) and beats every stored cell and the stored marker by a strictly greater
    timestamp, with nothing stored that it lacks. Ties and anything else take the full merge
    of `agora.core.reconcile`, which this shortcut must agree with (tests/unit/test_storage.py)."""
    if row.deletion is not None:
        return False
    cells = row.cells
    marker = row.marker
    if marker is None and not cells:
        return False
    for (_column, path), cell in cells.items():
        if not path and cell.value is None:
            return False  # a collection-wide tombstone: it may shadow elements
    if raw is None:
        return True
    stored = _unpack(raw)
    if not _is_stored_row(stored):
        return False
    _clustering, stored_marker, stored_deletion, flat = stored
    if stored_deletion is not None:
        return False
    if stored_marker is not None and (marker is None or marker.ts <= stored_marker[0]):
        return False
    for j in range(0, len(flat), 6):
        cell = cells.get((flat[j], flat[j + 1]))
        if cell is None or cell.ts <= flat[j + 2]:
            return False
    return True


def _newest_at_or_before(stored: list, ts: int) -> int | None:
    """The newest timestamp of the stored row (marker, deletion, cells) if it is <= ts;
    None if it is not, or for anything malformed, which the decoder then reports."""
    _clustering, marker, deletion, flat = stored
    stamps = flat[2::6]
    for part in (marker, deletion):
        if part is not None:
            if type(part) is not list or not part:
                return None
            stamps.append(part[0])
    if not stamps or set(map(type, stamps)) != _INT_ONLY:
        return None
    newest = max(stamps)
    return newest if newest <= ts else None


_INT_ONLY = {int}


def _header_written_at_or_before(stored: object, ts: int) -> bool:
    """Whether every timestamp of a stored partition header (its deletion, range tombstones
    and static row) is <= ts; False for anything malformed."""
    if type(stored) is not list or len(stored) != 3:
        return False
    deletion, rts, static = stored
    stamps = []
    if deletion is not None:
        if type(deletion) is not list or not deletion:
            return False
        stamps.append(deletion[0])
    if type(rts) is not list:
        return False
    for rt in rts:
        if type(rt) is not list or len(rt) != 6:
            return False
        stamps.append(rt[4])
    if static is not None and not (_is_stored_row(static) and _newest_at_or_before(static, ts) is not None):
        return False
    return set(map(type, stamps)) <= _INT_ONLY and all(t <= ts for t in stamps)


def _is_stored_row(obj: object) -> bool:
    return type(obj) is list and len(obj) == 4 and (obj[1] is None or type(obj[1]) is list) \
        and type(obj[3]) is list and len(obj[3]) % 6 == 0


def _put_if_changed(batch: WriteBatch, key: bytes, old: bytes | None,
                    new: bytes | None) -> None:
    if new == old:
        return
    if new is None:
        batch.delete(key)
    else:
        batch.put(key, new)


def _piece(token: int, p: Partition, complete: bool, alone: bool, size: int,
           last: bytes | None) -> ScanPiece | None:
    """The piece in canonical form, or None if nothing is left of it. Without a partition
    deletion, range tombstone or static row, nothing shadows its rows and each is canonical
    as stored (as `_read` relies on): the piece is canonical as read."""
    if reconcile.rows_only(p):
        return (token, p, complete, alone, size, last) if p.rows else None
    if reconcile.is_empty(p):
        return None
    p = reconcile.canonical(p)
    return None if reconcile.is_empty(p) else (token, p, complete, alone, size, last)
