"""How many replica replies a consistency level needs, and which replicas count.

Owns: the consistency-level rules table, as Cassandra's ConsistencyLevel.java and the
Dynamo paper's (N, R, W) describe them. For a keyspace with per-datacenter replication
factors, QUORUM is a majority of the total, LOCAL_* count only replicas in the
coordinator's datacenter, and EACH_QUORUM needs a majority in every datacenter. With
SimpleStrategy (no per-DC factors) LOCAL_QUORUM and EACH_QUORUM fall back to the whole
replication factor, counting as Cassandra does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agora.core.frozen import fast_init
from agora.core.types import ConsistencyLevel as CL

# ConsistencyLevel -> how the requirement is computed.
#   ("fixed", n): n replies from any replica;  ("quorum", "all"): majority of all replicas;
#   ("quorum", "local"): majority of local-DC replicas; ("all", None): every replica;
#   ("each", None): a majority in every DC; ("local", n): n replies from the local DC.
RULES: dict[CL, tuple[str, object]] = {
    CL.ANY: ("fixed", 1),
    CL.ONE: ("fixed", 1),
    CL.TWO: ("fixed", 2),
    CL.THREE: ("fixed", 3),
    CL.QUORUM: ("quorum", "all"),
    CL.ALL: ("all", None),
    CL.LOCAL_ONE: ("local", 1),
    CL.LOCAL_QUORUM: ("quorum", "local"),
    CL.EACH_QUORUM: ("each", None),
}


def quorum_of(n: int) -> int:
    return n // 2 + 1


@fast_init
@dataclass(frozen=True, slots=True)
class Requirement:
    """`per_dc` maps a DC (or None for 'any DC') to the replies needed from it."""

    per_dc: dict[str | None, int]

    @property
    def total(self) -> int:
        return sum(self.per_dc.values())

    def counts(self, dc: str) -> str | None | bool:
        """The bucket a reply from a replica in `dc` fills, or False if it does not count."""
        if None in self.per_dc:
            return None
        return dc if dc in self.per_dc else False

    def satisfied(self, got: dict[str | None, int]) -> bool:
        for dc, n in self.per_dc.items():
            if got.get(dc, 0) < n:
                return False
        return True

    def bucket_of(self, node, dc_of) -> str | None | bool:
        """`counts()` of the DC of `node`; `dc_of(node)` is not called when every reply
        counts alike (the hot path of SimpleStrategy and of non-local levels)."""
        return None if None in self.per_dc else self.counts(dc_of(node))

    def reached_by(self, nodes: Sequence, dc_of) -> dict[str | None, int]:
        """`reached()` of the DCs of `nodes`, without looking any DC up when every reply
        counts alike."""
        if None in self.per_dc:
            return {None: len(nodes)} if nodes else {}
        return self.reached(dc_of(node) for node in nodes)

    def reached(self, dcs: Iterable[str]) -> dict[str | None, int]:
        per_dc = self.per_dc
        if None in per_dc:  # every reply counts, in the one bucket None
            n = sum(1 for _ in dcs)
            return {None: n} if n else {}
        got: dict[str | None, int] = {}
        for dc in dcs:
            if dc in per_dc:
                got[dc] = got.get(dc, 0) + 1
        return got


_REQUIREMENTS: dict[tuple, tuple] = {}  # (cl, rf, local_dc, id(per_dc_rf)) -> (per_dc_rf, answer)
REQUIREMENT_CACHE_ENTRIES = 4096


def requirement(cl: CL, rf: int, local_dc: str, per_dc_rf: dict[str, int] | None) -> Requirement:
    """The replies `cl` needs for a keyspace of total replication factor `rf`. `per_dc_rf` is
    the keyspace's NetworkTopologyStrategy factors, or None for SimpleStrategy.

    The count comes from the replication factor, never from how many replicas this node's
    ring currently lists: a node that has just restarted and not yet heard of its peers must
    answer Unavailable, not serve QUORUM from itself (Cassandra's blockFor does the same).

    Every request asks this: answers are kept per arguments (a Requirement is immutable;
    `per_dc_rf` is a strategy's own dict, found by identity and kept alive with its answer,
    and must not be changed after it is passed here)."""
    key = (cl, rf, local_dc, id(per_dc_rf))
    hit = _REQUIREMENTS.get(key)
    if hit is not None and hit[0] is per_dc_rf:
        return hit[1]
    answer = _requirement(cl, rf, local_dc, per_dc_rf)
    if len(_REQUIREMENTS) >= REQUIREMENT_CACHE_ENTRIES:
        _REQUIREMENTS.clear()
    _REQUIREMENTS[key] = (per_dc_rf, answer)
    return answer


def _requirement(cl: CL, rf: int, local_dc: str, per_dc_rf: dict[str, int] | None) -> Requirement:
    if cl not in RULES:
        raise ValueError(f"{cl.name} is not supported for this operation")
    rule, arg = RULES[cl]
    n = rf
    if rule == "fixed":
        return Requirement({None: arg})
    if rule == "all":
        return Requirement({None: n})
    if rule == "local":
        if per_dc_rf is None:
            return Requirement({None: arg})
        return Requirement({local_dc: arg})
    if rule == "quorum" and (arg == "all" or per_dc_rf is None):
        return Requirement({None: quorum_of(n)})
    if rule == "quorum":
        return Requirement({local_dc: quorum_of(per_dc_rf.get(local_dc, 0))})
    # EACH_QUORUM
    if per_dc_rf is None:
        return Requirement({None: quorum_of(n)})
    return Requirement({dc: quorum_of(rf) for dc, rf in sorted(per_dc_rf.items()) if rf > 0})
