"""Full-table aggregates on a 3-node Agora cluster (RF 3) through the real cassandra-driver:
how long `SELECT count(*)` takes at each consistency level, and the server CPU it costs.

    python benchmarks/scan_count.py [--partitions 200000] [--wide 100x2000] [--cls ONE,QUORUM,ALL] [--repeat 3]

Owns nothing the node uses. Two tables are loaded once (prepared INSERTs at QUORUM, 128 in
flight): `flat (k int PRIMARY KEY, v blob)` with --partitions one-row partitions, and
`wide (k int, c int, v blob, PRIMARY KEY (k, c))` with --wide partitions x rows. Then each
count is timed --repeat times in a row at each level, with the CPU time the three node
processes spent on it (from /proc). Every count is checked against what was loaded.
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


def _load(session, statement: str, params) -> None:
    insert = session.prepare(statement)
    insert.consistency_level = ConsistencyLevel.QUORUM
    for ok, result in execute_concurrent_with_args(session, insert, params, concurrency=128, raise_on_first_error=True):
        assert ok, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, default=200_000, help="one-row partitions of `flat`")
    ap.add_argument("--wide", default="100x2000", help="PARTITIONSxROWS of `wide` (0x0: none)")
    ap.add_argument("--cls", default="ONE,QUORUM,ALL")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    wide_p, wide_r = (int(n) for n in args.wide.split("x"))
    value = os.urandom(args.value_size)
    with Agora() as agora:
        pids = list(agora.pids().values())
        client = Cluster(agora.hosts, protocol_version=5)
        session = client.connect()
        session.execute("CREATE KEYSPACE sc WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        session.execute("CREATE TABLE sc.flat (k int PRIMARY KEY, v blob)")
        session.execute("CREATE TABLE sc.wide (k int, c int, v blob, PRIMARY KEY (k, c))")
        t0 = time.perf_counter()
        _load(session, "INSERT INTO sc.flat (k, v) VALUES (?, ?)", ((k, value) for k in range(args.partitions)))
        _load(session, "INSERT INTO sc.wide (k, c, v) VALUES (?, ?, ?)",
              ((k, c, value) for k in range(wide_p) for c in range(wide_r)))
        print(f"loaded {args.partitions:,} + {wide_p * wide_r:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
        tables = [("flat", args.partitions)] + ([("wide", wide_p * wide_r)] if wide_p * wide_r else [])
        for table, expected in tables:
            for cl in args.cls.split(","):
                level = ConsistencyLevel.name_to_value[cl]
                walls, cpus = [], []
                for _ in range(args.repeat):
                    cpu0, t0 = _cpu_s(pids), time.perf_counter()
                    got = session.execute(SimpleStatement(f"SELECT count(*) FROM sc.{table}", consistency_level=level),
                                          timeout=300).one()[0]
                    walls.append(time.perf_counter() - t0)
                    cpus.append(_cpu_s(pids) - cpu0)
                    assert got == expected, f"count(*) of {table} at {cl} answered {got}, not {expected}"
                print(f"{table:5} {expected:>9,} rows  {cl:6}  "
                      + "  ".join(f"{w:.2f} s (cpu {c:.2f} s)" for w, c in zip(walls, cpus)), flush=True)
        client.shutdown()


if __name__ == "__main__":
    main()
