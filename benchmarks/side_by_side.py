"""Agora beside etcd and Redis on one machine, in one run: every system is started on loopback,
loaded with the same workload shape, measured, and stopped, one system at a time.

  1. etcd, 3 members (127.0.60.1-3): write-only and YCSB A, closed loop; then, on a fresh
     cluster, a steady open-loop load with kill -9 of the leader.
  2. Redis, one node, no persistence (127.0.61.1): write-only and YCSB A: the one-machine ceiling.
  3. Agora, 3 nodes, RF 3 (127.0.62.1-3): write-only and YCSB A at ONE, QUORUM and ALL through
     `agora bench`; then the same steady load at QUORUM with kill -9 of one node.

The throughput runs are repeated (--repeat, default 3 passes; each pass runs every system in
turn, so load from other work on the machine falls on all of them) and the table shows each
configuration's median pass. The kill runs happen once, in the last pass. Prints one table with
ratios (Agora/etcd, Agora/Redis) and writes results.json, one JSON per run, a PNG chart per run
of the first pass and of the kill runs, and summary.md into the results directory (default
benchmarks/results/<UTC date>/).

    python benchmarks/side_by_side.py                      # the full run, 3 passes (about 25 minutes)
    python benchmarks/side_by_side.py --duration 5 --warmup 1 --kill-duration 10 --kill-at 3 --out /tmp/quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kvload import LoadSpec, kill_etcd_leader, print_report, run_load  # noqa: E402
from servers import Agora, Etcd, Redis  # noqa: E402

from agora.bench.chart import write_chart  # noqa: E402
from agora.bench.stats import Timeline, render_timeline, unavailability  # noqa: E402

WORKLOAD_NAMES = {"write": "write-only", "a": "YCSB A 50/50"}


def uptime() -> str:
    with open("/proc/loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return f"load average {one}, {five}, {fifteen}"


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[0].strip()
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    commit = version(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "etcd": version(["etcd", "--version"]),
            "redis": version(["redis-server", "--version"]), "agora_commit": commit}


def kill_stats(doc: dict, kill_at: float, rate: float) -> dict:
    """Failed requests, requests over 1 s, and the window after the kill from the timeline."""
    tl = doc["timeline_100ms"]
    kill_t = doc["events"][0]["t_s"] if doc["events"] else kill_at
    half = rate * Timeline.BUCKET_S / 2
    first = int(kill_t / Timeline.BUCKET_S)
    last_full = int((doc["config_duration_s"]) / Timeline.BUCKET_S)  # buckets after that are the drain tail
    below = sum(1 for b in tl[first:last_full] if b[0] < half)
    return {"killed_at_s": kill_t, "failed": doc["errors"], "over_1s": doc["latency_us"].get("over_1s", 0),
            "max_ms": round(doc["latency_us"].get("max_us", 0) / 1000, 1),
            "no_success_window_s": unavailability(tl[:last_full], kill_t)["longest_no_success_s"],
            "below_half_rate_s": round(below * Timeline.BUCKET_S, 1)}


class Runner:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs: list[dict] = []
        self.suffix = ""  # file name suffix of the current pass ("", "-p2", ...)
        self.pass_no = 1

    def save(self, name: str, title: str, doc: dict, rate: float | None = None) -> None:
        with open(self.out / f"{name}.json", "w") as f:
            json.dump(doc, f, indent=1)
        if self.suffix and not rate:  # charts of the first pass and of the kill runs
            return
        write_chart(str(self.out / f"{name}.png"), title, doc["timeline_100ms"], doc["latency_windows_1s"],
                    [(e["t_s"], e["event"]) for e in doc.get("events", [])], rate)

    def record(self, name: str, system: str, workload: str, cl: str, doc: dict, kill: dict | None = None) -> None:
        lat = doc["latency_us"]
        self.runs.append({
            "name": name, "system": system, "workload": workload, "cl": cl,
            "ops_s": doc["throughput_ops_s"], "operations": doc["operations"], "errors": doc["errors"],
            "p50_ms": lat.get("p50_us", 0) / 1000, "p95_ms": lat.get("p95_us", 0) / 1000,
            "p99_ms": lat.get("p99_us", 0) / 1000, "p99.9_ms": lat.get("p99.9_us", 0) / 1000,
            "max_ms": lat.get("max_us", 0) / 1000,
            "server_us_op": (doc.get("server_cpu") or {}).get("us_per_op"),
            "client_us_op": (doc.get("client_cpu") or {}).get("us_per_op"),
            "client_cores": (doc.get("client_cpu") or {}).get("cores_busy"),
            "load_after": uptime().removeprefix("load average "), "pass": self.pass_no, "kill": kill})

    # ---- etcd and Redis through benchmarks/kvload.py ----------------------------------------------

    def spec(self, system, endpoints, workload, **kw) -> LoadSpec:
        a = self.args
        return LoadSpec(system, endpoints, workload, a.keys, a.value_size, kw.pop("concurrency", a.concurrency),
                        a.processes, kw.pop("duration", a.duration), kw.pop("warmup", a.warmup), **kw)

    def kv_runs(self, system_name: str, make, serializable_too: bool = False) -> None:
        a = self.args
        with make() as s:
            variants = [(wl, False) for wl in a.workloads]
            if serializable_too:
                variants += [(wl, True) for wl in a.workloads if wl != "write"]
            for wl, ser in variants:
                name = f"{system_name}-{wl}" + ("-serializable" if ser else "") + self.suffix
                title = (f"{system_name}: {WORKLOAD_NAMES[wl]}" + (", serializable reads" if ser else "")
                         + f", {a.processes} x {a.concurrency}")
                print(f"\n== {title}", flush=True)
                doc = run_load(self.spec(system_name, s.endpoints, wl, serializable=ser), s.pids)
                print_report(title, doc)
                self.save(name, title, doc)
                cl = ("serializable" if ser else "linearizable") if system_name == "etcd" else "-"
                self.record(name, system_name, wl, cl, doc)

    def etcd_kill(self) -> None:
        a = self.args
        title = f"etcd: write-only, open loop {a.rate:g}/s, kill -9 the leader at {a.kill_at:g} s"
        print(f"\n== {title}", flush=True)
        with Etcd() as etcd:
            spec = self.spec("etcd", etcd.endpoints, "write", concurrency=a.kill_inflight, duration=a.kill_duration,
                             warmup=min(a.warmup, 2.0), rate=a.rate)
            doc = run_load(spec, etcd.pids, (a.kill_at, lambda: kill_etcd_leader(etcd)))
        doc["config_duration_s"] = a.kill_duration
        print_report(title, doc)
        for line in render_timeline(doc["timeline_100ms"], [(e["t_s"], e["event"]) for e in doc["events"]]):
            print(line)
        self.save("etcd-kill", title, doc, a.rate)
        self.record("etcd-kill", "etcd", "write", "linearizable", doc, kill_stats(doc, a.kill_at, a.rate))

    # ---- Agora through agora bench ----------------------------------------------------------------------

    def agora_bench(self, agora: Agora, name: str, extra: list[str], title: str, rate=None) -> dict:
        a = self.args
        path = self.out / f"{name}.json"
        cmd = [sys.executable, "-m", "agora", "bench", "--hosts", ",".join(agora.hosts), "--dir", str(agora.dir),
               "--keys", str(a.keys), "--value-size", str(a.value_size), "--processes", str(a.processes),
               "--json", str(path), "--quiet", *extra]
        if not self.suffix or rate:  # charts of the first pass and of the kill runs
            cmd += ["--chart", str(self.out / f"{name}.png")]
        print(f"\n== {title}\n   {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, text=True, capture_output=True, timeout=600)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            raise RuntimeError(f"agora bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(path.read_text())

    def agora_runs(self, kill: bool) -> None:
        a = self.args
        with Agora() as agora:
            for cl in a.cls:
                for wl in a.workloads:
                    self.agora_throughput(agora, cl, wl, "")
            if not kill:
                return
            agora.restart_all()
            node = a.agora_kill_node
            doc = self.agora_bench(agora, "agora-kill", [
                "--workload", "write", "--cl", "QUORUM", "--concurrency", str(a.kill_inflight), "--duration",
                str(a.kill_duration), "--warmup", str(min(a.warmup, 2.0)), "--rate", str(a.rate),
                "--kill", f"{node}@{a.kill_at:g}"],
                f"agora: write-only, QUORUM, open loop {a.rate:g}/s, kill -9 {node} at {a.kill_at:g} s", a.rate)
            doc["config_duration_s"] = a.kill_duration
            self.record("agora-kill", "agora", "write", "QUORUM", doc, kill_stats(doc, a.kill_at, a.rate))
            agora.save_logs(self.out / "agora-logs")  # what the nodes said, should a request fail

    def agora_fsync_runs(self) -> None:
        """QUORUM with commitlog_sync: batch (fsync before acknowledging), etcd's durability."""
        with Agora(overrides={"commitlog_sync": "batch"}) as agora:
            for wl in self.args.workloads:
                self.agora_throughput(agora, "QUORUM", wl, "fsync")

    def agora_throughput(self, agora: Agora, cl: str, wl: str, variant: str) -> None:
        a = self.args
        name = f"agora-{cl.lower()}-{wl}" + (f"-{variant}" if variant else "") + self.suffix
        label = cl + (" + fsync (commitlog_sync batch)" if variant == "fsync" else "")
        doc = self.agora_bench(agora, name, ["--workload", wl, "--cl", cl, "--concurrency", str(a.concurrency),
                                             "--duration", str(a.duration), "--warmup", str(a.warmup)],
                               f"agora: {WORKLOAD_NAMES[wl]}, {label}, {a.processes} x {a.concurrency}")
        self.record(name, "agora", wl, label, doc)


def ratio(x, y) -> str:
    return "-" if not x or not y else f"{x / y:.2f}x"


def medians(runs: list[dict]) -> list[dict]:
    """One row per configuration (system, workload, CL): the pass with the median throughput
    (the lower middle one for an even count), with every pass's ops/s alongside."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        if not r["kill"]:
            groups.setdefault((r["system"], r["workload"], r["cl"]), []).append(r)
    out = []
    for g in groups.values():
        ranked = sorted(g, key=lambda r: r["ops_s"])
        out.append({**ranked[(len(ranked) - 1) // 2], "all_ops_s": [r["ops_s"] for r in g]})
    return out


def table(runs: list[dict]) -> list[str]:
    kills = [r for r in runs if r["kill"]]
    runs = medians(runs)
    base = {(r["system"], r["workload"]): r for r in runs if r["cl"] in ("linearizable", "-")}
    lines = ["| system | workload | CL | ops/s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | errors | "
             "server CPU µs/op | client CPU µs/op (cores) | ops/s vs etcd | p99 vs etcd | ops/s vs Redis | "
             "ops/s of each pass | load avg after |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in runs:
        e, rd = base.get(("etcd", r["workload"])), base.get(("redis", r["workload"]))
        agora = r["system"] == "agora"
        if r["system"] == "etcd" and r["cl"] == "serializable":
            agora = False
        lines.append(
            f"| {r['system']} | {WORKLOAD_NAMES[r['workload']]} | {r['cl']} | {r['ops_s']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['p99.9_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} | "
            f"{r['server_us_op'] if r['server_us_op'] is not None else '-'} | "
            f"{r['client_us_op']} ({r['client_cores']}) | "
            f"{ratio(r['ops_s'], e and e['ops_s']) if agora else '-'} | "
            f"{ratio(r['p99_ms'], e and e['p99_ms']) if agora else '-'} | "
            f"{ratio(r['ops_s'], rd and rd['ops_s']) if agora else '-'} | "
            f"{', '.join(f'{x:,.0f}' for x in r['all_ops_s'])} | {r.get('load_after', '')} |")
    if kills:
        lines += ["", "| system | scenario | requests | failed | over 1 s | max ms | no-success window s | "
                      "below half rate s | p99 ms | load avg after |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in kills:
            k = r["kill"]
            what = "kill -9 leader" if r["system"] == "etcd" else f"kill -9 one node, {r['cl']}"
            lines.append(f"| {r['system']} | {what} @ {k['killed_at_s']:.1f} s | {r['operations'] + r['errors']} | "
                         f"{k['failed']} | {k['over_1s']} | {k['max_ms']:.0f} | {k['no_success_window_s']:.1f} | "
                         f"{k['below_half_rate_s']:.1f} | {r['p99_ms']:.1f} | {r.get('load_after', '')} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--processes", type=int, default=2, help="client processes (default 2)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per process (default 32)")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per throughput run")
    ap.add_argument("--warmup", type=float, default=5.0, help="unrecorded seconds before each run")
    ap.add_argument("--workloads", default="write,a")
    ap.add_argument("--cls", default="ONE,QUORUM,ALL", help="Agora consistency levels")
    ap.add_argument("--rate", type=float, default=1000.0, help="kill scenario: steady ops/s (open loop)")
    ap.add_argument("--kill-duration", type=float, default=20.0)
    ap.add_argument("--kill-at", type=float, default=5.0)
    ap.add_argument("--kill-inflight", type=int, default=2000,
                    help="kill scenario: cap of requests in flight per process (high, so the open loop stays open)")
    ap.add_argument("--agora-kill-node", default="node1")
    ap.add_argument("--only", default="etcd,redis,agora")
    ap.add_argument("--repeat", type=int, default=3,
                    help="passes over the throughput runs; the table shows each configuration's median pass")
    ap.add_argument("--no-etcd-serializable", dest="etcd_serializable", action="store_false",
                    help="skip etcd YCSB A with serializable reads")
    ap.add_argument("--no-agora-fsync", dest="agora_fsync", action="store_false",
                    help="skip Agora QUORUM with commitlog_sync: batch")
    ap.add_argument("--table", metavar="RESULTS_JSON", help="only print the table of an earlier run's results.json")
    ap.add_argument("--out", default=str(HERE / "results" / datetime.datetime.now(datetime.timezone.utc)
                                         .strftime("%Y-%m-%d")))
    a = ap.parse_args(argv)
    if a.table:
        doc = json.loads(Path(a.table).read_text())
        print(f"{doc['started']}: before {doc['load_before']}, after {doc.get('load_after')}")
        print("\n".join(table(doc["runs"])))
        return 0
    a.workloads = a.workloads.split(",")
    a.cls = [c.upper() for c in a.cls.split(",")]
    only = set(a.only.split(","))
    r = Runner(a)
    info = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "load_before": uptime(), "args": {k: v for k, v in vars(a).items()}}
    print(f"{info['machine']}\nbefore: {info['load_before']}", flush=True)
    t0 = time.monotonic()
    for p in range(1, a.repeat + 1):  # passes alternate the systems, so background load hits each alike
        r.pass_no, r.suffix = p, "" if p == 1 else f"-p{p}"
        last = p == a.repeat
        print(f"\n######## pass {p} of {a.repeat}: {uptime()}", flush=True)
        if "etcd" in only:
            r.kv_runs("etcd", Etcd, serializable_too=a.etcd_serializable)
            if last:
                r.etcd_kill()
        if "redis" in only:
            r.kv_runs("redis", Redis)
        if "agora" in only:
            r.agora_runs(kill=last)
            if a.agora_fsync:
                r.agora_fsync_runs()
    info["load_after"] = uptime()
    info["wall_s"] = round(time.monotonic() - t0, 1)
    lines = table(r.runs)
    print(f"\nafter: {info['load_after']}   ({info['wall_s']:.0f} s)\n")
    print("\n".join(lines))
    with open(r.out / "results.json", "w") as f:
        json.dump({**info, "runs": r.runs}, f, indent=1)
    with open(r.out / "summary.md", "w") as f:
        f.write(f"Run {info['started']} on {info['machine']['cpus']} x {info['machine']['cpu_model']}; "
                f"{info['load_before']} before, {info['load_after']} after; {info['wall_s']:.0f} s.\n\n")
        f.write("\n".join(lines) + "\n")
    print(f"\nresults in {r.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
