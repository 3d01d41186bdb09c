"""`agora sim`: run the deterministic simulator from the command line (issue 5, item 3).

One run: `agora sim --seed S --nodes 5 --dcs 1 --ops 100000 --faults partition,crash,skew,loss`
prints what happened (operations, faults injected, stale reads, superseded writes, read
repairs) and, on a violation, the violations with a short trace of the key involved and
the command that replays the run. `--swarm N` runs N seeds from `--seed` on, each with
options drawn from its own seed (`agora.sim.runner.swarm_options`), one line per seed,
and stops at the first violation with its replay command. Exit status: 0 when every run
passed, 1 when one found a violation, 2 for bad arguments.

Owns: argument parsing, printing and the wall-clock measurement of ops per second (the
simulator itself never reads a clock). The runs are `agora.sim.runner.run`.
"""

from __future__ import annotations

import argparse
import sys
import time

FAULT_HELP = "comma-separated: partition, crash, pause, skew, loss, duplicate, reorder; 'all' or 'none'"


def add_parser(sub) -> None:
    """Register `agora sim` on the `agora` command's subparsers."""
    p = sub.add_parser("sim", help="run the deterministic simulator: a workload under faults, then check it")
    p.add_argument("--seed", type=int, default=1, help="the run's seed (with --swarm: the first seed)")
    p.add_argument("--nodes", type=int, default=5, help="nodes, 3..9 (default 5)")
    p.add_argument("--dcs", type=int, default=1, help="datacenters, 1..3 (default 1)")
    p.add_argument("--ops", type=int, default=None, help="client operations (default 10000; swarm: 300 per seed)")
    p.add_argument("--faults", default=None, help=f"{FAULT_HELP} (default partition,crash,skew,loss)")
    p.add_argument("--rf", type=int, default=3, help="replicas per datacenter (default 3)")
    p.add_argument("--commitlog", choices=("periodic", "batch"), default="periodic")
    p.add_argument("--timestamps", choices=("coordinator", "client"), default="coordinator")
    p.add_argument("--keys", type=int, default=8, help="size of the key space (default 8)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--think-ms", type=int, default=60, help="a client pauses 0..this between requests (default 60)")
    p.add_argument("--converge", choices=("read-repair", "repair"), default=None,
                   help="bring the run to rest by reads at ALL (read repair, the default) or by "
                        "anti-entropy repair; a swarm picks either per seed unless given")
    p.add_argument("--scans", type=float, default=0.02, help="share of reads that scan the whole table (default 0.02)")
    p.add_argument("--no-hints", dest="hints", action="store_false", help="turn hinted handoff off")
    p.add_argument("--read-levels", default=None, help="comma-separated read levels (default: all that fit)")
    p.add_argument("--write-levels", default=None, help="comma-separated write levels (default: all that fit)")
    p.add_argument("--swarm", type=int, default=0, metavar="N",
                   help="run N seeds, each with options drawn from its seed (of the options above, only "
                        "--seed, --ops, --faults and --converge apply)")
    p.add_argument("--history", metavar="FILE", help="write the run's history as JSON lines")
    p.set_defaults(func=cmd_sim)


def parse_fault_kinds(text: str, known: tuple[str, ...], help_text: str) -> tuple[str, ...]:
    """--faults of `agora sim` and `agora chaos`: a comma-separated list, 'all' or 'none'."""
    if text == "all":
        return known
    if text in ("none", ""):
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise ValueError(f"unknown fault kind {unknown[0]!r}; {help_text}")
    return kinds


def _faults(text: str | None) -> tuple[str, ...] | None:
    from agora.sim.nemesis import FAULT_KINDS

    return None if text is None else parse_fault_kinds(text, FAULT_KINDS, FAULT_HELP)


def _levels(text: str | None) -> tuple[str, ...] | None:
    from agora.core.types import ConsistencyLevel

    if not text:
        return None
    levels = tuple(x.strip().upper() for x in text.split(",") if x.strip())
    for level in levels:
        if level not in ConsistencyLevel.__members__:
            raise ValueError(f"unknown consistency level {level!r}")
    return levels


def _options(args):
    from agora.sim.runner import SimOptions

    faults = _faults(args.faults)
    return SimOptions(seed=args.seed, nodes=args.nodes, dcs=args.dcs,
                      ops=args.ops if args.ops is not None else 10_000,
                      faults=faults if faults is not None else ("partition", "crash", "skew", "loss"),
                      rf=args.rf, commitlog=args.commitlog, timestamps=args.timestamps, keys=args.keys,
                      clients=args.clients, think_ms=args.think_ms, hints=args.hints, scans=args.scans,
                      converge=args.converge or "read-repair",
                      read_levels=_levels(args.read_levels),
                      write_levels=_levels(args.write_levels))


def cmd_sim(args) -> int:
    try:
        if args.swarm:
            return _swarm(args)
        options = _options(args)
    except (ValueError, AssertionError) as exc:
        print(f"agora sim: {exc}", file=sys.stderr)
        return 2
    return _one(options, args.history)


def _one(options, history_path: str | None) -> int:
    from agora.sim.runner import run

    started, cpu_started = time.perf_counter(), time.process_time()
    report = run(options)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for line in report.summary_lines():
        print(line)
    print(f"wall time {wall:.1f} s: {report.ops / wall:,.0f} simulated client operations per second "
          f"({report.ops / max(cpu, 1e-9):,.0f} per second of CPU time)")
    if history_path:
        with open(history_path, "w") as f:
            for line in report.history.to_jsonl():
                f.write(line + "\n")
    if not report.ok:
        for line in report.violation_lines():
            print(line)
        return 1
    return 0


def _swarm(args) -> int:
    from agora.sim.runner import run, swarm_options

    faults = _faults(args.faults)
    ops = args.ops if args.ops is not None else 300
    started, cpu_started = time.perf_counter(), time.process_time()
    total_ops = 0
    for seed in range(args.seed, args.seed + args.swarm):
        options = swarm_options(seed, ops, faults, args.converge)
        report = run(options)
        total_ops += report.ops
        st = report.checks.staleness
        print(f"seed {seed}: {options.nodes} nodes/{options.dcs} dc, {options.commitlog}, {options.timestamps} ts, "
              f"faults {','.join(options.faults)}: {report.ops} ops, {sum(report.faults.values())} faults, "
              f"{st.stale} stale, {len(report.checks.superseded)} superseded, {report.read_repairs} repairs: "
              f"{'ok' if report.ok else 'VIOLATION'}", flush=True)
        if not report.ok:
            for line in report.violation_lines():
                print(line)
            return 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"swarm: {args.swarm} seeds passed, {total_ops} operations in {wall:.1f} s "
          f"({total_ops / wall:,.0f} per second; {total_ops / max(cpu, 1e-9):,.0f} per second of CPU time)")
    return 0
