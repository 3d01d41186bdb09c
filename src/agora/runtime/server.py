"""The real node: drives the pure `agora.core.node.Node` with asyncio (uvloop when installed),
real TCP between nodes, RocksDB on disk and the wall clock.

Owns: executing effects — sending frames, arming timers, applying storage batches
(group commit: every StoragePut issued during one event-loop pass goes to RocksDB as one
WriteBatch), periodic or per-batch fsync per `commitlog_sync`, and turning client calls
(`write`, `read`, `read_range`, `schema_change`) into awaitables. It has no protocol logic; everything it
decides is about I/O.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from agora.core import codec
from agora.core.config import NodeConfig
from agora.core.effects import (CancelTimer, Event, Log, PersistMeta, Reply, Send, SetTimer,
                                StorageGet, StoragePut, StoragePutDone,
                                StorageScan)
from agora.core.effects import (HintDelete, HintIndex, HintPut,
                                HintScan)
from agora.core.effects import (BatchlogLoad, BatchlogRemove, BatchlogStore, Halt,
                                StorageDropTable, StorageReplace, StorageWalkClean)
from agora.core.errors import AgoraError, ProtocolError
from agora.core.limits import MAX_FRAME_BYTES
from agora.core.logthrottle import LogThrottle
from agora.core.messages import ClientReq, RangeReadRsp, ReadRsp
from agora.core.node import restore
from agora.core.types import ConsistencyLevel, Partition, RangeCommand, ReadCommand
from agora.runtime.transport import Transport
from agora.storage import completions
from agora.storage.rocks import RocksEngine

log = logging.getLogger("agora.node")

SHUTDOWN_ANNOUNCE_S = 0.2  # time for the shutdown announcement to leave before sockets close
LOAD_REFRESH_S = 10.0  # how often the on-disk size is re-measured for gossip and status
GC_THRESHOLDS = (20_000, 50, 1_000)  # gen0 allocations, gen1 and gen2 passes (CPython: 700, 10, 10)
HALT_EXIT_CODE = 70  # the exit status of a test-only Halt (EX_SOFTWARE): not a clean stop


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class NodeRuntime:
    def __init__(self, cfg: NodeConfig):
        self.cfg = cfg
        self.engine = RocksEngine(cfg.data_directory, cfg.file_cache_size)
        meta = dict(self.engine.meta_items(""))
        self.node, persist = restore(cfg, meta, now_ms() // 1000, random.Random())
        self.node.monotonic_ms = monotonic_ms  # deadlines: wall-clock steps move no timeout
        for item in persist:
            self.engine.put_meta(item.key, item.value)
        self.transport = Transport(cfg.local_id, cfg.listen_address, cfg.storage_port,
                                   cfg.cluster_name, self._on_frame)
        self._queue: collections.deque = collections.deque()
        self._draining = False
        self._timers: dict = {}
        self._futures: dict[int, asyncio.Future] = {}
        self._next_client = 1
        self._puts: list[StoragePut] = []
        self._flush_scheduled = False
        self._encoded_msg: object = None  # the last message sent to a peer, and its bytes
        self._encoded = b""
        self._fsync_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local = self.node.local
        self._handlers = self._effect_handlers()
        self.event_listeners: list = []
        self.admin = None  # set by start(): the admin verb handler
        self._periodic: dict[str, asyncio.TimerHandle] = {}  # the runtime's own timers, by job
        self.oversized = 0  # messages too big for an internode frame (see _too_large)
        self.failed_messages = 0  # peer messages the node failed on, dropped (see _on_message)
        self._failure_log = LogThrottle()
        self._closing = False

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        from agora.runtime.admin import AdminVerbs

        self._loop = asyncio.get_running_loop()
        self.admin = AdminVerbs(self)
        self.node.load_bytes = self.engine.load_bytes()
        await self.transport.start()
        native = f"{self.cfg.listen_address}:{self.cfg.native_transport_port}"
        self._run(self.node.start(now_ms(), native))
        if self.cfg.commitlog_sync == "periodic":
            self._periodic["sync"] = self._loop.call_later(self.cfg.commitlog_sync_period / 1000,
                                                           self._periodic_sync)
        self._periodic["load"] = self._loop.call_later(LOAD_REFRESH_S, self._refresh_load)
        log.info("node %s up (dc=%s rack=%s, %d tokens, block cache %d MiB)", self.cfg.local_id,
                 self.cfg.dc, self.cfg.rack, len(self.node.identity.tokens), self.cfg.file_cache_size >> 20)

    async def close(self) -> None:
        self._closing = True  # the periodic jobs stop: the engine is about to close
        for handle in self._periodic.values():
            handle.cancel()
        self._run(self.node.shutdown(now_ms()))
        await asyncio.sleep(SHUTDOWN_ANNOUNCE_S)  # let the farewell reach the peers
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._flush_puts()
        await self.transport.close()
        self._fsync_pool.shutdown(wait=True)  # synced writes and periodic fsyncs finish first
        self.engine.sync()
        self.engine.close()

    def _periodic_sync(self) -> None:
        if self._closing:
            return
        fut = self._loop.run_in_executor(self._fsync_pool, self.engine.sync)
        fut.add_done_callback(lambda f: f.exception() and log.error("fsync failed: %s", f.exception()))
        self._periodic["sync"] = self._loop.call_later(self.cfg.commitlog_sync_period / 1000,
                                                       self._periodic_sync)

    def _refresh_load(self) -> None:
        if self._closing:
            return
        self.node.load_bytes = self.engine.load_bytes()
        self._periodic["load"] = self._loop.call_later(LOAD_REFRESH_S, self._refresh_load)

    # ---- inputs ----------------------------------------------------------------------

    def _on_frame(self, source: str, payload: bytes) -> None:
        try:
            msg = codec.decode(payload)
        except ProtocolError as exc:
            log.warning("dropping bad message from %s: %s", source, exc)
            raise
        if isinstance(msg, ClientReq):
            self.admin.handle(source, msg)
            return
        self._on_message(source, msg)

    def _on_message(self, source: str, msg) -> None:
        """One message into the node (`_feed` without its closure: every message's path).
        A message the node fails on (a bug, not the peer's fault: its bytes decoded) is
        logged and dropped alone; the connection it came on, and the frames behind it on
        that connection, go on, as Cassandra drops a message whose verb handler throws. The
        traceback is logged at most once a second (a peer repeating such a message must not
        flood the log); `failed_messages` counts them all."""
        try:
            effects = self.node.on_message(source, msg, now_ms())
        except AgoraError as exc:
            log.warning("rejected input: %s", exc)
            return
        except Exception:
            self.failed_messages += 1
            if self._failure_log.allow(monotonic_ms()) is not None:
                log.exception("dropped %s from %s: the node failed on it (%d such messages so far)",
                              type(msg).__name__, source, self.failed_messages)
            return
        self._run(effects)

    def _feed(self, step) -> None:
        """Run one input through the node and execute the effects it returns."""
        try:
            effects = step(now_ms())
        except AgoraError as exc:
            log.warning("rejected input: %s", exc)
            return
        self._run(effects)

    def _run(self, effects) -> None:
        """Execute `effects` in order, then what executing them fed back (queued by the
        handlers: a node call never runs inside another). An effect that raises is logged
        with its traceback and the others still run: the effects of one pass belong to many
        requests (one request's send to one replica, another's answer), and one failure
        must not drop the rest, nor close the connection whose frames fed them."""
        if self._draining:
            self._queue.extend(effects)
            return
        self._draining = True
        queue, handlers = self._queue, self._handlers
        try:
            while True:  # the given list first, without queueing it, then what it fed back
                for eff in effects:
                    handler = handlers.get(type(eff))
                    if handler is None:
                        raise AssertionError(f"unknown effect {eff!r}")
                    try:
                        handler(eff)
                    except Exception:
                        log.exception("%s failed; the other effects go on", type(eff).__name__)
                if not queue:
                    break
                effects = list(queue)
                queue.clear()
        finally:
            self._draining = False

    def _effect_handlers(self) -> dict:
        """Effect type -> the method that executes it (one dict lookup per effect)."""
        handlers = {
            Send: self._send, Reply: self._reply, SetTimer: self._set_timer,
            CancelTimer: self._cancel_timer, StoragePut: self._storage_put,
            StorageGet: self._storage_get, StorageScan: self._storage_scan,
            PersistMeta: lambda eff: self.engine.put_meta(eff.key, eff.value, eff.sync),
            Log: lambda eff: getattr(log, eff.level, log.info)("%s", eff.text),
            Event: self._event,
        }
        for kind in (HintPut, HintDelete, HintScan, HintIndex):
            handlers[kind] = self._hint_effect
        for kind in (StorageReplace, StorageDropTable, StorageWalkClean, BatchlogStore, BatchlogRemove,
                     BatchlogLoad, Halt):
            handlers[kind] = self._gc_batchlog_effect
        return handlers

    def _send(self, eff: Send) -> None:
        msg = eff.message
        if eff.target == self._local:  # on the next pass of the loop, as if it had crossed
            self._loop.call_soon(self._on_message, self._local, msg)  # the network
            return
        if msg is not self._encoded_msg:  # one mutation goes to several replicas:
            self._encoded_msg, self._encoded = msg, codec.encode(msg)  # encode it once
        payload = self._encoded
        if len(payload) > MAX_FRAME_BYTES:
            payload = self._too_large(eff.target, msg, len(payload))
            if payload is None:
                return
        self.transport.send(eff.target, payload)

    def _too_large(self, target: str, msg, size: int) -> bytes | None:
        """A message bigger than an internode frame cannot travel (a range read's answer
        holding a partition of tens of MiB): a read answer goes as an error answer to the same
        request instead, anything else is dropped; either way it is logged, and the
        connection, with everything else on it, stays up."""
        text = f"{size} bytes exceed the {MAX_FRAME_BYTES}-byte internode frame limit"
        log.error("cannot send %s to %s: %s", type(msg).__name__, target, text)
        self.oversized += 1
        if isinstance(msg, ReadRsp):
            return codec.encode(ReadRsp(msg.req_id, None, None, text))
        if isinstance(msg, RangeReadRsp):
            return codec.encode(RangeReadRsp(msg.req_id, (), error=text))
        return None

    def _reply(self, eff: Reply) -> None:
        fut = self._futures.pop(eff.client_id, None)
        if fut is not None and not fut.done():
            if isinstance(eff.result, BaseException):
                fut.set_exception(eff.result)
            else:
                fut.set_result(eff.result)

    def _set_timer(self, eff: SetTimer) -> None:
        old = self._timers.pop(eff.timer_id, None)
        if old is not None:
            old.cancel()
        self._timers[eff.timer_id] = self._loop.call_later(eff.delay_ms / 1000, self._fire, eff.timer_id)

    def _cancel_timer(self, eff: CancelTimer) -> None:
        handle = self._timers.pop(eff.timer_id, None)
        if handle is not None:
            handle.cancel()

    def _storage_put(self, eff: StoragePut) -> None:
        self._puts.append(eff)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_puts)

    def _event(self, eff: Event) -> None:
        for listener in self.event_listeners:
            listener(eff)

    def _fire(self, timer_id) -> None:
        self._timers.pop(timer_id, None)
        self._feed(lambda t: self.node.on_timer(timer_id, t))

    # ---- storage ------------------------------------------------------------------------

    def _storage_get(self, eff: StorageGet) -> None:
        self._queue.extend(self.node.on_storage_done(self._complete(eff), now_ms()))

    def _storage_scan(self, eff: StorageScan) -> None:
        self._queue.extend(self.node.on_storage_done(self._complete(eff), now_ms()))

    def _complete(self, eff):
        """Run a storage effect and return its completion (agora.storage.completions)."""
        try:
            return completions.complete(self.engine, eff)
        except Exception as exc:  # a storage failure answers this operation, not the node
            log.exception("%s failed", type(eff).__name__)
            return completions.failed(eff, exc)

    def _gc_batchlog_effect(self, eff) -> None:
        """Tombstone compaction's rewrites and clean records, the downtime check's wipe, the batchlog
        (agora.core.tombstones, agora.core.batchlog) and the test-only Halt. A rewrite runs at
        once on the loop: it is one bounded chunk (GC_CHUNK_ROWS stored rows, about
        GC_CHUNK_BYTES) under the engine's write lock. A synced batchlog store runs on the fsync thread, as a synced put."""
        if isinstance(eff, Halt):
            log.error("halting at once: %s (a test-only fault)", eff.reason)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(HALT_EXIT_CODE)
        if isinstance(eff, (StorageDropTable, StorageWalkClean, BatchlogRemove)):
            try:
                if isinstance(eff, StorageDropTable):
                    self.engine.drop_table(eff.table_id)
                elif isinstance(eff, StorageWalkClean):  # a record lost only costs a walk
                    completions.run_walk_clean(self.engine, eff)
                else:  # a removal that fails only makes the batch replay once more
                    self.engine.batchlog_remove(eff.batch_id)
            except Exception:
                log.exception("%s failed", type(eff).__name__)
            return
        if isinstance(eff, BatchlogStore) and eff.sync:
            fut = self._loop.run_in_executor(self._fsync_pool, self._complete, eff)
            fut.add_done_callback(lambda f: self._run(self.node.on_storage_done(f.result(), now_ms())))
            return
        self._queue.extend(self.node.on_storage_done(self._complete(eff), now_ms()))

    def _hint_effect(self, eff) -> None:
        """Hints (agora.core.hints) in the engine's hint store. Scans, deletes and unsynced
        puts run at once (an unsynced put is in the WAL, so safe from kill -9, before its
        completion is fed back); a synced put (commitlog_sync: batch) runs on the fsync thread."""
        if isinstance(eff, HintDelete):
            try:
                self.engine.delete_hints(eff.keys)
            except Exception:  # the hint stays and is replayed again: harmless
                log.exception("hint delete failed")
            return
        if isinstance(eff, HintPut) and eff.sync:
            fut = self._loop.run_in_executor(self._fsync_pool, self._complete, eff)
            fut.add_done_callback(lambda f: self._run(self.node.on_storage_done(f.result(), now_ms())))
            return
        self._queue.extend(self.node.on_storage_done(self._complete(eff), now_ms()))

    def _flush_puts(self) -> None:
        """Group commit: all mutations issued since the last flush go down as one batch."""
        self._flush_scheduled = False
        puts, self._puts = self._puts, []
        if not puts:
            return
        sync = any(p.sync for p in puts)
        partitions = [part for p in puts for part in p.partitions]
        if sync:
            fut = self._loop.run_in_executor(self._fsync_pool, self.engine.apply, partitions, True)
            fut.add_done_callback(lambda f: self._puts_done(puts, f.exception()))
            return
        try:
            self.engine.apply(partitions, False)
            error = None
        except Exception as exc:
            log.exception("write batch failed")
            error = exc
        self._puts_done(puts, error)

    def _puts_done(self, puts: list[StoragePut], error) -> None:
        text = None if error is None else f"storage error: {error}"
        t = now_ms()
        effects = []
        for p in puts:
            effects.extend(self.node.on_storage_done(StoragePutDone(p.op_id, text), t))
        self._run(effects)

    # ---- client calls (CQL server, admin verbs) ------------------------------------------

    def _client_call(self, start) -> asyncio.Future:
        client_id = self._next_client
        self._next_client += 1
        fut = self._loop.create_future()
        self._futures[client_id] = fut
        self._feed(lambda t: start(client_id, t))
        return fut

    def write(self, partitions: list[Partition], cl: ConsistencyLevel, write_type: str = "SIMPLE") -> asyncio.Future:
        return self._client_call(lambda cid, t: self.node.client_write(cid, partitions, cl, t, write_type))

    def read(self, command: ReadCommand, cl: ConsistencyLevel) -> asyncio.Future:
        return self._client_call(lambda cid, t: self.node.client_read(cid, command, cl, t))

    def read_range(self, command: RangeCommand, cl: ConsistencyLevel) -> asyncio.Future:
        """A token-range read: the result is a list of live partitions in ring order."""
        return self._client_call(lambda cid, t: self.node.client_read_range(cid, command, cl, t))

    def schema_change(self, change) -> asyncio.Future:
        return self._client_call(lambda cid, t: self.node.client_schema_change(cid, change, t))

    def repair(self, args: dict) -> asyncio.Future:
        """Start an anti-entropy repair; the result is its first report (with its id)."""
        return self._client_call(lambda cid, t: self.node.client_repair(cid, args, t))

    def repair_status(self, session_id: int | None) -> dict | list:
        return self.node.antientropy.status(session_id, now_ms())

    def now_s(self) -> int:
        return now_ms() // 1000

    def timestamp(self) -> int:
        return self.node.next_timestamp(now_ms())


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(cfg: NodeConfig) -> None:
    from agora.cql.processor import Processor
    from agora.runtime.cql_backend import RuntimeBackend
    from agora.runtime.cql_server import CqlServer

    runtime = NodeRuntime(cfg)
    await runtime.start()
    cql = CqlServer(Processor(RuntimeBackend(runtime)), runtime, cfg.listen_address, cfg.native_transport_port)
    await cql.start()
    # Everything allocated so far (schema, ring, code) lives as long as the node: keep it
    # out of the cyclic collector's passes, and collect the young generation less often (a
    # request allocates many short-lived objects and, by design, no reference cycles).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("node %s stopping", cfg.local_id)
    await cql.close()
    await runtime.close()


def run_node(cfg: NodeConfig) -> None:
    """Run one node in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(level=os.environ.get("AGORA_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _install_uvloop()
    asyncio.run(_serve(cfg))
