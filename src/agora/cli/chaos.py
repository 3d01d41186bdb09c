"""`agora chaos`: a driver workload against a fresh cluster of real node processes while
nodes are killed (-9), paused (SIGSTOP), partitioned (iptables) and run on a skewed clock
(libfaketime); then heal, repair, and judge the history with the simulator's checkers
(issue 5, item 4).

`agora chaos --nodes 3 --duration 60 --faults kill,pause,partition,skew --seed 1
--history run.jsonl` prints what happened (operations, faults and what they did to the
clients, stale reads, superseded writes) and, on a violation, the violations with a short
trace of the key involved. Partitions need root (iptables), skew needs libfaketime; both
are installed with apt-get when missing and we are root. Exit status: 0 when the run
passed, 1 on a violation or a failed run, 2 for bad arguments or a missing tool.

Owns: argument parsing and printing; the run is `agora.chaos.run.run`.
"""

from __future__ import annotations

import logging
import signal
import sys

FAULT_HELP = "comma-separated: kill, pause, partition, skew; 'all' or 'none' (default all)"


def add_parser(sub) -> None:
    """Register `agora chaos` on the `agora` command's subparsers."""
    from agora.chaos.run import DEFAULT_SUBNET

    p = sub.add_parser("chaos", help="real nodes under kill -9, SIGSTOP, iptables partitions and clock skew; "
                                     "then check the history")
    p.add_argument("--nodes", type=int, default=3, help="nodes (default 3)")
    p.add_argument("--rf", type=int, default=3, help="replication factor (default 3)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload under faults (default 60)")
    p.add_argument("--faults", default="all", help=FAULT_HELP)
    p.add_argument("--seed", type=int, default=1, help="seeds the fault schedule and the clients' choices")
    p.add_argument("--clients", type=int, default=6, help="concurrent driver clients (default 6)")
    p.add_argument("--keys", type=int, default=8, help="size of the key space (default 8)")
    p.add_argument("--subnet", default=DEFAULT_SUBNET, help=f"loopback subnet of the nodes (default {DEFAULT_SUBNET})")
    p.add_argument("--dir", default=None, help="directory for the cluster (default: a temporary one, "
                                               "removed when the run passes)")
    p.add_argument("--keep", action="store_true", help="keep the cluster directory even when the run passes")
    p.add_argument("--history", metavar="FILE", help="write the run's history as JSON lines")
    p.set_defaults(func=cmd_chaos)


def _faults(text: str) -> tuple[str, ...]:
    from agora.chaos.nemesis import FAULT_KINDS
    from agora.cli.sim import parse_fault_kinds

    return parse_fault_kinds(text, FAULT_KINDS, FAULT_HELP)


def _sigterm(signum, frame) -> None:
    raise SystemExit(143)  # unwinds through the run's finally: iptables rules and nodes cleaned up


def cmd_chaos(args) -> int:
    from agora.chaos import tools
    from agora.chaos.report import summary_lines, violation_lines
    from agora.chaos.run import ChaosOptions, run
    from agora.core.errors import ConfigError

    try:
        faults = _faults(args.faults)
        options = ChaosOptions(nodes=args.nodes, rf=args.rf, duration_s=args.duration, faults=faults,
                               seed=args.seed, clients=args.clients, keys=args.keys, subnet=args.subnet,
                               directory=args.dir, keep=args.keep, history_path=args.history)
        if "partition" in faults:
            tools.iptables()
        if "skew" in faults:
            tools.libfaketime()
    except (ValueError, ConfigError, tools.ToolMissing) as exc:
        print(f"agora chaos: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)  # the driver narrates every lost connection
    signal.signal(signal.SIGTERM, _sigterm)
    print(f"agora chaos: {options.nodes} nodes, faults for {options.duration_s:g} s ...", flush=True)
    result = run(options)
    for line in summary_lines(result):
        print(line)
    if args.history:
        print(f"history: {args.history}")
    if not result.ok:
        for line in violation_lines(result):
            print(line)
        return 1
    return 0
