"""Merkle trees over a token range: what a replica summarises its data of one table and one
range into, and how a repair coordinator finds where two replicas differ (Dynamo paper
section 4.7; Cassandra's `utils/MerkleTree`, `repair/Validator`).

Owns: the shape of a tree and its hashes, built incrementally from partitions met in ring
order (`TreeBuilder`), the leaf <-> token arithmetic, and the comparison (`difference`:
the leaves of two trees compared directly, since a replica sends all its non-empty leaves).
It deliberately knows nothing of storage, messages or replicas: a builder is fed
(token, partition digest) pairs, and `difference` answers with token ranges.

Shape: a complete binary tree of fixed `depth` over the non-wrapping token range
(lo, hi], lo < hi. Leaf i covers (b(i), b(i+1)] with b(i) = lo + (hi - lo) * i // 2**depth,
so the leaves tile the range exactly, in ring order. A leaf's hash is a blake2b over the
digests (`reconcile.digest`) of the partitions whose token falls in it, in position order
(token, then key bytes: the order every scan returns them in); a leaf holding no partition
hashes to EMPTY_LEAF. An inner node hashes its two children's hashes. Only non-empty
leaves are stored and sent (a range holding n partitions costs at most n leaves on the
wire, however deep the tree), and inner nodes are computed only above non-empty leaves:
an all-empty subtree of height h hashes to a precomputed constant.

Depth: chosen by the coordinator from the range's share of the ring (`depth_for_range`),
as if the whole ring had 2**RING_TREE_DEPTH leaves, clamped to
[MIN_TREE_DEPTH, MAX_TREE_DEPTH] and so that no leaf is narrower than one token. The leaf
is the unit of streaming: one differing partition costs the partitions sharing its leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from agora.core.types import Token

HASH_BYTES = 16  # as reconcile.DIGEST_BYTES: collisions between replicas are negligible
# Leaves over the whole ring, as a power of two: a range gets its share. 2**20 is
# Cassandra's largest tree (one per range there; here per ring, so vnode ranges of a
# 3-node, 16-token cluster get 2**15 leaves each).
RING_TREE_DEPTH = 20
# Fewest and most leaves (powers of two) a range's tree has. The most bounds a tree's
# memory and its answer's size (2**15 leaves * 16 bytes = 512 KiB, well under a frame);
# the fewest keeps leaves fine enough that a small divergence streams little.
MIN_TREE_DEPTH = 10
MAX_TREE_DEPTH = 15


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


EMPTY_LEAF = _h(b"agora:merkle:empty-leaf")
# EMPTY[h]: the hash of an all-empty subtree of height h (h = 0: a leaf).
_EMPTY = [EMPTY_LEAF]
for _ in range(MAX_TREE_DEPTH):
    _EMPTY.append(_h(_EMPTY[-1] + _EMPTY[-1]))


def depth_for_range(lo: Token, hi: Token) -> int:
    """The depth of the tree for (lo, hi] (lo < hi): the range's share of 2**RING_TREE_DEPTH
    leaves, rounded up to a power of two, clamped to [MIN_TREE_DEPTH, MAX_TREE_DEPTH], and
    no deeper than leaves of at least one token each."""
    span = hi - lo
    assert span > 0, "a tree covers a non-empty, non-wrapping range"
    share = (span - 1).bit_length() - (64 - RING_TREE_DEPTH)  # ceil(log2(span * 2**20 / 2**64))
    depth = max(MIN_TREE_DEPTH, min(MAX_TREE_DEPTH, share))
    return min(depth, span.bit_length() - 1)


def leaf_index(lo: Token, hi: Token, depth: int, token: Token) -> int:
    """The leaf of a (lo, hi] tree of `depth` that `token` (lo < token <= hi) falls in."""
    assert lo < token <= hi, f"token {token} outside ({lo}, {hi}]"
    return ((token - lo) * (1 << depth) - 1) // (hi - lo)


def leaf_bound(lo: Token, hi: Token, depth: int, index: int) -> Token:
    """b(index): the exclusive start of leaf `index`, the inclusive end of leaf index - 1."""
    return lo + (hi - lo) * index // (1 << depth)


class MerkleTree:
    """A tree over (lo, hi] of `depth`, from its non-empty leaves {index: hash}."""

    __slots__ = ("lo", "hi", "depth", "leaves", "_levels")

    def __init__(self, lo: Token, hi: Token, depth: int, leaves: dict[int, bytes]) -> None:
        assert lo < hi and 0 <= depth <= MAX_TREE_DEPTH
        assert all(0 <= i < (1 << depth) for i in leaves), "leaf index out of range"
        self.lo, self.hi, self.depth = lo, hi, depth
        self.leaves = leaves
        self._levels: list[dict[int, bytes]] | None = None

    def _all_levels(self) -> list[dict[int, bytes]]:
        """levels[h]: the hashes of the nodes of height h above at least one non-empty leaf."""
        if self._levels is None:
            levels = [self.leaves]
            for h in range(self.depth):
                below, here = levels[-1], {}
                for parent in sorted({i >> 1 for i in below}):
                    left = below.get(2 * parent, _EMPTY[h])
                    right = below.get(2 * parent + 1, _EMPTY[h])
                    here[parent] = _h(left + right)
                levels.append(here)
            self._levels = levels
        return self._levels

    def node_hash(self, height: int, index: int) -> bytes:
        return self._all_levels()[height].get(index, _EMPTY[height])

    def root(self) -> bytes:
        return self.node_hash(self.depth, 0)

    def leaf_range(self, index: int) -> tuple[Token, Token]:
        return (leaf_bound(self.lo, self.hi, self.depth, index),
                leaf_bound(self.lo, self.hi, self.depth, index + 1))


def differing_leaves(a: MerkleTree, b: MerkleTree) -> list[int]:
    """The leaves whose hashes differ, ascending. A replica sends every non-empty leaf of its
    tree, so the leaves are compared directly: the same leaves a descent from the root finds
    (`differing_leaves_by_descent`, Cassandra's MerkleTree.difference), without hashing the
    inner nodes of both trees first, which took a repair coordinator as long as hashing its
    own data."""
    assert (a.lo, a.hi, a.depth) == (b.lo, b.hi, b.depth), "comparing trees of different shapes"
    x, y = a.leaves, b.leaves
    if len(x) < len(y):
        x, y = y, x
    out = [i for i, h in x.items() if y.get(i, EMPTY_LEAF) != h]
    out += [i for i, h in y.items() if i not in x and h != EMPTY_LEAF]
    out.sort()
    return out


def differing_leaves_by_descent(a: MerkleTree, b: MerkleTree) -> list[int]:
    """`differing_leaves` as a descent from the root that skips every subtree whose hashes
    agree: what exchanging trees level by level would do (tests and tools)."""
    assert (a.lo, a.hi, a.depth) == (b.lo, b.hi, b.depth), "comparing trees of different shapes"
    out: list[int] = []
    stack = [(a.depth, 0)]
    while stack:
        height, index = stack.pop()
        if a.node_hash(height, index) == b.node_hash(height, index):
            continue
        if height == 0:
            out.append(index)
        else:
            stack.append((height - 1, 2 * index + 1))
            stack.append((height - 1, 2 * index))
    return out


def difference(a: MerkleTree, b: MerkleTree) -> list[tuple[Token, Token]]:
    """The token ranges (start exclusive, end inclusive) where the trees differ, at leaf
    granularity, with neighbouring differing leaves joined, in ring order."""
    return leaf_ranges(a, differing_leaves(a, b))


def leaf_ranges(tree: MerkleTree, leaves: Iterable[int]) -> list[tuple[Token, Token]]:
    """The token ranges of `leaves` (ascending indices) of `tree`'s shape, neighbours joined."""
    ranges: list[tuple[Token, Token]] = []
    for index in leaves:
        start, end = tree.leaf_range(index)
        if start == end:
            continue  # a leaf narrower than a token holds nothing (cannot happen at our depths)
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return ranges


class TreeBuilder:
    """Builds a tree from (token, partition digest) pairs fed in position order (token, then
    key bytes), holding only the finished leaf hashes and one leaf's running hash."""

    __slots__ = ("lo", "hi", "depth", "leaves", "partitions", "_leaf", "_hasher")

    def __init__(self, lo: Token, hi: Token, depth: int) -> None:
        assert lo < hi and 0 <= depth <= MAX_TREE_DEPTH
        self.lo, self.hi, self.depth = lo, hi, depth
        self.leaves: dict[int, bytes] = {}
        self.partitions = 0
        self._leaf = -1
        self._hasher = None

    def add(self, token: Token, digest: bytes) -> None:
        leaf = leaf_index(self.lo, self.hi, self.depth, token)
        assert leaf >= self._leaf, "partitions must be fed in ring order"
        if leaf != self._leaf:
            self._close_leaf()
            self._leaf = leaf
            self._hasher = hashlib.blake2b(b"agora:merkle:leaf", digest_size=HASH_BYTES)
        self._hasher.update(digest)
        self.partitions += 1

    def _close_leaf(self) -> None:
        if self._hasher is not None:
            self.leaves[self._leaf] = self._hasher.digest()
            self._hasher = None

    def finish(self) -> MerkleTree:
        self._close_leaf()
        return MerkleTree(self.lo, self.hi, self.depth, self.leaves)


def build_tree(lo: Token, hi: Token, depth: int,
               digests: Iterable[tuple[Token, bytes]]) -> MerkleTree:
    """A tree from (token, digest) pairs in position order (tests, tools)."""
    builder = TreeBuilder(lo, hi, depth)
    for token, digest in digests:
        builder.add(token, digest)
    return builder.finish()
