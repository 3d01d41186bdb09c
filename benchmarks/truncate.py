"""TRUNCATE of tables of growing size on a 3-node Agora cluster (RF 3) through the real
cassandra-driver: how long the statement takes, how long each node's compaction walk takes
to free the data, and what a full count costs before and after that walk.

    python benchmarks/truncate.py [--partitions 0,50000,200000] [--value-size 100] [--no-walks]

Owns nothing the node uses. For each size, a fresh table `(k int PRIMARY KEY, v blob)` is
loaded with that many one-row partitions (prepared INSERT at QUORUM, 128 in flight), then
`TRUNCATE` is timed, then `SELECT count(*)` at QUORUM (which must answer 0), then each node's
admin `compact` (a tombstone compaction pass, as its timer would run it: a node that learns
of a truncation walks the table at once, so this mostly waits for that walk), then the count
again. Every count is checked, so a truncation that leaves a row fails loudly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cassandra import ConsistencyLevel  # noqa: E402
from cassandra.cluster import Cluster  # noqa: E402
from cassandra.concurrent import execute_concurrent_with_args  # noqa: E402
from cassandra.query import SimpleStatement  # noqa: E402

from servers import Agora  # noqa: E402


def _count(session) -> tuple[int, float]:
    t0 = time.perf_counter()
    rows = list(session.execute(SimpleStatement("SELECT count(*) FROM tr.kv", consistency_level=ConsistencyLevel.QUORUM),
                                timeout=120))
    return rows[0][0], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", default="0,50000,200000", help="comma-separated table sizes")
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--no-walks", action="store_true",
                    help="nodes with tombstone_gc_interval 0, so no compaction walk runs: the count "
                         "is timed twice over the stored, truncated rows, with nothing else running")
    args = ap.parse_args()
    sizes = [int(n) for n in args.partitions.split(",")]
    with Agora(overrides={"tombstone_gc_interval": 0} if args.no_walks else None) as agora:
        client = Cluster(agora.hosts, protocol_version=5)
        session = client.connect()
        session.execute("CREATE KEYSPACE tr WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        value = os.urandom(args.value_size)
        for n in sizes:
            session.execute("DROP TABLE IF EXISTS tr.kv")
            session.execute("CREATE TABLE tr.kv (k int PRIMARY KEY, v blob)")
            insert = session.prepare("INSERT INTO tr.kv (k, v) VALUES (?, ?)")
            t0 = time.perf_counter()
            for ok, _ in execute_concurrent_with_args(session, insert, ((k, value) for k in range(n)),
                                                      concurrency=128, raise_on_first_error=True,
                                                      results_generator=True):
                assert ok
            loaded = time.perf_counter() - t0
            t0 = time.perf_counter()
            session.execute(SimpleStatement("TRUNCATE tr.kv"), timeout=120)
            truncate = time.perf_counter() - t0
            count, before = _count(session)
            assert count == 0, f"{count} rows left after TRUNCATE"
            head = f"{n:,} partitions (loaded in {loaded:.1f} s): TRUNCATE {truncate * 1000:.0f} ms; "
            if args.no_walks:
                count, again = _count(session)
                assert count == 0, f"{count} rows left after TRUNCATE"
                print(f"{head}count(*) over the truncated rows, no walk running: {before:.2f} s, "
                      f"{again:.2f} s", flush=True)
                continue
            walks = []
            for name in sorted(agora.pids()):
                with agora.cluster.client(name) as admin:
                    t0 = time.perf_counter()
                    admin.call("compact", {})
                    walks.append(time.perf_counter() - t0)
            count, after = _count(session)
            assert count == 0, f"{count} rows after the walks"
            print(f"{head}count(*) {before:.2f} s before the walks, {after:.2f} s after; "
                  f"compact on each node {', '.join(f'{w:.1f}' for w in walks)} s", flush=True)
        client.shutdown()


if __name__ == "__main__":
    main()
