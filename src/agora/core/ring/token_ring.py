"""The token ring: which node owns which tokens, where each node lives (datacenter, rack), and
which ring position a token falls to.

Owns: an immutable snapshot of token ownership (`TokenRing`, built from `NodeInfo`s) and the
arithmetic of token ranges on the wrapping signed 64-bit Murmur3 ring (`range_contains`,
`range_size`, `unwrap_range`). A change of membership builds a new ring; nothing mutates one.

Rules, as in Cassandra's `TokenMetadata` and the driver's `TokenMap`:
  * Ring token t_i is the *end* of the range (t_{i-1}, t_i], start exclusive, end inclusive; the
    lowest token's range wraps: (t_last, t_0]. A single token owns the whole ring, (t, t].
  * A key whose token is t belongs to the first ring token >= t (`bisect_left`), wrapping to
    the lowest ring token when t is above them all. That token's owner is the key's primary.
  * Fractions of the ring are over RING_SPAN = 2**64 token values, as Cassandra's
    `Murmur3Partitioner.describeOwnership` computes them.

Deliberately does not know replication: which *other* nodes hold copies is a strategy's
business (`strategies.py`). The ring only offers strategies a small memo (`memo_get`/`memo_put`)
so that derived tables (replica lists per ring position) live exactly as long as the ring.
Nodes without tokens (e.g. a node that has not yet chosen them) may be in the ring: they have a
datacenter and rack, own nothing and are never a replica.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from agora.core.types import MAX_TOKEN, MIN_TOKEN, NodeId, Token

RING_SPAN = 2**64  # token values around the ring; the denominator of every ownership fraction
MAX_MEMO_ENTRIES = 64  # derived tables kept per ring: one per distinct replication setting in
#                        the schema; past this the memo is cleared (it is only a cache).

TokenRange = tuple[Token, Token]  # (start exclusive, end inclusive); start >= end wraps


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Where a node lives and the tokens it owns (stored sorted ascending)."""

    dc: str
    rack: str
    tokens: tuple[Token, ...] = ()

    def __post_init__(self) -> None:
        tokens = tuple(sorted(self.tokens))
        for token in tokens:
            if isinstance(token, bool) or not isinstance(token, int) \
                    or not MIN_TOKEN <= token <= MAX_TOKEN:
                raise ValueError(f"token {token!r} is not a signed 64-bit integer")
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"duplicate token in {tokens!r}")
        object.__setattr__(self, "tokens", tokens)


class TokenRing:
    """An immutable map from ring positions to owning nodes, plus each node's location.

    Build it from `{node_id: NodeInfo}`; two nodes claiming the same token is a `ValueError`
    (membership must settle token collisions before building a ring). `TokenRing()` is the
    empty ring: it has no positions, no owners, no ranges and every ownership map is empty.
    """

    __slots__ = ("_infos", "_nodes", "_tokens", "_owners", "_memo", "_hash")

    def __init__(self, nodes: Mapping[NodeId, NodeInfo] | None = None) -> None:
        nodes = nodes or {}
        self._nodes: tuple[NodeId, ...] = tuple(sorted(nodes))
        self._infos: dict[NodeId, NodeInfo] = {node: nodes[node] for node in self._nodes}
        owner_by_token: dict[Token, NodeId] = {}
        for node in self._nodes:
            info = self._infos[node]
            if not isinstance(info, NodeInfo):
                raise TypeError(f"{node}: expected NodeInfo, got {type(info).__name__}")
            for token in info.tokens:
                other = owner_by_token.setdefault(token, node)
                if other != node:
                    raise ValueError(f"token {token} claimed by both {other} and {node}")
        self._tokens: tuple[Token, ...] = tuple(sorted(owner_by_token))
        self._owners: tuple[NodeId, ...] = tuple(owner_by_token[t] for t in self._tokens)
        self._memo: dict[object, object] = {}
        self._hash: int | None = None

    # --- positions ------------------------------------------------------------------------

    @property
    def sorted_tokens(self) -> tuple[Token, ...]:
        """Every owned token, ascending. Position i of the ring is sorted_tokens[i]."""
        return self._tokens

    @property
    def owners(self) -> tuple[NodeId, ...]:
        """owners[i] owns sorted_tokens[i]."""
        return self._owners

    @property
    def is_empty(self) -> bool:
        """True when no node owns a token (there may still be tokenless nodes)."""
        return not self._tokens

    def owner_of_token_index(self, index: int) -> NodeId:
        return self._owners[index]

    def token_index_for(self, token: Token) -> int:
        """The ring position a key with this token belongs to: the first ring token >= token,
        wrapping to 0. Raises IndexError on an empty ring, which has no positions."""
        if not self._tokens:
            raise IndexError("an empty ring has no token positions")
        index = bisect_left(self._tokens, token)
        return 0 if index == len(self._tokens) else index

    def primary_of(self, token: Token) -> NodeId | None:
        """The node owning the range `token` falls in; None on an empty ring."""
        if not self._tokens:
            return None
        return self._owners[self.token_index_for(token)]

    def range_of_token_index(self, index: int) -> TokenRange:
        """(start exclusive, end inclusive] of ring position `index`; wraps for position 0."""
        return (self._tokens[index - 1], self._tokens[index])

    # --- nodes ----------------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[NodeId, ...]:
        """Every node in the ring, tokenless ones included, sorted."""
        return self._nodes

    def __contains__(self, node: object) -> bool:
        return node in self._infos

    def info(self, node: NodeId) -> NodeInfo:
        return self._infos[node]

    def dc_of(self, node: NodeId) -> str:
        return self._infos[node].dc

    def rack_of(self, node: NodeId) -> str:
        return self._infos[node].rack

    def tokens_of(self, node: NodeId) -> tuple[Token, ...]:
        return self._infos[node].tokens

    def datacenters(self) -> tuple[str, ...]:
        """Every datacenter with at least one node, sorted."""
        return tuple(sorted({info.dc for info in self._infos.values()}))

    def nodes_in(self, dc: str) -> tuple[NodeId, ...]:
        return tuple(n for n in self._nodes if self._infos[n].dc == dc)

    def racks_in(self, dc: str) -> tuple[str, ...]:
        return tuple(sorted({i.rack for i in self._infos.values() if i.dc == dc}))

    # --- ownership ------------------------------------------------------------------------

    def ownership(self) -> dict[NodeId, float]:
        """Fraction of the token space each node is primary for (tokenless nodes: 0.0).
        Sums to 1.0 on a non-empty ring; {} when there are no nodes at all."""
        owned = {node: 0 for node in self._nodes}
        for index, owner in enumerate(self._owners):
            owned[owner] += range_size(*self.range_of_token_index(index))
        return {node: size / RING_SPAN for node, size in owned.items()}

    def ranges_for(self, node: NodeId) -> list[TokenRange]:
        """The node's primary ranges, in ring order, as Cassandra's wrapping Ranges: the one
        ending at the lowest ring token has start > end (or start == end for a one-token
        ring, meaning the whole ring). See `unwrap_range` for contiguous scans."""
        return [self.range_of_token_index(i)
                for i, owner in enumerate(self._owners) if owner == node]

    # --- derived ring -----------------------------------------------------------------------

    def with_node(self, node: NodeId, info: NodeInfo) -> TokenRing:
        """A new ring with `node` added or replaced."""
        return TokenRing({**self._infos, node: info})

    def without_node(self, node: NodeId) -> TokenRing:
        """A new ring without `node` (the same ring's contents if it was absent)."""
        return TokenRing({n: i for n, i in self._infos.items() if n != node})

    # --- memo for strategies ----------------------------------------------------------------

    def memo_get(self, key: object) -> object | None:
        """A table some strategy derived from this ring earlier, or None."""
        return self._memo.get(key)

    def memo_put(self, key: object, value: object) -> object:
        """Remember a table derived from this (immutable) ring; returns `value`."""
        if len(self._memo) >= MAX_MEMO_ENTRIES:
            self._memo.clear()
        self._memo[key] = value
        return value

    # --- value semantics ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenRing):
            return NotImplemented
        return self._infos == other._infos

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._infos.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"TokenRing({len(self._nodes)} nodes, {len(self._tokens)} tokens)"

    def __iter__(self) -> Iterator[tuple[Token, NodeId]]:
        """(token, owner) pairs in ring order."""
        return iter(zip(self._tokens, self._owners))


# --- range arithmetic ---------------------------------------------------------------------


def range_size(start: Token, end: Token) -> int:
    """Token values in (start, end] going clockwise; start == end is the whole ring."""
    return (end - start) % RING_SPAN or RING_SPAN


def range_contains(start: Token, end: Token, token: Token) -> bool:
    """Whether `token` lies in (start, end], wrapping when start >= end."""
    if start < end:
        return start < token <= end
    return token > start or token <= end


def unwrap_range(start: Token, end: Token) -> list[TokenRange]:
    """(start, end] as at most two non-wrapping ranges with start < end, for contiguous token
    scans. A wrapping range splits into (start, MAX_TOKEN] and (MIN_TOKEN, end]; MIN_TOKEN is
    never a key's token, so nothing is lost. Empty pieces are dropped."""
    if start < end:
        return [(start, end)]
    pieces = []
    if start < MAX_TOKEN:
        pieces.append((start, MAX_TOKEN))
    if end > MIN_TOKEN:
        pieces.append((MIN_TOKEN, end))
    return pieces
