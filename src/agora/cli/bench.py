"""`agora bench`: load through the real cassandra-driver against any CQL contact points.

Owns: arguments, schema setup, starting the worker processes (agora.bench.worker), the live
progress line, the --kill schedule, server (and client) CPU accounting for local nodes, the
report, and the --json / --chart outputs (agora.bench.chart).
A client only: it speaks to the cluster through the driver, and to a local cluster's processes
through `LocalCluster` (pids, kill -9, restart)."""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import sys
import threading
import time

from agora.bench.stats import PERCENTILES, process_cpu_seconds, render_timeline, summarize
from agora.bench.worker import KEYSPACE, TABLE, WORKLOADS, WorkerSpec, run_worker

CONSISTENCY_LEVELS = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                      "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE")
READY_TIMEOUT_S = 600.0


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="load generator through the real cassandra-driver (YCSB-style workloads)",
                       description="Load a CQL cluster through the real cassandra-driver and report throughput, "
                                   "latency percentiles, errors and (for local nodes) server CPU per operation.")
    b.add_argument("--hosts", help="comma-separated contact points (default: the local cluster's nodes, else 127.0.0.1)")
    b.add_argument("--port", type=int, default=9042)
    b.add_argument("--dir", default=".agora", help="local cluster directory, for default hosts, CPU and --kill")
    b.add_argument("--workload", choices=sorted(WORKLOADS), default="write",
                   help="write: write-only; a: 50/50 read/update; b: 95/5; c: read-only (default write)")
    b.add_argument("--keys", type=int, default=10_000, help="record count (default 10000)")
    b.add_argument("--no-load", action="store_true", help="skip the load phase of workloads a/b/c")
    b.add_argument("--no-schema", action="store_true", help=f"do not create {KEYSPACE}.{TABLE}")
    b.add_argument("--rf", type=int, default=3, help="replication factor of the bench keyspace (default 3)")
    b.add_argument("--value-size", type=int, default=100, metavar="BYTES", help="blob size (default 100)")
    b.add_argument("--cl", type=str.upper, choices=CONSISTENCY_LEVELS, default="QUORUM",
                   help="consistency level (default QUORUM)")
    b.add_argument("--concurrency", type=int, default=64, help="requests in flight per process (default 64)")
    b.add_argument("--processes", type=int, default=1, help="client processes, each its own driver Cluster")
    run = b.add_mutually_exclusive_group()
    run.add_argument("--duration", type=float, metavar="SECONDS", help="measured phase length (default 10)")
    run.add_argument("--ops", type=int, help="total operations in the measured phase")
    b.add_argument("--rate", type=float, metavar="OPS_PER_S",
                   help="open loop at this total rate, spread over the processes (latency counts from each request's "
                        "intended start; --concurrency then caps requests in flight per process)")
    b.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS",
                   help="run the workload unrecorded this long before the measured phase (default 0)")
    b.add_argument("--protocol-version", type=int, choices=(3, 4, 5), metavar="N",
                   help="native protocol version the driver uses (default: the highest both sides speak, v5; "
                        "v4 spares the Python driver v5's checksummed framing)")
    b.add_argument("--distribution", choices=("uniform", "zipfian"), default="uniform",
                   help="key choice (zipfian: YCSB scrambled zipfian, theta 0.99)")
    b.add_argument("--json", metavar="FILE", help="write the results as JSON")
    b.add_argument("--chart", metavar="FILE.png", help="write a PNG: throughput and latency percentiles over time")
    b.add_argument("--kill", metavar="NODE@SECONDS", help="kill -9 NODE (node2 or 127.0.0.2) at SECONDS into the run")
    b.add_argument("--restart-after", type=float, metavar="SECONDS", help="with --kill: start the node again after")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--quiet", action="store_true", help="no live progress line")


# ---- local cluster: hosts, pids, CPU -------------------------------------------------------------

def _local_cluster(directory: str):
    from agora.runtime.cluster import LocalCluster

    try:
        c = LocalCluster(directory)
        return c if c.exists else None
    except Exception:
        return None


def _cpu_snapshot(cluster, hosts: list[str]) -> dict[str, tuple[int, float]]:
    """node name -> (pid, utime+stime seconds), for local nodes among the contact points' cluster."""
    out = {}
    if cluster is None:
        return out
    for n in cluster.nodes:
        pid = cluster.pid(n)
        if pid is not None and (cpu := process_cpu_seconds(pid)) is not None:
            out[n.name] = (pid, cpu)
    return out


# ---- schema ---------------------------------------------------------------------------------------

def _create_schema(hosts: list[str], port: int, rf: int) -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster(hosts, port=port)
    try:
        s = cluster.connect()
        s.execute(f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
                  f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}", timeout=30)
        s.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.{TABLE} (k bigint PRIMARY KEY, v blob)", timeout=30)
        cluster.control_connection.wait_for_schema_agreement()
    finally:
        cluster.shutdown()


# ---- run --------------------------------------------------------------------------------------------

class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.plain = not sys.stderr.isatty()
        self.shown = False

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        if self.plain:
            print(text, file=sys.stderr, flush=True)
        else:
            sys.stderr.write("\r" + text.ljust(100)[:100])
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()
            self.shown = False


def _kill_schedule(cluster, spec: str, restart_after: float | None, t0: float, events: list, stop: threading.Event):
    name, _, at = spec.partition("@")
    at_s = float(at)
    node = cluster.node(name)
    if stop.wait(max(0.0, t0 + at_s - time.monotonic())):
        return
    cluster.stop(node.name, kill=True)
    events.append((time.monotonic() - t0, f"kill -9 {node.name}"))
    if restart_after is None:
        return
    if stop.wait(max(0.0, t0 + at_s + restart_after - time.monotonic())):
        return
    events.append((time.monotonic() - t0, f"start {node.name}"))
    cluster.start([node.name], wait=False)


def _fmt_ms(us) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _print_report(args, summary: dict, cpu: dict | None) -> None:
    lat = summary["latency_us"]
    print(f"workload {args.workload}  cl {args.cl}  keys {args.keys}  value {args.value_size} B  "
          f"{args.processes} process(es) x {args.concurrency} in flight  {args.distribution}"
          + ("" if args.protocol_version is None else f"  protocol v{args.protocol_version}"))
    print(f"  operations {summary['operations']}  in {summary['elapsed_s']:.2f} s  "
          f"throughput {summary['throughput_ops_s']:.0f} ops/s  errors {summary['errors']}")
    cols = "  ".join(f"p{p:g} {_fmt_ms(lat.get(f'p{p:g}_us'))}" for p in PERCENTILES)
    print(f"  latency ms  {cols}  max {_fmt_ms(lat.get('max_us'))}  mean {_fmt_ms(lat.get('mean_us'))}")
    for kind, s in summary["latency_by_op_us"].items():
        cols = "  ".join(f"p{p:g} {_fmt_ms(s.get(f'p{p:g}_us'))}" for p in PERCENTILES)
        print(f"    {kind:5s} {s['count']:>9d} ops  {cols}  max {_fmt_ms(s.get('max_us'))}")
    for k, v in sorted(summary["errors_by_type"].items(), key=lambda kv: -kv[1]):
        print(f"  error {k}: {v}   e.g. {summary['error_samples'].get(k, '')[:160]}")
    if summary.get("client_cpu"):
        c = summary["client_cpu"]
        print(f"  client CPU {c['total_s']:.2f} s = {c['us_per_op']:.0f} µs/op ({c['cores_busy']:.2f} cores busy)")
    if cpu:
        nodes = ", ".join(f"{n} {s:.2f}s" for n, s in cpu["per_node_s"].items())
        print(f"  server CPU {cpu['total_s']:.2f} s ({nodes}) = {cpu['us_per_op']:.0f} µs/op, "
              f"{cpu['ms_per_1000_ops']:.1f} ms per 1,000 ops"
              + (f"  (not counted: {', '.join(cpu['not_counted'])})" if cpu["not_counted"] else ""))


def run_bench(args) -> int:
    cluster = _local_cluster(args.dir)
    if args.hosts:
        hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    elif cluster is not None:
        hosts = [n.address for n in cluster.nodes]
    else:
        hosts = ["127.0.0.1"]
    if cluster is not None and not {n.address for n in cluster.nodes} & set(hosts):
        cluster = None  # the contact points are some other cluster: no CPU, no --kill
    if args.kill and cluster is None:
        print("agora bench: --kill needs the local cluster (--dir) whose nodes are the contact points", file=sys.stderr)
        return 2
    if args.rate is not None and args.rate <= 0:
        print("agora bench: --rate must be positive", file=sys.stderr)
        return 2
    if args.keys < 1 or args.concurrency < 1 or args.processes < 1:
        print("agora bench: --keys, --concurrency and --processes must be at least 1", file=sys.stderr)
        return 2
    duration = args.duration if args.duration is not None else (None if args.ops is not None else 10.0)

    if not args.no_schema:
        _create_schema(hosts, args.port, args.rf)

    ctx = mp.get_context("spawn")
    P = args.processes
    progress = ctx.Array("q", 2 * P, lock=False)
    ready = ctx.Array("b", P, lock=False)
    go = ctx.Event()
    results_q = ctx.Queue()
    load = args.workload != "write" and not args.no_load
    procs = []
    for i in range(P):
        share = None if args.ops is None else args.ops // P + (1 if i < args.ops % P else 0)
        spec = WorkerSpec(i, P, hosts, args.port, args.workload, args.keys, args.value_size, args.cl,
                          args.concurrency, args.distribution, duration, share, load, args.seed,
                          rate=None if args.rate is None else args.rate / P,
                          rate_offset_s=0.0 if args.rate is None else i / args.rate, warmup_s=args.warmup,
                          protocol_version=args.protocol_version)
        p = ctx.Process(target=run_worker, args=(spec, progress, ready, go, results_q), daemon=True)
        p.start()
        procs.append(p)

    show = _Progress(not args.quiet)
    results: dict[int, dict] = {}
    stop_kill = threading.Event()
    events: list[tuple[float, str]] = []
    try:
        # connect, prepare, load
        started = time.monotonic()
        last = 0.0
        while sum(ready) < P:
            if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() - started > READY_TIMEOUT_S:
                break
            now = time.monotonic()
            if load and now - last >= 1.0:
                last = now
                show.show(f"loading / warming up: {sum(progress[0::2])}/{args.keys} keys  {now - started:.0f}s")
            time.sleep(0.05)
        show.clear()
        # measured phase
        before = _cpu_snapshot(cluster, hosts)
        base = [progress[i] for i in range(2 * P)]
        t0 = time.monotonic()
        go.set()
        if args.kill:
            threading.Thread(target=_kill_schedule, args=(cluster, args.kill, args.restart_after, t0, events, stop_kill),
                             daemon=True).start()
        last_tick, last_ok = t0, 0
        while len(results) < P:
            try:
                i, r = results_q.get(timeout=0.2)
                results[i] = r
                continue
            except queue.Empty:
                pass
            if all(p.exitcode is not None for p in procs) and results_q.empty():
                break
            now = time.monotonic()
            if now - last_tick >= 1.0:
                ok = sum(progress[0::2]) - sum(base[0::2])
                err = sum(progress[1::2]) - sum(base[1::2])
                rate = (ok - last_ok) / (now - last_tick)
                last_tick, last_ok = now, ok
                total = f"/{duration:.0f}s" if duration else f"  {ok + err}/{args.ops} ops"
                show.show(f"{now - t0:5.1f}s{total}  {rate:8.0f} ops/s  ok {ok}  errors {err}")
        elapsed_wall = time.monotonic() - t0
        after = _cpu_snapshot(cluster, hosts)
        show.clear()
    finally:
        stop_kill.set()
        go.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()

    fatal = {i: r for i, r in results.items() if "fatal" in r}
    if fatal or len(results) < P:
        for i, r in fatal.items():
            print(f"agora bench: process {i} failed: {r['fatal']}", file=sys.stderr)
            print(r["trace"], file=sys.stderr)
        if len(results) < P:
            print(f"agora bench: {P - len(results)} process(es) exited without results", file=sys.stderr)
        return 1

    elapsed = max((r["elapsed_s"] for r in results.values()), default=elapsed_wall)
    summary = summarize(list(results.values()), elapsed)
    cpu = None
    if before and summary["operations"]:
        per_node = {n: round(after[n][1] - cpu_s, 3) for n, (pid, cpu_s) in before.items()
                    if n in after and after[n][0] == pid}
        total = sum(per_node.values())
        cpu = {"per_node_s": per_node, "total_s": round(total, 3),
               "us_per_op": round(total * 1e6 / summary["operations"], 1),
               "ms_per_1000_ops": round(total * 1e6 / summary["operations"], 1),
               "not_counted": sorted(set(before) - set(per_node))}
    _print_report(args, summary, cpu)
    if args.rate:
        print(f"  open loop at {args.rate:g} ops/s: latency counted from each request's intended start")
    if args.kill or args.rate:
        print("  timeline (per second; sparkline = successes per 100 ms, scaled to the busiest bucket):")
        for line in render_timeline(summary["timeline_100ms"], events):
            print(line)
    if args.json:
        doc = {"config": {k: v for k, v in vars(args).items() if k not in ("func",)}, "hosts": hosts,
               **summary, "server_cpu": cpu, "events": [{"t_s": round(t, 3), "event": e} for t, e in events]}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.chart:
        from agora.bench.chart import write_chart

        title = (f"agora bench: workload {args.workload}, CL {args.cl}, {args.processes} x {args.concurrency}"
                 + (f", open loop {args.rate:g}/s" if args.rate else ", closed loop")
                 + f" - {summary['throughput_ops_s']:.0f} ops/s, {summary['errors']} errors")
        write_chart(args.chart, title, summary["timeline_100ms"], summary["latency_windows_1s"], events, args.rate)
    return 0


def cmd_bench(args) -> int:
    return run_bench(args)
