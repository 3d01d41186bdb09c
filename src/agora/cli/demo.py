"""`agora demo`: a narrated tour of leaderless replication on a real local cluster — quorum
writes and reads through different nodes, a node killed mid-way, Unavailable at ALL, the
apple/banana conflict settled by timestamps, a replica that missed writes and is caught up
by hinted handoff for one and by read repair for the other (whose hint waits on a stopped
coordinator).

Owns: the story and its printing. Every step runs for real against the node processes
through the admin client; nothing is simulated or canned.
"""

from __future__ import annotations

import time

from rich.console import Console

from agora.runtime.cluster import LocalCluster, parse_dc_layout, wait_until

console = Console(highlight=False, soft_wrap=True)
KS = "demo"


def say(text: str) -> None:
    console.print(text)


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def _ensure_cluster(directory: str) -> LocalCluster:
    cluster = LocalCluster(directory)
    if not cluster.exists:
        cluster.create(parse_dc_layout(3, None, 1))
        say(f"Created a 3-node cluster in {cluster.dir}.")
    if len(cluster.nodes) < 3:
        raise SystemExit("the demo needs a cluster of at least 3 nodes")
    say("Starting nodes (each is its own process on its own loopback address) ...")
    cluster.start()
    return cluster


class Cql:
    """A cassandra-driver session pinned to one node, so that node coordinates every request."""

    def __init__(self, address: str):
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import FallthroughRetryPolicy, WhiteListRoundRobinPolicy

        # no retries on another node: the demo shows each coordinator's own answer
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([address]),
                                   retry_policy=FallthroughRetryPolicy(), request_timeout=15)
        self.cluster = Cluster([address], protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
        self.session = self.cluster.connect()

    def run(self, cql: str, cl: str = "ONE"):
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        rows = self.session.execute(SimpleStatement(cql, consistency_level=getattr(ConsistencyLevel, cl)))
        return [dict(r._asdict()) for r in rows] if rows.column_names else []

    def close(self) -> None:
        self.cluster.shutdown()


def _schema(c: Cql) -> None:
    c.run(f"CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 3}}")
    c.run(f"CREATE TABLE IF NOT EXISTS {KS}.users (id int PRIMARY KEY, name text)")
    c.run(f"CREATE TABLE IF NOT EXISTS {KS}.status (user text PRIMARY KEY, state text)")
    c.run(f"USE {KS}")


def _copies(cluster, table: str, key: dict) -> str:
    out = []
    for n in cluster.nodes[:3]:
        if not cluster.is_running(n):
            out.append(f"{n.name}: (down)")
            continue
        with cluster.client(n.name) as c:
            rows = c.call("inspect", {"keyspace": KS, "table": table, "key": key})
        out.append(f"{n.name}: {rows[0] if rows else '(nothing)'}")
    return "\n    ".join(out)


def _sees_up(client, address: str) -> bool:
    return any(n["address"] == address and n["up"] for n in client.call("status", {})["nodes"])


def _hints_for(cluster, holder: str, target: str) -> int:
    with cluster.client(holder) as c:
        entry = c.call("status", {})["hints"].get(cluster.node(target).node_id)
    return entry["count"] if entry else 0


def _missed_writes(cluster, c1, c2, names) -> None:
    """Step 3: Bob reaches node3 by hinted handoff; Carol, whose hint waits on a stopped
    node2, by blocking read repair."""
    n1, n2, n3 = names
    a2 = cluster.node(n2).address
    wait_until(lambda: _hints_for(cluster, n1, n3), 10, f"{n1} to store its hint")
    say(f"{n1} had sent Bob to {n3} too; no answer came within write_request_timeout, so {n1} "
        f"keeps the write on its own disk as a hint for {n3} ({_hints_for(cluster, n1, n3)} pending).")
    c2.run("INSERT INTO users (id, name) VALUES (3, 'Carol')", "QUORUM")
    say(f"{n2}> INSERT INTO users (id, name) VALUES (3, 'Carol')  -- QUORUM; {n2} knows {n3} is down, "
        f"so it hints at once ({_hints_for(cluster, n2, n3)} pending on {n2}).")
    cluster.stop(n2)
    with cluster.client(n1) as admin:
        wait_until(lambda: not _sees_up(admin, a2), 30, f"{n1} to see {n2} leave")
    say(f"{n2} is stopped for maintenance, its hint for {n3} with it.")
    cluster.start([n3])
    wait_until(lambda: not _hints_for(cluster, n1, n3), 30, f"{n1} to hand its hint off")
    say(f"{n3} restarted; {n1} saw it UP and replayed its hint (no read involved). "
        f"Copies of id=2:\n    {_copies(cluster, 'users', {'id': 2})}")
    c3 = Cql(cluster.node(n3).address)
    c3.run(f"USE {KS}")
    say(f"Copies of id=3:\n    {_copies(cluster, 'users', {'id': 3})}")
    rows = c3.run("SELECT * FROM users WHERE id = 3", "ONE")
    say(f"{n3}> SELECT ... WHERE id = 3 at ONE (R=1, W+R=3, not > N): {rows or '[] — a stale read'}")
    rows = c1.run("SELECT * FROM users WHERE id = 3", "QUORUM")
    say(f"{n1}> SELECT ... WHERE id = 3 at QUORUM ({n1} and {n3}): {rows}; the digests disagreed, so the "
        f"coordinator merged the answers and repaired {n3} before replying (blocking read repair).")
    say(f"Copies of id=3 now:\n    {_copies(cluster, 'users', {'id': 3})}")
    cluster.start([n2])
    say(f"{n2} is back; its hint for {n3} is replayed too, harmlessly (merges are idempotent).")
    c3.close()


def run_demo(directory: str) -> int:
    from cassandra import Unavailable

    cluster = _ensure_cluster(directory)
    n1, n2, n3 = (n.name for n in cluster.nodes[:3])
    a1, a2, a3 = (n.address for n in cluster.nodes[:3])
    c1, c2, c3 = Cql(a1), Cql(a2), Cql(a3)
    step("1. Any node coordinates")
    say(f"Connected the cassandra-driver to {n1}, {n2} and {n3} separately, to pick each request's coordinator.")
    _schema(c1)
    c3.run(f"USE {KS}")
    c2.run(f"USE {KS}")
    say(f"Keyspace '{KS}' has replication factor N=3: every row lives on 3 nodes.")
    say(f"{n1}> INSERT INTO users (id, name) VALUES (1, 'Alice')   -- at QUORUM (W=2)")
    c1.run("INSERT INTO users (id, name) VALUES (1, 'Alice')", "QUORUM")
    rows = c3.run("SELECT name FROM users WHERE id = 1", "QUORUM")
    say(f"{n3}> SELECT name FROM users WHERE id = 1            -- at QUORUM (R=2):  {rows}")
    say("W + R = 4 > N = 3: the read set overlaps the write set, so the read sees the write.")
    say(f"Each node's own copy:\n    {_copies(cluster, 'users', {'id': 1})}")

    step("2. Kill a node: the quorum still answers")
    c3.close()
    cluster.stop(n3, kill=True)
    say(f"kill -9 {n3}.")
    c1.run("INSERT INTO users (id, name) VALUES (2, 'Bob')", "QUORUM")
    say(f"{n1}> INSERT INTO users (id, name) VALUES (2, 'Bob')  -- QUORUM: acknowledged by the 2 live replicas.")
    say(f"{n2}> SELECT * FROM users WHERE id = 2  -- QUORUM: {c2.run('SELECT * FROM users WHERE id = 2', 'QUORUM')}")
    t0 = time.monotonic()
    with cluster.client(n2) as admin:
        wait_until(lambda: not _sees_up(admin, cluster.node(n3).address), 30, f"{n2} to notice {n3} is gone")
    say(f"{n2}'s failure detector (phi accrual over gossip heartbeats) marked {n3} down "
        f"after {time.monotonic() - t0:.1f}s more.")
    try:
        c2.run("SELECT * FROM users WHERE id = 2", "ALL")
        say("ALL succeeded?!")
    except Unavailable as exc:
        say(f"{n2}> SELECT ... at ALL: [red]Unavailable[/red] — required {exc.required_replicas}, "
            f"alive {exc.alive_replicas}. Nothing was sent: the coordinator knew in advance that ALL cannot be met.")

    step("3. The node that missed writes: hinted handoff, read repair")
    _missed_writes(cluster, c1, c2, (n1, n2, n3))
    c2.close()  # node2 restarted: fresh sessions rather than the driver's reconnection delay
    c2, c3 = Cql(a2), Cql(a3)
    c2.run(f"USE {KS}")
    c3.run(f"USE {KS}")

    step("4. apple vs banana: last write wins, per cell, by timestamp")
    t = int(time.time() * 1_000_000)
    say(f"Client B writes 'banana' with timestamp {t + 2000} through {n2}; "
        f"then client A writes 'apple' with the older timestamp {t + 1000} through {n1}.")
    c2.run(f"INSERT INTO status (user, state) VALUES ('sam', 'banana') USING TIMESTAMP {t + 2000}", "QUORUM")
    c1.run(f"INSERT INTO status (user, state) VALUES ('sam', 'apple') USING TIMESTAMP {t + 1000}", "QUORUM")
    rows = c3.run("SELECT user, state, WRITETIME(state) FROM status WHERE user = 'sam'", "ALL")
    say(f"{n3}> SELECT ... at ALL: {rows} — 'apple' arrived last but carries the older timestamp, so it lost.")
    say(f"Every replica agrees:\n    {_copies(cluster, 'status', {'user': 'sam'})}")
    say("That is the 'lost write' of last-write-wins: deterministic, but client A's write is gone.")
    for c in (c1, c2, c3):
        c.close()
    step("Done")
    say("The cluster is still running: `agora status`, `agora cqlsh`, `agora stop node2 --kill`, "
        "`agora start node2`, `agora down`.")
    return 0
