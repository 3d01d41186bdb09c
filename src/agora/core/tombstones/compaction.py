"""Tombstone compaction: a background pass on every node that walks each table's local data
in bounded chunks, turns expired TTL cells into tombstones, and purges tombstones older than
the table's `gc_grace_seconds` (Cassandra's compaction with its PurgeFunction; the rules of
what may go are `reconcile.expire` and `reconcile.purge_tombstones`).

Owns: the pass (which table, where in it, one storage operation in flight at a time), the
node's *purge horizon* -- the largest local deletion time of anything it has ever purged,
persisted and gossiped, which the downtime check of `downtime.py` reads -- and the *purge
guards*: peers back from a long downtime that asked this node (or say in gossip) not to
purge tombstones newer than their last-alive time until they are repaired.

How a chunk goes: a split `StorageScan` of at most GC_CHUNK_ROWS stored rows and about
GC_CHUNK_BYTES (negative op ids, so the node can tell compaction scans from the replica's);
for each partition the purged version is computed here, purely; the partitions that change
go back in one `StorageReplace`, a compare-and-set: a partition written to since the scan is
left for the next pass, so a concurrent write is never lost. The horizon is raised (and
persisted) before the replace is issued, so it never understates what the disk may have
purged. Between chunks the pass waits GC_CHUNK_PAUSE_MS on a timer, so a large table never
holds the event loop: each chunk is one bounded scan plus one bounded rewrite.

A partition bigger than a chunk is walked in fragments (the scan cuts it after a row, the
next chunk resumes there), each rewritten on its own (`Rewrite` with its row span). Its
partition deletion and range tombstones shadow rows in every fragment, so they are purged
only with its last fragment, and only when the walk was clean: every earlier fragment
rewritten and the header's tombstones the same as at the first fragment. (A fragment that
compaction leaves unchanged is rewritten all the same while its header holds a purgeable
tombstone: the stored rows it shadows, which a scan does not return, go with the rewrite,
and must be gone before the tombstone is. A fragment not rewritten spoils the walk.) A walk
is abandoned when local data is dropped (`data_dropped`): what the drop removed may come
back in any order, behind the walk. Otherwise the tombstones stay for the next pass.

A truncated table's data (TRUNCATE, `Schema.truncated_at`) leaves with the pass too: each
fragment is rewritten without what the truncation covers (`reconcile.drop_truncated`),
tombstones included, whatever their gc_grace. That never needs a clean walk nor raises
the purge horizon: the truncation itself is kept for good and every replica drops what it
covers from what it reads, so nothing it covers can come back. The chunk's scan and its
replace are told the truncation, so an engine may hand over the rows it covers entirely as
stand-ins instead of decoding them; a chunk of whole partitions it covers entirely is
flagged (`StorageReplace.all_truncated`), so an engine may free it in one range deletion
after checking, under its write lock, that all it stores there still is covered. A node
that learns of a truncation walks that table at once (`compact_soon`) rather than at the
next pass, once its first pass would have been due (purge guards known by then).

A table whose last walk found nothing for compaction is not walked again until a write gives
it something (a tombstone, a TTL, a partition header): a pass's walk begins with a
`walk_start` scan, which the engine answers at once, `skipped`, for a table it records clean
(`agora.storage.clean`). A walk that reaches the table's end having found only live,
non-expiring data (`nothing_to_do`) says so (`StorageWalkClean`), and the engine records the
table clean unless a write since the walk began had something for compaction. A table that
was ever truncated (or dropped) is walked every time, without asking the engine: a write older
than the truncation (a late hint) is live data, which would not end a record, yet the walk
must drop it. Most tables hold no tombstones and were never truncated, and a pass then reads
nothing of them.

Does not know: how storage lays partitions out (the engine does the replace), or when a
repair has run (the downtime check and the repair code decide that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agora.core import reconcile
from agora.core.effects import (Log, PersistMeta, Rewrite, SetTimer, StorageReplace, StorageReplaceDone,
                                StorageScan, StorageScanDone, StorageWalkClean)
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Cell, NodeId, Partition, Row

# Stored rows and bytes read per chunk (a bigger partition is walked in fragments): bound the
# memory one chunk holds, how long its rewrite holds the engine's write lock, and how long
# the chunk holds the event loop while other requests wait. With 500, point requests at
# 1,000/s beside a pass on every node saw a p99 of 0.9-2.0 s, with 100 of 31-41 ms
# (BENCHMARKS.md, ninth round); the pass takes about 25 % longer.
GC_CHUNK_ROWS = 100
GC_CHUNK_BYTES = 1 << 17
# Pause between two chunks of a pass, in ms: the node serves other inputs in between.
GC_CHUNK_PAUSE_MS = 1
# The first pass of a process waits at least this many gossip rounds, so that gossip has
# told it which peers need repair (their purge guards) before it purges anything.
GC_FIRST_PASS_GOSSIP_ROUNDS = 10
# Seconds of clock difference between nodes we tolerate: tombstones carry their
# coordinator's clock, last-alive times the returning node's. Guards and the downtime check
# widen every comparison by this much, on the safe side (NTP keeps real skew far below it).
CLOCK_MARGIN_S = 2

PURGE_HORIZON_META_KEY = "purge_horizon_s"
PURGE_HORIZON_STATE = "PURGE_HORIZON"  # gossip: str(horizon), the largest purged ldt_s
REPAIR_FLAG_STATE = "REPAIR_NEEDED"  # gossip: "<since_s> <state>" or "" (downtime.py)

PASS_TIMER = ("tombstones", "pass")
CHUNK_TIMER = ("tombstones", "chunk")
SOON_TIMER = ("tombstones", "soon")  # truncated tables learnt of before the first pass was due


def parse_repair_flag(value: str | None) -> tuple[int, str] | None:
    """(since_s, state) from a REPAIR_NEEDED gossip value; None when not set or malformed
    (a malformed value is a peer's bug; ignoring it only means no guard for it)."""
    if not value:
        return None
    since, _, state = value.partition(" ")
    return (int(since), state) if since.isdigit() else None


class GossipView(Protocol):
    def app_state(self, node: NodeId, key: str) -> str | None: ...

    def generation_of(self, node: NodeId) -> int | None: ...

    def known_nodes(self) -> list[NodeId]: ...


class NoPeers:
    """The GossipView of a node that knows no peer: a pass run alone (benchmarks, tests)."""

    def app_state(self, node: NodeId, key: str) -> str | None:
        return None

    def generation_of(self, node: NodeId) -> int | None:
        return None

    def known_nodes(self) -> list[NodeId]:
        return []


class PurgeGuards:
    """Peers whose missed tombstones this node must keep: explicit requests (PurgeHorizonReq,
    valid for the requesting incarnation until its gossip flag is cleared) and every peer
    whose gossip carries a REPAIR_NEEDED flag."""

    def __init__(self, gossip: GossipView, local: NodeId):
        self.gossip = gossip
        self.local = local
        self._explicit: dict[NodeId, tuple[int, int]] = {}  # node -> (generation, since_s)

    def add(self, node: NodeId, generation: int, since_s: int) -> None:
        old = self._explicit.get(node)
        if old is None or (generation, -since_s) > (old[0], -old[1]):
            self._explicit[node] = (generation, since_s)

    def floor_s(self) -> int | None:
        """No tombstone with ldt_s >= this may be purged (None: no guard)."""
        floors = []
        for node in sorted(self._explicit):
            generation, since_s = self._explicit[node]
            current = self.gossip.generation_of(node)
            flag = self.gossip.app_state(node, REPAIR_FLAG_STATE)
            if current is not None and (current > generation or (current == generation and flag == "")):
                del self._explicit[node]  # repaired, or a newer incarnation that decides anew
                continue
            floors.append(since_s)
        for node in self.gossip.known_nodes():
            parsed = parse_repair_flag(self.gossip.app_state(node, REPAIR_FLAG_STATE))
            if node != self.local and parsed is not None:
                floors.append(parsed[0])
        return min(floors) - CLOCK_MARGIN_S if floors else None

    def guarded(self) -> list[NodeId]:
        return sorted(self._explicit)


def compact_partition(p: Partition, now_s: int, gc_before_s: int,
                      purge_header: bool = True) -> tuple[Partition | None, int]:
    """What compaction makes of one stored partition, or of a fragment of one: expired cells
    become tombstones, then tombstones with ldt_s < gc_before_s go -- the partition deletion
    and range tombstones only with `purge_header` (a fragment keeps them: they may still
    shadow rows of the partition that compaction has not rewritten). Returns (the new
    version or None if unchanged, the largest ldt_s purged or 0 if nothing was)."""
    if nothing_to_do(p):
        return None, 0
    expired = reconcile.canonical(reconcile.expire(p, now_s))
    purged = reconcile.purge_tombstones(expired, gc_before_s)
    if not purge_header:
        purged = Partition(purged.table_id, purged.key, expired.deletion, list(expired.range_tombstones),
                           purged.static, purged.rows)
    if purged == p:
        return None, 0
    return purged, max_purged_ldt(expired, gc_before_s, purge_header)


def nothing_to_do(p: Partition) -> bool:
    """Whether `p` is rows only and every row holds only live, non-expiring data (a marker
    or cells, no tombstone, no TTL): nothing can expire, nothing is shadowed, nothing is
    purgeable, so compaction leaves it as it is. Most stored partitions are so, and a pass
    over them now costs a look at each cell instead of a merge and a purge."""
    if p.deletion is not None or p.range_tombstones or p.static is not None:
        return False
    for row in p.rows.values():
        marker, cells = row.marker, row.cells
        if row.deletion is not None or (marker is None and not cells):
            return False
        if marker is not None and (marker.value is None or marker.ttl_s):
            return False
        for c in cells.values():
            if c.value is None or c.ttl_s:
                return False
    return True


def max_purged_ldt(p: Partition, gc_before_s: int, header: bool = True) -> int:
    """The largest ldt_s among what `purge_tombstones(p, gc_before_s)` drops from the
    canonical partition `p` (0 if nothing); without `header`, among its rows' only."""
    found = [0]
    if header and p.deletion is not None and p.deletion.ldt_s < gc_before_s:
        found.append(p.deletion.ldt_s)
    if header:
        found += [rt.deletion.ldt_s for rt in p.range_tombstones if rt.deletion.ldt_s < gc_before_s]
    for row in ([p.static] if p.static is not None else []) + list(p.rows.values()):
        found.append(_row_purged_ldt(row, gc_before_s))
    return max(found)


def _row_purged_ldt(row: Row, gc_before_s: int) -> int:
    def purgeable(c: Cell | None) -> bool:
        return c is not None and (c.value is None or c.ttl_s > 0) and c.ldt_s < gc_before_s
    found = [c.ldt_s for c in row.cells.values() if purgeable(c)]
    if purgeable(row.marker):
        found.append(row.marker.ldt_s)
    if row.deletion is not None and row.deletion.ldt_s < gc_before_s:
        found.append(row.deletion.ldt_s)
    return max(found, default=0)


def _header_purgeable(p: Partition, gc_before_s: int) -> bool:
    """Whether p's partition deletion or one of its range tombstones may go now."""
    return (p.deletion is not None and p.deletion.ldt_s < gc_before_s) \
        or any(rt.deletion.ldt_s < gc_before_s for rt in p.range_tombstones)


class TombstoneCompaction:
    """The pass. `tables()` lists (table id, gc_grace_seconds) of the current schema."""

    def __init__(self, tables: Callable[[], list[tuple[bytes, int]]], guards: PurgeGuards,
                 interval_ms: int, first_pass_ms: int, horizon_s: int = 0,
                 truncated_at: Callable[[bytes], int | None] = lambda table_id: None):
        self.tables = tables
        self.truncated_at = truncated_at
        self.guards = guards
        self.interval_ms = interval_ms
        self.first_pass_ms = first_pass_ms
        self.horizon_s = horizon_s
        self._queue: list[bytes] = []  # tables still to walk in this pass
        self._table: bytes | None = None
        self._cursor: tuple[int, bytes | None, bytes | None] = (MIN_TOKEN, None, None)  # token, key, ckey
        # The partition walked in fragments: [key, its tombstones at the first fragment,
        # clean so far (every fragment rewritten, or left alone without a tombstone to purge)],
        # None between partitions.
        self._walk: list | None = None
        self._walk_pairs = 0  # the pairs of the replace in flight if a fragment is among them, else 0
        self._op: int | None = None  # the one storage operation in flight
        self._scanned_truncation: int | None = None  # the truncation the chunk's scan was given
        self._exhausted = False  # the chunk being rewritten was the table's last
        self._next_op = -1  # negative: never a replica's op id (Node.on_storage_done routes by range)
        self._started_ms: int | None = None
        self.running = False
        self._soon = False  # what runs is a walk of truncated tables only (compact_soon)
        self._deferred: set[bytes] = set()  # compact_soon's tables until the first pass is due
        # The table's walk began with a walk_start scan and has found nothing for compaction
        # so far.
        self._clean_walk = False
        self.stats = {"passes": 0, "chunks": 0, "partitions_rewritten": 0, "tables_skipped": 0}
        self.skipped: list[bytes] = []  # the tables the latest pass skipped, clean

    def start(self, now_ms: int) -> list:
        self._started_ms = now_ms
        if self.interval_ms <= 0:
            return []
        return [SetTimer(PASS_TIMER, max(self.interval_ms, self.first_pass_ms))]

    def owns_op(self, op_id: int) -> bool:
        return op_id is not None and op_id == self._op

    def run_pass(self, now_ms: int) -> list:
        """Start a pass now, unless one is running (tests and the timer call this). While
        only truncated tables are being walked (`compact_soon`), the pass goes on from
        there: every table is walked after them."""
        if self.running and not self._soon:
            return []
        self.stats["passes"] += 1
        tables = sorted((tid for tid, _ in self.tables()), reverse=True)
        self._soon = False
        self.skipped = []
        if self.running:
            self._queue = [t for t in tables if t not in self._queue] + self._queue
            return []
        self.running = True
        self._queue = tables
        return self._next_table()

    def compact_soon(self, table_ids: list[bytes], now_ms: int) -> list:
        """Walk these tables now (TRUNCATE emptied them: the space it frees), or after the
        tables the pass under way has still to walk, or once the first pass is due if it is
        not yet (until then the node may not know every purge guard); nothing if passes are
        off (`tombstone_gc_interval` 0)."""
        if self.interval_ms <= 0 or self._started_ms is None:
            return []
        due = self._started_ms + self.first_pass_ms
        if now_ms < due:
            first = not self._deferred
            self._deferred.update(table_ids)
            return [SetTimer(SOON_TIMER, due - now_ms)] if first else []
        if self.running:  # even the table being walked: its chunks already passed need it
            self._queue = [*(t for t in table_ids if t not in self._queue), *self._queue]
            return []
        self.running = True
        self._soon = True
        self._queue = sorted(set(table_ids), reverse=True)
        return self._next_table()

    def on_timer(self, timer_id, now_ms: int) -> list:
        if timer_id == PASS_TIMER:
            return [SetTimer(PASS_TIMER, self.interval_ms), *self.run_pass(now_ms)]
        if timer_id == CHUNK_TIMER and self.running and self._op is None:
            return self._scan() if self._table is not None else self._next_table()
        if timer_id == SOON_TIMER:
            deferred, self._deferred = sorted(self._deferred), set()
            return self.compact_soon(deferred, now_ms)
        return []

    def _next_table(self) -> list:
        if not self._queue:
            self.running = False
            self._table = None
            return []
        self._table = self._queue.pop()
        self._cursor = (MIN_TOKEN, None, None)
        self._walk = None
        # A truncated table is walked every time: a write older than its truncation (a late
        # hint) is live data the walk must drop, which would not end a record.
        self._clean_walk = not self._soon and self.truncated_at(self._table) is None
        return self._scan(walk_start=self._clean_walk)

    def _new_op(self) -> int:
        op = self._next_op
        self._next_op -= 1
        self._op = op
        return op

    def _scan(self, walk_start: bool = False) -> list:
        token, key, ckey = self._cursor
        # a truncated table's scan may return the rows the truncation covers as stand-ins,
        # which drop_truncated drops like the rows (StorageScan.truncated_at); the replace
        # then reads the stored rows back the same way
        self._scanned_truncation = self.truncated_at(self._table)
        return [StorageScan(self._new_op(), self._table, token, key, MAX_TOKEN, GC_CHUNK_ROWS, GC_CHUNK_BYTES,
                            split=True, start_ckey=ckey, truncated_at=self._scanned_truncation,
                            walk_start=walk_start)]

    def gc_before_s(self, gc_grace_s: int, now_s: int) -> int:
        """Tombstones with ldt_s below this may go: older than gc_grace, and older than
        every guard's last-alive time."""
        floor = self.guards.floor_s()
        limit = now_s - gc_grace_s
        return limit if floor is None else min(limit, floor)

    def on_scan_done(self, done: StorageScanDone, now_ms: int) -> list:
        self._op = None
        grace = dict(self.tables()).get(self._table)
        if done.error is not None or grace is None:
            out = [] if done.error is None else [Log("warning", f"compaction scan failed: {done.error}")]
            self._table = None  # on to the next table, after the pause
            self._walk = None
            self._clean_walk = False
            return out + [SetTimer(CHUNK_TIMER, GC_CHUNK_PAUSE_MS)]
        if done.skipped:  # clean since its last walk: on to the next table at once
            self.stats["tables_skipped"] += 1
            self.skipped.append(self._table)
            self._clean_walk = False
            return self._next_table()
        now_s = now_ms // 1000
        gc_before = self.gc_before_s(grace, now_s)
        pairs, horizon = [], self.horizon_s
        _, resumed_key, resumed_after = self._cursor
        walked = False
        truncated_at = self.truncated_at(self._table)
        gone = 0  # whole partitions the scanned truncation leaves nothing of
        for i, (_, stored) in enumerate(done.partitions):
            after = resumed_after if i == 0 and resumed_after is not None and stored.key == resumed_key else None
            up_to = done.cut_ckey if i == len(done.partitions) - 1 else None
            # what is left once TRUNCATE's part is gone: the walk and the purge work on that
            base = stored if truncated_at is None else reconcile.drop_truncated(stored, truncated_at)
            idle = base is stored and nothing_to_do(stored)  # live data only, nothing truncated
            if self._clean_walk and not idle:
                self._clean_walk = False  # compaction has something to do in this table
            if base is None:
                base = Partition(stored.table_id, stored.key)
                scanned = self._scanned_truncation
                if after is None and up_to is None and scanned is not None and (
                        scanned == truncated_at or reconcile.drop_truncated(stored, scanned) is None):
                    gone += 1
            purge_header = up_to is None and (after is None or self._walk_clean(base))
            if up_to is not None and after is None:  # the first fragment: a walk begins
                self._walk = [base.key, (base.deletion, base.range_tombstones), True]
            elif after is not None and not self._walk_clean(base):  # a later fragment, of a spoilt walk
                self._walk = [base.key, None, False]
            new, purged_ldt = (None, 0) if idle else compact_partition(base, now_s, gc_before, purge_header)
            if new is None and base is not stored and base != stored:
                new = base  # the truncated data leaves the disk
            if new is None and up_to is not None and (base.deletion is not None or base.range_tombstones):
                if self._walk_clean(base) and _header_purgeable(base, gc_before):
                    new = base  # rewritten anyway: the rows its tombstones shadow leave the disk first
                else:  # their rows stay on disk: the tombstones wait for a later walk
                    self._walk = [base.key, None, False]
            if new is not None:
                pairs.append(Rewrite(stored, new, after, up_to))
                horizon = max(horizon, purged_ldt)
                walked = walked or after is not None or up_to is not None
        self._walk_pairs = len(pairs) if walked else 0
        if done.partitions:
            last_token, last = done.partitions[-1]
            self._cursor = (last_token, last.key, done.cut_ckey)
            if done.cut_ckey is None:
                self._walk = None
        self.stats["chunks"] += 1
        out: list = []
        if horizon > self.horizon_s:  # durable before anything it covers is purged
            self.horizon_s = horizon
            out.append(PersistMeta(PURGE_HORIZON_META_KEY, str(horizon).encode()))
        self._exhausted = done.exhausted
        if pairs:
            # a chunk of whole partitions, all truncated: one range deletion can free it
            whole = gone == len(done.partitions) == len(pairs)
            out.append(StorageReplace(self._new_op(), tuple(pairs), truncated_at=self._scanned_truncation,
                                      all_truncated=whole))
            return out
        return out + self._advance()

    def data_dropped(self) -> None:
        """Local data was dropped (the downtime check's StorageDropTable): what it held may be
        written again in any order, so a walk under way can no longer vouch for the fragments
        it has passed; its partition's tombstones wait for the next walk. (A drop lands
        between chunks: both drivers run a chunk's scan, and the replace its completion
        issues, in one drain of the node's effects.)"""
        self._walk = None
        self._clean_walk = False

    def _walk_clean(self, fragment: Partition) -> bool:
        """Whether `fragment` continues a clean walk: its partition's earlier fragments were
        all rewritten or unchanged, and its tombstones are still those of the first one."""
        w = self._walk
        return w is not None and w[2] and w[0] == fragment.key \
            and w[1] == (fragment.deletion, fragment.range_tombstones)

    def on_replace_done(self, done: StorageReplaceDone) -> list:
        self._op = None
        if self._walk is not None and self._walk_pairs and (done.error is not None or done.replaced < self._walk_pairs):
            self._walk[2] = False  # a fragment may have been left as it was (conservative)
        self.stats["partitions_rewritten"] += done.replaced
        out = [] if done.error is None else [Log("warning", f"compaction rewrite failed: {done.error}")]
        return out + self._advance()

    def _advance(self) -> list:
        out: list = []
        if self._exhausted:
            if self._clean_walk:  # the whole table, and nothing to do in it
                out.append(StorageWalkClean(self._table))
                self._clean_walk = False
            self._table = None
        return out + [SetTimer(CHUNK_TIMER, GC_CHUNK_PAUSE_MS)]
