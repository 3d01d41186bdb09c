"""Effects: what a protocol machine asks its driver (the asyncio runtime or the simulator)
to do, and the completions the driver feeds back.

Owns: the vocabulary between pure protocol code and I/O. A machine returns a list of
effects from each input; it never performs I/O itself (DESIGN.md section 2). Completions
(`StoragePutDone`, `StorageGetDone`, `TimerFired`) come back into `Node` as inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agora.core.types import NodeId, Partition, ReadCommand


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
class TimerFired:
    timer_id: Any
