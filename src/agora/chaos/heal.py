"""Bringing a real cluster to rest after the faults, and reading what its replicas hold.

Owns: the healing procedure (the sim's `agora.sim.converge`, on processes) and the
snapshot the checkers judge:

1. `heal_everything`: remove every partition rule, put the skewed clock back, resume
   paused nodes, restart dead ones, and wait until every node sees every other up.
2. `settle`: let writes still in flight time out at their coordinators (they store hints
   then), then wait until no node holds a hint (hinted handoff replayed them).
3. `repair_every_node`: an anti-entropy repair of the keyspace coordinated by each node in
   turn, over that node's ranges (`nodetool repair` on every node), each followed to its
   end and retried if a range failed.
4. `snapshot`: each replica's own copy of each key (admin `inspect`: local storage, no
   coordinator, no read repair), giving the checkers `replicas` (key -> node -> what it
   holds) and `final` (key -> the converged value and writetime, or None).

Then `read_stamps` reads the witness rows of coordinator-stamped writes
(`agora.chaos.workload`) at ALL.

What a replica "holds" is its live view (what a read at ONE from it would show), so two
replicas that differ only in a tombstone one of them has already dropped count as equal.

Does not know: the workload or the faults that ran.
"""

from __future__ import annotations

import json
import time

from agora.runtime.cluster import LocalCluster, wait_until

UP_TIMEOUT_S = 60.0
MIN_SETTLE_S = 2.5  # longer than the coordinators' write timeout (2 s): in-flight writes leave their hints first
HINTS_TIMEOUT_S = 60.0  # hint replay of a few hundred small writes
REPAIR_TIMEOUT_S = 60.0  # one repair session of a small keyspace
REPAIR_ATTEMPTS = 3
REPAIR_POLL_S = 0.2
READ_ATTEMPTS_S = 30.0  # reading the witness rows at ALL, retried while the cluster settles


def heal_everything(cluster: LocalCluster, firewall=None, clock=None) -> None:
    if firewall is not None:
        firewall.heal()
    if clock is not None:
        clock.set_offset(0.0)
    for n in cluster.nodes:
        if cluster.is_running(n):
            cluster.resume(n.name)
    stopped = [n.name for n in cluster.nodes if not cluster.is_running(n)]
    for name in stopped:
        cluster.spawn(cluster.node(name))
    cluster.wait_up(list(cluster.nodes), timeout_s=UP_TIMEOUT_S)


def _hints_pending(cluster: LocalCluster) -> dict[str, dict]:
    pending = {}
    for n in cluster.nodes:
        with cluster.client(n.name) as c:
            hints = c.call("status", {}, timeout_s=5.0)["hints"]
        if hints:
            pending[n.name] = hints
    return pending


def settle(cluster: LocalCluster) -> None:
    time.sleep(MIN_SETTLE_S)  # a fixed span by design: the coordinators' write timeout must pass
    wait_until(lambda: not _hints_pending(cluster), HINTS_TIMEOUT_S, "every node to replay its hints")


def _repair_once(cluster: LocalCluster, name: str, keyspace: str) -> dict:
    n = cluster.node(name)
    with cluster.client(name) as c:
        report = c.call("repair", {"keyspace": keyspace, "node": n.node_id})
        deadline = time.monotonic() + REPAIR_TIMEOUT_S

        def done():
            nonlocal report
            report = c.call("repair_status", {"id": report["id"]})
            return report["state"] != "running"
        if report["state"] == "running":
            wait_until(done, max(0.0, deadline - time.monotonic()), f"repair on {name}", REPAIR_POLL_S)
    return report


def repair_every_node(cluster: LocalCluster, keyspace: str) -> list[dict]:
    reports = []
    for n in cluster.nodes:
        for attempt in range(REPAIR_ATTEMPTS):
            report = _repair_once(cluster, n.name, keyspace)
            if report["state"] == "finished" and not report["ranges_failed"]:
                break
        else:
            raise RuntimeError(f"repair on {n.name} failed {REPAIR_ATTEMPTS} times; last: {report}")
        reports.append(report)
    return reports


def replicas_of(session, keyspace: str, key: str, cluster: LocalCluster) -> list[str]:
    """The node names that replicate `key` (k text), from the driver's token map."""
    hosts = session.cluster.metadata.get_replicas(keyspace, key.encode("utf-8"))
    names = sorted(cluster.node(h.address).name for h in hosts)
    assert names, f"the driver knows no replica of {key!r}"
    return names


def snapshot(cluster: LocalCluster, session, keyspace: str, table: str, keys: list[str]
             ) -> tuple[dict[str, dict[str, str | None]], dict[str, tuple[str, int] | None]]:
    """(replicas, final): key -> node id -> what it holds (JSON, None for nothing), and
    key -> the newest (value, writetime) any replica holds (the converged one when they
    agree; `replicas` shows when they do not)."""
    replicas: dict[str, dict[str, str | None]] = {}
    final: dict[str, tuple[str, int] | None] = {}
    for key in keys:
        held: dict[str, str | None] = {}
        best: tuple[int, str] | None = None
        for name in replicas_of(session, keyspace, key, cluster):
            with cluster.client(name) as c:
                rows = c.call("inspect", {"keyspace": keyspace, "table": table, "key": {"k": key},
                                          "writetime": True})
            row = rows[0] if rows and rows[0].get("v") is not None else None
            held[cluster.node(name).node_id] = None if row is None else json.dumps(
                [row["v"], row["writetime(v)"]])
            if row is not None and (best is None or (row["writetime(v)"], row["v"]) > best):
                best = (row["writetime(v)"], row["v"])
        replicas[key] = held
        final[key] = None if best is None else (best[1], best[0])
    return replicas, final


def read_stamps(session, keyspace: str, table: str) -> dict[str, int]:
    """Witness name -> writetime, read at ALL (after repair every replica has them)."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    stmt = SimpleStatement(f"SELECT w, writetime(k) FROM {keyspace}.{table}",
                           consistency_level=ConsistencyLevel.ALL, fetch_size=1000)
    (stamps,) = wait_until(lambda: ({w: ts for w, ts in session.execute(stmt)},), READ_ATTEMPTS_S,
                           "the witness rows at ALL")
    return stamps
