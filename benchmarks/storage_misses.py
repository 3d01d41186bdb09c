"""What a read and a write cost in one RocksDB engine as the data outgrows the block cache:
the storage half of the scale target, without nodes, network or clients.

    python benchmarks/storage_misses.py --rows 10000000 --cache 512MiB [--dir DIR]

Owns nothing the node uses: it drives `agora.storage.rocks.RocksEngine` itself. It fills a
fresh engine (or reuses DIR/rows-N) with `--rows` one-row partitions of a 100-byte value,
as the scale benchmark's tables hold, then times rounds of random point reads
(`RocksEngine.read`) and random overwrites (`RocksEngine.apply`, the read-modify-write a
replica runs), and prints the CPU time of this process per call (all its threads, RocksDB's
included) and how full the block cache is. Compare a size whose data fits the cache with
one whose data does not: the difference is what a block-cache miss costs on this machine,
and whether it shrinks as the operating system's page cache warms.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from agora.core.config import parse_size_bytes  # noqa: E402
from agora.core.types import Cell, Partition, ReadCommand, Row  # noqa: E402
from agora.storage.rocks import RocksEngine  # noqa: E402

TABLE_ID = bytes(range(16))
VALUE_SIZE = 100
LOAD_BATCH = 2_000


def _partition(key: int, ts: int, value: bytes) -> Partition:
    p = Partition(TABLE_ID, key.to_bytes(8, "big", signed=True))
    p.rows[b""] = Row((), Cell(ts, b""), None, {("v", b""): Cell(ts, value)})
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cache", default="512MiB", help="block cache size (as the node option file_cache_size)")
    ap.add_argument("--dir", default="/tmp/agora-storage-misses", help="where the databases go (kept for reuse)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--ops", type=int, default=20_000, help="reads and writes per round")
    a = ap.parse_args()
    path = Path(a.dir) / f"rows-{a.rows}"
    fresh = not path.exists()
    engine = RocksEngine(str(path), parse_size_bytes("--cache", a.cache))
    rng = random.Random(1)
    if fresh:
        t0 = time.monotonic()
        for start in range(0, a.rows, LOAD_BATCH):
            engine.apply([_partition(k, 1_000, os.urandom(VALUE_SIZE))
                          for k in range(start, min(a.rows, start + LOAD_BATCH))])
        print(f"loaded {a.rows:,} rows in {time.monotonic() - t0:.0f} s")
    values = [os.urandom(VALUE_SIZE) for _ in range(16)]
    ts = time.time_ns() // 1000
    print(f"{a.rows:,} rows, block cache {a.cache}; CPU µs per call")
    for r in range(a.rounds):
        keys = [rng.randrange(a.rows) for _ in range(a.ops)]
        t0 = time.process_time()
        for k in keys:
            if engine.read(ReadCommand(TABLE_ID, k.to_bytes(8, "big", signed=True), None, None)) is None:
                raise SystemExit(f"key {k} is missing")
        read_us = (time.process_time() - t0) / a.ops * 1e6
        t0 = time.process_time()
        for i, k in enumerate(keys):
            engine.apply([_partition(k, ts + i, values[i & 15])])
        write_us = (time.process_time() - t0) / a.ops * 1e6
        ts += a.ops
        db = engine._db
        levels = "/".join(str(db.property_int_value(f"rocksdb.num-files-at-level{n}") or 0) for n in range(4))
        pending = (db.property_int_value("rocksdb.estimate-pending-compaction-bytes") or 0) >> 20
        print(f"  round {r}: read {read_us:6.1f}  apply {write_us:6.1f}  "
              f"(block cache holds {engine.block_cache_usage() >> 20} MiB; SST files in L0/L1/L2/L3 {levels}, "
              f"compaction debt {pending} MiB)", flush=True)
    engine.close()


if __name__ == "__main__":
    main()
