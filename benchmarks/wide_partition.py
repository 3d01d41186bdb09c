"""Paging through one wide partition: rows per second and the server CPU per page, on a
3-node Agora cluster (RF 3) through the real cassandra-driver.

    python benchmarks/wide_partition.py [--rows 50000] [--fetch-size 1000] [--cl QUORUM]
                                        [--value-size 100] [--repeat 2] [--desc | --scan]

Owns nothing the node uses. Loads `--rows` clustering rows into one partition of a table
`(k int, c int, v blob, PRIMARY KEY (k, c))`, then reads the partition back with
`SELECT c, v FROM wide WHERE k = 0` (`--desc`: `ORDER BY c DESC`, read from the partition's end;
`--scan`: `SELECT c, v FROM wide`, a full-table scan, which replicas answer in pieces)
paged by `--fetch-size`, `--repeat` times, and prints for
each pass the rows per second, the pages, the slowest page and the CPU the three node
processes spent per page. Every row read is checked (count and order), so a pass that
returns less fails loudly. A node reads a page of a wide partition as a bounded page of rows
(ReadCommand.limit_rows); a server that re-read the partition from the page's start to its
end for every page would show a cost per page growing with the partition.
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

from agora.bench.stats import process_cpu_seconds  # noqa: E402
from servers import Agora  # noqa: E402

def _cpu_s(pids) -> float:
    return sum(process_cpu_seconds(pid) or 0.0 for pid in pids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--fetch-size", type=int, default=1_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--cl", default="QUORUM", choices=["ONE", "QUORUM", "ALL"])
    ap.add_argument("--repeat", type=int, default=2)
    order = ap.add_mutually_exclusive_group()
    order.add_argument("--desc", action="store_true", help="read with ORDER BY c DESC")
    order.add_argument("--scan", action="store_true", help="read with a full-table scan (no WHERE)")
    args = ap.parse_args()
    level = getattr(ConsistencyLevel, args.cl)
    with Agora() as agora:
        client = Cluster(agora.hosts, protocol_version=5)
        session = client.connect()
        session.execute("CREATE KEYSPACE wide WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 3}")
        session.execute("CREATE TABLE wide.wide (k int, c int, v blob, PRIMARY KEY (k, c))")
        insert = session.prepare("INSERT INTO wide.wide (k, c, v) VALUES (0, ?, ?)")
        insert.consistency_level = ConsistencyLevel.QUORUM
        value = os.urandom(args.value_size)
        t0 = time.perf_counter()
        # results as a generator: a list of every insert's result would keep a heap so large
        # that the driver's garbage collection stalls the reads that follow for seconds
        for ok, _ in execute_concurrent_with_args(session, insert, ((c, value) for c in range(args.rows)),
                                                  concurrency=64, raise_on_first_error=True,
                                                  results_generator=True):
            assert ok
        print(f"loaded {args.rows:,} rows of {args.value_size} bytes into one partition "
              f"in {time.perf_counter() - t0:.1f} s")
        pids = list(agora.pids().values())
        order = " ORDER BY c DESC" if args.desc else ""
        where = "" if args.scan else " WHERE k = 0"
        read = SimpleStatement(f"SELECT c, v FROM wide.wide{where}{order}", fetch_size=args.fetch_size,
                               consistency_level=level)
        for n in range(args.repeat):
            cpu0, t0 = _cpu_s(pids), time.perf_counter()
            result = session.execute(read, timeout=120)
            count, pages, slowest, slowest_at, last = 0, 1, 0.0, 0, time.perf_counter()
            while True:
                for row in result.current_rows:
                    want = args.rows - 1 - count if args.desc else count
                    assert row.c == want, f"row {want} came back as {row.c}"
                    count += 1
                if not result.has_more_pages:
                    break
                result.fetch_next_page()
                now = time.perf_counter()
                if now - last > slowest:
                    slowest, slowest_at = now - last, pages + 1
                last, pages = now, pages + 1
            wall, cpu = time.perf_counter() - t0, _cpu_s(pids) - cpu0
            assert count == args.rows, f"read {count} rows of {args.rows}"
            print(f"pass {n + 1}: {count:,} rows{order}{' (scan)' if args.scan else ''} at {args.cl} in {pages} pages of {args.fetch_size}: "
                  f"{wall:.2f} s, {count / wall:,.0f} rows/s, slowest page {slowest * 1000:.0f} ms (page {slowest_at}), "
                  f"server CPU {cpu / pages * 1000:.1f} ms per page")
        client.shutdown()


if __name__ == "__main__":
    main()
