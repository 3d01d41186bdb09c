"""The CQL layer's view of a real node (`agora.cql.backend.Backend` over `NodeRuntime`): the
coordinator calls, the schema, and what system.local / system.peers need from gossip.

Owns: translation only — from gossip application states to NodeView records, and from
awaitables to the runtime's futures. No protocol logic.
"""

from __future__ import annotations

import asyncio

from agora.cql.backend import ClusterView, NodeView
from agora.core.node import RELEASE_VERSION
from agora.core.types import ConsistencyLevel, Partition, RangeCommand, ReadCommand, ReadPage

SCHEMA_AGREEMENT_POLL_S = 0.02  # how often a DDL re-checks that every live node has its schema


class RuntimeBackend:
    def __init__(self, runtime):
        self.rt = runtime

    @property
    def schema(self):
        return self.rt.node.schema.schema

    def host_uniq(self) -> bytes:
        return bytes.fromhex(self.rt.node.identity.host_id.replace("-", ""))[:4]

    def timestamp(self) -> int:
        return self.rt.timestamp()

    def now_s(self) -> int:
        return self.rt.now_s()

    async def write(self, partitions: list[Partition], cl: ConsistencyLevel, write_type: str = "SIMPLE") -> None:
        await self.rt.write(partitions, cl, write_type)

    async def read(self, command: ReadCommand, cl: ConsistencyLevel) -> Partition | None | ReadPage:
        return await self.rt.read(command, cl)

    async def read_range(self, command: RangeCommand, cl: ConsistencyLevel) -> list[Partition]:
        return await self.rt.read_range(command, cl)

    async def schema_change(self, change) -> str:
        return await self.rt.schema_change(change)

    async def wait_schema_agreement(self, timeout_s: float) -> bool:
        """Poll until every live peer gossips our schema version (the driver would otherwise
        poll system.peers itself for up to 10 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            node = self.rt.node
            mine = node.schema.version
            g = node.gossiper
            if all(node.schema.peer_version(n, g.app_state(n, "SCHEMA")) == mine
                   for n in g.live_nodes() if n != node.local):
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(SCHEMA_AGREEMENT_POLL_S)

    def cluster_view(self) -> ClusterView:
        node = self.rt.node
        peers = tuple(self._view(n) for n in sorted(set(node.gossiper.known_nodes()) | set(node._infos))
                      if n != node.local)
        return ClusterView(self.rt.cfg.cluster_name, self._view(node.local), peers)

    def _view(self, node_id: str) -> NodeView:
        node = self.rt.node
        g = node.gossiper
        address, _, port = node_id.rpartition(":")
        native = g.app_state(node_id, "NATIVE_ADDRESS_AND_PORT") or ""
        n_addr, _, n_port = native.rpartition(":")
        info = node._infos.get(node_id)
        tokens = info.tokens if info else tuple(int(t) for t in (g.app_state(node_id, "TOKENS") or "").split(",") if t)
        return NodeView(
            node_id=node_id, address=address, internode_port=int(port),
            native_address=n_addr or address, native_port=int(n_port or self.rt.cfg.native_transport_port),
            dc=g.app_state(node_id, "DC") or (info.dc if info else ""),
            rack=g.app_state(node_id, "RACK") or (info.rack if info else ""),
            host_id=g.app_state(node_id, "HOST_ID") or (node.identity.host_id if node_id == node.local else ""),
            tokens=tokens, schema_version=node.schema.peer_version(node_id, g.app_state(node_id, "SCHEMA"))
            if node_id != node.local else node.schema.version,
            release_version=g.app_state(node_id, "RELEASE_VERSION") or RELEASE_VERSION,
            up=node.is_alive(node_id))
