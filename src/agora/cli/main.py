"""The `agora` command: run a local cluster (up, down, status, hints, start, stop), run one node in
the foreground (node), and the narrated demo.

Owns: argument parsing and printing. Cluster lifecycle lives in `agora.runtime.cluster`
(shared with the integration tests); nodes are asked about themselves through the admin
client.
"""

from __future__ import annotations

import argparse
import sys

from agora.core.errors import AgoraError, ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agora", description="Agora: a leaderless replicated database")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="create (if needed) and start a local cluster on 127.0.0.x")
    up.add_argument("--nodes", type=int, default=None, help="number of nodes in one datacenter (default 3)")
    up.add_argument("--dc", action="append", metavar="NAME:COUNT", help="a datacenter and its node count; repeat")
    up.add_argument("--racks", "--rack", type=int, default=1, dest="racks",
                    help="racks per datacenter; nodes are spread over them in turn (default 1)")
    up.add_argument("--dir", default=".agora", help="cluster directory (default .agora)")
    up.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a node option for every node")

    for name, text in (("down", "stop every node"), ("status", "per node: address, DC, rack, up/down, load, ownership")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--dir", default=".agora")
        if name == "down":
            c.add_argument("--kill", action="store_true", help="kill -9 instead of a graceful stop")
        if name == "status":
            c.add_argument("keyspace", nargs="?", help="show effective ownership for this keyspace")

    hints = sub.add_parser("hints", help="pending hints per node and target (nodetool listpendinghints)")
    hints.add_argument("--dir", default=".agora")

    stop = sub.add_parser("stop", help="stop one node (gracefully, or --kill for kill -9)")
    stop.add_argument("node", help="node3 or 127.0.0.3")
    stop.add_argument("--kill", action="store_true")
    stop.add_argument("--dir", default=".agora")

    start = sub.add_parser("start", help="start one stopped node")
    start.add_argument("node")
    start.add_argument("--dir", default=".agora")

    cq = sub.add_parser("cqlsh", help="open cqlsh on a node of the local cluster (default node1)")
    cq.add_argument("node", nargs="?", help="node3 or 127.0.0.3")
    cq.add_argument("--dir", default=".agora")
    cq.add_argument("cqlsh_args", nargs=argparse.REMAINDER, help="passed to cqlsh, e.g. -e 'DESCRIBE KEYSPACES'")

    from agora.cli.repair import add_parser as add_repair_parser
    add_repair_parser(sub)

    node = sub.add_parser("node", help="run one node in the foreground")
    node.add_argument("--config", required=True, help="YAML file of node options")

    demo = sub.add_parser("demo", help="start a 3-node cluster (if needed) and narrate quorums, conflicts and repair")
    demo.add_argument("--dir", default=".agora")

    from agora.cli.sim import add_parser as add_sim_parser
    add_sim_parser(sub)

    from agora.cli.bench import add_parser as add_bench_parser
    add_bench_parser(sub)

    from agora.cli.chaos import add_parser as add_chaos_parser
    add_chaos_parser(sub)
    return p


def _overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def cmd_up(args) -> int:
    from agora.core.config import config_from_dict
    from agora.runtime.cluster import LocalCluster, parse_dc_layout

    cluster = LocalCluster(args.dir)
    if not cluster.exists:
        overrides = _overrides(args.set)
        config_from_dict({k: v for k, v in overrides.items()})  # fail early, naming the option
        cluster.create(parse_dc_layout(args.nodes, args.dc, args.racks), overrides)
        print(f"created a {len(cluster.nodes)}-node cluster in {cluster.dir}")
    elif args.nodes or args.dc or args.set:
        print(f"a cluster already exists in {cluster.dir}; starting it as it is "
              f"(run `agora down` and remove the directory to change its layout)")
    cluster.start()
    for n in cluster.nodes:
        print(f"  {n.name}  {n.address}  dc={n.dc} rack={n.rack}  CQL {n.address}:9042  log {cluster.log_path(n)}")
    print("all nodes up")
    return 0


def cmd_status(args) -> int:
    from agora.runtime.cluster import LocalCluster
    from agora.cli.render import print_status

    cluster = LocalCluster(args.dir)
    if not cluster.exists:
        print(f"no cluster in {cluster.dir}; run `agora up`", file=sys.stderr)
        return 1
    with cluster.client() as c:
        status = c.call("status", {"keyspace": args.keyspace} if args.keyspace else {})
    print_status(status)
    return 0


def cmd_hints(args) -> int:
    from agora.cli.render import print_hints
    from agora.runtime.cluster import LocalCluster

    cluster = LocalCluster(args.dir)
    if not cluster.exists:
        print(f"no cluster in {cluster.dir}; run `agora up`", file=sys.stderr)
        return 1
    for n in cluster.nodes:
        if not cluster.is_running(n):
            print(f"{n.name} ({n.address}) is not running")
            continue
        with cluster.client(n.name) as c:
            print_hints(c.call("status", {}))
    return 0


def cmd_stop(args) -> int:
    from agora.runtime.cluster import LocalCluster

    cluster = LocalCluster(args.dir)
    n = cluster.node(args.node)
    if cluster.stop(args.node, kill=args.kill):
        print(f"{n.name} ({n.address}) {'killed' if args.kill else 'stopped'}")
    else:
        print(f"{n.name} ({n.address}) was not running")
    return 0


def cmd_start(args) -> int:
    from agora.runtime.cluster import LocalCluster

    cluster = LocalCluster(args.dir)
    n = cluster.node(args.node)
    cluster.start([n.name])
    print(f"{n.name} ({n.address}) up")
    return 0


def cmd_down(args) -> int:
    from agora.runtime.cluster import LocalCluster

    stopped = LocalCluster(args.dir).down(kill=args.kill)
    print(f"stopped {', '.join(stopped) if stopped else 'nothing (no node was running)'}")
    return 0


def cmd_node(args) -> int:
    import yaml

    from agora.core.config import config_from_dict
    from agora.runtime.server import run_node

    try:
        with open(args.config) as f:
            options = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {args.config}: {exc}") from None
    run_node(config_from_dict(options))
    return 0


def cmd_cqlsh(args) -> int:
    import os

    from agora.runtime.cluster import LocalCluster

    cluster = LocalCluster(args.dir)
    if not cluster.exists:
        print(f"no cluster in {cluster.dir}; run `agora up`", file=sys.stderr)
        return 1
    if args.node and args.node.startswith("-"):  # `agora cqlsh -- -e ...`: no node given
        args.cqlsh_args, args.node = [args.node, *args.cqlsh_args], None
    n = cluster.node(args.node) if args.node else next((m for m in cluster.nodes if cluster.is_running(m)), cluster.nodes[0])
    extra = [a for a in args.cqlsh_args if a != "--"]
    argv = [sys.executable, "-m", "cqlshlib", n.address, "9042", *extra]
    os.execv(sys.executable, argv)
    return 0


def cmd_repair(args) -> int:
    from agora.cli.repair import cmd_repair as run_repair

    return run_repair(args)


def cmd_demo(args) -> int:
    from agora.cli.demo import run_demo

    return run_demo(args.dir)


def cmd_sim(args) -> int:
    from agora.cli.sim import cmd_sim as run_sim

    return run_sim(args)


COMMANDS = {"up": cmd_up, "status": cmd_status, "hints": cmd_hints, "stop": cmd_stop, "start": cmd_start,
            "down": cmd_down, "node": cmd_node, "demo": cmd_demo, "cqlsh": cmd_cqlsh,
            "repair": cmd_repair}
COMMANDS["sim"] = cmd_sim


def cmd_bench(args) -> int:
    from agora.cli.bench import cmd_bench as run_bench

    return run_bench(args)


COMMANDS["bench"] = cmd_bench


def cmd_chaos(args) -> int:
    from agora.cli.chaos import cmd_chaos as run_chaos

    return run_chaos(args)


COMMANDS["chaos"] = cmd_chaos


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"agora: configuration error: {exc}", file=sys.stderr)
        return 2
    except (AgoraError, TimeoutError) as exc:
        print(f"agora: {exc}", file=sys.stderr)
        return 1
