"""Replication strategies: given a ring and a token, which nodes hold the replicas, in order.

Owns: the parsing and validation of a keyspace's CQL replication map
(`strategy_from_options`), the two placement rules Cassandra offers for user keyspaces, the
per-ring replica tables that make `replicas()` a bisect plus a tuple lookup, and effective
ownership (`ownership`, what `nodetool status <keyspace>` shows as "Owns (effective)").

Rules come from Cassandra's `org.apache.cassandra.locator`:
  * SimpleStrategy (`SimpleStrategy.calculateNaturalEndpoints`): walk the ring clockwise from
    the token's position and take the first RF distinct owners. Identical to the driver's
    `cassandra.metadata.SimpleStrategy`, order included.
  * NetworkTopologyStrategy (`NetworkTopologyStrategy.calculateNaturalEndpoints`, Cassandra
    3.x and later): one clockwise walk; in each datacenter with RF > 0 and at least one node,
    the first node of every not-yet-seen rack is taken, and a node of an already-seen rack is
    taken only while the DC may still repeat racks (`acceptableRackRepeats = RF - racks in
    the DC`); a DC is done after min(RF, nodes in the DC) replicas. A DC named in the options
    but with no nodes contributes nothing; a DC on the ring but not in the options gets none.
    Replicas are listed in the order the walk meets them (Cassandra's LinkedHashSet order),
    so replicas[0] is always the primary owner when its DC is replicated.
    The driver implements the older "skip repeated racks, then append the skipped nodes"
    formulation; it yields the same replica *sets* but lists them grouped by DC (in ring
    order of each DC's first token) and within a DC puts distinct racks first. (It also
    appends a skipped vnode owner once per skipped token, so with vnodes its list can hold a
    node twice and miss another; tests pin this down.)
  * Replication options follow CQL: `{'class': 'SimpleStrategy', 'replication_factor': '3'}`
    or `{'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': '2'}`, the class with or
    without `org.apache.cassandra.locator.`. As in Cassandra 4.0 (`prepareOptions`), NTS may
    carry `replication_factor`, which is expanded at parse time to every known datacenter not
    listed explicitly; the resulting strategy only ever holds explicit per-DC factors.

Deliberately does not know liveness, consistency levels or the local datacenter: it says
where replicas *are*, the coordinator decides whom to ask.

`dc_replication_factors()` of a SimpleStrategy is `{}`: it places replicas without regard to
datacenters. Callers needing "the RF that applies in DC x" (LOCAL_QUORUM) use
`replication_factor_in(dc)`, which for SimpleStrategy is its single RF, as Cassandra's
`ConsistencyLevel.localQuorumFor` does for non-NTS keyspaces; `datacenter_aware` tells the two
kinds apart (EACH_QUORUM needs per-DC factors).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from agora.core.errors import InvalidRequest
from agora.core.ring.token_ring import RING_SPAN, TokenRange, TokenRing, range_size
from agora.core.types import NodeId, Token

STRATEGY_CLASS_PREFIX = "org.apache.cassandra.locator."
MAX_REPLICATION_FACTOR = 100  # replicas per DC (or in all, for SimpleStrategy); a guard
#                               against typos like '300' that would make every write
#                               Unavailable. Cassandra's guardrail maximum_replication_factor
#                               plays the same role.

ReplicaTable = tuple[tuple[NodeId, ...], ...]  # replicas per ring position
_RF_PATTERN = re.compile(r"[+-]?[0-9]+")  # what Java's Integer.parseInt accepts (ASCII)


class ReplicationStrategy(abc.ABC):
    """Where the replicas of a token live on a ring. Instances are immutable values (equal
    settings compare and hash equal), so rings can cache one replica table per setting."""

    datacenter_aware: ClassVar[bool]
    class_name: ClassVar[str]

    def replicas(self, ring: TokenRing, token: Token) -> tuple[NodeId, ...]:
        """The replicas of a key with this token, in Cassandra's order (primary first when
        the primary is replicated at all). Empty on an empty ring or when RF is 0."""
        table = self.replica_table(ring)
        if not table:
            return ()
        return table[ring.token_index_for(token)]

    def replicas_for_token_index(self, ring: TokenRing, index: int) -> tuple[NodeId, ...]:
        """The replicas of ring position `index` (of the range ending at sorted_tokens[index])."""
        return self.replica_table(ring)[index]

    def replica_table(self, ring: TokenRing) -> ReplicaTable:
        """Replicas for every ring position, built on first use and kept with the ring."""
        table = ring.memo_get(self)
        if table is None:
            table = ring.memo_put(self, self._build_table(ring))
        return table  # type: ignore[return-value]

    @abc.abstractmethod
    def _build_table(self, ring: TokenRing) -> ReplicaTable:
        """Replicas for every ring position, computed once per (ring, strategy)."""

    @abc.abstractmethod
    def dc_replication_factors(self) -> dict[str, int]:
        """Per-datacenter RF, sorted by DC name; {} for a strategy that ignores DCs."""

    @abc.abstractmethod
    def total_rf(self) -> int:
        """Replicas wanted in all (they may be fewer when the ring has fewer nodes)."""

    @abc.abstractmethod
    def replication_factor_in(self, dc: str) -> int:
        """The RF that LOCAL_* consistency levels count against in `dc`."""

    @abc.abstractmethod
    def options(self) -> dict[str, str]:
        """The CQL replication map, as Cassandra stores it in system_schema.keyspaces."""


@dataclass(frozen=True, slots=True)
class SimpleStrategy(ReplicationStrategy):
    """RF distinct nodes, clockwise from the token, ignoring datacenters and racks."""

    replication_factor: int

    datacenter_aware: ClassVar[bool] = False
    class_name: ClassVar[str] = "SimpleStrategy"

    def __post_init__(self) -> None:
        _check_rf(self.replication_factor)

    def _build_table(self, ring: TokenRing) -> ReplicaTable:
        owners = ring.owners
        wanted = min(self.replication_factor, len(set(owners)))
        return tuple(_walk_simple(owners, start, wanted) for start in range(len(owners)))

    def dc_replication_factors(self) -> dict[str, int]:
        return {}

    def total_rf(self) -> int:
        return self.replication_factor

    def replication_factor_in(self, dc: str) -> int:
        return self.replication_factor

    def options(self) -> dict[str, str]:
        return {"class": STRATEGY_CLASS_PREFIX + self.class_name,
                "replication_factor": str(self.replication_factor)}


def _walk_simple(owners: tuple[NodeId, ...], start: int, wanted: int) -> tuple[NodeId, ...]:
    found: list[NodeId] = []
    n = len(owners)
    for step in range(n):
        if len(found) == wanted:
            break
        node = owners[(start + step) % n]
        if node not in found:
            found.append(node)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class NetworkTopologyStrategy(ReplicationStrategy):
    """Per-datacenter RF, spreading each DC's replicas over its racks.

    dc_rfs: (datacenter, RF) pairs sorted by datacenter; build one with `from_rfs`."""

    dc_rfs: tuple[tuple[str, int], ...]

    datacenter_aware: ClassVar[bool] = True
    class_name: ClassVar[str] = "NetworkTopologyStrategy"

    def __post_init__(self) -> None:
        dcs = [dc for dc, _ in self.dc_rfs]
        if dcs != sorted(set(dcs)):
            raise ValueError(f"dc_rfs must be sorted by distinct datacenter: {self.dc_rfs!r}")
        for _, rf in self.dc_rfs:
            _check_rf(rf)

    @classmethod
    def from_rfs(cls, rfs: Mapping[str, int]) -> NetworkTopologyStrategy:
        return cls(tuple(sorted(rfs.items())))

    def _build_table(self, ring: TokenRing) -> ReplicaTable:
        plan = _dc_plan(ring, dict(self.dc_rfs))
        if not plan:
            return tuple(() for _ in ring.owners)
        return tuple(_walk_nts(ring, start, plan) for start in range(len(ring.owners)))

    def dc_replication_factors(self) -> dict[str, int]:
        return dict(self.dc_rfs)

    def total_rf(self) -> int:
        return sum(rf for _, rf in self.dc_rfs)

    def replication_factor_in(self, dc: str) -> int:
        return dict(self.dc_rfs).get(dc, 0)

    def options(self) -> dict[str, str]:
        result = {"class": STRATEGY_CLASS_PREFIX + self.class_name}
        result.update((dc, str(rf)) for dc, rf in self.dc_rfs)
        return result


def _dc_plan(ring: TokenRing, rfs: dict[str, int]) -> dict[str, tuple[int, int]]:
    """For each DC to fill: (replicas to place = min(RF, nodes), rack repeats allowed =
    RF - racks). Nodes and racks are counted among token owners, as Cassandra's Topology
    counts endpoints with tokens."""
    nodes: dict[str, set[NodeId]] = {}
    racks: dict[str, set[str]] = {}
    for node in ring.owners:
        dc = ring.dc_of(node)
        nodes.setdefault(dc, set()).add(node)
        racks.setdefault(dc, set()).add(ring.rack_of(node))
    return {dc: (min(rf, len(nodes[dc])), rf - len(racks[dc]))
            for dc, rf in sorted(rfs.items()) if rf > 0 and dc in nodes}


def _walk_nts(ring: TokenRing, start: int, plan: dict[str, tuple[int, int]],
              ) -> tuple[NodeId, ...]:
    """Cassandra's NTS walk from ring position `start` (see the module docstring)."""
    owners = ring.owners
    n = len(owners)
    left = {dc: wanted for dc, (wanted, _) in plan.items()}
    repeats = {dc: allowed for dc, (_, allowed) in plan.items()}
    dcs_to_fill = len(plan)
    seen_racks: set[tuple[str, str]] = set()  # (dc, rack): rack names are per DC
    found: list[NodeId] = []
    for step in range(n):
        node = owners[(start + step) % n]
        dc = ring.dc_of(node)
        if not left.get(dc):
            continue
        location = (dc, ring.rack_of(node))
        if location not in seen_racks:
            seen_racks.add(location)
        elif repeats[dc] > 0 and node not in found:
            repeats[dc] -= 1
        else:
            continue
        found.append(node)
        left[dc] -= 1
        if left[dc] == 0:
            dcs_to_fill -= 1
            if dcs_to_fill == 0:
                break
    return tuple(found)


def _check_rf(rf: object) -> None:
    """Direct construction takes ints that `strategy_from_options` would have accepted."""
    if isinstance(rf, bool) or not isinstance(rf, int) or not 0 <= rf <= MAX_REPLICATION_FACTOR:
        raise ValueError(f"replication factor must be an int in 0..{MAX_REPLICATION_FACTOR}, "
                         f"got {rf!r}")


# --- effective ownership ------------------------------------------------------------------


def ownership(ring: TokenRing, strategy: ReplicationStrategy) -> dict[NodeId, float]:
    """Effective ownership: the fraction of the token space each node holds a replica of
    (`nodetool status <keyspace>`). With RF 3 in a 3-node DC every node there owns 1.0.
    Every node of the ring is listed, sorted; nodes holding nothing get 0.0."""
    held = {node: 0 for node in ring.nodes}
    for index in range(len(ring.sorted_tokens)):
        size = range_size(*ring.range_of_token_index(index))
        for node in strategy.replicas_for_token_index(ring, index):
            held[node] += size
    return {node: size / RING_SPAN for node, size in held.items()}


def replica_ranges(ring: TokenRing, strategy: ReplicationStrategy,
                   node: NodeId) -> list[TokenRange]:
    """Every range `node` holds a replica of, in ring order (wrapping ranges as in
    `TokenRing.ranges_for`): what repair and streaming work over."""
    return [ring.range_of_token_index(index)
            for index in range(len(ring.sorted_tokens))
            if node in strategy.replicas_for_token_index(ring, index)]


# --- parsing CQL replication maps ---------------------------------------------------------


def strategy_from_options(options: Mapping[str, str],
                          known_dcs: Iterable[str] = ()) -> ReplicationStrategy:
    """The strategy a CQL replication map describes, validated as Cassandra validates it.

    known_dcs: the datacenters `replication_factor` expands to under NetworkTopologyStrategy
    (the schema layer passes the ring's datacenters at CREATE/ALTER KEYSPACE time).
    Raises `InvalidRequest` with Cassandra's wording for a missing or unknown class, a
    missing, non-numeric, negative, transient or oversized RF, or an unknown option."""
    if not isinstance(options, Mapping):
        raise InvalidRequest("Replication options must be a map")
    given = options.get("class")
    if not given:
        raise InvalidRequest("Missing replication strategy class")
    name = str(given)
    if "." in name:
        name = name.removeprefix(STRATEGY_CLASS_PREFIX)
    if name == SimpleStrategy.class_name:
        return _simple_from(options)
    if name == NetworkTopologyStrategy.class_name:
        return _nts_from(options, known_dcs)
    full = given if "." in str(given) else STRATEGY_CLASS_PREFIX + str(given)
    raise InvalidRequest(f"Unable to find replication strategy class '{full}'")


def _simple_from(options: Mapping[str, str]) -> SimpleStrategy:
    for key in sorted(options):
        if key not in ("class", "replication_factor"):
            raise InvalidRequest(
                f"Unrecognized strategy option {{{key}}} passed to SimpleStrategy")
    if "replication_factor" not in options:
        raise InvalidRequest("SimpleStrategy requires a replication_factor strategy option.")
    return SimpleStrategy(_parse_rf(options["replication_factor"]))


def _nts_from(options: Mapping[str, str], known_dcs: Iterable[str]) -> NetworkTopologyStrategy:
    rfs = {str(dc): _parse_rf(value) for dc, value in sorted(options.items())
           if dc not in ("class", "replication_factor")}
    if "replication_factor" in options:
        default = _parse_rf(options["replication_factor"])
        for dc in sorted(set(known_dcs)):
            rfs.setdefault(dc, default)
    if not rfs:
        raise InvalidRequest("Configuration for at least one datacenter must be present")
    return NetworkTopologyStrategy.from_rfs(rfs)


def _parse_rf(value: object) -> int:
    text = str(value)
    if "/" in text:
        raise InvalidRequest(
            f"Transient replication is not supported (replication factor {text})")
    if not _RF_PATTERN.fullmatch(text):
        raise InvalidRequest(f"Replication factor must be numeric; found {text}")
    rf = int(text)
    if rf < 0:
        raise InvalidRequest(f"Replication factor must be non-negative; found {text}")
    if rf > MAX_REPLICATION_FACTOR:
        raise InvalidRequest(
            f"Replication factor must be at most {MAX_REPLICATION_FACTOR}; found {text}")
    return rf
