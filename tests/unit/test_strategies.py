"""The token ring and the replication strategies agree with Cassandra's rules and with the
python driver's token map (`cassandra.metadata`), on hand-made rings and on hundreds of
seeded random ones.

How the driver is driven: `Host` objects located with `set_location_info(dc, rack)`, a
`{Murmur3Token: Host}` owner map and the sorted token list go to the driver's
`SimpleStrategy` / `NetworkTopologyStrategy.make_token_replica_map`, wrapped in a
`TokenMap` so that lookups of arbitrary tokens use the driver's own bisect.

What is compared: SimpleStrategy lists exactly, order included (the driver and Cassandra walk
identically). NetworkTopologyStrategy as sets: the driver groups replicas by DC and puts
distinct racks first, Cassandra lists them in ring-walk order (we follow Cassandra; a test
checks that order independently). Where the driver's vnode bug makes its list hold a node
twice (see `test_driver_nts_duplicate_bug_is_not_ours`), we check the driver's nodes are
among ours and that ours has the right size and rack spread.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from cassandra.connection import DefaultEndPoint
from cassandra.metadata import Murmur3Token, TokenMap
from cassandra.metadata import ReplicationStrategy as DriverStrategy
from cassandra.pool import Host
from cassandra.policies import SimpleConvictionPolicy

from agora.core.errors import InvalidRequest
from agora.core.ring.partitioner import allocate_tokens
from agora.core.ring.strategies import (
    MAX_REPLICATION_FACTOR,
    NetworkTopologyStrategy,
    ReplicationStrategy,
    SimpleStrategy,
    ownership,
    replica_ranges,
    strategy_from_options,
)
from agora.core.ring.token_ring import (
    RING_SPAN,
    NodeInfo,
    TokenRing,
    range_contains,
    range_size,
    unwrap_range,
)
from agora.core.types import MAX_TOKEN, MIN_TOKEN, NodeId

RANDOM_RINGS = 240  # seeded random rings compared against the driver
RANDOM_TOKENS_PER_RING = 40  # arbitrary lookups per ring, besides every ring token +/- 1


def node(i: int) -> NodeId:
    return f"127.0.0.{i}:7000"


def ring_of(*specs: tuple[int, str, str, tuple[int, ...]]) -> TokenRing:
    return TokenRing({node(i): NodeInfo(dc, rack, tokens) for i, dc, rack, tokens in specs})


# --- the ring -----------------------------------------------------------------------------


def test_empty_ring_behaves() -> None:
    ring = TokenRing()
    assert ring.sorted_tokens == () and ring.nodes == () and ring.is_empty
    assert ring.primary_of(0) is None
    with pytest.raises(IndexError):
        ring.token_index_for(0)
    assert ring.ownership() == {} and ring.ranges_for(node(1)) == []
    assert ring.datacenters() == ()
    for strategy in (SimpleStrategy(3), NetworkTopologyStrategy.from_rfs({"dc1": 3})):
        assert strategy.replicas(ring, 123) == ()
        assert strategy.replica_table(ring) == ()
        assert ownership(ring, strategy) == {}


def test_ring_of_tokenless_nodes_is_empty_but_knows_them() -> None:
    ring = ring_of((2, "dc1", "r1", ()), (1, "dc2", "r1", ()))
    assert ring.is_empty and ring.nodes == (node(1), node(2))
    assert ring.dc_of(node(1)) == "dc2" and ring.datacenters() == ("dc1", "dc2")
    assert ring.ownership() == {node(1): 0.0, node(2): 0.0}
    assert SimpleStrategy(2).replicas(ring, 5) == ()
    assert ownership(ring, SimpleStrategy(2)) == {node(1): 0.0, node(2): 0.0}


def test_token_lookup_is_bisect_left_with_wraparound() -> None:
    ring = ring_of((1, "dc1", "r1", (10,)), (2, "dc1", "r1", (30, 20)))
    assert ring.sorted_tokens == (10, 20, 30)
    assert ring.owners == (node(1), node(2), node(2))
    expected = {MIN_TOKEN: 0, 9: 0, 10: 0, 11: 1, 20: 1, 21: 2, 30: 2, 31: 0, MAX_TOKEN: 0}
    for token, index in expected.items():
        assert ring.token_index_for(token) == index, token
        assert ring.primary_of(token) == ring.owner_of_token_index(index)


def test_ring_accessors_and_value_semantics() -> None:
    ring = ring_of((3, "dc2", "rB", (5,)), (1, "dc1", "rA", (7, -3)), (2, "dc1", "rB", ()))
    assert ring.nodes == (node(1), node(2), node(3))
    assert ring.tokens_of(node(1)) == (-3, 7)
    assert (ring.dc_of(node(3)), ring.rack_of(node(3))) == ("dc2", "rB")
    assert ring.racks_in("dc1") == ("rA", "rB") and ring.nodes_in("dc1") == (node(1), node(2))
    assert node(2) in ring and node(9) not in ring
    assert list(ring) == [(-3, node(1)), (5, node(3)), (7, node(1))]
    same = TokenRing({n: ring.info(n) for n in reversed(ring.nodes)})
    assert same == ring and hash(same) == hash(ring)
    grown = ring.with_node(node(4), NodeInfo("dc1", "rA", (100,)))
    assert grown != ring and grown.primary_of(99) == node(4)
    assert grown.without_node(node(4)) == ring and ring.without_node(node(9)) == ring


def test_bad_rings_are_refused() -> None:
    with pytest.raises(ValueError, match="claimed by both"):
        ring_of((1, "dc1", "r1", (10, 20)), (2, "dc1", "r1", (20,)))
    with pytest.raises(ValueError, match="duplicate token"):
        NodeInfo("dc1", "r1", (5, 5))
    with pytest.raises(ValueError, match="signed 64-bit"):
        NodeInfo("dc1", "r1", (MAX_TOKEN + 1,))
    with pytest.raises(TypeError):
        TokenRing({node(1): ("dc1", "r1", (1,))})  # type: ignore[dict-item]


def test_ownership_and_primary_ranges() -> None:
    ring = ring_of((1, "dc1", "r1", (0,)), (2, "dc1", "r1", (2**62,)))
    own = ring.ownership()
    assert own == {node(1): 0.75, node(2): 0.25}
    assert ring.ranges_for(node(1)) == [(2**62, 0)]  # wraps
    assert ring.ranges_for(node(2)) == [(0, 2**62)]
    single = ring_of((1, "dc1", "r1", (42,)))
    assert single.ownership() == {node(1): 1.0}
    assert single.ranges_for(node(1)) == [(42, 42)]
    assert all(range_contains(42, 42, t) for t in (MIN_TOKEN, 42, 43, MAX_TOKEN))


def test_range_arithmetic() -> None:
    assert range_size(0, 10) == 10 and range_size(10, 0) == RING_SPAN - 10
    assert range_size(5, 5) == RING_SPAN
    assert range_contains(0, 10, 10) and not range_contains(0, 10, 0)
    assert range_contains(10, 0, MAX_TOKEN) and range_contains(10, 0, MIN_TOKEN)
    assert not range_contains(10, 0, 5)
    assert unwrap_range(0, 10) == [(0, 10)]
    assert unwrap_range(10, 0) == [(10, MAX_TOKEN), (MIN_TOKEN, 0)]
    assert unwrap_range(MAX_TOKEN, 0) == [(MIN_TOKEN, 0)]
    assert unwrap_range(10, MIN_TOKEN) == [(10, MAX_TOKEN)]
    assert unwrap_range(3, 3) == [(3, MAX_TOKEN), (MIN_TOKEN, 3)]


def test_every_token_has_exactly_one_primary_range() -> None:
    rng = random.Random(5)
    for ring in _random_rings(rng, 30):
        ranges = {n: ring.ranges_for(n) for n in ring.nodes}
        assert abs(sum(ring.ownership().values()) - 1.0) < 1e-9
        for token in _probe_tokens(ring, rng):
            holders = [n for n, rs in ranges.items() for r in rs if range_contains(*r, token)]
            assert holders == [ring.primary_of(token)]
            pieces = [p for n in holders for r in ranges[n] for p in unwrap_range(*r)]
            if token != MIN_TOKEN:  # never a key's token; unwrapped ranges leave it out
                assert sum(p[0] < token <= p[1] for p in pieces) == 1


# --- parsing replication options ----------------------------------------------------------

LOCATOR = "org.apache.cassandra.locator."


@pytest.mark.parametrize(("options", "known_dcs", "expected"), [
    ({"class": "SimpleStrategy", "replication_factor": "3"}, (), SimpleStrategy(3)),
    ({"class": LOCATOR + "SimpleStrategy", "replication_factor": "0"}, (), SimpleStrategy(0)),
    ({"class": "SimpleStrategy", "replication_factor": 2}, (), SimpleStrategy(2)),
    ({"class": "NetworkTopologyStrategy", "dc2": "2", "dc1": "3"}, (),
     NetworkTopologyStrategy((("dc1", 3), ("dc2", 2)))),
    ({"class": LOCATOR + "NetworkTopologyStrategy", "dc1": "0"}, (),
     NetworkTopologyStrategy((("dc1", 0),))),
    ({"class": "NetworkTopologyStrategy", "replication_factor": "3", "dc2": "1"},
     ("dc1", "dc2", "dc3"), NetworkTopologyStrategy.from_rfs({"dc1": 3, "dc2": 1, "dc3": 3})),
    ({"class": "NetworkTopologyStrategy", "replication_factor": "2", "dc9": "1"}, (),
     NetworkTopologyStrategy.from_rfs({"dc9": 1})),
])
def test_valid_options(options: dict, known_dcs: tuple, expected: ReplicationStrategy) -> None:
    strategy = strategy_from_options(options, known_dcs)
    assert strategy == expected
    assert strategy_from_options(strategy.options()) == strategy  # round trip


@pytest.mark.parametrize(("options", "message"), [
    ({}, "Missing replication strategy class"),
    ({"replication_factor": "3"}, "Missing replication strategy class"),
    ({"class": "Nope"},
     "Unable to find replication strategy class 'org.apache.cassandra.locator.Nope'"),
    ({"class": "com.example.SimpleStrategy", "replication_factor": "1"},
     "Unable to find replication strategy class 'com.example.SimpleStrategy'"),
    ({"class": "simplestrategy", "replication_factor": "1"}, "Unable to find"),
    ({"class": "LocalStrategy"}, "Unable to find"),
    ({"class": "SimpleStrategy"}, "SimpleStrategy requires a replication_factor strategy option."),
    ({"class": "SimpleStrategy", "replication_factor": "3", "dc1": "1"},
     r"Unrecognized strategy option \{dc1\} passed to SimpleStrategy"),
    ({"class": "SimpleStrategy", "replication_factor": "three"},
     "Replication factor must be numeric; found three"),
    ({"class": "SimpleStrategy", "replication_factor": ""}, "must be numeric"),
    ({"class": "SimpleStrategy", "replication_factor": " 3"}, "must be numeric"),
    ({"class": "SimpleStrategy", "replication_factor": "\u0663"}, "must be numeric"),
    ({"class": "SimpleStrategy", "replication_factor": "-1"},
     "Replication factor must be non-negative; found -1"),
    ({"class": "SimpleStrategy", "replication_factor": "3/1"},
     "Transient replication is not supported"),
    ({"class": "SimpleStrategy", "replication_factor": str(MAX_REPLICATION_FACTOR + 1)},
     f"Replication factor must be at most {MAX_REPLICATION_FACTOR}"),
    ({"class": "NetworkTopologyStrategy"},
     "Configuration for at least one datacenter must be present"),
    ({"class": "NetworkTopologyStrategy", "replication_factor": "3"},
     "Configuration for at least one datacenter must be present"),
    ({"class": "NetworkTopologyStrategy", "dc1": "x"}, "must be numeric; found x"),
    ({"class": "NetworkTopologyStrategy", "dc1": "1", "replication_factor": "-2"}, "non-negative"),
])
def test_invalid_options(options: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        strategy_from_options(options)


def test_options_not_a_map() -> None:
    with pytest.raises(InvalidRequest):
        strategy_from_options("SimpleStrategy")  # type: ignore[arg-type]


def test_replication_factor_accessors() -> None:
    simple = SimpleStrategy(3)
    assert not simple.datacenter_aware
    assert simple.dc_replication_factors() == {} and simple.total_rf() == 3
    assert simple.replication_factor_in("any") == 3
    assert simple.options() == {"class": LOCATOR + "SimpleStrategy", "replication_factor": "3"}
    nts = NetworkTopologyStrategy.from_rfs({"dc2": 2, "dc1": 3, "dc3": 0})
    assert nts.datacenter_aware
    assert list(nts.dc_replication_factors().items()) == [("dc1", 3), ("dc2", 2), ("dc3", 0)]
    assert nts.total_rf() == 5
    assert nts.replication_factor_in("dc2") == 2 and nts.replication_factor_in("dc9") == 0
    assert nts.options() == {"class": LOCATOR + "NetworkTopologyStrategy",
                             "dc1": "3", "dc2": "2", "dc3": "0"}


def test_direct_construction_is_checked() -> None:
    with pytest.raises(ValueError):
        SimpleStrategy(-1)
    with pytest.raises(ValueError):
        NetworkTopologyStrategy((("dc2", 1), ("dc1", 1)))  # not sorted
    with pytest.raises(ValueError):
        NetworkTopologyStrategy((("dc1", 1), ("dc1", 2)))


# --- placement on hand-made rings ---------------------------------------------------------


def test_simple_strategy_walks_clockwise_over_distinct_nodes() -> None:
    ring = ring_of((1, "dc1", "r1", (10, 40)), (2, "dc1", "r1", (20,)), (3, "dc2", "r9", (30,)))
    assert SimpleStrategy(2).replicas(ring, 15) == (node(2), node(3))
    assert SimpleStrategy(3).replicas(ring, 35) == (node(1), node(2), node(3))  # skips dup
    assert SimpleStrategy(9).replicas(ring, 41) == (node(1), node(2), node(3))
    assert SimpleStrategy(0).replicas(ring, 41) == ()


def test_nts_spreads_over_racks_then_repeats_in_walk_order() -> None:
    # dc1: rack A = 1, 2, 3; rack B = 4.  Ring order: 1 2 2' 4 3.
    ring = ring_of((1, "dc1", "A", (10,)), (2, "dc1", "A", (20, 30)), (3, "dc1", "A", (50,)),
                   (4, "dc1", "B", (40,)))
    nts = lambda rf: NetworkTopologyStrategy.from_rfs({"dc1": rf})  # noqa: E731
    assert nts(1).replicas(ring, 10) == (node(1),)
    assert nts(2).replicas(ring, 10) == (node(1), node(4))  # B before a second A
    assert nts(3).replicas(ring, 10) == (node(1), node(2), node(4))
    assert nts(4).replicas(ring, 10) == (node(1), node(2), node(4), node(3))
    assert nts(7).replicas(ring, 10) == (node(1), node(2), node(4), node(3))


def test_nts_dcs_are_independent_and_missing_dcs_are_ignored() -> None:
    ring = ring_of((1, "dc1", "r1", (10,)), (2, "dc2", "r1", (20,)), (3, "dc1", "r2", (30,)),
                   (4, "dc2", "r1", (40,)))
    nts = NetworkTopologyStrategy.from_rfs({"dc1": 1, "dc2": 2, "dc_gone": 3})
    assert nts.replicas(ring, 25) == (node(3), node(4), node(2))
    assert nts.replicas(ring, 5) == (node(1), node(2), node(4))
    assert NetworkTopologyStrategy.from_rfs({"dc_gone": 3}).replicas(ring, 5) == ()
    assert NetworkTopologyStrategy.from_rfs({"dc2": 0, "dc1": 1}).replicas(ring, 15) == (node(3),)


def test_driver_nts_duplicate_bug_is_not_ours() -> None:
    """cassandra-driver 3.30.1 remembers a skipped node once per *token* it is met at, and
    appends them all once the racks are covered: with vnodes a node can be listed twice and
    another left out. Cassandra keeps a set (3.x) or accepts rack repeats as met (4.x)."""
    ring = ring_of((1, "dc1", "A", (10,)), (2, "dc1", "A", (20, 30)), (3, "dc1", "A", (50,)),
                   (4, "dc1", "B", (40,)))
    ours = NetworkTopologyStrategy.from_rfs({"dc1": 4}).replicas(ring, 10)
    theirs = _driver_replicas(ring, {"class": "NetworkTopologyStrategy", "dc1": "4"}, 10)
    assert theirs == [node(1), node(4), node(2), node(2)]  # the driver's answer today
    assert ours == (node(1), node(2), node(4), node(3))


def test_replica_tables_are_built_once_per_ring_and_setting() -> None:
    ring = ring_of((1, "dc1", "r1", (10,)), (2, "dc1", "r2", (20,)))
    a = NetworkTopologyStrategy.from_rfs({"dc1": 2})
    b = strategy_from_options({"class": "NetworkTopologyStrategy", "dc1": "2"})
    assert a is not b and a == b
    table = a.replica_table(ring)
    assert b.replica_table(ring) is table  # equal settings share a table
    assert a.replica_table(TokenRing({n: ring.info(n) for n in ring.nodes})) is not table
    assert SimpleStrategy(2).replica_table(ring) is not table


def test_effective_ownership() -> None:
    ring = ring_of((1, "dc1", "r1", (0,)), (2, "dc1", "r1", (2**62,)),
                   (3, "dc2", "r1", (2**63 - 1,)))
    assert ownership(ring, NetworkTopologyStrategy.from_rfs({"dc1": 3, "dc2": 1})) == {
        node(1): 1.0, node(2): 1.0, node(3): 1.0}
    own = ownership(ring, SimpleStrategy(1))
    assert own == pytest.approx(ring.ownership())
    own = ownership(ring, NetworkTopologyStrategy.from_rfs({"dc1": 1}))
    assert own[node(3)] == 0.0 and own[node(1)] + own[node(2)] == pytest.approx(1.0)
    assert replica_ranges(ring, SimpleStrategy(1), node(2)) == ring.ranges_for(node(2))
    assert replica_ranges(ring, SimpleStrategy(3), node(2)) == [
        ring.range_of_token_index(i) for i in range(3)]


# --- agreement with the driver on random rings --------------------------------------------


def _random_rings(rng: random.Random, count: int) -> Iterator[TokenRing]:
    for _ in range(count):
        num_nodes, num_dcs, num_racks = rng.randint(1, 9), rng.randint(1, 3), rng.randint(1, 3)
        num_tokens = rng.randint(1, 16)
        uniform = rng.random() < 0.5  # else each node picks its own count, up to num_tokens
        taken: set[int] = set()
        infos = {}
        for i in range(1, num_nodes + 1):
            mine = num_tokens if uniform else rng.randint(1, num_tokens)
            tokens = allocate_tokens(mine, rng, taken)
            taken.update(tokens)
            infos[node(i)] = NodeInfo(f"dc{rng.randint(1, num_dcs)}",
                                      f"rack{rng.randint(1, num_racks)}", tuple(tokens))
        yield TokenRing(infos)


def _probe_tokens(ring: TokenRing, rng: random.Random) -> list[int]:
    near = [t + d for t in ring.sorted_tokens for d in (-1, 0, 1)
            if MIN_TOKEN <= t + d <= MAX_TOKEN]
    anywhere = [rng.randint(MIN_TOKEN, MAX_TOKEN) for _ in range(RANDOM_TOKENS_PER_RING)]
    return near + anywhere + [MIN_TOKEN, MIN_TOKEN + 1, MAX_TOKEN]


def _driver_token_map(ring: TokenRing, options: dict) -> tuple[TokenMap, dict]:
    hosts = {}
    for n in ring.nodes:
        address, port = n.rsplit(":", 1)
        host = Host(DefaultEndPoint(address, int(port)), SimpleConvictionPolicy)
        host.set_location_info(ring.dc_of(n), ring.rack_of(n))
        hosts[n] = host
    owner = {Murmur3Token(t): hosts[n] for t, n in ring}
    strategy = DriverStrategy.create(options["class"],
                                     {k: v for k, v in options.items() if k != "class"})
    assert strategy is not None
    metadata = SimpleNamespace(keyspaces={"ks": SimpleNamespace(replication_strategy=strategy)})
    token_map = TokenMap(Murmur3Token, owner, sorted(owner), metadata)
    back = {host: n for n, host in hosts.items()}
    return token_map, back


def _driver_replicas(ring: TokenRing, options: dict, token: int) -> list[NodeId]:
    token_map, back = _driver_token_map(ring, options)
    return [back[h] for h in token_map.get_replicas("ks", Murmur3Token(token))]


def _random_nts_options(ring: TokenRing, rng: random.Random) -> dict:
    options = {"class": rng.choice(["NetworkTopologyStrategy",
                                    LOCATOR + "NetworkTopologyStrategy"])}
    for dc in ("dc1", "dc2", "dc3"):
        if rng.random() < 0.85:
            options[dc] = str(rng.randint(0, 5))  # may exceed the DC's nodes, or its racks
    if rng.random() < 0.5:
        options["dc_without_nodes"] = str(rng.randint(1, 3))
    if len(options) == 1:
        options["dc1"] = "1"
    return options


def _expected_count(ring: TokenRing, rfs: dict[str, int]) -> int:
    owners = set(ring.owners)
    return sum(min(rf, sum(1 for n in owners if ring.dc_of(n) == dc)) for dc, rf in rfs.items())


def _check_nts_shape(ring: TokenRing, strategy: NetworkTopologyStrategy, token: int,
                     ours: tuple[NodeId, ...]) -> None:
    """Cassandra's NTS rules, checked without the driver: size, rack spread, walk order."""
    rfs = strategy.dc_replication_factors()
    assert len(set(ours)) == len(ours) == _expected_count(ring, rfs)
    owners = set(ring.owners)
    for dc, rf in rfs.items():
        in_dc = [n for n in ours if ring.dc_of(n) == dc]
        racks = {ring.rack_of(n) for n in owners if ring.dc_of(n) == dc}
        assert len({ring.rack_of(n) for n in in_dc}) == min(rf, len(racks))
    start, n = ring.token_index_for(token), len(ring.owners)
    first_met = {}
    for step in range(n):
        first_met.setdefault(ring.owners[(start + step) % n], step)
    assert [first_met[r] for r in ours] == sorted(first_met[r] for r in ours)


def test_simple_strategy_matches_driver_exactly() -> None:
    rng = random.Random(1234)
    compared = 0
    for ring in _random_rings(rng, RANDOM_RINGS):
        probes = _probe_tokens(ring, rng)
        for rf in (1, 2, 3, 4):
            options = {"class": "SimpleStrategy", "replication_factor": str(rf)}
            token_map, back = _driver_token_map(ring, options)
            ours = strategy_from_options(options)
            for token in probes:
                theirs = [back[h] for h in token_map.get_replicas("ks", Murmur3Token(token))]
                assert list(ours.replicas(ring, token)) == theirs, (ring, rf, token)
                compared += 1
    assert compared > 50_000


def test_nts_matches_driver_as_sets() -> None:
    rng = random.Random(4321)
    compared = driver_duplicates = 0
    for ring in _random_rings(rng, RANDOM_RINGS):
        probes = _probe_tokens(ring, rng)
        for _ in range(3):
            options = _random_nts_options(ring, rng)
            token_map, back = _driver_token_map(ring, options)
            ours_strategy = strategy_from_options(options)
            assert isinstance(ours_strategy, NetworkTopologyStrategy)
            for token in probes:
                theirs = [back[h] for h in token_map.get_replicas("ks", Murmur3Token(token))]
                ours = ours_strategy.replicas(ring, token)
                _check_nts_shape(ring, ours_strategy, token, ours)
                if len(set(theirs)) == len(theirs):
                    assert set(ours) == set(theirs), (ring, options, token, ours, theirs)
                else:  # the driver's vnode bug: its distinct nodes are a subset of ours
                    driver_duplicates += 1
                    assert set(theirs) <= set(ours)
                compared += 1
    assert compared > 50_000
    assert driver_duplicates < compared // 20  # the bug is real but rare
    print(f"NTS: {compared} lookups compared, driver listed a node twice in {driver_duplicates}")


def test_primary_comes_first_when_its_dc_is_replicated() -> None:
    rng = random.Random(99)
    for ring in _random_rings(rng, 60):
        options = _random_nts_options(ring, rng)
        strategy = strategy_from_options(options)
        for token in _probe_tokens(ring, rng):
            ours = strategy.replicas(ring, token)
            primary = ring.primary_of(token)
            if strategy.replication_factor_in(ring.dc_of(primary)) > 0:
                assert ours[0] == primary


def test_effective_ownership_sums_to_replica_count() -> None:
    rng = random.Random(77)
    for ring in _random_rings(rng, 40):
        strategy = strategy_from_options(_random_nts_options(ring, rng))
        own = ownership(ring, strategy)
        expected = _expected_count(ring, strategy.dc_replication_factors())
        assert sum(own.values()) == pytest.approx(expected)
        assert all(0.0 <= v <= 1.0 + 1e-12 for v in own.values())
        counts = Counter(n for row in strategy.replica_table(ring) for n in row)
        assert set(counts) == {n for n, v in own.items() if v > 0}
