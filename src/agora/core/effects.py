"""Effects: what a protocol machine asks its driver (the asyncio runtime or the simulator)
to do, and the completions the driver feeds back.

Owns: the vocabulary between pure protocol code and I/O. A machine returns a list of
effects from each input; it never performs I/O itself (DESIGN.md section 2). Completions
(`StoragePutDone`, `StorageGetDone`, `StorageScanDone`, `TimerFired`) come back into `Node`
as inputs.

One effect needs a little more than I/O from its driver: `StorageScan` must cut the engine's
scan at a position and a size, and both drivers must cut it identically (the simulator's
answer must be the real node's). That shared, pure part is `StorageScan.token_range` and
`StorageScan.collect`; a driver's whole job is
`eff.collect(engine.scan(eff.table_id, *eff.token_range()))`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agora.core.types import MIN_TOKEN, NodeId, Partition, ReadCommand, Token


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to `target`. Sending to ourselves is delivered locally by the driver."""

    target: NodeId
    message: Any


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer client request `client_id` with `result` (a value or an AgoraError)."""

    client_id: int
    result: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire `TimerFired(timer_id)` after `delay_ms`. Setting an existing id re-arms it."""

    timer_id: Any
    delay_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: Any


@dataclass(frozen=True, slots=True)
class StoragePut:
    """Merge `partitions` into local storage as one batch, then report StoragePutDone(op_id).
    `sync=True` means fsync before reporting (commitlog_sync: batch)."""

    op_id: int
    partitions: tuple[Partition, ...]
    sync: bool = False


@dataclass(frozen=True, slots=True)
class StorageGet:
    """Read `command` from local storage, then report StorageGetDone(op_id, partition)."""

    op_id: int
    command: ReadCommand


@dataclass(frozen=True, slots=True)
class StorageScan:
    """Read from local storage the whole partitions of `table_id` whose position lies after
    (start_token, start_key) and whose token is <= end_token, then report StorageScanDone.

    Positions are ordered by (token, partition key bytes), as Cassandra orders decorated keys;
    start_key None means "after every key of start_token". The range wraps like a Cassandra
    range when token_range() does (its start >= its end). The scan returns partitions whole,
    canonical, tombstones included, in ring order from the start, and stops after the
    partition that brings the stored rows it returns to `max_rows` (a partition counts its
    clustering rows plus its static row, at least 1); it never stops inside a group of
    partitions that share one token, so "continue after the last partition" is exact."""

    op_id: int
    table_id: bytes
    start_token: Token
    start_key: bytes | None
    end_token: Token
    max_rows: int

    def token_range(self) -> tuple[Token, Token]:
        """(exclusive start, inclusive end) to hand `StorageEngine.scan`."""
        if self.start_key is None or self.start_token == MIN_TOKEN:  # no key has MIN_TOKEN
            return self.start_token, self.end_token
        return self.start_token - 1, self.end_token

    def collect(self, scanned: Iterable[tuple[Token, Partition]]) -> StorageScanDone:
        """The completion, from what `engine.scan(table_id, *token_range())` yields (in the
        engine's key order: token, then key length, then key)."""
        lo, _ = self.token_range()
        taken: list[tuple[Token, Partition]] = []
        rows, last_token = 0, None
        for token, p in scanned:
            if rows >= self.max_rows and token != last_token:
                return StorageScanDone(self.op_id, _ring_order(taken, lo), False)
            if token == self.start_token and self.start_key is not None and p.key <= self.start_key:
                continue
            taken.append((token, p))
            rows += max(1, len(p.rows) + (p.static is not None))
            last_token = token
        return StorageScanDone(self.op_id, _ring_order(taken, lo), True)


def _ring_order(taken: list[tuple[Token, Partition]], lo: Token) -> tuple:
    """Position order from `lo` clockwise: tokens after lo first (a wrapping scan's second
    part comes after the first), then token, then key bytes."""
    return tuple(sorted(taken, key=lambda tp: (tp[0] <= lo, tp[0], tp[1].key)))


@dataclass(frozen=True, slots=True)
class PersistMeta:
    """Durably store a piece of node metadata (schema, tokens, generation) under `key`."""

    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the node's log."""

    level: str  # "debug" | "info" | "warning" | "error"
    text: str


@dataclass(frozen=True, slots=True)
class Event:
    """Something observers (CQL server pushing EVENTs, metrics, tests) may care about:
    kind is e.g. "status_change" (UP/DOWN), "topology_change", "schema_change"."""

    kind: str
    detail: Any


# ---- completions fed back into the machines -------------------------------------------


@dataclass(frozen=True, slots=True)
class StoragePutDone:
    op_id: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StorageGetDone:
    op_id: int
    partition: Partition | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StorageScanDone:
    """`partitions`: (token, partition) in position order; `exhausted`: the scan reached
    end_token (False: it stopped at max_rows and more may follow the last partition)."""

    op_id: int
    partitions: tuple[tuple[Token, Partition], ...]
    exhausted: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer_id: Any
