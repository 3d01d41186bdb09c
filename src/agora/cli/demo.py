"""`agora demo`: a narrated tour of leaderless replication on a real local cluster — quorum
writes and reads through different nodes, a node killed mid-way, Unavailable at ALL, the
apple/banana conflict settled by timestamps, a replica that missed a write and is caught up
by read repair.

Owns: the story and its printing. Every step runs for real against the node processes
through the admin client; nothing is simulated or canned.
"""

from __future__ import annotations

import time

from rich.console import Console

from agora.runtime.admin_client import AdminError
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


def _schema(c) -> None:
    schema = c.call("schema", {})
    if KS not in schema["keyspaces"]:
        c.call("create_keyspace", {"name": KS, "replication": {"class": "SimpleStrategy", "replication_factor": "3"}})
    schema = c.call("schema", {})
    tables = schema["keyspaces"][KS]["tables"]
    if "users" not in tables:
        c.call("create_table", {"keyspace": KS, "name": "users", "columns": [["id", "int"], ["name", "text"]],
                                "partition_key": ["id"]})
    if "status" not in tables:
        c.call("create_table", {"keyspace": KS, "name": "status", "columns": [["user", "text"], ["state", "text"]],
                                "partition_key": ["user"]})


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


def run_demo(directory: str) -> int:
    cluster = _ensure_cluster(directory)
    n1, n2, n3 = (n.name for n in cluster.nodes[:3])
    c1, c2, c3 = cluster.client(n1), cluster.client(n2), cluster.client(n3)
    step("1. Any node coordinates")
    _schema(c1)
    wait_until(lambda: KS in c3.call("schema", {})["keyspaces"], 10, "the schema to reach every node")
    say(f"Keyspace '{KS}' has replication factor N=3: every row lives on 3 nodes.")
    say(f"INSERT INTO users (id, name) VALUES (1, 'Alice')  at QUORUM (W=2), sent to {n1}")
    c1.call("write", {"keyspace": KS, "table": "users", "values": {"id": 1, "name": "Alice"}, "cl": "QUORUM"})
    rows = c3.call("read", {"keyspace": KS, "table": "users", "key": {"id": 1}, "cl": "QUORUM"})
    say(f"SELECT name FROM users WHERE id = 1  at QUORUM (R=2), sent to {n3}:  {rows}")
    say("W + R = 4 > N = 3: the read set overlaps the write set, so the read sees the write.")
    say(f"Each node's own copy:\n    {_copies(cluster, 'users', {'id': 1})}")

    step("2. Kill a node: the quorum still answers")
    cluster.stop(n3, kill=True)
    say(f"kill -9 {n3}.")
    c1.call("write", {"keyspace": KS, "table": "users", "values": {"id": 2, "name": "Bob"}, "cl": "QUORUM"})
    say(f"INSERT (2, 'Bob') at QUORUM through {n1}: acknowledged by the 2 live replicas.")
    say(f"SELECT id=2 at QUORUM through {n2}: {c2.call('read', {'keyspace': KS, 'table': 'users', 'key': {'id': 2}, 'cl': 'QUORUM'})}")
    t0 = time.monotonic()
    wait_until(lambda: not _sees_up(c2, cluster.node(n3).address), 30, f"{n2} to notice {n3} is gone")
    say(f"{n2}'s failure detector (phi accrual over gossip heartbeats) marked {n3} down "
        f"after {time.monotonic() - t0:.1f}s more.")
    try:
        c2.call("read", {"keyspace": KS, "table": "users", "key": {"id": 2}, "cl": "ALL"})
        say("ALL succeeded?!")
    except AdminError as exc:
        say(f"SELECT at ALL through {n2}: [red]{exc.kind}[/red] — {exc.message}. "
            f"Nothing was sent: the coordinator knew in advance that ALL cannot be met.")

    step("3. The node that missed a write")
    c3.close()
    cluster.start([n3])
    c3 = cluster.client(n3)
    say(f"{n3} restarted. Copies of id=2:\n    {_copies(cluster, 'users', {'id': 2})}")
    rows = c3.call("read", {"keyspace": KS, "table": "users", "key": {"id": 2}, "cl": "ONE"})
    say(f"SELECT id=2 at ONE through {n3} (R=1, W+R=3, not > N): {rows or '[] — a stale read'}")
    rows = c2.call("read", {"keyspace": KS, "table": "users", "key": {"id": 2}, "cl": "ALL"})
    say(f"SELECT id=2 at ALL through {n2}: {rows}; the digests disagreed, so the coordinator merged "
        f"the answers and repaired {n3} before replying (blocking read repair).")
    say(f"Copies of id=2 now:\n    {_copies(cluster, 'users', {'id': 2})}")

    step("4. apple vs banana: last write wins, per cell, by timestamp")
    t = c1.call("write", {"keyspace": KS, "table": "status", "values": {"user": "sam", "state": "start"},
                          "cl": "ALL"})["timestamp"]
    say(f"Client B writes 'banana' with timestamp {t + 2000} through {n2}; "
        f"then client A writes 'apple' with the older timestamp {t + 1000} through {n1}.")
    c2.call("write", {"keyspace": KS, "table": "status", "values": {"user": "sam", "state": "banana"},
                      "cl": "QUORUM", "timestamp": t + 2000})
    c1.call("write", {"keyspace": KS, "table": "status", "values": {"user": "sam", "state": "apple"},
                      "cl": "QUORUM", "timestamp": t + 1000})
    rows = c3.call("read", {"keyspace": KS, "table": "status", "key": {"user": "sam"}, "cl": "ALL"})
    say(f"Read at ALL through {n3}: {rows} — 'apple' arrived last but carries the older timestamp, so it lost.")
    say(f"Every replica agrees:\n    {_copies(cluster, 'status', {'user': 'sam'})}")
    say("That is the 'lost write' of last-write-wins: deterministic, but client A's write is gone.")
    for c in (c1, c2, c3):
        c.close()
    step("Done")
    say("The cluster is still running: `agora status`, `agora stop node2 --kill`, `agora start node2`, `agora down`.")
    return 0
