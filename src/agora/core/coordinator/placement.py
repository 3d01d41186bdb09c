"""What a coordinator needs to know about the cluster for one request: the replicas of a
partition, their datacenters, who is alive, and the timeouts. `Node` implements it; the
coordinator machines only read it, so they can be driven by hand in unit tests.
"""

from __future__ import annotations

from typing import Protocol

from agora.core.coordinator.speculation import Speculation
from agora.core.types import NodeId


class Placement(Protocol):
    local: NodeId
    local_dc: str

    def replicas_for(self, table_id: bytes, key: bytes) -> tuple[tuple[NodeId, ...], dict[str, int] | None, int]:
        """(replicas in ring order, the keyspace's per-DC factors or None for SimpleStrategy,
        the total replication factor). Raises InvalidRequest for an unknown table."""

    def dc_of(self, node: NodeId) -> str: ...

    def is_alive(self, node: NodeId) -> bool: ...

    def serves_reads(self, node: NodeId) -> bool:
        """Alive and allowed to serve data: not a replica back from a downtime longer than
        gc_grace that has not been checked or rebuilt yet (agora.core.tombstones)."""

    def next_req_id(self) -> int: ...

    def observe_latency(self, node: NodeId, ms: float) -> None:
        """A replica answered (or failed to answer) a read after `ms`."""

    def proximity(self, node: NodeId) -> tuple:
        """Sort key for choosing read replicas: smaller is preferred."""

    def truncated_at(self, table_id: bytes) -> int | None:
        """When TRUNCATE last emptied the table (µs), if ever: a coordinator drops what it
        covers from replicas' answers too, so a replica that has not heard of it yet (back
        from a restart before its schema pull) brings nothing back."""

    def read_options(self, table_id: bytes) -> tuple[Speculation, bool]:
        """The table's `speculative_retry` policy, and whether its reads repair the replicas
        they find stale (`read_repair = 'BLOCKING'`, the default) or only answer with the
        merged version (`'NONE'`)."""

    def elapsed_ms(self, now_ms: int) -> int:
        """The clock request deadlines are measured on: the driver's monotonic clock, which
        moves at the real pace whatever is done to the wall clock, so a step of `now_ms` (an
        NTP correction) moves no request's timeout, as with a runtime timer per request.
        Where the driver gives none, `now_ms` itself."""
