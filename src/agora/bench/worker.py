"""One load-generating process: its own driver `Cluster`, prepared statements, `tuple_factory`,
token-aware routing, and either a closed loop keeping `concurrency` requests in flight (`Engine`)
or an open loop issuing requests at a fixed rate (`RateEngine`, latency from each request's
intended start so coordinated omission cannot hide a stall).

The parent (agora.cli.bench) starts P of these. Each loads its slice of the keys (if asked),
reports ready, waits for the parent's go, runs the measured phase and puts its results (latency
histogram exports, timeline buckets, error counts) on the result queue."""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass

from agora.bench.keys import key_chooser
from agora.bench.stats import Latencies, Timeline, Windows, process_cpu_seconds

WORKLOADS = {  # name: fraction of reads; the rest are writes (YCSB "update" = overwrite of v)
    "write": 0.0,
    "a": 0.5,
    "b": 0.95,
    "c": 1.0,
}
KEYSPACE, TABLE = "bench", "kv"
REQUEST_TIMEOUT_S = 10.0
MAX_SYNC_DEPTH = 20  # completions that run inline (future already done) before handing off


@dataclass
class WorkerSpec:
    index: int
    processes: int
    hosts: list[str]
    port: int
    workload: str
    keys: int
    value_size: int
    consistency: str
    concurrency: int
    distribution: str
    duration_s: float | None
    ops: int | None  # this process's share
    load: bool
    seed: int
    rate: float | None = None  # this process's ops/s (open loop); None: closed loop
    rate_offset_s: float = 0.0  # this process's phase within the common schedule
    warmup_s: float = 0.0  # unrecorded run of the same workload before reporting ready
    protocol_version: int | None = None  # None: the highest both sides speak (v5 here)


class Engine:
    """Keeps `concurrency` requests in flight; `next_op()` returns (kind, statement, params) or None.

    A completion issues the next request inline (on the driver's I/O thread). Errors, and
    completions nested too deep (a future already done when its callbacks are added), hand the
    slot to the worker thread instead, so a dead cluster cannot recurse without bound."""

    def __init__(self, session, concurrency: int, next_op, deadline: float | None, on_done, progress, slot):
        self.session, self.concurrency, self.next_op = session, concurrency, next_op
        self.deadline, self.on_done = deadline, on_done
        self.progress, self.slot = progress, slot
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.inflight = 0
        self.pending = 0  # slots handed to the worker thread
        self.stopped = False
        self.finished = threading.Event()
        self.local = threading.local()

    def run(self) -> None:
        for _ in range(self.concurrency):
            self._issue()
        while not self.finished.is_set():
            with self.cv:
                while not self.pending and not self.finished.is_set():
                    self.cv.wait(0.1)
                n, self.pending = self.pending, 0
            for _ in range(n):
                self._issue()

    def _issue(self) -> None:
        with self.lock:
            op = None
            if not self.stopped:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.stopped = True
                else:
                    op = self.next_op()
                    if op is None:
                        self.stopped = True
            if op is None:
                if self.inflight == 0:
                    self.finished.set()
                    self.cv.notify_all()
                return
            self.inflight += 1
        kind, stmt, params = op
        start = time.perf_counter_ns()
        try:
            fut = self.session.execute_async(stmt, params, timeout=REQUEST_TIMEOUT_S)
        except Exception as exc:
            self._complete(kind, start, exc)
            return
        fut.add_callbacks(self._ok, self._err, callback_args=(kind, start), errback_args=(kind, start))

    def _ok(self, _rows, kind, start) -> None:
        self._complete(kind, start, None)

    def _err(self, exc, kind, start) -> None:
        self._complete(kind, start, exc)

    def _complete(self, kind, start, exc) -> None:
        us = (time.perf_counter_ns() - start) // 1000
        self.on_done(kind, us, exc)
        if self.progress is not None:
            self.progress[self.slot + (0 if exc is None else 1)] += 1
        depth = getattr(self.local, "depth", 0)
        with self.cv:
            self.inflight -= 1
            if self.stopped:
                if self.inflight == 0:
                    self.finished.set()
                    self.cv.notify_all()
                return
            if exc is not None or depth >= MAX_SYNC_DEPTH:
                self.pending += 1
                self.cv.notify()
                return
        self.local.depth = depth + 1
        try:
            self._issue()
        finally:
            self.local.depth = depth


class RateEngine:
    """Open loop: request n of this process is due at t0 + offset + n / rate, whatever happened to
    earlier ones. At most `max_inflight` are outstanding; due requests beyond that wait in the
    client, and their latency still counts from the due time (coordinated omission corrected).
    Every request due before the deadline is issued, so a stall at the end is not dropped."""

    def __init__(self, session, rate: float, offset_s: float, max_inflight: int, next_op, deadline: float | None,
                 on_done, progress, slot):
        self.session, self.interval_ns, self.offset_ns = session, int(1e9 / rate), int(offset_s * 1e9)
        self.max_inflight, self.next_op, self.deadline = max_inflight, next_op, deadline
        self.on_done, self.progress, self.slot = on_done, progress, slot
        self.cv = threading.Condition()
        self.inflight = 0

    def run(self) -> None:
        start_ns = time.perf_counter_ns() + self.offset_ns
        end_ns = None if self.deadline is None else \
            start_ns - self.offset_ns + int((self.deadline - time.monotonic()) * 1e9)
        n = 0
        while True:
            due = start_ns + n * self.interval_ns
            if end_ns is not None and due >= end_ns:
                break
            wait_ns = due - time.perf_counter_ns()
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
            with self.cv:
                while self.inflight >= self.max_inflight:
                    self.cv.wait(0.1)
                op = self.next_op()
                if op is None:
                    break
                self.inflight += 1
            n += 1
            kind, stmt, params = op
            try:
                fut = self.session.execute_async(stmt, params, timeout=REQUEST_TIMEOUT_S)
            except Exception as exc:
                self._complete(exc, kind, due)
                continue
            fut.add_callbacks(self._ok, self._complete, callback_args=(kind, due), errback_args=(kind, due))
        with self.cv:
            while self.inflight:
                self.cv.wait(0.1)

    def _ok(self, _rows, kind, due) -> None:
        self._complete(None, kind, due)

    def _complete(self, exc, kind, due) -> None:
        us = (time.perf_counter_ns() - due) // 1000
        self.on_done(kind, us, exc)
        if self.progress is not None:
            self.progress[self.slot + (0 if exc is None else 1)] += 1
        with self.cv:
            self.inflight -= 1
            self.cv.notify()


def _connect(spec: WorkerSpec):
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import tuple_factory

    cl = ConsistencyLevel.name_to_value[spec.consistency.upper()]
    profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                               consistency_level=cl, row_factory=tuple_factory,
                               request_timeout=REQUEST_TIMEOUT_S)
    pinned = {} if spec.protocol_version is None else {"protocol_version": spec.protocol_version}
    cluster = Cluster(spec.hosts, port=spec.port, execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **pinned)
    return cluster, cluster.connect(wait_for_all_pools=True)  # measure token-aware routing from the first request


def run_worker(spec: WorkerSpec, progress, ready, go, results) -> None:
    """Process entry point. progress: shared array [ok, err] per worker; ready: shared counter
    array (one slot per worker); go: event; results: queue of (index, dict)."""
    cluster = None
    try:
        cluster, session = _connect(spec)
        insert = session.prepare(f"INSERT INTO {KEYSPACE}.{TABLE} (k, v) VALUES (?, ?)")
        select = session.prepare(f"SELECT v FROM {KEYSPACE}.{TABLE} WHERE k = ?")
        rng = random.Random(spec.seed * 1000 + spec.index)
        values = [os.urandom(spec.value_size) for _ in range(16)]
        slot = 2 * spec.index

        if spec.load:
            keys = iter(range(spec.index, spec.keys, spec.processes))

            def next_load():
                k = next(keys, None)
                return None if k is None else ("load", insert, (k, values[k & 15]))

            load_errors = Counter()

            def load_done(_kind, _us, exc):
                if exc is not None:
                    load_errors[type(exc).__name__] += 1

            Engine(session, spec.concurrency, next_load, None, load_done, None, slot).run()
            if load_errors:
                raise RuntimeError(f"load phase failed: {dict(load_errors)}")

        choose = key_chooser(spec.distribution, spec.keys, rng)
        read_fraction = WORKLOADS[spec.workload]
        remaining = [spec.ops if spec.ops is not None else -1]
        rnd = rng.random

        def next_op():
            if remaining[0] == 0:
                return None
            remaining[0] -= 1
            k = choose()
            if read_fraction and (read_fraction >= 1.0 or rnd() < read_fraction):
                return ("read", select, (k,))
            return ("write", insert, (k, values[k & 15]))

        hist = {"read": Latencies(), "write": Latencies()}
        timeline = Timeline()
        windows = Windows()
        errors: Counter = Counter()
        error_samples: dict[str, str] = {}

        if spec.warmup_s > 0:
            warm = [spec.ops if spec.ops is not None else -1]
            remaining[0] = -1

            def warm_done(_kind, _us, _exc):
                pass

            warm_end = time.monotonic() + spec.warmup_s
            if spec.rate:
                RateEngine(session, spec.rate, spec.rate_offset_s, spec.concurrency, next_op, warm_end, warm_done,
                           None, slot).run()
            else:
                Engine(session, spec.concurrency, next_op, warm_end, warm_done, None, slot).run()
            remaining[0] = warm[0]

        ready[spec.index] = 1
        go.wait()
        t0 = time.monotonic()
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
                errors[name] += 1
                error_samples.setdefault(name, str(exc)[:300])
                timeline.record(t, False, us)

        deadline = t0 + spec.duration_s if spec.duration_s is not None else None
        if spec.rate:
            RateEngine(session, spec.rate, spec.rate_offset_s, spec.concurrency, next_op, deadline, done, progress,
                       slot).run()
        else:
            Engine(session, spec.concurrency, next_op, deadline, done, progress, slot).run()
        elapsed = time.monotonic() - t0
        cpu1 = process_cpu_seconds()
        results.put((spec.index, {
            "elapsed_s": elapsed,
            "protocol_version": session.cluster.protocol_version,
            "client_cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
            "windows": windows.export(),
            "hist": {k: h.export() for k, h in hist.items()},
            "timeline": timeline.buckets,
            "errors": dict(errors),
            "error_samples": error_samples,
        }))
    except BaseException as exc:  # report, never hang the parent
        results.put((spec.index, {"fatal": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}))
        ready[spec.index] = 1
    finally:
        if cluster is not None:
            cluster.shutdown()
