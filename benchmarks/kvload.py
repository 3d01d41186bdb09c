"""Load generator for etcd and Redis with the shape of `agora bench`: the same key count, value
size, workloads (write-only; YCSB A = 50/50 read/update), key choice, client processes x
requests in flight per process, closed loop or open loop at a fixed rate (latency from each
request's intended start), warm-up, and the same statistics code (agora.bench.stats: HDR
histograms, per-100 ms timeline, per-second windows, client CPU from /proc/self/stat) and the
same server-CPU-per-operation accounting from /proc/<pid>/stat.

Owns: the two wire clients and the multi-process run. Clients, chosen to be cheap so the client
is not what limits the server (each run reports its client CPU):
  - etcd: its native v3 gRPC API through grpcio (grpc.aio), one HTTP/2 channel per member per
    process, requests spread round-robin over the members as etcd's clientv3 balancer does.
    Messages are encoded by hand (PutRequest / RangeRequest need two fields), so no generated
    stubs are needed. Reads are etcd's default linearizable Range (a quorum round through the
    leader); `--serializable` makes them serializable (local to the member, possibly stale).
    A request refused because its member is unreachable is retried on the next member within
    the request timeout (what clientv3 does for a request that never reached a server); an
    error answered by etcd itself ("etcdserver: ...") fails the request, as in clientv3.
  - Redis: RESP over asyncio (uvloop) streams, one connection per request in flight, no
    pipelining: the same one-request-per-slot shape as the other two.

Run directly, it starts the system on loopback, runs, prints, and stops everything:
    python benchmarks/kvload.py etcd --workload write --processes 2 --concurrency 32 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import queue
import random
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field

from agora.bench.keys import key_chooser
from agora.bench.stats import (PERCENTILES, Latencies, Timeline, Windows, process_cpu_seconds, render_timeline,
                               summarize)
from agora.bench.worker import REQUEST_TIMEOUT_S, WORKLOADS

RETRY_BACKOFF_S = 0.01
READY_TIMEOUT_S = 300.0


@dataclass
class LoadSpec:
    system: str  # "etcd" | "redis"
    endpoints: list[str]
    workload: str = "write"
    keys: int = 10_000
    value_size: int = 100
    concurrency: int = 32
    processes: int = 2
    duration_s: float = 10.0
    warmup_s: float = 0.0
    rate: float | None = None  # total ops/s, open loop
    distribution: str = "uniform"
    serializable: bool = False
    seed: int = 1
    load: bool = True  # write every key first (workloads with reads)
    index: int = 0  # set per process
    extra: dict = field(default_factory=dict)


# ---- protobuf by hand (etcd's PutRequest / RangeRequest) --------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes_field(tag: int, data: bytes) -> bytes:
    return bytes([(tag << 3) | 2]) + _varint(len(data)) + data


def put_request(key: bytes, value: bytes) -> bytes:
    return _bytes_field(1, key) + _bytes_field(2, value)


def range_request(key: bytes, serializable: bool) -> bytes:
    return _bytes_field(1, key) + (b"\x38\x01" if serializable else b"")  # field 7: serializable


# ---- clients --------------------------------------------------------------------------------------------

class EtcdClient:
    def __init__(self, endpoints: list[str], serializable: bool):
        import grpc

        self.grpc = grpc
        self.serializable = serializable
        self.channels = [grpc.aio.insecure_channel(e) for e in endpoints]
        self.put = [c.unary_unary("/etcdserverpb.KV/Put") for c in self.channels]
        self.range = [c.unary_unary("/etcdserverpb.KV/Range") for c in self.channels]
        self.rr = itertools.count()

    async def connect(self) -> None:
        for c in self.channels:
            await asyncio.wait_for(c.channel_ready(), 30)

    async def call(self, _slot: int, kind: str, key: bytes, value: bytes | None) -> None:
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        i = next(self.rr)
        while True:
            m = i % len(self.channels)
            try:
                if kind == "read":
                    await self.range[m](range_request(key, self.serializable), timeout=deadline - time.monotonic())
                else:
                    await self.put[m](put_request(key, value), timeout=deadline - time.monotonic())
                return
            except self.grpc.aio.AioRpcError as exc:
                unreachable = exc.code() == self.grpc.StatusCode.UNAVAILABLE and \
                    not (exc.details() or "").startswith("etcdserver:")
                if not unreachable or time.monotonic() + RETRY_BACKOFF_S >= deadline:
                    raise
                i += 1
                await asyncio.sleep(RETRY_BACKOFF_S)

    async def close(self) -> None:
        for c in self.channels:
            await c.close()


class RedisError(Exception):
    pass


class RedisClient:
    """One connection per slot; a slot has at most one request outstanding."""

    def __init__(self, endpoint: str, slots: int):
        self.host, _, port = endpoint.partition(":")
        self.port, self.slots = int(port), slots
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def connect(self) -> None:
        for _ in range(self.slots):
            self.conns.append(await asyncio.open_connection(self.host, self.port))

    async def call(self, slot: int, kind: str, key: bytes, value: bytes | None) -> None:
        reader, writer = self.conns[slot]
        if kind == "read":
            writer.write(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key))
        else:
            writer.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
        line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
        if line[:1] == b"$":
            n = int(line[1:-2])
            if n >= 0:
                await reader.readexactly(n + 2)
        elif line[:1] == b"-" or not line:
            raise RedisError(line.decode(errors="replace").strip() or "connection closed")

    async def close(self) -> None:
        for _, w in self.conns:
            w.close()


# ---- one process ------------------------------------------------------------------------------------------

async def _closed_loop(client, concurrency: int, next_op, deadline: float | None, on_done) -> None:
    async def slot(i: int) -> None:
        while deadline is None or time.monotonic() < deadline:
            op = next_op()
            if op is None:
                return
            kind, key, value = op
            start = time.perf_counter_ns()
            exc = None
            try:
                await client.call(i, kind, key, value)
            except Exception as e:  # noqa: BLE001 - every failure is a counted error
                exc = e
            on_done(kind, (time.perf_counter_ns() - start) // 1000, exc)

    await asyncio.gather(*(slot(i) for i in range(concurrency)))


async def _open_loop(client, rate: float, offset_s: float, max_inflight: int, next_op, deadline: float,
                     on_done) -> None:
    """Request n is due at start + offset + n / rate; latency counts from the due time."""
    free = asyncio.Queue()
    for i in range(max_inflight):
        free.put_nowait(i)
    tasks = set()

    async def one(slot, kind, key, value, due_ns):
        exc = None
        try:
            await client.call(slot, kind, key, value)
        except Exception as e:  # noqa: BLE001
            exc = e
        on_done(kind, (time.perf_counter_ns() - due_ns) // 1000, exc)
        free.put_nowait(slot)

    interval_ns = int(1e9 / rate)
    start_ns = time.perf_counter_ns() + int(offset_s * 1e9)
    end_ns = start_ns - int(offset_s * 1e9) + int((deadline - time.monotonic()) * 1e9)
    n = 0
    while (due := start_ns + n * interval_ns) < end_ns:
        wait_ns = due - time.perf_counter_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        slot = await free.get()
        op = next_op()
        if op is None:
            break
        n += 1
        t = asyncio.ensure_future(one(slot, *op, due))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def _worker_main(spec: LoadSpec, ready, go, results) -> None:
    if spec.system == "etcd":
        client = EtcdClient(spec.endpoints, spec.serializable)
    else:
        client = RedisClient(spec.endpoints[0], spec.concurrency)
    await client.connect()
    rng = random.Random(spec.seed * 1000 + spec.index)
    values = [os.urandom(spec.value_size) for _ in range(16)]
    keys_b = [b"%d" % k for k in range(spec.keys)]
    try:
        if spec.load and WORKLOADS[spec.workload] > 0:
            mine = iter(range(spec.index, spec.keys, spec.processes))
            load_errors = Counter()

            def next_load():
                k = next(mine, None)
                return None if k is None else ("write", keys_b[k], values[k & 15])

            def load_done(_kind, _us, exc):
                if exc is not None:
                    load_errors[type(exc).__name__] += 1

            await _closed_loop(client, spec.concurrency, next_load, None, load_done)
            if load_errors:
                raise RuntimeError(f"load phase failed: {dict(load_errors)}")

        choose = key_chooser(spec.distribution, spec.keys, rng)
        read_fraction = WORKLOADS[spec.workload]
        rnd = rng.random

        def next_op():
            k = choose()
            if read_fraction and (read_fraction >= 1.0 or rnd() < read_fraction):
                return ("read", keys_b[k], None)
            return ("write", keys_b[k], values[k & 15])

        per_process_rate = None if spec.rate is None else spec.rate / spec.processes
        offset = 0.0 if spec.rate is None else spec.index / spec.rate

        async def phase(seconds, on_done):
            deadline = time.monotonic() + seconds
            if per_process_rate:
                await _open_loop(client, per_process_rate, offset, spec.concurrency, next_op, deadline, on_done)
            else:
                await _closed_loop(client, spec.concurrency, next_op, deadline, on_done)

        if spec.warmup_s > 0:
            await phase(spec.warmup_s, lambda *_: None)

        hist = {"read": Latencies(), "write": Latencies()}
        timeline, windows = Timeline(), Windows()
        errors: Counter = Counter()
        samples: dict[str, str] = {}
        ready[spec.index] = 1
        await asyncio.get_running_loop().run_in_executor(None, go.wait)  # the parent's start signal
        first_ns = time.perf_counter_ns()
        cpu0 = process_cpu_seconds()

        def done(kind, us, exc):
            t = (time.perf_counter_ns() - first_ns) / 1e9
            if exc is None:
                hist[kind].record(us)
                timeline.record(t, True, us)
                windows.record(t, us)
            else:
                name = type(exc).__name__
                if hasattr(exc, "code"):
                    name = f"{name}:{exc.code().name}"
                errors[name] += 1
                samples.setdefault(name, str(exc)[:300])
                timeline.record(t, False, us)

        t0 = time.monotonic()
        await phase(spec.duration_s, done)
        elapsed = time.monotonic() - t0
        cpu1 = process_cpu_seconds()
        results.put((spec.index, {"elapsed_s": elapsed, "client_cpu_s": cpu1 - cpu0,
                                  "hist": {k: h.export() for k, h in hist.items()},
                                  "timeline": timeline.buckets, "windows": windows.export(),
                                  "errors": dict(errors), "error_samples": samples}))
    finally:
        await client.close()


def _worker(spec: LoadSpec, ready, go, results) -> None:
    try:
        if spec.system == "redis":
            import uvloop
            uvloop.install()
        asyncio.run(_worker_main(spec, ready, go, results))
    except BaseException as exc:  # report, never hang the parent
        results.put((spec.index, {"fatal": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}))
        ready[spec.index] = 1


# ---- the run -------------------------------------------------------------------------------------------------

def _cpu(pids: dict[str, int]) -> dict[str, tuple[int, float]]:
    return {n: (pid, c) for n, pid in pids.items() if (c := process_cpu_seconds(pid)) is not None}


def run_load(spec: LoadSpec, server_pids, kill=None) -> dict:
    """Run P processes against a started system. server_pids(): {name: pid} of its servers.
    kill: optional (at_s, function returning a description) run at_s into the measured phase.
    Returns the agora-bench-shaped summary plus server_cpu and events."""
    ctx = mp.get_context("spawn")
    P = spec.processes
    ready = ctx.Array("b", P, lock=False)
    go = ctx.Event()
    results_q = ctx.Queue()
    procs = []
    for i in range(P):
        s = LoadSpec(**{**asdict(spec), "index": i})
        p = ctx.Process(target=_worker, args=(s, ready, go, results_q), daemon=True)
        p.start()
        procs.append(p)
    results: dict[int, dict] = {}
    events: list[tuple[float, str]] = []
    stop = threading.Event()
    try:
        started = time.monotonic()
        while sum(ready) < P and time.monotonic() - started < READY_TIMEOUT_S:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
            time.sleep(0.02)
        before = _cpu(server_pids())
        t0 = time.monotonic()
        go.set()
        if kill is not None:
            def killer():
                if not stop.wait(max(0.0, t0 + kill[0] - time.monotonic())):
                    what = kill[1]()
                    events.append((time.monotonic() - t0, what))
            threading.Thread(target=killer, daemon=True).start()
        while len(results) < P:
            try:
                i, r = results_q.get(timeout=0.2)
                results[i] = r
            except queue.Empty:
                if all(p.exitcode is not None for p in procs) and results_q.empty():
                    break
        after = _cpu(server_pids())
    finally:
        stop.set()
        go.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    fatal = [r for r in results.values() if "fatal" in r]
    if fatal or len(results) < P:
        raise RuntimeError("load generator failed: " + "; ".join(r["fatal"] + "\n" + r["trace"] for r in fatal)
                           if fatal else f"{P - len(results)} process(es) exited without results")
    elapsed = max(r["elapsed_s"] for r in results.values())
    summary = summarize(list(results.values()), elapsed)
    cpu = None
    if before and summary["operations"]:
        per = {n: round(after[n][1] - c, 3) for n, (pid, c) in before.items() if n in after and after[n][0] == pid}
        total = sum(per.values())
        cpu = {"per_node_s": per, "total_s": round(total, 3), "us_per_op": round(total * 1e6 / summary["operations"], 1),
               "not_counted": sorted(set(before) - set(per))}
    return {"config": {k: v for k, v in asdict(spec).items() if k not in ("index", "extra")}, **summary,
            "server_cpu": cpu, "events": [{"t_s": round(t, 3), "event": e} for t, e in events]}


def print_report(title: str, doc: dict) -> None:
    lat = doc["latency_us"]

    def ms(us):
        return "-" if us is None else f"{us / 1000:.2f}"

    print(f"{title}")
    print(f"  operations {doc['operations']}  in {doc['elapsed_s']:.2f} s  throughput {doc['throughput_ops_s']:.0f} ops/s"
          f"  errors {doc['errors']}  over 1 s {lat.get('over_1s', 0)}")
    print("  latency ms  " + "  ".join(f"p{p:g} {ms(lat.get(f'p{p:g}_us'))}" for p in PERCENTILES)
          + f"  max {ms(lat.get('max_us'))}")
    for k, v in doc["errors_by_type"].items():
        print(f"  error {k}: {v}   e.g. {doc['error_samples'].get(k, '')[:160]}")
    if doc.get("client_cpu"):
        c = doc["client_cpu"]
        print(f"  client CPU {c['us_per_op']:.0f} µs/op ({c['cores_busy']:.2f} cores busy)")
    if doc.get("server_cpu"):
        c = doc["server_cpu"]
        print(f"  server CPU {c['total_s']:.2f} s = {c['us_per_op']:.0f} µs/op")


def main(argv=None) -> int:
    from servers import Etcd, Redis

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("system", choices=("etcd", "redis"))
    ap.add_argument("--workload", choices=("write", "a", "b", "c"), default="write")
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per process")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--rate", type=float, help="open loop at this total ops/s")
    ap.add_argument("--serializable", action="store_true", help="etcd: serializable instead of linearizable reads")
    ap.add_argument("--kill-leader-at", type=float, metavar="S", help="etcd: kill -9 the leader S seconds in")
    ap.add_argument("--json")
    ap.add_argument("--chart")
    args = ap.parse_args(argv)
    system = Etcd() if args.system == "etcd" else Redis()
    with system:
        spec = LoadSpec(args.system, system.endpoints, args.workload, args.keys, args.value_size, args.concurrency,
                        args.processes, args.duration, args.warmup, args.rate, serializable=args.serializable)
        kill = None
        if args.kill_leader_at is not None:
            kill = (args.kill_leader_at, lambda: kill_etcd_leader(system))
        doc = run_load(spec, system.pids, kill)
    title = (f"{args.system}: workload {args.workload}, {args.processes} x {args.concurrency}"
             + (f", open loop {args.rate:g}/s" if args.rate else ""))
    print_report(title, doc)
    if args.rate or kill:
        for line in render_timeline(doc["timeline_100ms"], [(e["t_s"], e["event"]) for e in doc["events"]]):
            print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if args.chart:
        from agora.bench.chart import write_chart
        write_chart(args.chart, title, doc["timeline_100ms"], doc["latency_windows_1s"],
                    [(e["t_s"], e["event"]) for e in doc["events"]], args.rate)
    return 0


def kill_etcd_leader(etcd) -> str:
    leader = etcd.leader()
    etcd.kill(leader)
    return f"kill -9 etcd leader {leader}"


if __name__ == "__main__":
    sys.exit(main())
