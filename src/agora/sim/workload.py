"""A seeded client workload: closed-loop clients issuing writes, deletes and reads over a
small key space at chosen consistency levels, recording everything in a `History`.

Owns: the clients' behaviour, as a driver application behaves. Each client has a home
datacenter and sends each request to a running node there (any running node if none is;
a driver's DC-aware load balancing), waits for the answer or its own timeout, thinks for a
while and issues the next one, until the run's operation budget is spent. Keys are
few (`keys`), so clients contend and the interesting interleavings happen. Some reads are
token-range scans of the whole table (`scan_fraction`), which put the range-read
coordinator (paging, merging, its read repair) under the same checks. Each written
value is unique (`<client>.<n>`), so a read names the write it saw.

Timestamps, as in Cassandra: with `timestamps="coordinator"` the coordinator assigns one
from its clock; with `timestamps="client"` each client stamps its writes from its own
clock (skewed by up to `client_skew_ms`), monotonic per client, as the drivers'
timestamp generators do. Either way the history records the timestamp used.

Outcomes: Unavailable and InvalidRequest are certain failures (`fail`); a coordinator
timeout, a lost connection or the client's own timeout leave the write's fate unknown
(`info`). Every random choice comes from the one `random.Random` given, in the order the
simulation asks, so a seed reproduces the workload.

Does not know: faults (the nemesis injects them) or what is correct (the checkers judge).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agora.core import rowmaps
from agora.core.errors import InvalidRequest, Unavailable
from agora.core.types import MAX_TOKEN, MIN_TOKEN, RangeCommand
from agora.sim.cluster import SimCluster
from agora.sim.history import History, Op
from agora.sim.results import SimFuture

# A driver gives up on a request after this long (the Python driver's default request
# timeout is 10 s, Java's 12 s); longer than every coordinator timeout, so the client
# normally hears the coordinator's verdict first, and the workload never waits forever on
# a paused coordinator.
CLIENT_TIMEOUT_MS = 12_000
# When no node at all is running, a client waits this long before trying again.
NO_HOST_RETRY_MS = 500


@dataclass(frozen=True)
class WorkloadSpec:
    """What the clients do. Fractions are of all operations; the rest are writes."""

    ops: int = 1_000
    keys: int = 8
    clients: int = 8
    read_fraction: float = 0.5  # of which scan_fraction are scans of the whole table
    delete_fraction: float = 0.05
    scan_fraction: float = 0.1
    read_levels: tuple[str, ...] = ("ONE", "QUORUM", "ALL")
    write_levels: tuple[str, ...] = ("ONE", "QUORUM", "ALL")
    timestamps: str = "coordinator"  # or "client"
    client_skew_ms: int = 0  # with client timestamps: each client's clock error, at most this
    think_ms: tuple[int, int] = (0, 60)  # pause between an answer and the next request

    def __post_init__(self) -> None:
        assert self.ops >= 0 and self.keys >= 1 and self.clients >= 1
        assert 0 <= self.read_fraction and 0 <= self.delete_fraction and \
            self.read_fraction + self.delete_fraction <= 1 and 0 <= self.scan_fraction <= 1
        assert self.timestamps in ("coordinator", "client"), self.timestamps
        assert self.read_levels and self.write_levels
        assert 0 <= self.think_ms[0] <= self.think_ms[1]


class _Client:
    __slots__ = ("name", "dc", "skew_ms", "last_ts", "count", "pending")

    def __init__(self, name: str, dc: str, skew_ms: int) -> None:
        self.name = name
        self.dc = dc
        self.skew_ms = skew_ms
        self.last_ts = 0
        self.count = 0
        self.pending: Op | None = None


class Workload:
    """Drives `spec` against `cluster`'s table `keyspace.table` (k text PRIMARY KEY,
    v text), recording into `history`. Call `start()`, then run the simulation until
    `done`."""

    def __init__(self, cluster: SimCluster, spec: WorkloadSpec, history: History, rng: random.Random,
                 keyspace: str = "ks", table: str = "kv") -> None:
        self.cluster = cluster
        self.spec = spec
        self.history = history
        self.rng = rng
        self.keyspace = keyspace
        self.table = table
        self.keys = [f"k{i}" for i in range(spec.keys)]
        dcs = cluster.datacenters()
        skew = spec.client_skew_ms
        self.clients = [_Client(f"c{i + 1}", dcs[i % len(dcs)], rng.randint(-skew, skew) if skew else 0)
                        for i in range(spec.clients)]
        self.issued = 0
        self.active = 0  # clients that have not finished

    @property
    def done(self) -> bool:
        return self.active == 0

    def start(self) -> None:
        self.active = len(self.clients)
        for client in self.clients:
            self._later(client, self.rng.randint(*self.spec.think_ms))

    # ---- one client's loop ------------------------------------------------------------

    def _later(self, client: _Client, delay_ms: int) -> None:
        self.cluster.scheduler.post(delay_ms, self._next, client)

    def _next(self, client: _Client) -> None:
        if self.issued >= self.spec.ops:
            self.active -= 1
            return
        via = self._coordinator(client)
        if via is None:
            self._later(client, NO_HOST_RETRY_MS)
            return
        self.issued += 1
        op, fut = self._issue(client, via)
        client.pending = op
        fut.add_done_callback(lambda f: self._answered(client, op, f))
        if op.outcome != "pending":
            return
        timeout = self.cluster.scheduler.schedule(CLIENT_TIMEOUT_MS, self._timed_out,
                                                  ("client timeout", client.name), (client, op, fut))
        fut.add_done_callback(lambda f: timeout.cancel())

    def _coordinator(self, client: _Client):
        """A running node in the client's datacenter, else any running node, else None."""
        running = [h for h in self.cluster.hosts if h.up]
        local = [h for h in running if h.cfg.dc == client.dc]
        choices = local or running
        return self.rng.choice(choices) if choices else None

    def _issue(self, client: _Client, host) -> tuple[Op, SimFuture]:
        spec, rng, c = self.spec, self.rng, self.cluster
        roll = rng.random()
        key = rng.choice(self.keys)
        now = c.now_ms
        where = dict(client=client.name, key=key, node=host.id, dc=host.cfg.dc, at_ms=now)
        if roll < spec.read_fraction * spec.scan_fraction:
            return self._scan(client, host, rng.choice(spec.read_levels))
        if roll < spec.read_fraction:
            cl = rng.choice(spec.read_levels)
            op = self.history.invoke(kind="read", cl=cl, **where)
            return op, c.select(host.id, self.keyspace, self.table, {"k": key}, cl, writetime=True)
        cl = rng.choice(spec.write_levels)
        ts = self._client_timestamp(client) if spec.timestamps == "client" else None
        if roll < spec.read_fraction + spec.delete_fraction:
            op = self.history.invoke(kind="delete", cl=cl, timestamp=ts, **where)
            return op, c.delete(host.id, self.keyspace, self.table, {"k": key}, cl, timestamp=ts)
        client.count += 1
        value = f"{client.name}.{client.count}"
        op = self.history.invoke(kind="write", cl=cl, value=value, timestamp=ts, **where)
        return op, c.insert(host.id, self.keyspace, self.table, {"k": key, "v": value}, cl, timestamp=ts)

    def _scan(self, client: _Client, host, cl: str) -> tuple[Op, SimFuture]:
        """A token-range scan of the whole table: one read record per key; the first is the
        one the client loop waits on, the others are completed with it."""
        now, c = self.cluster.now_ms, self.cluster
        ops = [self.history.invoke(client.name, "read", key, cl, host.id, host.cfg.dc, now, scan=True)
               for key in self.keys]
        tdef = host.node.schema.schema.table(self.keyspace, self.table)
        command = RangeCommand(tdef.id.bytes, MIN_TOKEN, None, MAX_TOKEN)
        fut = c.read_range(host.id, command, cl)
        fut.info["scan"] = (tdef, ops[1:])
        return ops[0], fut

    def _client_timestamp(self, client: _Client) -> int:
        """Microseconds from the client's (skewed) clock, never repeating (the drivers'
        monotonic timestamp generator)."""
        now_us = (self.cluster.epoch_ms + self.cluster.now_ms + client.skew_ms) * 1000
        client.last_ts = max(now_us, client.last_ts + 1)
        return client.last_ts

    def _answered(self, client: _Client, op: Op, fut: SimFuture) -> None:
        if op.outcome != "pending":
            return  # the client gave up on it already
        now = self.cluster.now_ms
        ts = fut.info.get("ts")
        err = fut.error
        if "scan" in fut.info:
            self._scanned(op, fut, now)
        elif err is None and op.kind == "read":
            rows = fut.result()
            value = rows[0].get("v") if rows else None
            seen_ts = rows[0].get("writetime(v)") if rows and value is not None else None
            History.complete(op, now, "ok", value, seen_ts)
        elif err is None:
            History.complete(op, now, "ok", timestamp=ts)
        else:
            outcome = "fail" if isinstance(err, (Unavailable, InvalidRequest)) else "info"
            History.complete(op, now, outcome, timestamp=ts, error=type(err).__name__)
        self._after(client, op)

    def _scanned(self, first: Op, fut: SimFuture, now: int) -> None:
        """Complete every read record of a scan from its result (a key it did not return
        was read as absent)."""
        tdef, others = fut.info["scan"]
        err = fut.error
        if err is not None:
            outcome = "fail" if isinstance(err, (Unavailable, InvalidRequest)) else "info"
            for op in (first, *others):
                History.complete(op, now, outcome, error=type(err).__name__)
            return
        found = {}
        for part in fut.result():
            for row in rowmaps.rows_of(tdef, part, True):
                found[row["k"]] = (row.get("v"), row.get("writetime(v)"))
        for op in (first, *others):
            value, ts = found.get(op.key, (None, None))
            History.complete(op, now, "ok", value, ts if value is not None else None)

    def _timed_out(self, item: tuple[_Client, Op, SimFuture]) -> None:
        client, op, fut = item
        if op.outcome != "pending":
            return
        if "scan" in fut.info:
            for other in fut.info["scan"][1]:
                History.complete(other, self.cluster.now_ms, "info", error="ClientTimeout")
        History.complete(op, self.cluster.now_ms, "info", timestamp=fut.info.get("ts"), error="ClientTimeout")
        self._after(client, op)

    def _after(self, client: _Client, op: Op) -> None:
        if client.pending is op:
            client.pending = None
            self._later(client, self.rng.randint(*self.spec.think_ms))
