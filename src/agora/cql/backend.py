"""What the CQL layer needs from the node it runs in. The runtime implements it (over the
coordinator) and tests can implement it over the simulator; the statement layer knows
nothing else of the node.

Owns: the interface only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agora.core.types import ConsistencyLevel, Partition, RangeCommand, ReadCommand, ReadPage


@dataclass(frozen=True)
class NodeView:
    """One node as system.local / system.peers(_v2) describe it."""

    node_id: str  # internode "ip:port"
    address: str  # ip
    internode_port: int
    native_address: str
    native_port: int
    dc: str
    rack: str
    host_id: str  # uuid text
    tokens: tuple[int, ...]
    schema_version: str | None  # uuid text
    release_version: str
    up: bool


@dataclass(frozen=True)
class ClusterView:
    cluster_name: str
    local: NodeView
    peers: tuple[NodeView, ...]  # every other known node, sorted by node_id


class Backend(Protocol):
    @property
    def schema(self) -> Any:
        """The node's current `agora.core.schema.model.Schema`."""

    def cluster_view(self) -> ClusterView: ...

    def timestamp(self) -> int:
        """A fresh write timestamp in microseconds (never goes backwards)."""

    def now_s(self) -> int: ...

    async def write(self, partitions: list[Partition], cl: ConsistencyLevel, write_type: str = "SIMPLE") -> None:
        """Coordinate a write; raises Unavailable / WriteTimeout / WriteFailure / InvalidRequest."""

    async def read(self, command: ReadCommand, cl: ConsistencyLevel) -> Partition | None | ReadPage:
        """Coordinate a single-partition read; returns the live view (what a client sees),
        or with command.limit_rows a ReadPage of it (complete up to its more_after)."""

    async def read_range(self, command: RangeCommand, cl: ConsistencyLevel) -> list[Partition]:
        """Coordinate a token-range read; live views in ring order, at most
        command.limit_rows live rows (when set)."""

    async def schema_change(self, change) -> str:
        """Apply `change(schema, ts) -> Schema` cluster-wide; returns the new schema version."""

    async def wait_schema_agreement(self, timeout_s: float) -> bool:
        """Wait until every live node reports our schema version."""
