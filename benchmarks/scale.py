"""Throughput at 100,000 rows against throughput at 10 million rows (issue 6's scale target:
within 20%), on a 3-node Agora cluster with RF 3, through `agora bench`.

Owns: bulk-loading the bench table offline and running the same measured workload at each
size. Loading 10 million rows through CQL would take most of an hour on a 2-core machine, so
the rows are written the way an offline loader would (Cassandra's sstableloader plays this
part there): with the cluster stopped, each node's own RocksDB is filled through
`RocksEngine.apply`, the very code a running node uses for a write, with partitions cloned
from one row written through CQL, so the stored form is exactly what a CQL INSERT leaves.
With RF 3 on 3 nodes every node holds every row. Then the cluster starts again and
`agora bench --no-load --keys N` measures the workload over all N keys twice: "cold", right
after the start (RocksDB's block cache empty, the freshly compacted files not yet read), and
"warm", after --warm-after more seconds of the same workload: the steady state the scale
target is about. At 10 million rows the caches take minutes to fill on this machine.

With `--interleave ROUNDS` every size's cluster is up at once, each on its own subnet
(127.0.63.x, 127.0.64.x, ...): after --warm-after seconds of the workload on each, the sizes
take turns, ROUNDS runs each, so a machine whose speed drifts over the minutes (a shared
host) slows every size alike; the ratio is then the median of the rounds' ratios.

    python benchmarks/scale.py                       # 100k and 10M rows, workload a, 30 s each
    python benchmarks/scale.py --rows 100000,1000000 --workload write --duration 20
    python benchmarks/scale.py --interleave 4 --warm-after 300

Prints a table and writes results JSON (and the bench JSON per size) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import multiprocessing
from pathlib import Path

SUBNET = "127.0.63"  # the first cluster's; with --interleave the next ones use 127.0.64, ...


def _subnet(index: int) -> str:
    return f"127.0.{63 + index}"


def _hosts(subnet: str) -> str:
    return ",".join(f"{subnet}.{i}" for i in (1, 2, 3))
BATCH_ROWS = 2_000  # partitions per RocksEngine.apply during the offline load
VALUE_SIZE = 100


def _agora(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agora", *args], check=check, text=True,
                          capture_output=True)


def _template(data_dir: str, table_id: bytes):
    """The stored partition of bench key 0, written through CQL before the cluster stopped."""
    from agora.core.types import ReadCommand
    from agora.storage.rocks import RocksEngine

    eng = RocksEngine(data_dir)
    try:
        p = eng.read(ReadCommand(table_id, (0).to_bytes(8, "big", signed=True), None, None))
    finally:
        eng.close()
    if p is None or len(p.rows) != 1:
        raise SystemExit("the template row (k = 0) is not on disk as one row")
    return p


def _load_node(job: tuple[str, bytes, object, int, int]) -> float:
    """Fill one node's RocksDB with keys [first, rows) cloned from the template partition."""
    from agora.core.types import Cell, Partition, Row
    from agora.storage.rocks import RocksEngine

    data_dir, table_id, template, first, rows = job
    (ckey, row), = template.rows.items()
    marker = row.marker
    (path, cell), = ((p, c) for p, c in row.cells.items())
    t0 = time.process_time()
    eng = RocksEngine(data_dir)
    try:
        rnd = os.urandom
        for start in range(first, rows, BATCH_ROWS):
            batch = []
            for k in range(start, min(rows, start + BATCH_ROWS)):
                batch.append(Partition(table_id, k.to_bytes(8, "big", signed=True), rows={
                    ckey: Row(row.clustering, marker, None, {path: Cell(cell.ts, rnd(VALUE_SIZE))})}))
            eng.apply(batch)
        eng.sync()
        eng._db.compact_range(None, None)  # settle the LSM before measuring, as after a real load
    finally:
        eng.close()
    return time.process_time() - t0


def _bench_table_id(subnet: str) -> bytes:
    from cassandra.cluster import Cluster

    cl = Cluster([f"{subnet}.1"])
    try:
        row = cl.connect().execute("SELECT id FROM system_schema.tables WHERE keyspace_name = 'bench' "
                                   "AND table_name = 'kv'").one()
        return row[0].bytes
    finally:
        cl.shutdown()


def _check_loaded(rows: int, subnet: str) -> None:
    """The last loaded key reads back through CQL at ALL: every replica has the bulk rows."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import Cluster
    from cassandra.query import SimpleStatement

    cl = Cluster([f"{subnet}.1"])
    try:
        row = cl.connect().execute(SimpleStatement("SELECT v FROM bench.kv WHERE k = %s",
                                                   consistency_level=ConsistencyLevel.ALL), (rows - 1,)).one()
    finally:
        cl.shutdown()
    if row is None or len(row[0]) != VALUE_SIZE:
        raise SystemExit(f"key {rows - 1} did not read back after the bulk load: {row!r}")


def prepare(rows: int, args, subnet: str):
    """A started 3-node cluster on `subnet` whose nodes hold `rows` bulk-loaded rows:
    (its directory, the LocalCluster, the load's facts)."""
    from agora.runtime.cluster import LocalCluster, parse_dc_layout

    hosts = _hosts(subnet)
    d = Path(tempfile.mkdtemp(prefix=f"agora-scale-{rows}-", dir=args.work))
    cluster = LocalCluster(d)
    cluster.create(parse_dc_layout(3, None, 1), overrides=args.overrides, subnet=subnet)
    try:
        cluster.start()
        # schema and key 0 through CQL: the template every other row is cloned from
        _agora("bench", "--hosts", hosts, "--dir", str(d), "--workload", "write", "--keys", "1", "--ops", "20",
               "--value-size", str(VALUE_SIZE), "--quiet")
        table_id = _bench_table_id(subnet)
        cluster.down()
        template = _template(str(d / "node1" / "data"), table_id)
        t0 = time.monotonic()
        # spawn, not fork: this process has driver threads whose locks a forked child would inherit
        with multiprocessing.get_context("spawn").Pool(min(3, os.cpu_count() or 1)) as pool:
            cpu = pool.map(_load_node, [(str(d / n.name / "data"), table_id, template, 1, rows)
                                        for n in cluster.nodes])
        load_s = time.monotonic() - t0
        print(f"  loaded {rows:,} rows on each of 3 nodes in {load_s:.0f} s "
              f"({sum(cpu):.0f} s CPU)", flush=True)
        disk = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        cluster.start()
        _check_loaded(rows, subnet)
    except BaseException:
        finish(d, cluster, args)
        raise
    return d, cluster, {"rows": rows, "node_options": args.overrides, "disk_bytes": disk, "load_s": load_s}


def finish(d: Path, cluster, args) -> None:
    cluster.down(kill=True)
    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)


def bench(rows: int, d: Path, subnet: str, args, result_file: Path, warmup: float, label: str) -> dict:
    r = _agora("bench", "--hosts", _hosts(subnet), "--dir", str(d), "--workload", args.workload, "--no-load",
               "--keys", str(rows), "--duration", str(args.duration), "--warmup", str(warmup),
               "--processes", str(args.processes), "--concurrency", str(args.concurrency),
               "--value-size", str(VALUE_SIZE), "--json", str(result_file), "--quiet", check=False)
    print(f"  -- {label}", r.stdout, r.stderr, sep="\n", flush=True)
    if r.returncode != 0:
        raise SystemExit(f"agora bench failed at {rows} rows")
    return json.loads(result_file.read_text())


def measure(rows: int, args, out: Path) -> dict:
    """One size alone: a cold run right after the start, a warm one --warm-after seconds on."""
    d, cluster, res = prepare(rows, args, SUBNET)
    try:
        for phase, warmup in (("cold", args.warmup), ("warm", args.warm_after)):
            res[phase] = bench(rows, d, SUBNET, args, out / f"bench-{rows}-{phase}.json", warmup, phase)
        return res
    finally:
        finish(d, cluster, args)


def interleave(sizes: list[int], args, out: Path) -> list[dict]:
    """Every size's cluster up at once (each on its own subnet); after --warm-after seconds
    of the workload on each, --interleave rounds that run each size in turn, so that what
    the machine does meanwhile (other work, a host busier at one moment) falls on all sizes
    alike. A run of one size leaves the others idle."""
    clusters = []
    try:
        for i, rows in enumerate(sizes):
            print(f"== {rows:,} rows on {_subnet(i)}.x", flush=True)
            clusters.append(prepare(rows, args, _subnet(i)))
        for i, (rows, (d, _, res)) in enumerate(zip(sizes, clusters)):
            res["warm-up"] = bench(rows, d, _subnet(i), args, out / f"bench-{rows}-warmup.json",
                                   args.warm_after, f"{rows:,} rows: warm-up {args.warm_after:.0f} s, then a run")
            res["rounds"] = []
        for n in range(args.interleave):
            for i, (rows, (d, _, res)) in enumerate(zip(sizes, clusters)):
                res["rounds"].append(bench(rows, d, _subnet(i), args, out / f"bench-{rows}-round{n + 1}.json",
                                           0, f"{rows:,} rows: round {n + 1}"))
        return [res for _, _, res in clusters]
    finally:
        for d, cluster, _ in clusters:
            finish(d, cluster, args)


def _report_interleaved(results: list[dict], out: Path) -> None:
    import statistics

    base = results[0]
    print(f"\n{'rows':>12} {'round':>5} {'ops/s':>8} {'p99 ms':>8} {'CPU µs/op':>10} {'vs first':>9}")
    for r in results:
        for n, (b, first) in enumerate(zip(r["rounds"], base["rounds"]), start=1):
            print(f"{r['rows']:>12,} {n:>5} {b['throughput_ops_s']:>8.0f} {b['latency_us']['p99_us'] / 1000:>8.1f} "
                  f"{(b['server_cpu'] or {}).get('us_per_op', 0):>10.0f} "
                  f"{b['throughput_ops_s'] / first['throughput_ops_s']:>8.0%}")
    for r in results[1:]:
        ratios = [b["throughput_ops_s"] / f["throughput_ops_s"] for b, f in zip(r["rounds"], base["rounds"])]
        mean = statistics.mean(b["throughput_ops_s"] for b in r["rounds"]) / \
            statistics.mean(f["throughput_ops_s"] for f in base["rounds"])
        r["ratio_median"], r["ratio_of_means"] = statistics.median(ratios), mean
        print(f"{r['rows']:,} rows against {base['rows']:,}: median of the rounds' ratios {r['ratio_median']:.0%}, "
              f"ratio of the mean throughputs {mean:.0%}")
    (out / "scale.json").write_text(json.dumps(results, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="100000,10000000", help="comma-separated row counts (default 100000,10000000)")
    ap.add_argument("--workload", default="a", choices=("a", "b", "c", "write"))
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5, help="unrecorded seconds before the cold run")
    ap.add_argument("--warm-after", type=float, default=120,
                    help="unrecorded seconds of the workload between the cold and the warm run (default 120)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--work", default=None, help="where the clusters' data goes (default: the temp dir)")
    ap.add_argument("--out", default="benchmarks/results/scale", help="results directory")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directories")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a node option for every node, as `agora up --set` (e.g. file_cache_size=2GiB)")
    ap.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                    help="keep every size's cluster up at once and alternate ROUNDS runs between them, after "
                         "--warm-after seconds on each (default 0: one size after the other, cold then warm)")
    args = ap.parse_args()
    from agora.cli.main import _overrides
    args.overrides = _overrides(args.set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(x) for x in args.rows.split(",")]
    if args.interleave:
        _report_interleaved(interleave(sizes, args, out), out)
        return
    results = []
    for rows in sizes:
        print(f"== {rows:,} rows", flush=True)
        results.append(measure(rows, args, out))
    base = results[0]
    print(f"\n{'rows':>12} {'phase':>5} {'ops/s':>8} {'p99 ms':>8} {'CPU µs/op':>10} {'disk':>9} {'vs first':>9}")
    for r in results:
        for phase in ("cold", "warm"):
            b, first = r[phase], base[phase]
            print(f"{r['rows']:>12,} {phase:>5} {b['throughput_ops_s']:>8.0f} {b['latency_us']['p99_us'] / 1000:>8.1f} "
                  f"{(b['server_cpu'] or {}).get('us_per_op', 0):>10.0f} {r['disk_bytes'] / 2**30:>7.2f}GB "
                  f"{b['throughput_ops_s'] / first['throughput_ops_s']:>8.0%}")
    (out / "scale.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
