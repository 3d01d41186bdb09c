"""Hinted handoff: when a replica misses a write, its coordinator keeps the mutation on its
own disk as a hint and hands it over once the replica is back (Dynamo paper section 4.6;
Cassandra's StorageProxy.shouldHint / submitHint and hints/HintsService).

Owns: the decision to hint (`should_hint`: enabled, not ourselves, and the target has not
been down longer than `max_hint_window` by our own failure detector -- past that, repair
takes over), writing hints (`store`), what is pending per target (count and bytes, learned
from the store at start and kept up to date), the counters, and when replay starts: on the
target's status_change UP and every HINTS_FLUSH_PERIOD_MS for live targets with pending
hints. The replay itself is `agora.core.hints.dispatch`.

Deliberately does not know consistency levels: the write coordinator decides which replicas
are hinted (down ones when it sends, unacknowledged ones at its timeout) and whether a
stored hint counts (only for ANY); `store` takes a callback for that.

Durability: a hint is written with the node's commitlog_sync mode. In `batch` mode it is
fsynced before it is reported stored; in `periodic` mode it is in the write-ahead log at
once, so a `kill -9` loses no reported hint, but a power loss may lose those of the last
commitlog_sync_period. A hint written at a write's timeout may be lost if the node dies in
between -- the write was answered without waiting for hints, as in Cassandra.

Counters (`stats`): stored; replayed (acknowledged by the target, then deleted); dropped
(deleted unsent at replay: target replaced, table gone, older than gc_grace); expired (not
stored because the target had been down longer than max_hint_window -- Cassandra's
"hints not stored"); failed (a hint write the store refused).
"""

from __future__ import annotations

from collections.abc import Callable

from agora.core.config import NodeConfig
from agora.core.effects import (HintDelete, HintIndex, HintIndexDone, HintPut, HintPutDone,
                                HintScanDone, Log, SetTimer)
from agora.core.hints import hint as records
from agora.core.hints.dispatch import HintDispatcher
from agora.core.hints.messages import HintRsp
from agora.core.hints.throttle import Throttle
from agora.core.types import NodeId, Partition

# How often replay is (re)started for every live target with pending hints, in
# milliseconds: Cassandra's hints_flush_period. Catches targets whose UP we missed and
# sessions that ended on a failure.
HINTS_FLUSH_PERIOD_MS = 10_000
FLUSH_TIMER = ("hints", "flush")

# The gc_grace of a hint whose table we cannot look up (never expected: the coordinator
# has just checked the table exists): Cassandra's default gc_grace_seconds, 10 days.
DEFAULT_GC_GRACE_S = 864_000


class HintService:
    def __init__(self, local: NodeId, cfg: NodeConfig, generation: int, *,
                 is_alive: Callable[[NodeId], bool], host_id_of: Callable[[NodeId], str | None],
                 gc_grace_of: Callable[[bytes], int | None], knows_table: Callable[[bytes], bool],
                 next_req_id: Callable[[], int]):
        self.local = local
        self.enabled = cfg.hinted_handoff_enabled
        self.window_ms = cfg.max_hint_window
        self.sync = cfg.commitlog_sync == "batch"
        self.generation = generation
        self.is_alive = is_alive
        self.host_id_of = host_id_of
        self.gc_grace_of = gc_grace_of
        self._seq = 0
        self._next_op = 0
        self._started_ms = 0
        self._down_since: dict[NodeId, int] = {}
        self._puts: dict[int, tuple[NodeId, int, Callable[[], list] | None]] = {}
        self._index_op: int | None = None
        self.pending: dict[NodeId, list[int]] = {}  # target -> [count, bytes]
        self.stats = {"stored": 0, "replayed": 0, "dropped": 0, "expired": 0, "failed": 0}
        self.dispatcher = HintDispatcher(self, Throttle(cfg.hinted_handoff_throttle),
                                         cfg.write_request_timeout, is_alive=is_alive,
                                         host_id_of=host_id_of, knows_table=knows_table,
                                         next_req_id=next_req_id, next_op=self._op)

    def _op(self) -> int:
        self._next_op += 1
        return self._next_op

    def start(self, now_ms: int) -> list:
        """Learn what the store holds from the last run; arm the periodic replay."""
        self._started_ms = now_ms
        self._index_op = self._op()
        return [HintIndex(self._index_op), SetTimer(FLUSH_TIMER, HINTS_FLUSH_PERIOD_MS)]

    # ---- storing -------------------------------------------------------------------------

    def should_hint(self, target: NodeId, now_ms: int) -> bool:
        """Whether a write `target` misses now gets a hint (Cassandra's shouldHint). A peer
        we have not seen since we started counts as down since then, as in Cassandra."""
        if not self.enabled or target == self.local:
            return False
        if self.is_alive(target):
            return True
        down_ms = now_ms - self._down_since.get(target, self._started_ms)
        if down_ms > self.window_ms:
            self.stats["expired"] += 1
            return False
        return True

    def store(self, target: NodeId, partitions: tuple[Partition, ...], now_ms: int,
              on_stored: Callable[[], list] | None = None) -> list:
        """Write a hint of `partitions` for `target`; `on_stored()` runs once it is stored.
        The caller has asked `should_hint` first."""
        self._seq += 1
        if self._seq > records.MAX_SEQ:  # a new generation comes with the next restart
            self._seq, self.generation = 1, self.generation + 1
        graces = [self.gc_grace_of(p.table_id) for p in partitions]
        gc_grace_s = min((g for g in graces if g is not None), default=DEFAULT_GC_GRACE_S)
        key, value = records.encode(target, self.host_id_of(target), now_ms, self.generation,
                                    self._seq, gc_grace_s, partitions)
        op = self._op()
        self._puts[op] = (target, len(value), on_stored)
        return [HintPut(op, ((key, value),), self.sync)]

    def forget(self, hint: records.Hint, outcome: str) -> list:
        """HintBook: a hint leaves the store, replayed or dropped."""
        self.stats[outcome] += 1
        entry = self.pending.get(hint.target)
        if entry is not None:
            entry[0] = max(0, entry[0] - 1)
            entry[1] = max(0, entry[1] - hint.size)
            if entry[0] == 0:
                del self.pending[hint.target]
        return [HintDelete((hint.key,))]

    def pending_by_target(self) -> dict[NodeId, dict[str, int]]:
        """For status displays: {target: {"count": n, "bytes": b}} for targets with hints."""
        return {t: {"count": c, "bytes": b} for t, (c, b) in sorted(self.pending.items()) if c}

    def _add_pending(self, target: NodeId, count: int, size: int) -> None:
        entry = self.pending.setdefault(target, [0, 0])
        entry[0] += count
        entry[1] += size

    # ---- inputs --------------------------------------------------------------------------

    def owns_done(self, done) -> bool:
        return isinstance(done, (HintPutDone, HintScanDone, HintIndexDone))

    def on_storage_done(self, done, now_ms: int) -> list:
        if isinstance(done, HintScanDone):
            return self.dispatcher.on_scan_done(done, now_ms)
        if isinstance(done, HintIndexDone):
            return self._on_index(done, now_ms)
        target, size, on_stored = self._puts.pop(done.op_id)
        if done.error is not None:
            self.stats["failed"] += 1
            return [Log("error", f"hints: could not store a hint for {target}: {done.error}")]
        self.stats["stored"] += 1
        self._add_pending(target, 1, size)
        return on_stored() if on_stored is not None else []

    def _on_index(self, done: HintIndexDone, now_ms: int) -> list:
        if done.op_id != self._index_op:
            return []
        self._index_op = None
        if done.error is not None:
            return [Log("error", f"hints: could not read the hint store: {done.error}")]
        for raw_target, count, size in done.targets:
            self._add_pending(records.target_of_prefix(raw_target), count, size)
        return self._begin_live(now_ms)

    def on_status_change(self, node: NodeId, status: str, now_ms: int) -> list:
        if status == "UP":
            self._down_since.pop(node, None)
            return self.dispatcher.begin(node, now_ms) if node in self.pending else []
        self._down_since.setdefault(node, now_ms)
        return self.dispatcher.end(node, "target is down")

    def on_response(self, source: NodeId, rsp: HintRsp, now_ms: int) -> list:
        return self.dispatcher.on_response(source, rsp, now_ms)

    def on_timer(self, timer_id: tuple, now_ms: int) -> list:
        if timer_id == FLUSH_TIMER:
            return [SetTimer(FLUSH_TIMER, HINTS_FLUSH_PERIOD_MS), *self._begin_live(now_ms)]
        return self.dispatcher.on_timer(timer_id, now_ms)

    def _begin_live(self, now_ms: int) -> list:
        out: list = []
        for target in sorted(self.pending):
            if self.pending[target][0] and self.is_alive(target):
                out.extend(self.dispatcher.begin(target, now_ms))
        return out
