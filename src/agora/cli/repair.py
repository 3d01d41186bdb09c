"""`agora repair`: run an anti-entropy repair on a local cluster and follow it to the end
(`nodetool repair`).

Owns: the command's arguments, following a repair (the admin op `repair` starts it on the
node the CLI talks to and answers with its id at once; `repair_status` is polled every
POLL_INTERVAL_S) and printing its progress and report. The repair itself runs inside the
node (agora.core.antientropy); stopping the CLI does not stop it.
"""

from __future__ import annotations

import json
import sys
import time

from agora.core.errors import ConfigError

POLL_INTERVAL_S = 0.5  # how often the CLI asks for progress


def add_parser(sub) -> None:
    p = sub.add_parser("repair", help="anti-entropy repair: compare replicas by Merkle trees and stream what differs")
    p.add_argument("keyspace", nargs="?", help="keyspace to repair (default: every keyspace)")
    p.add_argument("table", nargs="?", help="table to repair (default: every table of the keyspace)")
    p.add_argument("--node", help="only the ranges this node replicates (node3 or 127.0.0.3)")
    p.add_argument("--start-token", type=int, help="only the ranges within (start, end]; with --end-token")
    p.add_argument("--end-token", type=int)
    p.add_argument("--via", help="the node that coordinates the repair (default: the first one running)")
    p.add_argument("--json", action="store_true", help="print the final report as one JSON line")
    p.add_argument("--timeout", type=float, default=None, help="give up following after this many seconds")
    p.add_argument("--dir", default=".agora")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def progress_line(r: dict) -> str:
    return (f"repair #{r['id']} on {r['coordinator']}: {r['ranges_done']}/{r['ranges_total']} ranges, "
            f"{r['ranges_out_of_sync']} out of sync, {r['ranges_failed']} failed; "
            f"{r['partitions_streamed']} partitions ({r['rows_streamed']} rows, {_size(r['bytes_streamed'])}) "
            f"streamed; {r['elapsed_ms'] / 1000:.1f} s")


def report_lines(r: dict) -> list[str]:
    lines = [f"repair #{r['id']} {r['state']} in {r['elapsed_ms'] / 1000:.2f} s",
             f"  ranges compared      {r['ranges_compared']} of {r['ranges_total']}",
             f"  ranges out of sync   {r['ranges_out_of_sync']} ({r['leaves_out_of_sync']} tree leaves)",
             f"  ranges failed        {r['ranges_failed']}",
             f"  partitions hashed    {r['partitions_hashed']}",
             f"  partitions streamed  {r['partitions_streamed']} ({r['rows_streamed']} rows)",
             f"  bytes streamed       {r['bytes_streamed']} ({_size(r['bytes_streamed'])})"]
    for f in r["failures"]:
        lines.append(f"  failed: {f['keyspace']}.{f['table']} ({f['start_token']}, {f['end_token']}]: {f['reason']}")
    return lines


def _request(args, cluster) -> dict:
    req: dict = {}
    if args.keyspace:
        req["keyspace"] = args.keyspace
    if args.table:
        req["table"] = args.table
    if args.node:
        try:
            req["node"] = cluster.node(args.node).node_id
        except Exception:
            req["node"] = args.node  # not a name in this cluster: let the node resolve it
    if (args.start_token is None) != (args.end_token is None):
        raise ConfigError("give both --start-token and --end-token, or neither")
    if args.start_token is not None:
        req["start_token"], req["end_token"] = args.start_token, args.end_token
    return req


def cmd_repair(args) -> int:
    from agora.runtime.cluster import LocalCluster

    cluster = LocalCluster(args.dir)
    if not cluster.exists:
        print(f"no cluster in {cluster.dir}; run `agora up`", file=sys.stderr)
        return 1
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with cluster.client(args.via) as client:
        report = client.call("repair", _request(args, cluster))
        last = None
        while report["state"] == "running":
            line = progress_line(report)
            if line != last and not args.json:
                print(line, flush=True)
                last = line
            if deadline is not None and time.monotonic() > deadline:
                print(f"agora repair: still running after {args.timeout:.0f} s; "
                      f"it goes on inside {report['coordinator']}", file=sys.stderr)
                return 1
            time.sleep(POLL_INTERVAL_S)
            report = client.call("repair_status", {"id": report["id"]})
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print("\n".join(report_lines(report)))
    return 0 if report["state"] == "finished" else 1
