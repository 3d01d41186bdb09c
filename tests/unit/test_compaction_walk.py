"""Tombstone compaction over partitions bigger than a chunk, on both engines: the pass (the
real `TombstoneCompaction`, driven by hand against the engine) walks such a partition in
bounded fragments, ends where compacting it whole would, and purges the partition deletion
and range tombstones only after a clean walk -- a fragment that a concurrent write kept
from being rewritten, or a deletion that arrived during the walk, keeps them for the next
pass, so the rows they shadow never come back. A table whose walk found nothing for
compaction is skipped by later passes until a write gives it something (agora.storage.clean)."""

from __future__ import annotations

import random

import pytest

from agora.core import reconcile
from agora.core.effects import PersistMeta, SetTimer, StorageReplace, StorageScan, StorageWalkClean
from agora.core.tombstones import compaction
from agora.core.tombstones.compaction import (CHUNK_TIMER, PASS_TIMER, NoPeers, PurgeGuards, TombstoneCompaction,
                                              compact_partition)
from agora.core.ring.partitioner import token_for_key
from agora.core.types import Bound, Cell, Deletion, Partition, RangeTombstone, ReadCommand, Row
from agora.storage import completions
from agora.storage.memory import MemoryEngine
from agora.storage.rocks import RocksEngine

T = b"\x22" * 16
KEY = b"wide"
ROWS = 1_600
GRACE_S = 10
NOW_MS = 1_000_000_000  # far after every ldt below: whatever is older than gc_grace goes


CHUNK_ROWS, CHUNK_BYTES = 60, 4_096  # small chunks: many fragments, some of shadowed rows only


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(compaction, "GC_CHUNK_ROWS", CHUNK_ROWS)
    monkeypatch.setattr(compaction, "GC_CHUNK_BYTES", CHUNK_BYTES)


def ck(i: int) -> bytes:
    return i.to_bytes(4, "big")


def live(ts: int, ttl: int = 0, ldt: int = 0) -> Row:
    return Row((), Cell(ts, b"", ttl, ldt), None, {("v", b""): Cell(ts, b"x" * 20, ttl, ldt)})


def read(engine) -> Partition | None:
    return engine.read(ReadCommand(T, KEY))


def run_pass(engine, before_effect=None, clock=lambda chunk: NOW_MS, truncated_at=None) -> list:
    """One whole compaction pass of table T; `before_effect(eff, chunk, pass_)` runs before
    each storage effect is executed (a concurrent write goes there). Returns the scans'
    answers. `clock(chunk)` is the time in ms the pass sees at each chunk; `truncated_at`,
    when T was truncated."""
    comp = TombstoneCompaction(lambda: [(T, GRACE_S)], PurgeGuards(NoPeers(), "me"), 60_000, 0,
                               truncated_at=lambda table_id: truncated_at)
    answers, chunk = [], 0
    effects = comp.run_pass(clock(0))
    while effects:
        pending, effects = effects, []
        for eff in pending:
            if isinstance(eff, (StorageScan, StorageReplace)):
                if before_effect is not None:
                    before_effect(eff, chunk, comp)
                done = completions.complete(engine, eff)
                if isinstance(eff, StorageScan):
                    answers.append(done)
                    effects += comp.on_scan_done(done, clock(chunk))
                else:
                    effects += comp.on_replace_done(done)
            elif isinstance(eff, StorageWalkClean):
                completions.run_walk_clean(engine, eff)
            elif isinstance(eff, SetTimer) and eff.timer_id == CHUNK_TIMER:
                chunk += 1
                effects += comp.on_timer(CHUNK_TIMER, clock(chunk))
            else:
                assert isinstance(eff, PersistMeta) or (isinstance(eff, SetTimer) and eff.timer_id == PASS_TIMER), eff
    assert not comp.running
    return answers


def write_wide(engine) -> None:
    """Rows 0..799 written before a partition deletion (shadowed; RocksDB still holds them),
    the deletion, rows 800..1599 after it; some of those deleted, some expired, some under a
    range tombstone. Every tombstone is long past gc_grace at NOW_MS."""
    engine.apply([Partition(T, KEY, rows={ck(i): live(10) for i in range(ROWS // 2)})])
    engine.apply([Partition(T, KEY, deletion=Deletion(20, 100))])
    rows = {}
    for i in range(ROWS // 2, ROWS):
        if i % 7 == 0:
            rows[ck(i)] = Row((), None, Deletion(40, 100))
        elif i % 11 == 0:
            rows[ck(i)] = live(30, ttl=50, ldt=150)  # expired long ago
        else:
            rows[ck(i)] = live(30)
    engine.apply([Partition(T, KEY, rows=rows)])
    engine.apply([Partition(T, KEY, range_tombstones=[
        RangeTombstone(Bound(ck(1000)), Bound(ck(1099)), Deletion(35, 100))])])


def test_a_wide_partition_is_walked_in_bounded_fragments_and_ends_as_compacting_it_whole(engine):
    write_wide(engine)
    whole = read(engine)
    expected, _ = compact_partition(whole, NOW_MS // 1000, NOW_MS // 1000 - GRACE_S)
    assert expected.deletion is None and not expected.range_tombstones and len(expected.rows) < ROWS // 2

    answers = run_pass(engine)
    sizes = [sum(len(p.rows) for _, p in a.partitions) for a in answers]
    assert len(answers) >= 20 and max(sizes) <= CHUNK_ROWS + CHUNK_ROWS // 4, sizes  # was one answer
    if isinstance(engine, RocksEngine):  # it keeps shadowed rows until a rewrite (the memory engine merges them away)
        assert sum(1 for a in answers if a.cut_ckey is not None and not a.partitions[0][1].rows) >= 5
    assert read(engine) == expected
    assert run_pass(engine) and read(engine) == expected  # nothing left to do: the same again


def test_a_fragment_a_concurrent_write_kept_from_being_rewritten_keeps_the_deletion(engine):
    write_wide(engine)

    def concurrent_write(eff, chunk, _):
        if isinstance(eff, StorageReplace) and chunk == 0:  # inside the first fragment
            engine.apply([Partition(T, KEY, rows={ck(5): live(50)})])

    run_pass(engine, concurrent_write)
    after = read(engine)
    # The first fragment still holds rows 0..799's shadowed neighbours: the deletion must stay.
    assert after.deletion == Deletion(20, 100)
    assert [c for c in after.rows if int.from_bytes(c, "big") < ROWS // 2] == [ck(5)]
    run_pass(engine)  # the next pass walks it cleanly and purges it
    again = read(engine)
    assert again.deletion is None and again.rows[ck(5)] == live(50)
    assert [c for c in again.rows if int.from_bytes(c, "big") < ROWS // 2] == [ck(5)]


def test_a_deletion_that_arrives_during_the_walk_is_kept_until_a_walk_has_seen_it_from_the_start(engine):
    engine.apply([Partition(T, KEY, rows={ck(i): live(30) for i in range(ROWS)})])

    def late_deletion(eff, chunk, _):
        if isinstance(eff, StorageScan) and chunk == 1:  # after the first fragment was rewritten
            engine.apply([Partition(T, KEY, deletion=Deletion(60, 100))])

    run_pass(engine, late_deletion)
    assert read(engine) == Partition(T, KEY, deletion=Deletion(60, 100))  # every row stays shadowed
    run_pass(engine)
    assert read(engine) is None


def test_a_walk_is_abandoned_when_local_data_is_dropped_and_written_again_behind_it(engine):
    """The downtime check drops a table's data mid-walk; hints and repair write it back, old
    rows first, then the same deletion: the header looks as it did at the first fragment,
    but rows it shadows are back on disk in a fragment the walk has passed."""
    deletion = Deletion(20, 100)
    old = Partition(T, KEY, rows={ck(i): live(10) for i in range(300)})
    new = Partition(T, KEY, rows={ck(i): live(30) for i in range(300, 600)})
    for p in (old, Partition(T, KEY, deletion=deletion), new):
        engine.apply([p])

    def drop_and_refill(eff, chunk, pass_):
        if isinstance(eff, StorageScan) and chunk == 2:
            engine.drop_table(T)
            pass_.data_dropped()  # what the node's tombstone keeper does with a StorageDropTable
            for p in (Partition(T, KEY, rows={ck(i): live(10) for i in range(5)}),
                      Partition(T, KEY, deletion=deletion), new):
                engine.apply([p])

    run_pass(engine, drop_and_refill)
    after = read(engine)
    assert after.deletion == deletion and sorted(reconcile.live_view(after, NOW_MS // 1000).rows) == sorted(new.rows)
    run_pass(engine)
    after = read(engine)
    assert after.deletion is None and sorted(reconcile.live_view(after, NOW_MS // 1000).rows) == sorted(new.rows)


def test_a_deletion_that_becomes_purgeable_during_the_walk_waits_for_the_next_one(engine):
    """At the first fragments the deletion is younger than gc_grace, so compaction leaves
    them as they are, shadowed rows and all; by the last fragment it is older: it stays."""
    deletion = Deletion(20, 100)
    engine.apply([Partition(T, KEY, rows={ck(i): live(10) for i in range(300)})])
    engine.apply([Partition(T, KEY, deletion=deletion)])
    engine.apply([Partition(T, KEY, rows={ck(i): live(30) for i in range(300, 600)})])
    run_pass(engine, clock=lambda chunk: (100 + GRACE_S) * 1000 if chunk < 3 else NOW_MS)
    after = read(engine)
    assert after.deletion == deletion
    assert sorted(reconcile.live_view(after, NOW_MS // 1000).rows) == [ck(i) for i in range(300, 600)]
    run_pass(engine)
    after = read(engine)
    assert after.deletion is None and sorted(after.rows) == [ck(i) for i in range(300, 600)]


def _random_write(rng: random.Random, ts: int) -> Partition:
    """Rows (some expired long ago), a row deletion, a range tombstone or a partition
    deletion, at `ts`; tombstones dated long before NOW_MS - gc_grace."""
    roll = rng.random()
    if roll < 0.55:
        rows = {}
        for _ in range(rng.randint(1, 400)):
            i = rng.randrange(ROWS)
            rows[ck(i)] = live(ts, ttl=50, ldt=150) if rng.random() < 0.1 else live(ts)
        return Partition(T, KEY, rows=rows)
    if roll < 0.75:
        return Partition(T, KEY, rows={ck(rng.randrange(ROWS)): Row((), None, Deletion(ts, 100))})
    if roll < 0.9:
        lo = rng.randrange(ROWS)
        hi = min(ROWS - 1, lo + rng.randint(0, 300))
        return Partition(T, KEY, range_tombstones=[RangeTombstone(Bound(ck(lo)), Bound(ck(hi)), Deletion(ts, 100))])
    return Partition(T, KEY, deletion=Deletion(ts, 100))


def _histories(engine, rng: random.Random, truncated_at: int | None = None):
    """A random history: writes in any timestamp order (1..100), then four passes, writes
    landing between the storage operations of the first two. Under a truncation, those
    writes fall on both sides of it and hold no partition deletion (a newer one would hide
    what only the truncation removes, so a walk that failed to would not show). Yields,
    after each pass, (the pass's hook, what the engine holds, what the same writes never
    compacted hold)."""
    reference = MemoryEngine()

    def write(p: Partition) -> None:
        engine.apply([p])
        reference.apply([p])

    for _ in range(rng.randint(3, 8)):
        write(_random_write(rng, rng.randint(1, 100)))
    clock = [200]

    def concurrent(eff, chunk, _):
        if rng.random() < 0.4:
            clock[0] += 1
            if truncated_at is None:
                write(_random_write(rng, clock[0]))
            elif (p := _random_write(rng, clock[0] if rng.random() < 0.7 else rng.randint(100, truncated_at))).deletion is None:
                write(p)

    for hook in (concurrent, concurrent, None, None):
        run_pass(engine, hook, truncated_at=truncated_at)
        yield hook, read(engine), reference.read(ReadCommand(T, KEY))


@pytest.mark.parametrize("seed", range(16))
def test_what_clients_see_never_changes_under_walks_and_concurrent_writes(engine, seed):
    """Random histories (writes in any timestamp order first, then newer ones landing between
    the pass's storage operations): after each pass the client's view is that of the same
    writes never compacted, and after two quiet passes nothing purgeable is left."""
    now_s = NOW_MS // 1000
    for hook, got, want in _histories(engine, random.Random(seed)):
        assert reconcile.live_view(got or Partition(T, KEY), now_s) == \
            reconcile.live_view(want or Partition(T, KEY), now_s), (seed, hook)
    assert got is None or compact_partition(got, now_s, now_s - GRACE_S) == (None, 0)


@pytest.mark.parametrize("seed", range(8))
def test_a_truncated_wide_partition_leaves_the_disk_and_what_clients_see_never_changes(engine, seed):
    """Random histories under a truncation at 150 (writes before it at 1..100, concurrent
    ones on both sides of it): after each pass the client's view, truncation applied, is
    that of the same writes never compacted; after two quiet passes nothing the truncation
    covers is stored, and nothing purgeable is left."""
    truncated = 150
    now_s = NOW_MS // 1000

    def seen(p: Partition | None) -> Partition:
        left = None if p is None else reconcile.drop_truncated(p, truncated)
        return reconcile.live_view(left or Partition(T, KEY), now_s)

    for hook, got, want in _histories(engine, random.Random(1000 + seed), truncated):
        assert seen(got) == seen(want), (seed, hook)
    assert got is None or reconcile.drop_truncated(got, truncated) == got
    assert got is None or compact_partition(got, now_s, now_s - GRACE_S) == (None, 0)
    if isinstance(engine, RocksEngine):  # no stored row holds what the truncation covers, shadowed or not
        from agora.storage import keys, rocks
        for key, raw in engine._db.items():
            _, _, plen = keys.parse_partition(key)
            if key[plen:plen + 1] == keys.KIND_ROW:
                row = rocks._row_from_bytes(raw)
                assert reconcile.drop_truncated(Partition(T, KEY, rows={b"r": row}), truncated) \
                    == Partition(T, KEY, rows={b"r": row}), row


def test_a_walk_of_a_truncated_table_does_not_build_the_rows_the_truncation_covers(tmp_path, monkeypatch):
    """On RocksDB the walk's scan and its compare-and-set read the rows a truncation covers
    entirely as stand-ins (StorageScan/StorageReplace.truncated_at): none is built, and
    they leave the disk all the same; a row written after the truncation is built and kept."""
    from agora.storage import rocks
    engine = RocksEngine(str(tmp_path / "db"))
    engine.apply([Partition(T, KEY, rows={ck(i): Row((ck(i),), Cell(10 + i, b""), None, {("v", b""): Cell(10 + i, b"x")})
                                         for i in range(200)})])
    engine.apply([Partition(T, KEY, rows={ck(500): live(900)})])
    built = []
    real = rocks.row_from_plain
    monkeypatch.setattr(rocks, "row_from_plain", lambda plain: built.append(plain[0]) or real(plain))
    run_pass(engine, truncated_at=500)
    assert built and all(clustering == [] for clustering in built)  # live() rows: clustering ()
    assert sorted(read(engine).rows) == [ck(500)]


def _truncated_partitions(engine, count: int) -> list[bytes]:
    keys = [f"k{i}".encode() for i in range(count)]
    engine.apply([Partition(T, k, rows={b"": Row((), Cell(10, b""), None, {("v", b""): Cell(10, b"x")})})
                  for k in keys])
    return keys


def test_a_chunk_of_truncated_partitions_goes_in_one_range_deletion(tmp_path):
    """A chunk whose partitions the truncation covers entirely goes at once: one range
    deletion, checked under the write lock, and no per-key tombstone."""
    engine = RocksEngine(str(tmp_path / "db"))
    _truncated_partitions(engine, 30)
    replaces = []
    run_pass(engine, before_effect=lambda eff, chunk, comp: replaces.append(eff)
             if isinstance(eff, StorageReplace) else None, truncated_at=500)
    assert replaces and all(eff.all_truncated for eff in replaces)
    assert list(engine.scan(T, -2**63, 2**63 - 1)) == []
    assert engine._db.property_int_value("rocksdb.num-deletes-active-mem-table") == 0


NEWER_ROW = Row((), Cell(900, b""), None, {("v", b""): Cell(900, b"new")})


@pytest.mark.parametrize("written, kept", [
    (Partition(T, b"k7", rows={b"": NEWER_ROW}), True),  # a row after the truncation
    (Partition(T, b"k7", Deletion(900, 1)), True),  # a partition deletion after it
    (Partition(T, b"k7", static=Row((), None, None, {("s", b""): Cell(900, b"st")})), True),  # a static row
    (Partition(T, b"k7", rows={b"": live(20)}), False),  # a row before it: covered, goes too
])
def test_what_is_written_into_a_truncated_chunk_during_its_walk_decides_how_it_goes(tmp_path, written, kept):
    """Written between the chunk's scan and its rewrite, anything the truncation does not
    cover fails the range check, and the chunk goes pair by pair: the written partition
    stays, with what was written. A covered write does not stop the range deletion."""
    engine = RocksEngine(str(tmp_path / "db"))
    _truncated_partitions(engine, 30)

    def write_during(eff, chunk, comp):
        if isinstance(eff, StorageReplace):
            assert eff.all_truncated
            engine.apply([written])
    run_pass(engine, before_effect=write_during, truncated_at=500)
    left = {p.key: reconcile.drop_truncated(p, 500) for _, p in engine.scan(T, -2**63, 2**63 - 1)}
    if kept:
        assert list(left) == [b"k7"] and left[b"k7"] == written
        assert engine._db.property_int_value("rocksdb.num-deletes-active-mem-table") > 0
    else:
        assert left == {}
        assert engine._db.property_int_value("rocksdb.num-deletes-active-mem-table") == 0


def test_a_table_truncated_during_a_pass_is_walked_again_after_it():
    engine = MemoryEngine()
    other = b"\x33" * 16
    for tid in (T, other):
        engine.apply([Partition(tid, b"k%d" % i, rows={b"": live(10)}) for i in range(5)])
    truncated = {}
    comp = TombstoneCompaction(lambda: [(T, GRACE_S), (other, GRACE_S)], PurgeGuards(NoPeers(), "me"),
                               60_000, 10_000, truncated_at=truncated.get)
    comp.start(NOW_MS)
    from agora.core.tombstones.compaction import SOON_TIMER
    assert comp.compact_soon([T], NOW_MS + 9_999) == [SetTimer(SOON_TIMER, 1)]  # not before the first pass is due
    walked = []
    effects = comp.run_pass(NOW_MS + 10_000)
    while effects:
        pending, effects = effects, []
        for eff in pending:
            if isinstance(eff, StorageScan):
                walked.append(eff.table_id)
                if len(walked) == 1:  # T is truncated while the pass walks it
                    truncated[T] = 20
                    assert comp.compact_soon([T], NOW_MS + 10_000) == []  # queued behind the pass
                effects += comp.on_scan_done(completions.complete(engine, eff), NOW_MS + 10_000)
            elif isinstance(eff, StorageReplace):
                effects += comp.on_replace_done(completions.complete(engine, eff))
            elif isinstance(eff, SetTimer) and eff.timer_id == CHUNK_TIMER:
                effects += comp.on_timer(CHUNK_TIMER, NOW_MS + 10_000)
    assert walked[0] == walked[-1] == T and other in walked and not comp.running
    assert all(engine.read(ReadCommand(T, b"k%d" % i)) is None for i in range(5))
    assert all(engine.read(ReadCommand(other, b"k%d" % i)) is not None for i in range(5))


def test_the_pass_timer_walks_every_table_even_while_a_truncated_table_is_being_walked():
    other = b"\x33" * 16
    comp = TombstoneCompaction(lambda: [(T, GRACE_S), (other, GRACE_S)], PurgeGuards(NoPeers(), "me"),
                               60_000, 10_000, truncated_at=lambda table_id: 5 if table_id == T else None)
    comp.start(0)
    (scan,) = comp.compact_soon([T], 30_000)
    assert isinstance(scan, StorageScan) and scan.table_id == T
    effects = comp.on_timer(PASS_TIMER, 60_000)  # the hourly pass comes due during that walk
    assert [e for e in effects if isinstance(e, SetTimer) and e.timer_id == PASS_TIMER]
    assert comp.stats["passes"] == 1 and set(comp._queue) == {T, other}  # every table, after the walk under way
    assert comp.run_pass(60_001) == [] and comp.stats["passes"] == 1  # a pass runs: no second one


def test_a_truncation_learnt_of_before_the_first_pass_is_due_is_walked_when_it_is():
    from agora.core.tombstones.compaction import SOON_TIMER
    comp = TombstoneCompaction(lambda: [(T, GRACE_S)], PurgeGuards(NoPeers(), "me"), 3_600_000, 10_000,
                               truncated_at=lambda table_id: 5)
    comp.start(1_000)
    assert comp.compact_soon([T], 4_000) == [SetTimer(SOON_TIMER, 7_000)]  # guards may be unknown: later
    assert comp.compact_soon([T], 5_000) == [] and not comp.running  # one timer for all
    (scan,) = comp.on_timer(SOON_TIMER, 11_000)
    assert isinstance(scan, StorageScan) and scan.table_id == T and comp.running
    off = TombstoneCompaction(lambda: [(T, GRACE_S)], PurgeGuards(NoPeers(), "me"), 0, 10_000)
    off.start(1_000)
    assert off.compact_soon([T], 50_000) == []  # tombstone_gc_interval 0: no walk at all


# ---- tables with nothing for compaction are skipped ------------------------------------------


def _fill_live(engine, keys: range) -> None:
    engine.apply([Partition(T, b"p%d" % i, rows={b"": live(10)}) for i in keys])


def _skipped(answers) -> bool:
    return [a.skipped for a in answers] == [True]


def test_a_table_walked_clean_is_skipped_until_a_write_gives_compaction_something(engine):
    """Live rows only: the first pass walks the table and records it clean, the next skip
    it, live writes keep it skipped; a row deletion or a TTL has it walked (and purged)
    again, and it is skipped once a walk has found it clean once more."""
    _fill_live(engine, range(200))
    walked = run_pass(engine)
    assert len(walked) >= 3 and not any(a.skipped for a in walked)  # several chunks
    assert _skipped(run_pass(engine))
    _fill_live(engine, range(200, 210))  # live data merged into live data: still clean
    assert _skipped(run_pass(engine))
    for change in (Partition(T, b"p3", rows={b"": Row((), None, Deletion(20, 100))}),
                   Partition(T, b"p4", rows={b"": live(30, ttl=50, ldt=150)})):
        engine.apply([change])
        answers = run_pass(engine)
        assert not any(a.skipped for a in answers)
        assert engine.read(ReadCommand(T, change.key)) is None  # purged, or expired and purged
        assert not any(a.skipped for a in run_pass(engine))  # the walk that purged had work
        assert _skipped(run_pass(engine))


def test_a_tombstone_written_behind_the_walk_keeps_the_table_from_being_recorded_clean(engine):
    """A row deletion written during the walk, at a partition the walk has already passed:
    the walk finds nothing to do, but the table is not recorded clean, and the next pass
    walks it and purges the deletion."""
    _fill_live(engine, range(200))
    first = min((token_for_key(b"p%d" % i), b"p%d" % i) for i in range(200))[1]

    def delete_behind(eff, chunk, comp):
        if chunk == 2 and isinstance(eff, StorageScan):
            engine.apply([Partition(T, first, rows={b"": Row((), None, Deletion(20, 100))})])
    answers = run_pass(engine, before_effect=delete_behind)
    assert not any(a.skipped for a in answers)
    assert not engine._clean.watching()  # the write ended the watch: the walk cannot end clean
    assert engine.read(ReadCommand(T, first)) is not None  # the walk had passed it
    assert not any(a.skipped for a in run_pass(engine))
    assert engine.read(ReadCommand(T, first)) is None


def test_a_truncated_table_is_walked_every_pass(engine):
    _fill_live(engine, range(20))
    for _ in range(3):
        assert not any(a.skipped for a in run_pass(engine, truncated_at=5))
    assert not _skipped(run_pass(engine))  # the walks under a truncation recorded nothing
    assert _skipped(run_pass(engine))


def test_a_clean_record_is_durable_and_ends_with_a_drop_or_a_tombstone(tmp_path):
    path = str(tmp_path / "db")
    engine = RocksEngine(path)
    _fill_live(engine, range(20))
    run_pass(engine)
    engine.close()
    engine = RocksEngine(path)
    assert _skipped(run_pass(engine))  # recorded on disk
    engine.apply([Partition(T, b"p1", deletion=Deletion(20, 100))])
    engine.close()
    engine = RocksEngine(path)
    assert not any(a.skipped for a in run_pass(engine))  # the deletion ended it, on disk too
    run_pass(engine)
    assert engine.begin_walk(T)
    engine.drop_table(T)
    engine.close()
    engine = RocksEngine(path)
    assert not engine.begin_walk(T)
    engine.close()


def test_a_power_loss_forgets_the_memory_engines_clean_records():
    engine = MemoryEngine()
    _fill_live(engine, range(20))
    engine.sync()
    run_pass(engine)
    assert _skipped(run_pass(engine))
    engine.crash()
    assert not any(a.skipped for a in run_pass(engine))


def test_a_pass_joining_a_truncated_tables_walk_names_only_its_own_skipped_tables():
    """The tables a pass skipped are the latest pass's own, also when it starts while a walk
    of truncated tables runs (admin `compact` reports them)."""
    other = b"\x33" * 16
    engine = MemoryEngine()
    for tid in (T, other):
        _fill_live_in(engine, tid)
    truncated: dict = {}
    comp = TombstoneCompaction(lambda: [(T, GRACE_S), (other, GRACE_S)], PurgeGuards(NoPeers(), "me"),
                               60_000, 0, truncated_at=truncated.get)
    comp.start(0)
    for _ in range(2):  # the first pass records both clean, the second skips both
        _drive(engine, comp, comp.run_pass(NOW_MS))
    assert sorted(comp.skipped) == sorted([T, other])
    truncated[T] = 5
    effects = comp.compact_soon([T], NOW_MS)  # T's walk runs...
    effects += comp.run_pass(NOW_MS)  # ...and a pass joins it
    _drive(engine, comp, effects)
    assert comp.skipped == [other]


def _fill_live_in(engine, table: bytes) -> None:
    engine.apply([Partition(table, b"p%d" % i, rows={b"": live(10)}) for i in range(5)])


def _drive(engine, comp, effects) -> None:
    while effects:
        pending, effects = effects, []
        for eff in pending:
            if isinstance(eff, StorageScan):
                effects += comp.on_scan_done(completions.complete(engine, eff), NOW_MS)
            elif isinstance(eff, StorageReplace):
                effects += comp.on_replace_done(completions.complete(engine, eff))
            elif isinstance(eff, StorageWalkClean):
                completions.run_walk_clean(engine, eff)
            elif isinstance(eff, SetTimer) and eff.timer_id == CHUNK_TIMER:
                effects += comp.on_timer(CHUNK_TIMER, NOW_MS)
    assert not comp.running
