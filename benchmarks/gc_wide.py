"""Tombstone GC over one wide partition: how long the pass holds the event loop at a time and
how much memory it holds, on RocksDB in one process.

    python benchmarks/gc_wide.py [--rows 200000] [--value-size 100]

Owns nothing the node uses. Writes `--rows` clustering rows into one partition, then a
partition deletion that shadows the first half of them, then the second half again (newer),
with every tenth of those rows deleted; every tombstone is past gc_grace. Then runs one pass
of the node's real compaction (`TombstoneCompaction`, each storage operation executed as a
node's runtime executes it) and prints the chunks, the longest single storage operation (a
node runs each on its event loop, so this is the longest the pass holds it), the pass's
total time, and the peak of Python memory allocated during the pass (tracemalloc, in a
second pass over a second copy: tracing slows allocation). A pass
that leaves a purgeable tombstone or changes what a client reads fails loudly.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from agora.core import reconcile  # noqa: E402
from agora.core.effects import PersistMeta, SetTimer, StorageReplace, StorageScan, StorageWalkClean  # noqa: E402
from agora.core.tombstones.compaction import (CHUNK_TIMER, NoPeers, PurgeGuards, TombstoneCompaction,  # noqa: E402
                                              compact_partition)
from agora.core.types import Cell, Deletion, Partition, ReadCommand, Row  # noqa: E402
from agora.storage import completions  # noqa: E402
from agora.storage.rocks import RocksEngine  # noqa: E402

TABLE, KEY, GRACE_S = b"\x33" * 16, b"wide", 10


def load(engine: RocksEngine, rows: int, value_size: int) -> None:
    def row(ts: int) -> Row:
        return Row((), Cell(ts, b"", 0, 0), None, {("v", b""): Cell(ts, b"x" * value_size, 0, 0)})
    batch = 5_000
    for start in range(0, rows, batch):
        engine.apply([Partition(TABLE, KEY, rows={i.to_bytes(4, "big"): row(10)
                                                  for i in range(start, min(rows, start + batch))})])
    engine.apply([Partition(TABLE, KEY, deletion=Deletion(20, 100))])
    for start in range(rows // 2, rows, batch):
        engine.apply([Partition(TABLE, KEY, rows={
            i.to_bytes(4, "big"): Row((), None, Deletion(40, 100)) if i % 10 == 0 else row(30)
            for i in range(start, min(rows, start + batch))})])


def run_pass(engine: RocksEngine, now_ms: int) -> tuple[int, float, float]:
    """(chunks, longest storage operation in s, whole pass in s)."""
    comp = TombstoneCompaction(lambda: [(TABLE, GRACE_S)], PurgeGuards(NoPeers(), "me"), 60_000, 0)
    longest, chunks = 0.0, 0
    began = time.perf_counter()
    effects = comp.run_pass(now_ms)
    while effects:
        pending, effects = effects, []
        for eff in pending:
            if isinstance(eff, (StorageScan, StorageReplace)):
                t0 = time.perf_counter()
                done = completions.complete(engine, eff)
                longest = max(longest, time.perf_counter() - t0)
                if isinstance(eff, StorageScan):
                    chunks += 1
                    effects += comp.on_scan_done(done, now_ms)
                else:
                    effects += comp.on_replace_done(done)
            elif isinstance(eff, StorageWalkClean):  # the table had nothing for compaction
                completions.run_walk_clean(engine, eff)
            elif isinstance(eff, SetTimer) and eff.timer_id == CHUNK_TIMER:
                effects += comp.on_timer(CHUNK_TIMER, now_ms)
            else:
                assert isinstance(eff, (PersistMeta, SetTimer)), eff
    return chunks, longest, time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    now_ms = 10**12
    results = []
    for traced in (False, True):  # timed without tracemalloc (it slows allocation), then traced
        with tempfile.TemporaryDirectory() as tmp:
            engine = RocksEngine(str(Path(tmp) / "db"))
            load(engine, args.rows, args.value_size)
            want = reconcile.digest(reconcile.live_view(engine.read(ReadCommand(TABLE, KEY)), now_ms // 1000))
            gc.collect()  # the rows read for the digest are not kept: no collection walks them mid-pass
            if traced:
                tracemalloc.start()
            results.append(run_pass(engine, now_ms))
            if traced:
                results.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
            after = engine.read(ReadCommand(TABLE, KEY))
            assert reconcile.digest(reconcile.live_view(after, now_ms // 1000)) == want, \
                "the pass changed what a client reads"
            assert compact_partition(after, now_ms // 1000, now_ms // 1000 - GRACE_S) == (None, 0), \
                "a purgeable tombstone was left"
            engine.close()
    (chunks, longest, total), _, peak = results
    print(f"{args.rows:,} rows of {args.value_size} B in one partition: {chunks} chunks, longest storage "
          f"operation {longest * 1000:.0f} ms, pass {total:.2f} s, peak Python memory {peak / 2**20:.1f} MiB")

if __name__ == "__main__":
    main()
