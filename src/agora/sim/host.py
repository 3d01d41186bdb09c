"""One simulated machine: a node process (the pure `agora.core.node.Node`) plus its disk (a
`MemoryEngine` that outlives the process), driven on virtual time.

Owns: executing effects with exactly the semantics of the real driver,
`agora.runtime.server.NodeRuntime` (which the simulator must not import, DESIGN.md
section 3); any difference between the two is a bug in one of them:

- `Send` to another node goes through the simulated network as encoded bytes; `Send` to
  ourselves is delivered locally as a later event at the same millisecond (the runtime's
  `call_soon`), without the network.
- `SetTimer` arms or re-arms a timer; `CancelTimer` disarms it; a firing timer is forgotten
  before the node sees it.
- `StoragePut`s issued before the next flush event go to the engine as one batch (group
  commit; the runtime flushes with `call_soon`). A batch with a synced put is applied and
  acknowledged `fsync_ms` later (the runtime's fsync thread); otherwise at once. Then every
  put's `StoragePutDone` is fed back and the resulting effects run.
- `StorageGet` reads the engine at once and feeds `StorageGetDone` back in the same drain;
  `StorageScan` likewise scans it (`eff.collect(engine.scan_pieces(...))`) and feeds
  `StorageScanDone` back.
- Hint effects (`HintPut`, `HintDelete`, `HintScan`, `HintIndex`) go to the engine's hint
  store at once, completions fed back in the same drain; a synced `HintPut` completes
  `fsync_ms` later, as a synced batch does.
- Compaction and batchlog effects likewise: `StorageReplace`, `BatchlogLoad` and unsynced
  `BatchlogStore` at once with their completion in the same drain, a synced `BatchlogStore`
  `fsync_ms` later; `StorageDropTable` and `BatchlogRemove` at once without one. `Halt` (a
  test-only fault) crashes the host at once, as the runtime exits its process.
- `PersistMeta` goes to the engine's durable metadata; `Reply` completes the client's
  future; `Event` and `Log` go to the cluster's records.
- An `AgoraError` raised by an input is logged and the input dropped (the runtime's `_feed`).
- Identity (host id, tokens) and schema are loaded from the engine's metadata at boot, as
  `NodeRuntime._load_identity` / `_load_schema` do; a fresh disk gets a new identity.
- Periodic fsync every `commitlog_sync_period` (periodic mode) and a load refresh every
  LOAD_REFRESH_MS, as the runtime's background callbacks.

And the process lifecycle: `stop` (a graceful stop, as `NodeRuntime.close`: announce the
shutdown, keep serving for SHUTDOWN_ANNOUNCE_MS, then flush pending puts, sync and exit), `crash` (the process dies: timers, queued inputs, unflushed puts and
client requests vanish; the engine keeps what was applied, or, with `lose_unsynced`, only
what was synced), `boot` after a crash (a new `Node` with the same identity and a higher
generation), `pause`/`resume` (SIGSTOP/SIGCONT: nothing runs, inputs queue up, due timers
fire on resume).

Every input to the node goes through `_gate`, which drops events meant for an earlier
incarnation and queues them while paused; that one gate is what keeps crashed and paused
nodes honest. (A network delivery to a running, unpaused process is handed to `receive`
directly by the cluster, which checks the same two things first.)
"""

from __future__ import annotations

import collections
import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any


from agora.core import codec
from agora.core.config import NodeConfig
from agora.core.effects import (CancelTimer, Event, Log, PersistMeta, Reply, Send, SetTimer,
                                StorageGet, StoragePut, StoragePutDone,
                                StorageScan)
from agora.core.effects import (HintDelete, HintIndex, HintPut,
                                HintScan)
from agora.core.effects import (BatchlogLoad, BatchlogRemove, BatchlogStore, Halt,
                                StorageDropTable, StorageReplace, StorageWalkClean)
from agora.core.errors import AgoraError
from agora.core.node import Node, restore
from agora.core.packing import pack
from agora.core.plain import partition_to_plain
from agora.core.types import NodeId, Partition
from agora.storage import completions
from agora.sim.clock import SimClock
from agora.sim.results import ConnectionLost, SimFuture
from agora.storage.memory import MemoryEngine

if TYPE_CHECKING:
    from agora.sim.cluster import SimCluster

LOAD_REFRESH_MS = 10_000  # as the runtime's LOAD_REFRESH_S: re-measure the data size for gossip
SHUTDOWN_ANNOUNCE_MS = 200  # as the runtime's SHUTDOWN_ANNOUNCE_S: the farewell's head start
MAX_DEFERRED_INPUTS = 100_000  # inputs a paused node may queue before we call the test broken


def payload_digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


class SimHost:
    def __init__(self, cluster: SimCluster, index: int, cfg: NodeConfig) -> None:
        self.cluster = cluster
        self.index = index
        self.cfg = cfg
        self.id: NodeId = cfg.local_id
        self.engine = MemoryEngine()
        self.node: Node | None = None
        self.incarnation = 0  # bumped at every boot; events carry the one they were made for
        self.generation = 0  # the last gossip generation used
        self.clock = SimClock()  # this machine's clock error: skew and drift
        # coordinator statistics of the node processes that have exited (crash, stop), so
        # a run's totals survive restarts
        self.retired_stats: dict[str, int] = {}
        self.paused = False
        self._deferred: list[tuple[Callable[[Any], None], Any]] = []  # (function, arg)
        # timer id -> the token of its live arming: a firing whose token is no longer here was
        # re-armed or cancelled (cancelling is forgetting the token; the event stays queued)
        self._timers: dict[Any, int] = {}
        self._timer_token = 0
        self._queue: collections.deque = collections.deque()
        self._draining = False
        self._puts: list[StoragePut] = []
        self._flush_scheduled = False
        self._futures: dict[int, SimFuture] = {}
        self._next_client = 1

    # ---- time -------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.node is not None

    def clock_ms(self) -> int:
        """This machine's wall clock: what its node is told `now_ms` is."""
        clock, now = self.clock, self.cluster.scheduler.now_ms
        if clock.drift_ppm == 0:  # the common case, without a call
            return self.cluster.epoch_ms + now + clock.offset_ms
        return self.cluster.epoch_ms + clock.read(now)

    @property
    def clock_offset_ms(self) -> int:
        """The clock's error right now (skew plus the drift so far), in ms."""
        return self.clock.error_ms(self.cluster.scheduler.now_ms)

    @clock_offset_ms.setter
    def clock_offset_ms(self, offset_ms: int) -> None:
        self.clock.set(self.cluster.scheduler.now_ms, offset_ms=offset_ms)

    def coordinator_stats(self) -> dict[str, int]:
        """Read coordinator counters (read repairs, digest mismatches, speculative
        retries) summed over every process this machine has run."""
        out = dict(self.retired_stats)
        if self.node is not None:
            for key, n in self.node.reads.stats.items():
                out[key] = out.get(key, 0) + n
        return out

    def _schedule(self, delay_ms: int, action: Callable[[], None], label: str = "") -> None:
        """An input for this incarnation, `delay_ms` from now, through the gate: `action()`
        (`label` names it for a reader; events are not labelled at run time)."""
        self.cluster.scheduler.post(delay_ms, self._gate, (self.incarnation, _call, action))

    def _post(self, delay_ms: int, function: Callable[[Any], None], arg: Any) -> None:
        """An input for this incarnation, `delay_ms` from now, through the gate:
        `function(arg)` (no closure: the common inputs are bound methods)."""
        self.cluster.scheduler.post(delay_ms, self._gate, (self.incarnation, function, arg))

    def _input(self, incarnation: int, action: Callable[[], None]) -> None:
        """`action()` now, through the gate, as an input meant for `incarnation`."""
        self._gate((incarnation, _call, action))

    def _gate(self, item: tuple) -> None:
        """Every input passes here: (incarnation, function, arg) runs `function(arg)` if it
        is meant for the current process; queued while paused."""
        incarnation, function, arg = item
        if self.node is None or incarnation != self.incarnation:
            return  # meant for a process that has since died
        if self.paused:
            assert len(self._deferred) < MAX_DEFERRED_INPUTS, f"{self.id} paused for too long"
            self._deferred.append((function, arg))
            return
        function(arg)

    # ---- lifecycle --------------------------------------------------------------------

    def boot(self) -> None:
        """Start a node process on this machine's disk (first start or restart)."""
        assert self.node is None, f"{self.id} is already running"
        self.incarnation += 1
        rng = random.Random(f"{self.cluster.seed_label}/node/{self.index}/incarnation/{self.incarnation}")
        meta = dict(self.engine.meta_items(""))
        if "host_id" not in meta:  # a fresh disk: this node's identity comes from its own seed
            rng_identity = random.Random(f"{self.cluster.seed_label}/identity/{self.index}")
            _, persist = restore(self.cfg, meta, self.clock_ms() // 1000, rng_identity)
            for item in persist:
                self.engine.put_meta(item.key, item.value)
            meta = dict(self.engine.meta_items(""))
        self.node, persist = restore(self.cfg, meta, self.clock_ms() // 1000, rng)
        # deadlines run on true time, as the timers do; a stepped clock moves no timeout
        self.node.monotonic_ms = lambda: self.cluster.scheduler.now_ms
        for item in persist:
            self.engine.put_meta(item.key, item.value)
        self.generation = self.node.identity.generation
        self.node.load_bytes = self.engine.load_bytes()
        self._next_client = 1
        native = f"{self.cfg.listen_address}:{self.cfg.native_transport_port}"
        self.cluster.record(f"boot {self.id} incarnation={self.incarnation} generation={self.generation}")
        self._run(self.node.start(self.clock_ms(), native))
        if self.cfg.commitlog_sync == "periodic":
            self._schedule(self.cfg.commitlog_sync_period, self._periodic_sync, "sync")
        self._schedule(LOAD_REFRESH_MS, self._refresh_load, "load")

    def crash(self, lose_unsynced: bool = False) -> None:
        """The process dies now. With `lose_unsynced`, so does the power: the disk keeps
        only what was synced."""
        assert self.node is not None, f"{self.id} is not running"
        if lose_unsynced:
            self.engine.crash()
        self._exit(f"crash {self.id} lose_unsynced={lose_unsynced}")

    def _exit(self, why: str) -> None:
        """The process is gone: its timers, queued inputs, unflushed puts and client
        requests with it. The disk stays."""
        self.retired_stats = self.coordinator_stats()
        self.node = None
        self._timers.clear()
        self._queue.clear()
        self._draining = False
        self._puts.clear()  # a batch not yet handed to the engine is lost with the process
        self._flush_scheduled = False
        self._deferred.clear()
        self.paused = False
        futures, self._futures = self._futures, {}
        now = self.cluster.scheduler.now_ms
        for client_id in sorted(futures):
            fut = futures[client_id]
            fut._complete(now, error=ConnectionLost(f"{self.id} went down"))
            self.cluster.record(f"reply {self.id} client#{client_id} {fut.error!r}")
        self.cluster.record(why)

    def stop(self) -> None:
        """A graceful stop, as `NodeRuntime.close`: the node announces it is leaving, keeps
        running while the farewell gets out, then flushes, syncs and exits."""
        assert self.node is not None, f"{self.id} is not running"
        self.cluster.record(f"stop {self.id}")
        self._run(self.node.shutdown(self.clock_ms()))
        self._schedule(SHUTDOWN_ANNOUNCE_MS, self._close, "close")

    def _close(self) -> None:
        self._timers.clear()
        puts, self._puts = self._puts, []
        if puts:  # the runtime flushes what is queued before it closes the engine
            self._puts_done(puts, self._apply([p for put in puts for p in put.partitions], True))
        self.engine.sync()
        self._exit(f"exit {self.id}")

    def pause(self) -> None:
        assert self.node is not None and not self.paused, f"{self.id} cannot be paused"
        self.paused = True
        self.cluster.record(f"pause {self.id}")

    def resume(self) -> None:
        assert self.paused, f"{self.id} is not paused"
        self.paused = False
        deferred, self._deferred = self._deferred, []
        self.cluster.record(f"resume {self.id} queued={len(deferred)}")
        for function, arg in deferred:  # in arrival order, each its own event, all due now
            self._post(0, function, arg)

    def _periodic_sync(self) -> None:
        self.engine.sync()
        self._schedule(self.cfg.commitlog_sync_period, self._periodic_sync, "sync")

    def _refresh_load(self) -> None:
        self.node.load_bytes = self.engine.load_bytes()
        self._schedule(LOAD_REFRESH_MS, self._refresh_load, "load")

    # ---- inputs -----------------------------------------------------------------------

    def deliver(self, source: NodeId, message: Any, payload: bytes) -> None:
        """A message arrived from the network (already decoded) for the current process:
        through the gate (queued while paused)."""
        if self.paused:
            self._gate((self.incarnation, self._receive, (source, message, payload)))
        elif self.node is not None:
            self.receive(source, message, payload)

    def _receive(self, item: tuple) -> None:
        self.receive(*item)

    def receive(self, source: NodeId, message: Any, payload: bytes) -> None:
        """A message arrived from the network (already decoded); called through the gate."""
        self.cluster.record_message(source, self.id, type(message).__name__, payload)
        try:
            effects = self.node.on_message(source, message, self.clock_ms())
        except AgoraError as exc:
            self._log("warning", f"rejected input: {exc}")
            return
        self._run(effects)

    def _feed(self, step: Callable[[int], list]) -> None:
        """Run one input through the node and execute the effects it returns."""
        try:
            effects = step(self.clock_ms())
        except AgoraError as exc:
            self._log("warning", f"rejected input: {exc}")
            return
        self._run(effects)

    def _run(self, effects: list) -> None:
        queue = self._queue
        queue.extend(effects)
        if self._draining:
            return
        self._draining = True
        try:
            handlers, popleft = _HANDLERS, queue.popleft
            while queue and self.node is not None:
                eff = popleft()
                handler = handlers.get(type(eff))
                if handler is None:
                    handler = _handler_of(eff)
                handler(self, eff)
        finally:
            self._draining = False

    def _set_timer(self, eff: SetTimer) -> None:
        self._arm(eff.timer_id, eff.delay_ms)  # a new token: the old arming is void

    def _cancel_timer(self, eff: CancelTimer) -> None:
        self._timers.pop(eff.timer_id, None)

    def _storage_put(self, eff: StoragePut) -> None:
        self._puts.append(eff)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._post(0, self._flush_puts, None)

    def _persist_meta(self, eff: PersistMeta) -> None:
        self.engine.put_meta(eff.key, eff.value, eff.sync)

    def _log_effect(self, eff: Log) -> None:
        self._log(eff.level, eff.text)

    def _event(self, eff: Event) -> None:
        self.cluster.on_event(self.id, eff)

    def _log(self, level: str, text: str) -> None:
        self.cluster.on_log(self.id, level, text)

    # ---- effects ----------------------------------------------------------------------

    def _send(self, eff: Send) -> None:
        if eff.target == self.id:
            self._post(0, self._local, eff.message)
        else:
            self.cluster.network_send(self.id, eff.target, eff.message)

    def _local(self, message: Any) -> None:
        """A message to ourselves, delivered. Not encoded, as in the runtime: the trace hash
        names it (what it carries follows from earlier inputs, and shows in the messages it
        leads to); a kept trace also shows its digest."""
        note = payload_digest(codec.encode(message)) if self.cluster.keep_trace else None
        self.cluster.record(f"self {self.id} {type(message).__name__}", note=note)
        try:
            effects = self.node.on_message(self.id, message, self.clock_ms())
        except AgoraError as exc:
            self._log("warning", f"rejected input: {exc}")
            return
        self._run(effects)

    def _reply(self, eff: Reply) -> None:
        fut = self._futures.pop(eff.client_id, None)
        result = eff.result
        if type(result) is Partition or (type(result) is list and result and type(result[0]) is Partition):
            # Data is hashed as its plain encoding, which says the same at a fraction of the
            # cost of its repr (a kept trace still shows the repr).
            plain = partition_to_plain(result) if type(result) is Partition \
                else [partition_to_plain(p) for p in result]
            note = repr(result) if self.cluster.keep_trace else None
            self.cluster.record(f"reply {self.id} client#{eff.client_id} data", pack(plain), note=note)
        else:
            self.cluster.record(f"reply {self.id} client#{eff.client_id} {result!r}")
        if fut is None or fut.done:
            return
        now = self.cluster.scheduler.now_ms
        if isinstance(eff.result, BaseException):
            fut._complete(now, error=eff.result)
        else:
            fut._complete(now, value=eff.result)

    def _arm(self, timer_id: Any, delay_ms: int) -> None:
        self._timer_token = token = self._timer_token + 1
        self._timers[timer_id] = token
        self._post(int(delay_ms), self._fire, (timer_id, token))

    def _fire(self, item: tuple) -> None:
        timer_id, token = item
        if self._timers.get(timer_id) != token:
            return  # re-armed or cancelled (perhaps while this firing was queued behind a pause)
        del self._timers[timer_id]
        try:
            effects = self.node.on_timer(timer_id, self.clock_ms())
        except AgoraError as exc:
            self._log("warning", f"rejected input: {exc}")
            return
        self._run(effects)

    def _storage_get(self, eff: StorageGet) -> None:
        self._queue.extend(self.node.on_storage_done(self._complete(eff), self.clock_ms()))

    def _storage_scan(self, eff: StorageScan) -> None:
        self._queue.extend(self.node.on_storage_done(self._complete(eff), self.clock_ms()))

    def _complete(self, eff):
        """As the runtime's `_complete` (agora.storage.completions)."""
        try:
            return completions.complete(self.engine, eff)
        except Exception as exc:  # a storage failure answers this operation, not the node
            self._log("error", f"{type(eff).__name__} failed: {exc!r}")
            return completions.failed(eff, exc)

    def _gc_batchlog_effect(self, eff) -> None:
        """As the runtime's `_gc_batchlog_effect`."""
        if isinstance(eff, Halt):
            self._log("error", f"halting at once: {eff.reason} (a test-only fault)")
            self.crash()
            return
        if isinstance(eff, StorageDropTable):
            self.engine.drop_table(eff.table_id)
            return
        if isinstance(eff, StorageWalkClean):
            completions.run_walk_clean(self.engine, eff)
            return
        if isinstance(eff, BatchlogRemove):
            self.engine.batchlog_remove(eff.batch_id)
            return
        if isinstance(eff, BatchlogStore) and eff.sync:
            def synced() -> None:
                self._run(self.node.on_storage_done(self._complete(eff), self.clock_ms()))
            self._schedule(self.cluster.fsync_ms, synced, "batchlog fsync")
            return
        self._queue.extend(self.node.on_storage_done(self._complete(eff), self.clock_ms()))

    def _hint_effect(self, eff) -> None:
        """As the runtime's `_hint_effect`: scans, deletes and unsynced puts at once (their
        completion fed back in the same drain); a synced put is applied and reported
        `fsync_ms` later, unless the process died meanwhile."""
        if isinstance(eff, HintDelete):
            self.engine.delete_hints(eff.keys)
            return
        if isinstance(eff, HintPut) and eff.sync:
            def synced() -> None:
                self._run(self.node.on_storage_done(self._complete(eff), self.clock_ms()))
            self._schedule(self.cluster.fsync_ms, synced, "hint fsync")
            return
        self._queue.extend(self.node.on_storage_done(self._complete(eff), self.clock_ms()))

    def _flush_puts(self, _: Any = None) -> None:
        """Group commit: all mutations issued since the last flush go down as one batch."""
        self._flush_scheduled = False
        puts, self._puts = self._puts, []
        if not puts:
            return
        partitions = [part for p in puts for part in p.partitions]
        if any(p.sync for p in puts):
            def synced() -> None:
                self._puts_done(puts, self._apply(partitions, True))
            self._schedule(self.cluster.fsync_ms, synced, "fsync")
            return
        self._puts_done(puts, self._apply(partitions, False))

    def _apply(self, partitions: list, sync: bool) -> str | None:
        try:
            self.engine.apply(partitions, sync)
            return None
        except Exception as exc:
            self._log("error", f"write batch failed: {exc!r}")
            return f"storage error: {exc}"

    def _puts_done(self, puts: list[StoragePut], error: str | None) -> None:
        t = self.clock_ms()
        effects: list = []
        for p in puts:
            effects.extend(self.node.on_storage_done(StoragePutDone(p.op_id, error), t))
        self._run(effects)

    # ---- client calls -----------------------------------------------------------------

    def client_call(self, op: str, start: Callable[[int, int], list],
                    transform: Callable[[Any], Any] | None = None) -> SimFuture:
        """Submit a client request; `start(client_id, now_ms)` returns the node's effects."""
        now = self.cluster.scheduler.now_ms
        fut = SimFuture(op, self.id, now, transform)
        if self.node is None:
            fut._complete(now, error=ConnectionLost(f"{self.id} is down"))
            self.cluster.record(f"refused {self.id} {op}: down")
            return fut
        client_id = self._next_client
        self._next_client += 1
        fut.client_id = client_id
        self._futures[client_id] = fut
        self.cluster.record(f"client {self.id} client#{client_id} {op}")
        self._gate((self.incarnation, self._start_client, (start, client_id)))
        return fut

    def _start_client(self, item: tuple) -> None:
        start, client_id = item
        self._feed(lambda t: start(client_id, t))


def _call(action: Callable[[], None]) -> None:
    action()


# Effect type -> the SimHost method that executes it (`_run` dispatches on the exact type;
# a subclass of an effect is looked up once by isinstance and remembered).
_HANDLERS: dict[type, Callable[[SimHost, Any], None]] = {
    Send: SimHost._send, Reply: SimHost._reply, SetTimer: SimHost._set_timer,
    CancelTimer: SimHost._cancel_timer, StoragePut: SimHost._storage_put,
    StorageGet: SimHost._storage_get, StorageScan: SimHost._storage_scan,
    HintPut: SimHost._hint_effect, HintDelete: SimHost._hint_effect, HintScan: SimHost._hint_effect,
    HintIndex: SimHost._hint_effect, StorageReplace: SimHost._gc_batchlog_effect,
    StorageDropTable: SimHost._gc_batchlog_effect, StorageWalkClean: SimHost._gc_batchlog_effect,
    BatchlogStore: SimHost._gc_batchlog_effect,
    BatchlogRemove: SimHost._gc_batchlog_effect, BatchlogLoad: SimHost._gc_batchlog_effect,
    Halt: SimHost._gc_batchlog_effect, PersistMeta: SimHost._persist_meta, Log: SimHost._log_effect,
    Event: SimHost._event,
}


def _handler_of(eff) -> Callable[[SimHost, Any], None]:
    for kind, handler in list(_HANDLERS.items()):
        if isinstance(eff, kind):
            _HANDLERS[type(eff)] = handler
            return handler
    raise AssertionError(f"unknown effect {eff!r}")
