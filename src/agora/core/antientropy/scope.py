"""What one repair covers: the request (keyspace, table, node, token subrange) and the token
ranges it expands to, each with the replicas that must agree on it (Cassandra's
`RepairOption` and `StorageService.getRangesForRepair`).

Owns: parsing a repair request from its msgpack-native map (the admin op and the CLI send
one; the scheduler builds one) and cutting the ring into repair ranges. It deliberately
knows nothing of trees, messages or liveness.

Ranges: the requested span (the whole ring, or (start_token, end_token], which wraps when
start >= end) is cut at every ring token and at the ring's wrap into pieces that never wrap:
one per vnode range it meets (neighbours are not joined even with the same replicas, so
each vnode range gets its own tree, as in Cassandra, and a large dataset is compared at a
fine grain). With `node`, only pieces that node replicates are kept (`nodetool repair` run
on that node). With `primary_only`, only the node's primary ranges (those ending at one of its
tokens: `nodetool repair -pr`, what scheduled repair runs on every node, so that each range
is repaired once per round across the cluster). A piece with a single replica has nothing
to compare and is left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bisect import bisect_right
from agora.core.errors import InvalidRequest
from agora.core.ring.token_ring import unwrap_range
from agora.core.types import MAX_TOKEN, MIN_TOKEN, NodeId, Token


@dataclass(frozen=True, slots=True)
class RepairRequest:
    keyspace: str | None = None  # None: every keyspace
    table: str | None = None  # None: every table of the keyspace
    node: str | None = None  # only ranges this node replicates (a node id or its address)
    start_token: Token | None = None  # with end_token: only (start_token, end_token]
    end_token: Token | None = None
    primary_only: bool = False  # only `node`'s primary ranges (scheduled repair)

    def to_plain(self) -> dict:
        return {k: v for k, v in (("keyspace", self.keyspace), ("table", self.table),
                                  ("node", self.node), ("start_token", self.start_token),
                                  ("end_token", self.end_token),
                                  ("primary_only", self.primary_only or None)) if v is not None}


def _opt_text(args: dict, name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"repair: {name} must be a string")
    return value


def _opt_token(args: dict, name: str) -> Token | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise InvalidRequest(f"repair: {name} {value!r} is not a token") from None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_TOKEN <= value <= MAX_TOKEN:
        raise InvalidRequest(f"repair: {name} must be a signed 64-bit token")
    return value


def parse_request(args: Any) -> RepairRequest:
    """A RepairRequest from {keyspace, table, node, start_token, end_token, primary_only};
    InvalidRequest naming what is wrong."""
    if not isinstance(args, dict):
        raise InvalidRequest("repair: arguments must be a map")
    unknown = sorted(str(k) for k in args if k not in
                     ("keyspace", "table", "node", "start_token", "end_token", "primary_only"))
    if unknown:
        raise InvalidRequest(f"repair: unknown argument {unknown[0]!r}")
    req = RepairRequest(_opt_text(args, "keyspace"), _opt_text(args, "table"), _opt_text(args, "node"),
                        _opt_token(args, "start_token"), _opt_token(args, "end_token"),
                        bool(args.get("primary_only", False)))
    if req.table is not None and req.keyspace is None:
        raise InvalidRequest("repair: a table needs its keyspace")
    if (req.start_token is None) != (req.end_token is None):
        raise InvalidRequest("repair: give both start_token and end_token, or neither")
    if req.primary_only and (req.node is None or req.start_token is not None):
        raise InvalidRequest("repair: primary_only needs a node and no token range")
    return req


def resolve_node(spec: str, ring_nodes: Sequence[NodeId]) -> NodeId:
    """The ring node `spec` names: its id ("127.0.0.3:7000") or its address ("127.0.0.3")."""
    for node in ring_nodes:
        if spec == node or node.rsplit(":", 1)[0] == spec:
            return node
    raise InvalidRequest(f"repair: no node {spec!r} in the ring")


@dataclass(frozen=True, slots=True)
class RepairRange:
    """(start, end] never wrapping (start < end), and the replicas that hold it, sorted."""

    start: Token
    end: Token
    replicas: tuple[NodeId, ...]


def repair_ranges(tokens: Sequence[Token], replica_table: Sequence[tuple[NodeId, ...]],
                  owners: Sequence[NodeId], req: RepairRequest,
                  node: NodeId | None) -> list[RepairRange]:
    """The ranges `req` covers on a ring (its sorted tokens, replicas and owner of each
    position), in ring order; `node` is req.node resolved to a ring node."""
    if not tokens:
        return []
    if req.primary_only:
        pieces = sorted((lo, hi, replica_table[i]) for i, owner in enumerate(owners) if owner == node
                        for lo, hi in unwrap_range(tokens[i - 1], tokens[i]))
    else:
        start, end = (MIN_TOKEN, MAX_TOKEN) if req.start_token is None else (req.start_token, req.end_token)
        pieces = list(_cut_at_ring(tokens, replica_table, start, end))
    out = []
    for lo, hi, replicas in pieces:
        if node is not None and node not in replicas:
            continue
        if len(set(replicas)) < 2:
            continue  # one copy: nothing to compare it with
        out.append(RepairRange(lo, hi, tuple(sorted(set(replicas)))))
    return out


def _cut_at_ring(tokens: Sequence[Token], replica_table: Sequence[tuple[NodeId, ...]],
                 start: Token, end: Token) -> Iterator[tuple[Token, Token, tuple[NodeId, ...]]]:
    """(lo, hi, replicas) for (start, end] cut at every ring token and at the wrap; ring
    position i owns (tokens[i-1], tokens[i]], tokens above the last belong to position 0."""
    for piece_lo, piece_hi in unwrap_range(start, end):
        at = piece_lo
        index = bisect_right(tokens, at)
        while at < piece_hi:
            cut = tokens[index] if index < len(tokens) and tokens[index] < piece_hi else piece_hi
            yield at, cut, replica_table[index % len(tokens)]
            at, index = cut, index + 1
