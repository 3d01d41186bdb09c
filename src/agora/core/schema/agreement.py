"""Schema agreement: every node holds the whole schema; a change made on any node spreads to
all of them (Cassandra's MigrationManager / schema pull on version mismatch).

Owns: when to push, when to pull, when to persist. A local change is persisted, pushed to
every live peer, and its new version is gossiped. A peer whose gossiped version differs
from ours is asked for its schema (at most once per PULL_INTERVAL_MS per peer); schemas
merge last-write-wins per object (`Schema.merge`), so all nodes converge on one version
whatever order changes arrive in.
"""

from __future__ import annotations

import msgpack

from agora.core.effects import Event, Log, PersistMeta, Send
from agora.core.errors import ProtocolError
from agora.core.messages import SchemaPullReq, SchemaPush, SchemaVersion
from agora.core.schema.model import Schema
from agora.core.types import NodeId

PULL_INTERVAL_MS = 1_000  # re-ask a disagreeing peer at most this often
SCHEMA_META_KEY = "schema"


class SchemaKeeper:
    def __init__(self, schema: Schema):
        self.schema = schema
        self._last_pull_ms: dict[NodeId, int] = {}
        # versions peers reported straight back after our push; gossip catches up a round later
        self.reported: dict[NodeId, str] = {}

    @property
    def version(self) -> str:
        return str(self.schema.version())

    def persist(self) -> PersistMeta:
        return PersistMeta(SCHEMA_META_KEY, msgpack.packb(self.schema.to_plain(), use_bin_type=True))

    def change(self, new_schema: Schema, peers: list[NodeId]) -> list:
        """Adopt a locally made change and tell everyone."""
        merged = self.schema.merge(new_schema)
        self.schema = merged
        push = SchemaPush(merged.to_plain())
        return [self.persist(), *(Send(p, push) for p in peers),
                Event("schema_change", self.version)]

    def on_push(self, source: NodeId, msg: SchemaPush) -> list:
        try:
            theirs = Schema.from_plain(msg.schema)
        except ProtocolError as exc:
            return [Log("warning", f"bad schema from {source}: {exc}")]
        merged = self.schema.merge(theirs)
        if merged.version() == self.schema.version():
            return [Send(source, SchemaVersion(self.version))]
        self.schema = merged
        return [self.persist(), Event("schema_change", self.version), Send(source, SchemaVersion(self.version))]

    def on_version(self, source: NodeId, msg: SchemaVersion) -> list:
        self.reported[source] = msg.version
        return []

    def peer_version(self, peer: NodeId, gossiped: str | None) -> str | None:
        """A peer's schema version: what it reported after our last push, if that matches
        ours, else what gossip says."""
        reported = self.reported.get(peer)
        return reported if reported == self.version else gossiped

    def on_pull(self, source: NodeId, msg: SchemaPullReq) -> list:
        return [Send(source, SchemaPush(self.schema.to_plain()))]

    def on_peer_version(self, peer: NodeId, version: str | None, alive: bool, now_ms: int) -> list:
        """Gossip told us `peer`'s schema version; pull if it differs from ours."""
        if version is None or not alive or version == self.version:
            return []
        last = self._last_pull_ms.get(peer)
        if last is not None and now_ms - last < PULL_INTERVAL_MS:
            return []
        self._last_pull_ms[peer] = now_ms
        return [Send(peer, SchemaPullReq(0))]
