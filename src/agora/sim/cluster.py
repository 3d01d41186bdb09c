"""A whole simulated cluster in one process: nodes on virtual time joined by the simulated
network, with client calls, faults and a trace; one integer seed reproduces a run byte for
byte (DESIGN.md section 2).

Owns: building the nodes (config, addresses 127.0.0.x:7000, seeds, per-node randomness
derived from the seed), routing network deliveries to them, the client API
(`write`/`read`/`read_range`/`schema_change` on partitions and read commands, plus row-level
helpers over `agora.core.rowmaps` and `agora.core.schema.ddl`), the faults (`stop`, `crash`,
`restart`, `pause`, `resume`, `partition` (symmetric or one-way), `isolate`, `cut_dc`,
`block`, `heal`, `set_network_faults` (loss, duplication, reordering), `set_clock` (skew,
drift)), ways to run (`run_for`, `run_until`, `wait`), and the trace: one line per delivered message, client request and reply, drop and fault,
hashed with blake2b (`trace_hash`).

Randomness: each source gets its own `random.Random` seeded from a string naming it
("agora-sim/<seed>/network", ".../node/<i>/incarnation/<n>", ".../identity/<i>"). String
seeds are hashed with SHA-512, never with Python's salted `hash`, so a run is identical
across processes and PYTHONHASHSEED values, and adding a node does not shift the draws of
the others.

Does not know: protocol rules (the nodes do) or what a run should prove (tests and the
checkers do). It grows by composition: clock error lives in `SimHost.clock`, disk
faults in the engine, workloads (`workload`), fault schedules (`nemesis`) and checkers
(`checkers`) on top of the client API.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack

from agora.core import reconcile, rowmaps
from agora.core.config import config_from_dict
from agora.core.effects import Event, Reply
from agora.core.errors import AgoraError, InvalidRequest
from agora.core.schema import ddl
from agora.core.schema.agreement import SCHEMA_META_KEY
from agora.core.schema.model import Schema
from agora.core.types import ConsistencyLevel, NodeId, Partition, RangeCommand, ReadCommand
from agora.sim.host import SimHost, payload_digest
from agora.sim.network import Envelope, Network
from agora.sim.results import NotDone, SimFuture
from agora.sim.scheduler import Scheduler

SIM_EPOCH_MS = 1_700_000_000_000  # virtual time 0 on every node's wall clock (Nov 2023)
DEFAULT_NUM_TOKENS = 8  # few vnodes: cheap rings, still several ranges per node
DEFAULT_FSYNC_MS = 1  # how long a synced batch takes to reach the disk
MAX_LOG_LINES = 200_000  # node log lines kept; the oldest go first
DEFAULT_WAIT_MS = 60_000  # how long `wait` runs the simulation for one request at most
TRACE_HASH_CHUNK = 1 << 16  # trace bytes buffered before they are hashed

Via = int | str  # a node: its index in `nodes` or its id ("127.0.0.2:7000")
Layout = Sequence[tuple[str, str]]


def _cl(cl: ConsistencyLevel | str) -> ConsistencyLevel:
    if isinstance(cl, ConsistencyLevel):
        return cl
    level = _LEVELS.get(cl)  # the names clients pass, looked up once each
    if level is None:
        level = _LEVELS[cl] = ConsistencyLevel[str(cl).upper()]
    return level


_LEVELS: dict[str, ConsistencyLevel] = {}


class SimCluster:
    def __init__(self, seed: int, layout: Layout = (("dc1", "rack1"),) * 3, *,
                 config: dict | None = None, node_config: dict[int, dict] | None = None,
                 seeds_per_dc: int = 1, network: dict | None = None,
                 fsync_ms: int = DEFAULT_FSYNC_MS, keep_trace: bool = True,
                 start: bool = True) -> None:
        """`config` overrides NodeConfig options on every node, `node_config` on single
        nodes (by index). `network` passes options to `Network` (latencies, loss,
        duplicate, reorder). With `start`, every node boots at virtual time 0."""
        assert 1 <= len(layout) <= 254, "nodes live on 127.0.0.1 .. 127.0.0.254"
        self.seed = seed
        self.seed_label = f"agora-sim/{seed}"
        self.epoch_ms = SIM_EPOCH_MS
        self.fsync_ms = fsync_ms
        self.scheduler = Scheduler()
        self.keep_trace = keep_trace
        self.trace: list[str] = []
        self._trace_hash = hashlib.blake2b(digest_size=32)
        # Trace bytes not yet hashed: appending to a buffer and hashing it in large pieces
        # gives the same digest as hashing each piece (blake2b is a stream) at a fraction
        # of the calls.
        self._trace_buf = bytearray()
        self.events: list[tuple[int, NodeId, str, Any]] = []
        self.event_listeners: list[Callable[[NodeId, Event], None]] = []
        self.logs: list[tuple[int, NodeId, str, str]] = []
        self._tables_seen: dict[tuple[NodeId, str, str], tuple[Schema, Any]] = {}  # see `_table`
        self._commands: dict[tuple, tuple[Any, ReadCommand]] = {}  # see `_read_command`

        addresses = [f"127.0.0.{i + 1}" for i in range(len(layout))]
        seeds: list[str] = []
        for dc in dict.fromkeys(dc for dc, _ in layout):
            seeds += [a for a, (d, _) in zip(addresses, layout) if d == dc][:seeds_per_dc]
        self.hosts: list[SimHost] = []
        for i, ((dc, rack), address) in enumerate(zip(layout, addresses)):
            options = {"cluster_name": "Agora Sim", "listen_address": address, "storage_port": 7000,
                       "seeds": list(seeds), "dc": dc, "rack": rack, "num_tokens": DEFAULT_NUM_TOKENS,
                       **(config or {}), **((node_config or {}).get(i, {}))}
            self.hosts.append(SimHost(self, i, config_from_dict(options)))
        self._by_id = {h.id: h for h in self.hosts}
        self.nodes: list[NodeId] = [h.id for h in self.hosts]
        self.network = Network(self.scheduler, random.Random(f"{self.seed_label}/network"),
                               self.dc_of, self._deliver, self._dropped, **(network or {}))
        if start:
            for host in self.hosts:
                host.boot()

    # ---- addressing -------------------------------------------------------------------

    def host(self, via: Via) -> SimHost:
        if isinstance(via, int):
            return self.hosts[via]
        host = self._by_id.get(via)
        if host is None:
            raise KeyError(f"no node {via!r}; nodes are {self.nodes}")
        return host

    def node(self, via: Via):
        """The live `Node` state machine on `via` (None while it is down)."""
        return self.host(via).node

    def engine(self, via: Via):
        return self.host(via).engine

    def dc_of(self, node: NodeId) -> str:
        host = self._by_id.get(node)
        return host.cfg.dc if host is not None else ""

    def ids(self, nodes: Iterable[Via]) -> list[NodeId]:
        return [self.host(n).id for n in nodes]

    @property
    def now_ms(self) -> int:
        return self.scheduler.now_ms

    # ---- trace and records ------------------------------------------------------------

    def record(self, line: str, payload: bytes | None = None, tail: str = "",
               note: str | None = None) -> None:
        """One trace line at the current virtual time. A message's `payload` goes into the
        hash whole, and the kept line shows a short digest of it (or `note`, if given), then
        `tail`. A `note` is shown in the kept line but not hashed (so the hash does not depend
        on `keep_trace`)."""
        line = f"{self.scheduler.now_ms} {line}"
        buf = self._trace_buf
        buf += line.encode("utf-8", "backslashreplace")
        if payload is not None:
            buf += payload
        if tail:
            buf += tail.encode("utf-8", "backslashreplace")
        buf += b"\n"
        if len(buf) >= TRACE_HASH_CHUNK:
            self._trace_hash.update(buf)
            buf.clear()
        if self.keep_trace:
            shown = payload_digest(payload) if payload is not None and note is None else note
            parts = [line] + ([shown] if shown is not None else []) + ([tail] if tail else [])
            self.trace.append(" ".join(parts))

    def record_message(self, source: NodeId, target: NodeId, kind: str, payload: bytes) -> None:
        """`record(f"msg {source}>{target} {kind}", payload)`, the same bytes hashed and the
        same line kept, built in one go (one of these per delivered message)."""
        line = f"{self.scheduler.now_ms} msg {source}>{target} {kind}"
        buf = self._trace_buf
        buf += line.encode("utf-8", "backslashreplace")
        buf += payload
        buf += b"\n"
        if len(buf) >= TRACE_HASH_CHUNK:
            self._trace_hash.update(buf)
            buf.clear()
        if self.keep_trace:
            self.trace.append(f"{line} {payload_digest(payload)}")

    def trace_hash(self) -> str:
        if self._trace_buf:
            self._trace_hash.update(self._trace_buf)
            self._trace_buf.clear()
        return self._trace_hash.hexdigest()

    def on_event(self, node: NodeId, event: Event) -> None:
        self.events.append((self.scheduler.now_ms, node, event.kind, event.detail))
        for listener in self.event_listeners:
            listener(node, event)

    def on_log(self, node: NodeId, level: str, text: str) -> None:
        if len(self.logs) >= MAX_LOG_LINES:
            del self.logs[: MAX_LOG_LINES // 10]
        self.logs.append((self.scheduler.now_ms, node, level, text))

    # ---- network glue -----------------------------------------------------------------

    def network_send(self, source: NodeId, target: NodeId, message: Any) -> None:
        host = self._by_id.get(target)
        # The connection is to the target's current process; a restart in between breaks it.
        self.network.send(source, target, message, host.incarnation if host else None)

    def _deliver(self, envelope: Envelope, message: Any) -> None:
        host = self._by_id.get(envelope.target)
        if host is None or host.node is None or envelope.tag != host.incarnation:
            self._dropped(envelope, "target down" if host is None or not host.up else "target restarted")
            return
        if host.paused:  # through the host's gate, which queues it
            host.deliver(envelope.source, message, envelope.payload)
        else:
            host.receive(envelope.source, message, envelope.payload)

    def _dropped(self, envelope: Envelope, reason: str) -> None:
        self.record(f"drop {envelope.source}>{envelope.target} {envelope.kind}", envelope.payload, reason)

    # ---- running ----------------------------------------------------------------------

    def run_for(self, ms: int) -> None:
        """Advance virtual time by `ms`, running everything due meanwhile."""
        self.scheduler.advance_to(self.scheduler.now_ms + int(ms))

    def run_until(self, predicate: Callable[[], bool], max_ms: int) -> bool:
        """Run until `predicate()` holds (checked after every event) or `max_ms` of virtual
        time pass. Returns whether it holds."""
        deadline = self.scheduler.now_ms + int(max_ms)
        if predicate():
            return True
        while self.scheduler.step(deadline):
            if predicate():
                return True
        self.scheduler.advance_to(deadline)
        return bool(predicate())

    def wait(self, fut: SimFuture, max_ms: int = DEFAULT_WAIT_MS):
        """Run until `fut` completes, then return its result (or raise its error)."""
        if not self.run_until(lambda: fut.done, max_ms):
            raise NotDone(f"{fut!r} not done after {max_ms} ms of virtual time")
        return fut.result()

    # ---- cluster views ----------------------------------------------------------------

    def sees(self, observer: Via, target: Via) -> bool:
        """Whether `observer`'s failure detector holds `target` alive."""
        node = self.node(observer)
        return node is not None and node.is_alive(self.host(target).id)

    def all_up(self) -> bool:
        """Every running node sees every other running node alive and in its ring."""
        running = [h for h in self.hosts if h.up]
        for h in running:
            for other in running:
                if not h.node.is_alive(other.id) or other.id not in h.node.ring:
                    return False
        return True

    def wait_until_up(self, max_ms: int = 60_000) -> None:
        if not self.run_until(self.all_up, max_ms):
            raise NotDone(f"cluster not converged after {max_ms} ms: "
                          + "; ".join(f"{h.id} sees {[n for n in self.nodes if h.up and h.node.is_alive(n)]}"
                                      for h in self.hosts))

    def schema_versions(self) -> dict[NodeId, str]:
        return {h.id: h.node.schema.version for h in self.hosts if h.up}

    def schema_agreed(self) -> bool:
        return len(set(self.schema_versions().values())) == 1

    # ---- faults -----------------------------------------------------------------------

    def crash(self, via: Via, lose_unsynced: bool = False) -> None:
        self.host(via).crash(lose_unsynced)

    def stop(self, via: Via) -> None:
        """A graceful stop (announce, drain, sync); the node is down SHUTDOWN_ANNOUNCE_MS later."""
        self.host(via).stop()

    def restart(self, via: Via) -> None:
        self.host(via).boot()

    def pause(self, via: Via) -> None:
        self.host(via).pause()

    def resume(self, via: Via) -> None:
        self.host(via).resume()

    def partition(self, group_a: Iterable[Via], group_b: Iterable[Via] | None = None,
                  one_way: bool = False) -> None:
        """Cut `group_a` off from `group_b` (default: everyone else), both ways; with
        `one_way`, only messages from `group_a` to `group_b` are dropped (a half-open link:
        `group_b` still reaches `group_a`)."""
        a = self.ids(group_a)
        b = self.ids(group_b) if group_b is not None else [n for n in self.nodes if n not in a]
        if one_way:
            for source in sorted(a):
                for target in sorted(b):
                    self.network.block(source, target)
        else:
            self.network.partition(a, b)
        sep = ">" if one_way else "/"
        self.record(f"partition {','.join(sorted(a))} {sep} {','.join(sorted(b))}")

    def cut_dc(self, dc: str) -> None:
        """Cut a whole datacenter off from the others, both ways (its own links stay)."""
        inside = [n for n in self.nodes if self.dc_of(n) == dc]
        assert inside, f"no datacenter {dc!r}"
        self.partition(inside)

    def datacenters(self) -> list[str]:
        return list(dict.fromkeys(h.cfg.dc for h in self.hosts))

    def isolate(self, via: Via) -> None:
        self.partition([via])

    def block(self, source: Via, target: Via) -> None:
        """Drop messages from `source` to `target` only."""
        s, t = self.host(source).id, self.host(target).id
        self.network.block(s, t)
        self.record(f"block {s}>{t}")

    def heal(self) -> None:
        self.network.heal()
        self.record("heal")

    def set_network_faults(self, loss: float | None = None, duplicate: float | None = None,
                           reorder: bool | None = None, slow: float | None = None) -> None:
        """Change the network's random faults from now on (None leaves one as it is):
        loss and duplication rates, reordering, and the share of slow messages."""
        net = self.network
        if slow is not None:
            assert 0.0 <= slow <= 1.0
            net.slow = slow
        if loss is not None:
            assert 0.0 <= loss < 1.0
            net.loss = loss
        if duplicate is not None:
            assert 0.0 <= duplicate < 1.0
            net.duplicate = duplicate
        if reorder is not None:
            net.reorder = bool(reorder)
        self.record(f"network loss={net.loss} duplicate={net.duplicate} reorder={net.reorder} slow={net.slow}")

    def set_clock(self, via: Via, offset_ms: int | None = None, drift_ppm: int | None = None) -> None:
        """Step `via`'s clock to `offset_ms` from true time and/or make it drift at
        `drift_ppm` (None keeps that part as it is). Its node sees the change at once."""
        host = self.host(via)
        host.clock.set(self.scheduler.now_ms, offset_ms, drift_ppm)
        self.record(f"clock {host.id} offset={host.clock.offset_ms} drift={host.clock.drift_ppm}")

    # ---- client API: partitions and read commands -------------------------------------

    def write(self, via: Via, partitions: list[Partition], cl: ConsistencyLevel | str = "QUORUM",
              write_type: str = "SIMPLE") -> SimFuture:
        level = _cl(cl)
        return self.host(via).client_call(
            f"write {level.name}",
            lambda cid, t: self.host(via).node.client_write(cid, partitions, level, t, write_type))

    def read(self, via: Via, command: ReadCommand, cl: ConsistencyLevel | str = "QUORUM") -> SimFuture:
        level = _cl(cl)
        return self.host(via).client_call(
            f"read {level.name}", lambda cid, t: self.host(via).node.client_read(cid, command, level, t))

    def read_range(self, via: Via, command: RangeCommand,
                   cl: ConsistencyLevel | str = "QUORUM") -> SimFuture:
        """A token-range read; the result is a list of live partitions in ring order."""
        level = _cl(cl)
        return self.host(via).client_call(
            f"read_range {level.name}",
            lambda cid, t: self.host(via).node.client_read_range(cid, command, level, t))

    def schema_change(self, via: Via, change) -> SimFuture:
        """`change(schema, ts_us) -> Schema`, e.g. from `agora.core.schema.ddl`."""
        return self.host(via).client_call(
            "schema_change", lambda cid, t: self.host(via).node.client_schema_change(cid, change, t))

    def repair(self, via: Via, max_ms: int = DEFAULT_WAIT_MS, **args) -> dict:
        """Run an anti-entropy repair coordinated by `via` (args as the admin op `repair`:
        keyspace, table, node, start_token, end_token) until it ends; its final report."""
        started = self.wait(self.host(via).client_call(
            "repair", lambda cid, t: self.host(via).node.client_repair(cid, dict(args), t)))
        node = self.host(via).node
        status = lambda: node.antientropy.status(started["id"], self.host(via).clock_ms())  # noqa: E731
        if not self.run_until(lambda: status()["state"] != "running", max_ms):
            raise NotDone(f"repair #{started['id']} still running after {max_ms} ms: {status()}")
        return status()

    # ---- client API: rows (the admin verbs' semantics) --------------------------------

    def create_keyspace(self, name: str, replication: dict, via: Via = 0, **args) -> SimFuture:
        return self.schema_change(via, ddl.create_keyspace({"name": name, "replication": replication, **args}))

    def create_table(self, keyspace: str, name: str, columns: Sequence[tuple[str, str]],
                     partition_key: Sequence[str], clustering: Sequence[tuple[str, str]] = (),
                     via: Via = 0, **args) -> SimFuture:
        return self.schema_change(via, ddl.create_table({
            "keyspace": keyspace, "name": name, "columns": [list(c) for c in columns],
            "partition_key": list(partition_key), "clustering": [list(c) for c in clustering], **args}))

    def insert(self, via: Via, keyspace: str, table: str, values: dict,
               cl: ConsistencyLevel | str = "QUORUM", timestamp: int | None = None,
               ttl: int = 0) -> SimFuture:
        """INSERT `values` through `via`; the result is the write timestamp used."""
        host, level, used = self.host(via), _cl(cl), {}

        def start(cid: int, t: int) -> list:
            node = host.node
            try:
                tdef = self._table(node, keyspace, table)
                ts = int(timestamp or node.next_timestamp(t))
                part = rowmaps.insert(tdef, dict(values), ts, ttl, t // 1000)
            except AgoraError as exc:
                return [Reply(cid, exc.with_traceback(None))]  # an answer: no frames kept
            used["ts"] = ts
            return node.client_write(cid, [part], level, t)

        fut = host.client_call(f"insert {level.name}", start, lambda _: used["ts"])
        fut.info = used  # the timestamp, even if the write fails
        return fut

    def delete(self, via: Via, keyspace: str, table: str, key: dict,
               cl: ConsistencyLevel | str = "QUORUM", timestamp: int | None = None) -> SimFuture:
        host, level, used = self.host(via), _cl(cl), {}

        def start(cid: int, t: int) -> list:
            node = host.node
            try:
                tdef = self._table(node, keyspace, table)
                ts = int(timestamp or node.next_timestamp(t))
                part = rowmaps.delete(tdef, dict(key), ts, t // 1000)
            except AgoraError as exc:
                return [Reply(cid, exc.with_traceback(None))]  # an answer: no frames kept
            used["ts"] = ts
            return node.client_write(cid, [part], level, t)

        fut = host.client_call(f"delete {level.name}", start, lambda _: used["ts"])
        fut.info = used
        return fut

    def select(self, via: Via, keyspace: str, table: str, key: dict,
               cl: ConsistencyLevel | str = "QUORUM", writetime: bool = False) -> SimFuture:
        """SELECT * WHERE <key> through `via`; the result is a list of row dicts."""
        host, level, used = self.host(via), _cl(cl), {}

        def start(cid: int, t: int) -> list:
            node = host.node
            try:
                tdef = self._table(node, keyspace, table)
                cmd = self._read_command(tdef, key)
            except AgoraError as exc:
                return [Reply(cid, exc.with_traceback(None))]  # an answer: no frames kept
            used["table"] = tdef
            return node.client_read(cid, cmd, level, t)

        return host.client_call(f"select {level.name}", start,
                                lambda part: rowmaps.rows_of(used["table"], part, writetime))

    def local_rows(self, via: Via, keyspace: str, table: str, key: dict,
                   writetime: bool = False) -> list[dict]:
        """What `via`'s own disk holds for `key` (no coordinator, no repair), as live rows.
        Works while the node is down: the disk outlives the process."""
        host = self.host(via)
        schema = host.node.schema.schema if host.node is not None else self._disk_schema(host)
        tdef = schema.table(keyspace, table)
        if tdef is None:
            raise InvalidRequest(f"unknown table {keyspace}.{table}")
        raw = host.engine.read(rowmaps.read_command(tdef, dict(key)))
        now_s = host.clock_ms() // 1000
        view = reconcile.live_view(raw, now_s) if raw is not None else None
        return rowmaps.rows_of(tdef, view, writetime)

    @staticmethod
    def _disk_schema(host: SimHost) -> Schema:
        """The schema a down node's disk holds (what it would load at boot)."""
        raw = host.engine.get_meta(SCHEMA_META_KEY)
        return Schema() if raw is None else Schema.from_plain(msgpack.unpackb(raw, raw=False, strict_map_key=False))

    def _read_command(self, tdef, key: dict) -> ReadCommand:
        """`rowmaps.read_command(tdef, key)`, remembered per table definition and key (a
        command is a value; clients read the same few keys over and over)."""
        try:
            memo = (id(tdef), tuple(sorted(key.items())))
            hit = self._commands.get(memo)
        except TypeError:  # a key value that cannot be a dict key: no memo
            return rowmaps.read_command(tdef, dict(key))
        if hit is not None and hit[0] is tdef:
            return hit[1]
        cmd = rowmaps.read_command(tdef, dict(key))
        self._commands[memo] = (tdef, cmd)  # holding tdef keeps its id from being reused
        return cmd

    def _table(self, node, keyspace: str, table: str):
        schema = node.schema.schema
        seen = (node.local, keyspace, table)
        hit = self._tables_seen.get(seen)
        if hit is not None and hit[0] is schema:  # schemas are immutable: same one, same answer
            return hit[1]
        tdef = schema.table(keyspace, table)
        if tdef is None:
            raise InvalidRequest(f"unknown table {keyspace}.{table}")
        self._tables_seen[seen] = (schema, tdef)
        return tdef
