"""One Agora node as a pure state machine: routes every input (a decoded message, a storage
completion, a timer, a client request) to the machine that owns it and returns their
effects. It has no protocol logic of its own beyond that routing and the small amount of
glue between gossip and the ring (DESIGN.md section 3: "node.py routes inputs").

Inputs: `start`, `on_message`, `on_timer`, `on_storage_done`, and the client entry points
`client_write`, `client_read`, `client_read_range`, `client_schema_change` that the CQL
server and the admin verbs call, and `client_repair` (anti-entropy, agora.core.antientropy). Outputs: effects (agora.core.effects).
A LOGGED batch (`client_write(..., write_type="BATCH")`) goes through the batchlog first
(agora.core.batchlog). For repair: `needs_repair` and `mark_repaired()`, the interface of the
downtime check against zombies (agora.core.tombstones.downtime, docs/tombstones.md).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

import msgpack
from dataclasses import dataclass

from agora.core.antientropy.messages import REPAIR_MESSAGES
from agora.core.antientropy.service import REPAIR_OP_BASE, AntiEntropy
from agora.core.batchlog.service import MESSAGES as BATCHLOG_MESSAGES, Batchlog
from agora.core.config import NodeConfig
from agora.core.coordinator.range_read import RangeReadCoordinator
from agora.core.coordinator.read import ReadCoordinator
from agora.core.coordinator.speculation import DEFAULT as DEFAULT_SPECULATION
from agora.core.coordinator.speculation import Speculation, parse_speculative_retry
from agora.core.coordinator.write import WriteCoordinator
from agora.core.effects import (Event, PersistMeta, Reply, SetTimer, StorageGetDone,
                                StoragePutDone, StorageScanDone)
from agora.core.errors import InvalidRequest, unknown_table_error
from agora.core.limits import MAX_MUTATION_BYTES
from agora.core.hints.messages import HintReq, HintRsp
from agora.core.hints.service import HintService
from agora.core.membership.gossip import Gossiper
from agora.core.membership import messages as gm
from agora.core.messages import (MutationReq, MutationRsp, RangeReadReq, RangeReadRsp, ReadReq,
                                 ReadRsp, SchemaPullReq, SchemaPush, SchemaVersion)
from agora.core.replica.replica import Replica
from agora.core.ring.partitioner import token_for_key
from agora.core.ring.strategies import strategy_from_options
from agora.core.ring.token_ring import NodeInfo, TokenRing
from agora.core.schema.agreement import SCHEMA_META_KEY, SchemaKeeper
from agora.core.schema.model import Schema
from agora.core.tombstones.keeper import MESSAGES as TOMBSTONE_MESSAGES, TAKES_ALL, Tombstones
from agora.core.plain import partition_size_bound
from agora.core.types import ConsistencyLevel, NodeId, Partition, RangeCommand, ReadCommand, Token

PEERS_META_KEY = "peers"  # the ring as last known: {node: [dc, rack, tokens]}
GENERATION_META_KEY = "generation"  # the last gossip generation this node used
RELEASE_VERSION = "5.0.0"  # what drivers and cqlsh expect to see (cql-compat.md 2.1)
HOUSEKEEPING_INTERVAL_MS = 1_000  # schema agreement checks, load gossip
LATENCY_EWMA_WEIGHT = 0.2  # weight of the newest sample in a replica's latency score


@dataclass
class LocalIdentity:
    """What a node keeps across restarts (the runtime persists it)."""

    host_id: str
    tokens: tuple[int, ...]
    generation: int


class Node:
    def __init__(self, cfg: NodeConfig, identity: LocalIdentity, schema: Schema, rng: random.Random,
                 saved_peers: dict[NodeId, NodeInfo] | None = None,
                 meta: dict[str, bytes] | None = None, now_s: int = 0):
        """`meta` (what the last run persisted) and `now_s` (the clock at boot) serve the
        downtime check of agora.core.tombstones; `restore` passes them."""
        self.cfg = cfg
        self.local: NodeId = cfg.local_id
        self.local_dc = cfg.dc
        self.identity = identity
        self.rng = rng
        self.gossiper = Gossiper(self.local, cfg.cluster_name, cfg.seed_ids(), identity.generation, rng,
                                 phi_convict_threshold=cfg.phi_convict_threshold,
                                 interval_ms=cfg.gossip_interval)
        self.schema = SchemaKeeper(schema)
        self.replica = Replica(self._knows_table, sync_writes=cfg.commitlog_sync == "batch",
                               truncated_at=self.truncated_at)
        self.hints = HintService(self.local, cfg, identity.generation, is_alive=self.is_alive,
                                 host_id_of=lambda n: self.gossiper.app_state(n, "HOST_ID"),
                                 gc_grace_of=self._gc_grace_of, knows_table=self._knows_table,
                                 next_req_id=self.next_req_id)
        self.writes = WriteCoordinator(self, cfg.write_request_timeout, self.hints)
        self.reads = ReadCoordinator(self, cfg.read_request_timeout)
        self.range_reads = RangeReadCoordinator(self, cfg.read_request_timeout)
        self.antientropy = AntiEntropy(self, cfg.repair_interval, sync_writes=cfg.commitlog_sync == "batch")
        # peers known from the last run: the ring is whole from the first request on, even
        # before gossip has reached them (they count as down until it does)
        self._saved_peers = {n: i for n, i in (saved_peers or {}).items() if n != self.local}
        self._infos: dict[NodeId, NodeInfo] = {**self._saved_peers,
                                               self.local: NodeInfo(cfg.dc, cfg.rack, identity.tokens)}
        self.ring = TokenRing(dict(self._infos))
        self._strategies: dict[str, tuple] = {}
        self._next_req = 1
        self._last_ts_us = 0
        self._latency_score: dict[NodeId, float] = {}
        self._read_options: dict[bytes, tuple] = {}  # table id -> (TableDef, read_options())
        # the driver's monotonic clock (ms), for deadlines; None: now_ms stands in (tests)
        self.monotonic_ms: Callable[[], int] | None = None
        self.load_bytes = 0
        # tombstone GC, purge guards, the downtime check (tombstones/); LOGGED batches (batchlog/)
        self.tombstones = Tombstones(self, meta or {}, now_s)
        self.batchlog = Batchlog(self, self._apply_batch, rng)

    # ---- Placement (read by the coordinators) --------------------------------------

    def next_req_id(self) -> int:
        self._next_req += 1
        return self._next_req

    def dc_of(self, node: NodeId) -> str:
        info = self._infos.get(node)
        return info.dc if info else ""

    def is_alive(self, node: NodeId) -> bool:
        return node == self.local or self.gossiper.is_alive(node)

    def proximity(self, node: NodeId) -> tuple:
        locality = 0 if node == self.local else (1 if self.dc_of(node) == self.local_dc else 2)
        return (locality, self._latency_score.get(node, 0.0), node)

    def observe_latency(self, node: NodeId, ms: float) -> None:
        old = self._latency_score.get(node)
        self._latency_score[node] = ms if old is None else old + LATENCY_EWMA_WEIGHT * (ms - old)

    def replicas_for(self, table_id: bytes, key: bytes):
        table = self.schema.schema.table_by_id(table_id)
        if table is None:
            raise InvalidRequest(unknown_table_error(table_id))
        strategy, per_dc = self._strategy(table.keyspace)
        return strategy.replicas(self.ring, token_for_key(key)), per_dc, strategy.total_rf()

    def ring_replicas(self, table_id: bytes) -> tuple[tuple[Token, ...], tuple[tuple[NodeId, ...], ...],
                                                     dict[str, int] | None, int]:
        """For range reads: the ring's sorted tokens, the replicas of each ring position,
        the keyspace's per-DC factors (None for SimpleStrategy) and its total RF."""
        table = self.schema.schema.table_by_id(table_id)
        if table is None:
            raise InvalidRequest(unknown_table_error(table_id))
        strategy, per_dc = self._strategy(table.keyspace)
        return self.ring.sorted_tokens, strategy.replica_table(self.ring), per_dc, strategy.total_rf()

    def _strategy(self, keyspace: str):
        ks = self.schema.schema.keyspace(keyspace)
        if ks is None:
            raise InvalidRequest(f"Keyspace '{keyspace}' does not exist")
        hit = self._strategies.get(keyspace)
        if hit is not None and hit[0] is ks:  # the same definition as last time (schemas are immutable)
            return hit[2], hit[3]
        cache_key = tuple(sorted(ks.replication.items()))
        if hit is None or hit[1] != cache_key:
            strategy = strategy_from_options(dict(ks.replication))
            per_dc = strategy.dc_replication_factors() if strategy.datacenter_aware else None
        else:  # a new definition with the same replication keeps its strategy (and caches)
            strategy, per_dc = hit[2], hit[3]
        self._strategies[keyspace] = (ks, cache_key, strategy, per_dc)
        return strategy, per_dc

    def _knows_table(self, table_id: bytes) -> bool:
        return self.schema.schema.table_by_id(table_id) is not None

    def truncated_at(self, table_id: bytes) -> int | None:
        """When TRUNCATE last emptied the table (µs), if ever (`Schema.truncated_at`)."""
        return self.schema.schema.truncated_at(table_id)

    def elapsed_ms(self, now_ms: int) -> int:
        """The clock request deadlines are measured on (Placement.elapsed_ms)."""
        return now_ms if self.monotonic_ms is None else self.monotonic_ms()

    def read_options(self, table_id: bytes) -> tuple[Speculation, bool]:
        """The table's speculative_retry policy and read_repair (Placement.read_options),
        parsed once per table definition (a schema change makes a new one)."""
        table = self.schema.schema.table_by_id(table_id)
        cached = self._read_options.get(table_id)
        if cached is not None and cached[0] is table:
            return cached[1]
        if table is None:
            self._read_options.pop(table_id, None)
            return DEFAULT_SPECULATION, True
        try:
            speculation = parse_speculative_retry(table.option("speculative_retry"))
        except Exception:  # a peer's or a stored value this version cannot read: the default
            speculation = DEFAULT_SPECULATION
        options = (speculation, table.option("read_repair") != "NONE")
        self._read_options[table_id] = (table, options)
        return options

    def _gc_grace_of(self, table_id: bytes) -> int | None:
        table = self.schema.schema.table_by_id(table_id)
        return None if table is None else table.option("gc_grace_seconds")

    # ---- timestamps ----------------------------------------------------------------

    def next_timestamp(self, now_ms: int) -> int:
        """A write timestamp in microseconds that never goes backwards on this node, even if
        the wall clock does (a hybrid logical clock's physical part)."""
        ts = max(now_ms * 1000, self._last_ts_us + 1)
        self._last_ts_us = ts
        return ts

    # ---- lifecycle -----------------------------------------------------------------

    def start(self, now_ms: int, native_address: str) -> list:
        g = self.gossiper
        for key, value in (("DC", self.cfg.dc), ("RACK", self.cfg.rack),
                           ("HOST_ID", self.identity.host_id),
                           ("TOKENS", ",".join(str(t) for t in self.identity.tokens)),
                           ("RELEASE_VERSION", RELEASE_VERSION),
                           ("NATIVE_ADDRESS_AND_PORT", native_address),
                           ("SCHEMA", self.schema.version), ("LOAD", str(self.load_bytes)),
                           ("STATUS", "NORMAL")):
            g.set_local_state(key, value)
        return [*g.start(now_ms), SetTimer(("node", "housekeeping"), HOUSEKEEPING_INTERVAL_MS),
                *self.hints.start(now_ms), *self.antientropy.start(now_ms),
                *self.tombstones.start(now_ms), *self.batchlog.start(now_ms)]

    def shutdown(self, now_ms: int) -> list:
        """A graceful stop: tell live peers we are going, so they mark us down at once."""
        return self.gossiper.shutdown(now_ms) + self.tombstones.shutdown(now_ms)

    # ---- inputs --------------------------------------------------------------------

    def on_message(self, source: NodeId, msg, now_ms: int) -> list:
        if self.tombstones.downtime.state not in TAKES_ALL:  # a replica back from a long
            refused = self.tombstones.refuse(source, msg)  # downtime may refuse requests
            if refused is not None:
                return refused
        route = _ROUTE_BY_TYPE.get(type(msg))
        if route is None:
            route = _route_of(msg)
        return route(self, source, msg, now_ms)

    # One handler per kind of message, tried in the order of `_ROUTES` (first match wins).

    def _on_mutation_rsp(self, source: NodeId, msg: MutationRsp, now_ms: int) -> list:
        # Request ids come from one counter (next_req_id), so one component owns each.
        if self.writes.owns(msg.req_id):  # the usual: an answer to a client's write
            return self.batchlog.after_writes(self.writes.on_response(source, msg))
        return (self.reads.on_repair_ack(source, msg, now_ms)
                + self.range_reads.on_repair_ack(source, msg, now_ms)
                + self.batchlog.on_mutation_rsp(source, msg))

    def _on_gossip(self, source: NodeId, msg, now_ms: int) -> list:
        return self._after_gossip(self.gossiper.on_message(source, msg, now_ms), now_ms)

    def _on_schema_push(self, source: NodeId, msg: SchemaPush, now_ms: int) -> list:
        before = self.schema.schema
        return self.schema.on_push(source, msg) + self._schema_gossip() + self._truncated_since(before, now_ms)

    def _truncated_since(self, before, now_ms: int) -> list:
        """Tables a schema change truncated (anew) go to tombstone compaction at once: the
        data the truncation covers leaves the disk without waiting for the next pass. And
        this node's write clock moves past the truncation, so a write it coordinates once
        it knows of the truncation (as every node does when TRUNCATE answers) is never
        covered by it, whatever the clocks' skew."""
        after = self.schema.schema
        if after is before:
            return []
        fresh = {tid: ts for tid, ts in after.truncations().items() if ts != before.truncated_at(tid)}
        if not fresh:
            return []
        self._last_ts_us = max(self._last_ts_us, *fresh.values())
        return self.tombstones.compact_soon(sorted(fresh), now_ms)

    def on_timer(self, timer_id, now_ms: int) -> list:
        kind = timer_id[0]
        if kind == "write":
            return self.batchlog.after_writes(self.writes.on_timer(now_ms))
        if kind == "tombstones":
            return self.tombstones.on_timer(timer_id, now_ms)
        if kind == "batchlog":
            return self.batchlog.on_timer(timer_id, now_ms)
        if kind == "hints":
            return self.hints.on_timer(timer_id, now_ms)
        if kind in ("read", "speculate"):
            return self.reads.on_timer(timer_id, now_ms)
        if kind == "range":
            return self.range_reads.on_timer(timer_id, now_ms)
        if kind == "antientropy":
            return self.antientropy.on_timer(timer_id, now_ms)
        if kind == "gossip":
            return self._after_gossip(self.gossiper.on_timer(timer_id, now_ms), now_ms)
        if kind == "node":
            return self._housekeeping(now_ms)
        return []

    def on_storage_done(self, done, now_ms: int) -> list:
        kind = type(done)
        if kind is StoragePutDone or kind is StorageGetDone:  # the usual: a replica's own
            op_id = done.op_id  # (neither the batchlog's nor the hints' kinds of completion)
            # The replica numbers its operations 1, 2, ...; tombstone compaction's are
            # negative and repair's start at REPAIR_OP_BASE.
            if 0 < op_id < REPAIR_OP_BASE:
                if kind is StoragePutDone:
                    return self.replica.on_put_done(done)
                return self.replica.on_get_done(done, now_ms)
        if self.batchlog.owns_done(done):
            return self.batchlog.on_storage_done(done, now_ms)
        if self.tombstones.owns_op(getattr(done, "op_id", None)):
            return self.tombstones.on_storage_done(done, now_ms)
        if self.hints.owns_done(done):
            # a stored hint may complete an ANY write, a LOGGED batch's among them
            return self.batchlog.after_writes(self.hints.on_storage_done(done, now_ms))
        if self.antientropy.owns_op(done.op_id):
            return self.antientropy.on_storage_done(done, now_ms)
        if isinstance(done, StoragePutDone):
            return self.replica.on_put_done(done)
        if isinstance(done, StorageScanDone):
            return self.replica.on_scan_done(done, now_ms)
        assert isinstance(done, StorageGetDone)
        return self.replica.on_get_done(done, now_ms)

    # ---- client entry points (CQL server, admin verbs) ------------------------------

    def client_write(self, client_id: int, partitions: list[Partition], cl: ConsistencyLevel,
                     now_ms: int, write_type: str = "SIMPLE") -> list:
        refusal = self._oversized(partitions, logged=write_type == "BATCH")
        if refusal is not None:
            return [Reply(client_id, refusal)]
        if write_type == "BATCH":  # LOGGED: batchlog first (agora.core.batchlog)
            return self.batchlog.client_batch(client_id, partitions, cl, now_ms)
        return self.writes.start(client_id, partitions, cl, write_type, now_ms)

    def _oversized(self, partitions: list[Partition], logged: bool) -> InvalidRequest | None:
        """A refusal when a partition (for a LOGGED batch: all of them, one batchlog message)
        is too big to travel between nodes (limits.MAX_MUTATION_BYTES); checked before any
        replica applies anything, so such a write is never half done, hinted or replayed."""
        size, part = 0, None
        for p in partitions:
            bound = partition_size_bound(p)
            if logged:
                size, part = size + bound, part or p
            elif bound > size:
                size, part = bound, p
        if size <= MAX_MUTATION_BYTES or part is None:
            return None
        table = self.schema.schema.table_by_id(part.table_id)
        where = f" for keyspace: {table.keyspace}" if table is not None else ""
        what = "batch" if logged else f"mutation of partition key 0x{part.key[:32].hex()}"
        return InvalidRequest(f"Rejected an oversized mutation ({size}/{MAX_MUTATION_BYTES} bytes)"
                              f"{where}: the {what} is larger than a node may send to another")

    def _apply_batch(self, client_id: int, partitions: list[Partition], cl: ConsistencyLevel,
                     now_ms: int) -> list:
        """A LOGGED batch's own write, once its batchlog is stored."""
        return self.writes.start(client_id, partitions, cl, "BATCH", now_ms)

    # ---- tombstones: the downtime check's interface (agora.core.tombstones.downtime) ----

    @property
    def needs_repair(self) -> bool:
        """True while this node came back from a downtime longer than gc_grace and has not
        been repaired since: repair must not stream this node's data to others."""
        return self.tombstones.needs_repair

    def mark_repaired(self) -> list:
        """The repair code's call once a repair of all this node's ranges has completed;
        returns effects (gossip of the cleared flag, a log line) for the caller to emit."""
        return self.tombstones.mark_repaired()

    def serves_reads(self, node: NodeId) -> bool:
        """Whether the read coordinators may ask `node` for data (alive, not quarantined)."""
        return self.tombstones.serves_reads(node)

    def client_read(self, client_id: int, command: ReadCommand, cl: ConsistencyLevel, now_ms: int) -> list:
        return self.reads.start(client_id, command, cl, now_ms)

    def client_read_range(self, client_id: int, command: RangeCommand, cl: ConsistencyLevel,
                          now_ms: int) -> list:
        return self.range_reads.start(client_id, command, cl, now_ms)

    def client_repair(self, client_id: int, args: dict, now_ms: int) -> list:
        """Start an anti-entropy repair (args: keyspace, table, node, start_token, end_token);
        the reply is its first report, whose id `antientropy.status` follows."""
        return self.antientropy.client_repair(client_id, args, now_ms)

    def client_schema_change(self, client_id: int, change, now_ms: int) -> list:
        """`change(schema, ts_us) -> Schema` builds the new schema or raises InvalidRequest."""
        try:
            new_schema = change(self.schema.schema, self.next_timestamp(now_ms))
        except InvalidRequest as exc:
            return [Reply(client_id, exc.with_traceback(None))]  # an answer: no frames kept
        peers = [n for n in self.gossiper.live_nodes() if n != self.local]
        before = self.schema.schema
        effects = self.schema.change(new_schema, peers)
        return [*effects, *self._schema_gossip(), *self._truncated_since(before, now_ms),
                Reply(client_id, self.schema.version)]

    # ---- glue ------------------------------------------------------------------------

    def _schema_gossip(self) -> list:
        if self.gossiper.app_state(self.local, "SCHEMA") != self.schema.version:
            self.gossiper.set_local_state("SCHEMA", self.schema.version)
        return []

    def _after_gossip(self, effects: list, now_ms: int) -> list:
        out = []
        ring_changed = False
        for eff in effects:
            out.append(eff)
            if not isinstance(eff, Event):
                continue
            if eff.kind == "status_change":
                out.extend(self.hints.on_status_change(*eff.detail, now_ms))
            elif eff.kind == "node_state":
                node, key, value = eff.detail
                if key in ("TOKENS", "DC", "RACK", "STATUS"):
                    ring_changed = True
                elif key == "SCHEMA":
                    out.extend(self.schema.on_peer_version(node, value, self.is_alive(node), now_ms))
        if ring_changed:
            before = set(self._infos)
            if self._rebuild_ring():
                out.append(self._persist_peers())
            for node in sorted(set(self._infos) - before):
                out.append(Event("topology_change", ("NEW_NODE", node)))
        return out

    def _persist_peers(self) -> PersistMeta:
        peers = {n: [i.dc, i.rack, list(i.tokens)] for n, i in sorted(self._infos.items()) if n != self.local}
        return PersistMeta(PEERS_META_KEY, msgpack.packb(peers, use_bin_type=True))

    def _rebuild_ring(self) -> bool:
        infos = {**self._saved_peers, self.local: NodeInfo(self.cfg.dc, self.cfg.rack, self.identity.tokens)}
        g = self.gossiper
        for node in g.known_nodes():
            # a node that shut down cleanly keeps its tokens (as in Cassandra): it is down, not gone
            if node == self.local or g.app_state(node, "STATUS") not in ("NORMAL", "shutdown"):
                continue
            tokens, dc, rack = g.app_state(node, "TOKENS"), g.app_state(node, "DC"), g.app_state(node, "RACK")
            if not tokens or not dc or not rack:
                continue
            infos[node] = NodeInfo(dc, rack, tuple(int(t) for t in tokens.split(",")))
        if infos == self._infos:
            return False
        self._infos = infos
        self.ring = TokenRing(dict(infos))
        return True

    def _housekeeping(self, now_ms: int) -> list:
        out: list = [SetTimer(("node", "housekeeping"), HOUSEKEEPING_INTERVAL_MS)]
        g = self.gossiper
        for node in g.live_nodes():
            if node != self.local:
                out.extend(self.schema.on_peer_version(node, g.app_state(node, "SCHEMA"), True, now_ms))
        if g.app_state(self.local, "LOAD") != str(self.load_bytes):
            g.set_local_state("LOAD", str(self.load_bytes))
        return out


def restore(cfg: NodeConfig, meta: dict[str, bytes], now_s: int, rng: random.Random) -> tuple[Node, list]:
    """Build a node from what its last run persisted (`meta`: the storage engine's metadata),
    as both drivers do at boot. Returns the node and the metadata to persist before it starts.

    The gossip generation is max(now, last + 1), so a node restarted within the same second
    (or with a clock that went backwards) still announces a newer incarnation (Cassandra keeps
    it in system.local for the same reason)."""
    last = meta.get(GENERATION_META_KEY)
    generation = max(now_s, (int(last) if last else 0) + 1)
    persist: list = [PersistMeta(GENERATION_META_KEY, str(generation).encode())]
    host_id, tokens = meta.get("host_id"), meta.get("tokens")
    if host_id and tokens:
        identity = LocalIdentity(host_id.decode(), tuple(int(t) for t in tokens.decode().split(",")), generation)
    else:
        identity = new_identity(cfg, rng, generation)
        persist += identity_meta(identity)
    raw_schema = meta.get(SCHEMA_META_KEY)
    schema = Schema() if raw_schema is None else Schema.from_plain(
        msgpack.unpackb(raw_schema, raw=False, strict_map_key=False))
    peers = {}
    raw_peers = meta.get(PEERS_META_KEY)
    if raw_peers:
        for node, (dc, rack, toks) in msgpack.unpackb(raw_peers, raw=False).items():
            peers[node] = NodeInfo(dc, rack, tuple(toks))
    return Node(cfg, identity, schema, rng, peers, meta, now_s), persist


def new_identity(cfg: NodeConfig, rng: random.Random, generation: int) -> LocalIdentity:
    """A fresh node's host id and tokens (random tokens, as Cassandra without an allocator)."""
    from agora.core.ring.partitioner import allocate_tokens
    host_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return LocalIdentity(host_id, tuple(allocate_tokens(cfg.num_tokens, rng, set())), generation)


def identity_meta(identity: LocalIdentity) -> list[PersistMeta]:
    return [PersistMeta("host_id", identity.host_id.encode()),
            PersistMeta("tokens", ",".join(map(str, identity.tokens)).encode())]


# How `Node.on_message` routes a message: the first entry whose types it is an instance of
# names the handler. A message's type is looked up once, then remembered (`_route_of`).
_ROUTES: tuple = (
    ((MutationReq,), lambda n, source, msg, now_ms: n.replica.on_mutation(source, msg)),
    ((MutationRsp,), Node._on_mutation_rsp),
    (BATCHLOG_MESSAGES, lambda n, source, msg, now_ms: n.batchlog.on_message(source, msg, now_ms)),
    (TOMBSTONE_MESSAGES, lambda n, source, msg, now_ms: n.tombstones.on_message(source, msg, now_ms)),
    ((ReadReq,), lambda n, source, msg, now_ms: n.replica.on_read(source, msg)),
    ((ReadRsp,), lambda n, source, msg, now_ms: n.reads.on_response(source, msg, now_ms)),
    ((RangeReadReq,), lambda n, source, msg, now_ms: n.replica.on_range_read(source, msg)),
    ((RangeReadRsp,), lambda n, source, msg, now_ms: n.range_reads.on_response(source, msg, now_ms)),
    ((gm.GossipDigestSyn, gm.GossipDigestAck, gm.GossipDigestAck2, gm.GossipShutdown), Node._on_gossip),
    ((HintReq,), lambda n, source, msg, now_ms: n.replica.on_mutation(source, msg)),
    ((HintRsp,), lambda n, source, msg, now_ms: n.hints.on_response(source, msg, now_ms)),
    (REPAIR_MESSAGES, lambda n, source, msg, now_ms: n.antientropy.on_message(source, msg, now_ms)),
    ((SchemaPush,), Node._on_schema_push),
    ((SchemaVersion,), lambda n, source, msg, now_ms: n.schema.on_version(source, msg)),
    ((SchemaPullReq,), lambda n, source, msg, now_ms: n.schema.on_pull(source, msg)),
)
_ROUTE_BY_TYPE: dict = {}


def _route_of(msg):
    for types, route in _ROUTES:
        if isinstance(msg, types):
            _ROUTE_BY_TYPE[type(msg)] = route
            return route
    raise InvalidRequest(f"no handler for {type(msg).__name__}")
