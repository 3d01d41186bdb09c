"""Merkle trees over token ranges (agora.core.antientropy.merkle): the same data gives the
same root whatever else differs in how it was built; one differing partition makes exactly
the leaf holding its token differ; and `difference` finds exactly the differing ranges
(a hypothesis property, DESIGN.md section 6)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core import reconcile
from agora.core.antientropy.merkle import (EMPTY_LEAF, MAX_TREE_DEPTH, MIN_TREE_DEPTH,
                                           MerkleTree, TreeBuilder, build_tree, depth_for_range,
                                           difference, differing_leaves, differing_leaves_by_descent,
                                           leaf_bound, leaf_index)
from agora.core.ring.partitioner import token_for_key
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Cell, Deletion, Partition, Row

TID = bytes(range(16))


def partition(key: bytes, value: bytes, ts: int = 1) -> Partition:
    return Partition(TID, key, rows={b"": Row((), Cell(ts, b""), None, {("v", b""): Cell(ts, value)})})


def digests(parts: list[Partition]) -> list[tuple[int, bytes]]:
    """(token, digest) in position order, as a scan feeds a builder."""
    tagged = sorted((token_for_key(p.key), p.key, reconcile.digest(p)) for p in parts)
    return [(t, d) for t, _, d in tagged]


def whole_ring(parts: list[Partition], depth: int = 12) -> MerkleTree:
    return build_tree(MIN_TOKEN, MAX_TOKEN, depth, digests(parts))


DATA = [partition(f"k{i}".encode(), f"v{i}".encode()) for i in range(500)]


def test_same_data_same_root_and_no_difference():
    a, b = whole_ring(DATA), whole_ring(list(reversed(DATA)))
    assert a.root() == b.root()
    assert difference(a, b) == [] and differing_leaves(a, b) == []


def test_an_empty_tree_has_a_fixed_root_and_differs_from_any_data():
    empty1, empty2 = whole_ring([]), whole_ring([])
    assert empty1.root() == empty2.root() and empty1.leaves == {}
    assert empty1.node_hash(0, 5) == EMPTY_LEAF
    assert empty1.root() != whole_ring(DATA[:1]).root()


def test_one_differing_partition_makes_exactly_its_leaf_differ():
    changed = list(DATA)
    changed[137] = partition(changed[137].key, b"other", ts=2)
    a, b = whole_ring(DATA), whole_ring(changed)
    assert a.root() != b.root()
    token = token_for_key(changed[137].key)
    leaf = leaf_index(MIN_TOKEN, MAX_TOKEN, 12, token)
    assert differing_leaves(a, b) == [leaf]
    (start, end), = difference(a, b)
    assert (start, end) == a.leaf_range(leaf) and start < token <= end


def test_a_missing_partition_and_a_tombstone_differ_too():
    missing = [p for i, p in enumerate(DATA) if i != 3]
    deleted = list(DATA)
    p = DATA[4]
    deleted[4] = reconcile.merge_partitions(p, Partition(TID, p.key, deletion=Deletion(5, 0)))
    base = whole_ring(DATA)
    for other, key in ((missing, DATA[3].key), (deleted, DATA[4].key)):
        (start, end), = difference(base, whole_ring(other))
        assert start < token_for_key(key) <= end


def test_leaves_tile_the_range_exactly():
    lo, hi, depth = -1000, 3001, 4
    bounds = [leaf_bound(lo, hi, depth, i) for i in range(17)]
    assert bounds[0] == lo and bounds[-1] == hi and bounds == sorted(bounds)
    for token in range(lo + 1, hi + 1):
        i = leaf_index(lo, hi, depth, token)
        assert bounds[i] < token <= bounds[i + 1]


def test_depth_follows_the_range_share_within_bounds():
    assert depth_for_range(MIN_TOKEN, MAX_TOKEN) == MAX_TREE_DEPTH
    assert depth_for_range(0, 2**64 // 48) == MAX_TREE_DEPTH  # 16 vnodes x 3 nodes
    assert depth_for_range(0, 2**64 // 512) == 20 - 9  # the range's share of 2**20 leaves
    assert depth_for_range(0, 2**64 // 2048) == MIN_TREE_DEPTH  # clamped
    assert depth_for_range(0, 2**40) == MIN_TREE_DEPTH
    assert depth_for_range(0, 100) == 6  # never a leaf narrower than one token
    assert depth_for_range(5, 6) == 0


def test_builder_refuses_partitions_out_of_ring_order():
    b = TreeBuilder(MIN_TOKEN, MAX_TOKEN, 10)
    b.add(10**18, b"x" * 16)
    with pytest.raises(AssertionError):
        b.add(-10**18, b"y" * 16)


# ---- the property: difference finds exactly the differing ranges -----------------------

_token = st.integers(MIN_TOKEN + 1, MAX_TOKEN)


def _digest(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "big", signed=True), digest_size=16).digest()


@settings(max_examples=300, deadline=None)
@given(base=st.dictionaries(_token, st.integers(0, 3), max_size=60),
       changes=st.dictionaries(_token, st.one_of(st.none(), st.integers(4, 6)), max_size=8),
       depth=st.integers(0, 12), narrow=st.booleans())
def test_difference_finds_exactly_the_differing_ranges(base, changes, depth, narrow):
    lo, hi = (MIN_TOKEN, MAX_TOKEN)
    if narrow:  # a small range where tokens crowd into few leaves
        lo, hi = -(2**20), 2**20
        base = {t % (2**21) - 2**20 + 1: v for t, v in base.items()}
        changes = {t % (2**21) - 2**20 + 1: v for t, v in changes.items()}
    other = dict(base)
    for token, v in changes.items():
        if v is None:
            other.pop(token, None)
        else:
            other[token] = v
    a = build_tree(lo, hi, depth, [(t, _digest(v)) for t, v in sorted(base.items())])
    b = build_tree(lo, hi, depth, [(t, _digest(v)) for t, v in sorted(other.items())])
    differing_tokens = {t for t in base.keys() | other.keys() if base.get(t) != other.get(t)}
    expected_leaves = sorted({leaf_index(lo, hi, depth, t) for t in differing_tokens})
    assert differing_leaves(a, b) == expected_leaves
    assert differing_leaves(b, a) == expected_leaves
    assert differing_leaves_by_descent(a, b) == expected_leaves  # the root-down descent agrees
    ranges = difference(a, b)
    # exactly the differing leaves' ranges, joined, in ring order, disjoint
    covered = [i for i in range(1 << depth)
               if any(s < leaf_bound(lo, hi, depth, i + 1) <= e for s, e in ranges)]
    assert covered == expected_leaves
    assert all(s < e for s, e in ranges)
    assert all(x[1] < y[0] for x, y in zip(ranges, ranges[1:]))  # joined when touching
    for t in differing_tokens:
        assert any(s < t <= e for s, e in ranges)
    assert (a.root() == b.root()) == (not differing_tokens)
