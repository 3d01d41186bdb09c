"""Point requests beside background work on a 3-node Agora cluster (RF 3): what a full scan,
a repair or a tombstone pass does to the latency of a steady load running next to it.

    python benchmarks/beside_load.py [--partitions 200000] [--rate 1000] [--duration 20]
                                     [--cases quiet,count,scan,repair,compact]

Owns nothing the node uses. The cluster is loaded once: `sc.flat (k int PRIMARY KEY, v blob)`
with --partitions one-row partitions of 100 bytes, and `bench.kv` (10,000 keys). Then, for
each case, `agora bench --workload a --cl QUORUM --rate R` runs open loop (latency counted
from each request's intended start) while one of these runs beside it:

    quiet    nothing
    count    SELECT count(*) FROM sc.flat at QUORUM, back to back
    scan     SELECT * FROM sc.flat at QUORUM, paged (fetch size 5,000), over and over
    repair   agora repair sc flat
    compact  the tombstone pass on every node at once (the admin verb the hourly timer runs)

and the load's p50 / p99 / max are printed with what the background work got done.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cassandra import ConsistencyLevel  # noqa: E402
from cassandra.cluster import Cluster  # noqa: E402
from cassandra.concurrent import execute_concurrent_with_args  # noqa: E402
from cassandra.query import SimpleStatement  # noqa: E402

from servers import Agora  # noqa: E402

AGORA = [sys.executable, "-m", "agora"]


def _until(session, stop: threading.Event, query: str, fetch_size: int | None) -> str:
    """Run `query` at QUORUM over and over until `stop`; what was done."""
    runs = rows = 0
    statement = SimpleStatement(query, consistency_level=ConsistencyLevel.QUORUM, fetch_size=fetch_size)
    while not stop.is_set():
        for _ in session.execute(statement, timeout=300):
            rows += 1
            if stop.is_set():
                break
        else:
            runs += 1
    return f"{runs} complete" + (f", {rows:,} rows read" if fetch_size else "")


def _background(case: str, agora: Agora, session, stop: threading.Event) -> str:
    if case == "quiet":
        stop.wait()
        return ""
    if case == "count":
        return _until(session, stop, "SELECT count(*) FROM sc.flat", None)
    if case == "scan":
        return _until(session, stop, "SELECT * FROM sc.flat", 5000)
    t0 = time.perf_counter()  # with the load: its client connects within the first second
    if case == "repair":
        out = subprocess.run(AGORA + ["repair", "--dir", str(agora.dir), "--json", "sc", "flat"],
                             capture_output=True, text=True, check=True).stdout
        report = json.loads(out.strip().splitlines()[-1])
        return (f"repair in {time.perf_counter() - t0:.1f} s, {report['partitions_hashed']:,} partitions "
                f"hashed, {report['partitions_streamed']:,} streamed")
    if case == "compact":
        took: dict[str, float] = {}

        def one(name: str) -> None:
            with agora.cluster.client(name) as admin:
                start = time.perf_counter()
                admin.call("compact", {})
                took[name] = time.perf_counter() - start
        threads = [threading.Thread(target=one, args=(name,)) for name in sorted(agora.pids())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return "tombstone pass " + ", ".join(f"{n} {s:.1f} s" for n, s in sorted(took.items()))
    raise SystemExit(f"unknown case {case!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=1000, help="requests per second of the load")
    ap.add_argument("--duration", type=int, default=20, help="seconds of load per case")
    ap.add_argument("--cases", default="quiet,count,scan,repair,compact")
    args = ap.parse_args()
    with Agora() as agora:
        client = Cluster(agora.hosts, protocol_version=5)
        session = client.connect()
        session.execute("CREATE KEYSPACE sc WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        session.execute("CREATE TABLE sc.flat (k int PRIMARY KEY, v blob)")
        insert = session.prepare("INSERT INTO sc.flat (k, v) VALUES (?, ?)")
        insert.consistency_level = ConsistencyLevel.QUORUM
        value = os.urandom(100)
        for ok, result in execute_concurrent_with_args(session, insert, ((k, value) for k in range(args.partitions)),
                                                       concurrency=128, raise_on_first_error=True):
            assert ok, result
        bench = AGORA + ["bench", "--dir", str(agora.dir), "--workload", "a", "--keys", "10000", "--cl", "QUORUM",
                         "--processes", "1", "--concurrency", "64", "--quiet"]
        subprocess.run(bench + ["--duration", "1"], check=True, capture_output=True)  # creates and loads bench.kv
        print(f"{args.partitions:,} partitions in sc.flat; YCSB A at {args.rate:,} requests/s, QUORUM, "
              f"{args.duration} s per case; latency ms p50 / p99 / max", flush=True)
        for case in args.cases.split(","):
            stop, done = threading.Event(), {}
            worker = threading.Thread(target=lambda: done.update(what=_background(case, agora, session, stop)))
            worker.start()
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                subprocess.run(bench + ["--no-schema", "--no-load", "--rate", str(args.rate),
                                        "--duration", str(args.duration), "--json", out.name],
                               check=True, capture_output=True)
                result = json.load(open(out.name))
            stop.set()
            worker.join()
            lat = result["latency_us"]
            print(f"{case:8} {lat['p50_us'] / 1000:8.1f} {lat['p99_us'] / 1000:8.1f} {lat['max_us'] / 1000:8.1f}   "
                  f"{result['throughput_ops_s']:,.0f} ops/s, {result['errors']} errors   {done.get('what', '')}",
                  flush=True)
        client.shutdown()


if __name__ == "__main__":
    main()
