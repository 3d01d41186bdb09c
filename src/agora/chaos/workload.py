"""A client workload through the real cassandra-driver, recording a Jepsen-style history
(`agora.sim.history`) that the simulator's checkers judge unchanged.

Owns: the clients' behaviour, the statements they send, how each driver outcome is
recorded, and learning the write timestamps the coordinators chose.

Clients are threads, each a closed loop over one shared driver `Session`: pick an
operation, a key (few keys, shared by every client, so they contend), a consistency level
and a coordinator (a random node the driver thinks is up: `execute_async(host=...)` pins
the request to it, so every node coordinates, the skewed one included), send it, wait for
the answer or the driver's own timeout, think a little, repeat until told to stop. A
small share of reads scan the whole table (recorded as one read per key, `scan=True`).
Written values are unique (`<client>.<n>`), so a read names the write it saw, and every
read asks for `writetime(v)`, so it reports the version it saw.

Write timestamps, known exactly for every write. The checkers compare versions, so a
write whose timestamp nobody knows can only be half-checked (`unversioned_writes`).
Two kinds of clients, both sound:

- client-stamped (`USING TIMESTAMP ?`): the client takes the timestamp from its own clock
  (monotonic per client, as the drivers' generators are) and records it at invoke time,
  so even a write whose outcome is unknown is fully versioned. Node clocks do not matter.
- coordinator-stamped: the coordinator assigns the timestamp from its (possibly skewed)
  clock, which the client never hears. So each such write is an UNLOGGED BATCH of the
  write and a *witness* row `stamps(w = <the write's name>, k = <key>)`; a batch's
  statements share one timestamp, and the witness row is never overwritten, so after
  healing its `writetime(k)` is exactly the coordinator's timestamp for the write
  (`learn_stamps`). This is what makes a skewed node's clock visible in the history.

The driver's session never sends its own client timestamps (`use_client_timestamp =
False`): a request carries exactly the timestamp recorded, or none.

Outcomes (no retries: `FallthroughRetryPolicy`, one attempt per operation, so the recorded
outcome is the one attempt's):

- `fail`: Unavailable and InvalidRequest (decided by the coordinator before anything is
  sent to a replica), and NoHostAvailable when no request left the client (the driver
  attempted no host).
- `info`: WriteTimeout, ReadTimeout, WriteFailure/ReadFailure, the driver's own
  OperationTimedOut, a lost connection, NoHostAvailable after a request was sent, and any
  other error: the write may or may not have been applied.

Time in the history is milliseconds since the run began, on the monotonic clock of this
process: invoke is taken before the request is handed to the driver and completion after
its answer arrives, so real-time order in the history is never tighter than the truth.

Does not know: the faults (the nemesis injects them) or what is correct (the checkers).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agora.sim.history import History, Op

DRIVER_TIMEOUT_S = 5.0  # the client gives up on a request (longer than the coordinators' timeouts)
CONNECT_TIMEOUT_S = 2.0  # one connection attempt to a node
RECONNECT_DELAY_S = 0.5  # after a node comes back, the driver reopens its pool this soon


@dataclass(frozen=True)
class WorkloadSpec:
    """What the clients do. Fractions are of all operations; the rest are writes."""

    clients: int = 6
    keys: int = 8
    read_fraction: float = 0.5
    delete_fraction: float = 0.05
    scan_fraction: float = 0.05  # of reads
    read_levels: tuple[str, ...] = ("ONE", "QUORUM", "ALL")
    write_levels: tuple[str, ...] = ("ONE", "QUORUM", "ALL")
    coordinator_stamped: float = 0.5  # the share of clients whose writes take the coordinator's timestamp
    think_ms: tuple[int, int] = (0, 20)
    request_timeout_s: float = DRIVER_TIMEOUT_S

    def __post_init__(self) -> None:
        assert self.clients >= 1 and self.keys >= 1
        assert 0 <= self.read_fraction and 0 <= self.delete_fraction and self.read_fraction + self.delete_fraction <= 1
        assert 0 <= self.scan_fraction <= 1 and 0 <= self.coordinator_stamped <= 1
        assert self.read_levels and self.write_levels and 0 <= self.think_ms[0] <= self.think_ms[1]


KV_TABLE = "kv"
STAMPS_TABLE = "stamps"


def schema_statements(keyspace: str, rf: int) -> list[str]:
    return [f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.{KV_TABLE} (k text PRIMARY KEY, v text)",
            f"CREATE TABLE IF NOT EXISTS {keyspace}.{STAMPS_TABLE} (w text PRIMARY KEY, k text)"]


def connect(addresses: list[str], request_timeout_s: float = DRIVER_TIMEOUT_S):
    """A driver Cluster and Session for the chaos clients: round robin over every node (each
    request is pinned to its coordinator anyway), no retries, quick reconnection, and no
    driver-side timestamps."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import ConstantReconnectionPolicy, FallthroughRetryPolicy, RoundRobinPolicy
    from cassandra.query import tuple_factory

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), retry_policy=FallthroughRetryPolicy(),
                               request_timeout=request_timeout_s, row_factory=tuple_factory)
    cluster = Cluster(addresses, protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      reconnection_policy=ConstantReconnectionPolicy(RECONNECT_DELAY_S, None),
                      connect_timeout=CONNECT_TIMEOUT_S, control_connection_timeout=CONNECT_TIMEOUT_S)
    session = cluster.connect(wait_for_all_pools=True)
    session.use_client_timestamp = False
    return cluster, session


def classify(exc: BaseException, attempted: bool) -> str:
    """`fail` when the operation certainly did not happen, else `info` (module docstring)."""
    from cassandra import InvalidRequest, Unavailable
    from cassandra.cluster import NoHostAvailable

    if isinstance(exc, (Unavailable, InvalidRequest)):
        return "fail"
    if isinstance(exc, NoHostAvailable) and not attempted:
        return "fail"
    return "info"


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class _Client:
    def __init__(self, name: str, coordinator_stamped: bool, rng: random.Random) -> None:
        self.name = name
        self.coordinator_stamped = coordinator_stamped
        self.rng = rng
        self.count = 0
        self.last_ts = 0

    def next_name(self) -> str:
        self.count += 1
        return f"{self.name}.{self.count}"

    def timestamp_us(self) -> int:
        self.last_ts = max(time.time_ns() // 1000, self.last_ts + 1)
        return self.last_ts


class DriverWorkload:
    """Clients of `spec` against `session` (table `keyspace.kv`), recording into `history`
    with times from `now_ms`. `node_of(host)` names a driver Host as the history does
    (the node id, `address:7000`)."""

    def __init__(self, session, keyspace: str, spec: WorkloadSpec, history: History, seed: int,
                 now_ms: Callable[[], int], node_of: Callable[[object], str], dc: str = "dc1") -> None:
        self.session = session
        self.keyspace = keyspace
        self.spec = spec
        self.history = history
        self.now_ms = now_ms
        self.node_of = node_of
        self.dc = dc
        self.keys = [f"k{i}" for i in range(spec.keys)]
        rng = random.Random(seed)
        n_coord = round(spec.clients * spec.coordinator_stamped)
        self.clients = [_Client(f"c{i + 1}", i < n_coord, random.Random(rng.getrandbits(64)))
                        for i in range(spec.clients)]
        self.witness: dict[str, Op] = {}  # witness name -> the coordinator-stamped write or delete
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []  # a client thread's own crash (a bug here)
        kv, stamps = f"{keyspace}.{KV_TABLE}", f"{keyspace}.{STAMPS_TABLE}"
        p = session.prepare
        self.write_at = p(f"INSERT INTO {kv} (k, v) VALUES (?, ?) USING TIMESTAMP ?")
        self.delete_at = p(f"DELETE FROM {kv} USING TIMESTAMP ? WHERE k = ?")
        self.write_plain = p(f"INSERT INTO {kv} (k, v) VALUES (?, ?)")
        self.delete_plain = p(f"DELETE FROM {kv} WHERE k = ?")
        self.stamp = p(f"INSERT INTO {stamps} (w, k) VALUES (?, ?)")
        self.read = p(f"SELECT v, writetime(v) FROM {kv} WHERE k = ?")
        self.scan = p(f"SELECT k, v, writetime(v) FROM {kv}")

    # ---- running --------------------------------------------------------------------------

    def start(self) -> None:
        for client in self.clients:
            t = threading.Thread(target=self._loop, args=(client,), name=f"chaos-{client.name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self) -> None:
        """Stop issuing and wait for every operation in flight to be answered or time out."""
        self._stop.set()
        for t in self._threads:
            t.join(self.spec.request_timeout_s * 3)
            assert not t.is_alive(), f"{t.name} did not finish"

    def _loop(self, client: _Client) -> None:
        try:
            while not self._stop.is_set():
                self._one(client)
                lo, hi = self.spec.think_ms
                self._stop.wait(client.rng.uniform(lo, hi) / 1000)
        except BaseException as exc:  # a bug in the workload: the run reports it
            self.errors.append(exc)

    def _coordinator(self, client: _Client):
        hosts = sorted(self.session.cluster.metadata.all_hosts(), key=lambda h: str(h.endpoint))
        up = [h for h in hosts if h.is_up]
        return client.rng.choice(up or hosts)

    # ---- one operation ------------------------------------------------------------------------

    def _one(self, client: _Client) -> None:
        from cassandra import ConsistencyLevel
        from cassandra.query import BatchStatement, BatchType

        spec, rng = self.spec, client.rng
        host = self._coordinator(client)
        node = self.node_of(host)
        roll = rng.random()
        key = rng.choice(self.keys)
        if roll < spec.read_fraction:
            cl = rng.choice(spec.read_levels)
            if rng.random() < spec.scan_fraction:
                self._scan(client, host, node, cl)
                return
            stmt = self.read.bind((key,))
            stmt.consistency_level = ConsistencyLevel.name_to_value[cl]
            op = self._invoke(client.name, "read", key, cl, node)
            self._execute(op, stmt, host, self._read_result)
            return
        cl = rng.choice(spec.write_levels)
        kind = "delete" if roll < spec.read_fraction + spec.delete_fraction else "write"
        name = client.next_name()
        value = name if kind == "write" else None
        level = ConsistencyLevel.name_to_value[cl]
        if client.coordinator_stamped:
            stmt = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=level)
            stmt.add(self.write_plain if kind == "write" else self.delete_plain,
                     (key, value) if kind == "write" else (key,))
            stmt.add(self.stamp, (name, key))
            op = self._invoke(client.name, kind, key, cl, node, value=value)
            with self._lock:
                self.witness[name] = op
        else:
            ts = client.timestamp_us()
            stmt = self.write_at.bind((key, value, ts)) if kind == "write" else self.delete_at.bind((ts, key))
            stmt.consistency_level = level
            op = self._invoke(client.name, kind, key, cl, node, value=value, timestamp=ts)
        self._execute(op, stmt, host, None)

    def _invoke(self, client: str, kind: str, key: str, cl: str, node: str, value: str | None = None,
                timestamp: int | None = None, scan: bool = False) -> Op:
        with self._lock:
            return self.history.invoke(client, kind, key, cl, node, self.dc, self.now_ms(), value=value,
                                       timestamp=timestamp, scan=scan)

    def _complete(self, op: Op, outcome: str, value: str | None = None, timestamp: int | None = None,
                  error: str | None = None, at_ms: int | None = None) -> None:
        with self._lock:
            self.history.complete(op, self.now_ms() if at_ms is None else at_ms, outcome, value, timestamp, error)

    def _execute(self, op: Op, stmt, host, on_rows) -> None:
        future = self.session.execute_async(stmt, host=host)
        try:
            rows = future.result()
        except Exception as exc:
            self._complete(op, classify(exc, bool(future.attempted_hosts)), error=_describe(exc))
            return
        if on_rows is None:
            self._complete(op, "ok")
        else:
            value, ts = on_rows(list(rows))
            self._complete(op, "ok", value, ts)

    @staticmethod
    def _read_result(rows: list) -> tuple[str | None, int | None]:
        if not rows or rows[0][0] is None:
            return None, None
        return rows[0][0], rows[0][1]

    def _scan(self, client: _Client, host, node: str, cl: str) -> None:
        from cassandra import ConsistencyLevel

        stmt = self.scan.bind(())
        stmt.consistency_level = ConsistencyLevel.name_to_value[cl]
        ops = [self._invoke(client.name, "read", key, cl, node, scan=True) for key in self.keys]
        future = self.session.execute_async(stmt, host=host)
        try:
            rows = list(future.result())  # every page (a handful of rows: one page)
        except Exception as exc:
            outcome, error, at = classify(exc, bool(future.attempted_hosts)), _describe(exc), self.now_ms()
            for op in ops:
                self._complete(op, outcome, error=error, at_ms=at)
            return
        at = self.now_ms()
        seen = {k: (v, ts) for k, v, ts in rows if v is not None}
        for op in ops:
            value, ts = seen.get(op.key, (None, None))
            self._complete(op, "ok", value, ts, at_ms=at)

    # ---- after the run ----------------------------------------------------------------------

    def learn_stamps(self, stamps: dict[str, int]) -> list[str]:
        """Fill in each coordinator-stamped write's timestamp from its witness row (`stamps`:
        witness name -> writetime). Returns the anomalies: a write recorded as certainly
        failed whose witness exists (it happened), an acknowledged one whose witness is
        gone (lost)."""
        anomalies = []
        for name, op in sorted(self.witness.items()):
            ts = stamps.get(name)
            if op.outcome == "fail":
                if ts is not None:
                    anomalies.append(f"{op.describe()}: recorded as failed, yet its witness row exists (ts={ts})")
                continue
            if ts is not None:
                op.timestamp = ts
            elif op.ok:
                anomalies.append(f"{op.describe()}: acknowledged, yet its witness row is missing after healing")
        return anomalies
