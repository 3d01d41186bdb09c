"""The consistency-level table: how many replies each level needs and from where."""

from __future__ import annotations

import pytest

from agora.core.quorum import requirement
from agora.core.types import ConsistencyLevel as CL

DCS = {"a1": "us", "a2": "us", "a3": "us", "b1": "eu", "b2": "eu", "b3": "eu", "c1": "asia"}
dc_of = DCS.__getitem__
R3 = ["a1", "a2", "a3"]
NTS = ["a1", "a2", "a3", "b1", "b2", "b3", "c1"]
NTS_RF = {"us": 3, "eu": 3, "asia": 1}


@pytest.mark.parametrize("cl,needed", [(CL.ANY, 1), (CL.ONE, 1), (CL.TWO, 2), (CL.THREE, 3),
                                       (CL.QUORUM, 2), (CL.ALL, 3), (CL.LOCAL_ONE, 1),
                                       (CL.LOCAL_QUORUM, 2), (CL.EACH_QUORUM, 2)])
def test_simple_strategy_rf3(cl, needed):
    req = requirement(cl, 3, "us", None)
    assert req.total == needed
    assert not req.satisfied(req.reached(map(dc_of, ["a1"] * (needed - 1))))
    assert req.satisfied(req.reached(map(dc_of, R3[:needed])))


def test_quorum_is_a_majority_of_all_replicas_across_dcs():
    req = requirement(CL.QUORUM, 7, "us", NTS_RF)
    assert req.total == 4  # 7 // 2 + 1
    assert req.satisfied(req.reached(map(dc_of, ["b1", "b2", "c1", "a1"])))


def test_local_quorum_counts_only_the_local_dc():
    req = requirement(CL.LOCAL_QUORUM, 7, "eu", NTS_RF)
    assert req.per_dc == {"eu": 2}
    assert not req.satisfied(req.reached(map(dc_of, ["a1", "a2", "a3", "b1"])))
    assert req.satisfied(req.reached(map(dc_of, ["b1", "b3"])))


def test_local_one_needs_a_local_replica():
    req = requirement(CL.LOCAL_ONE, 7, "asia", NTS_RF)
    assert not req.satisfied(req.reached(map(dc_of, ["a1", "b1"])))
    assert req.satisfied(req.reached(map(dc_of, ["c1"])))


def test_each_quorum_needs_a_majority_everywhere():
    req = requirement(CL.EACH_QUORUM, 7, "us", NTS_RF)
    assert req.per_dc == {"asia": 1, "eu": 2, "us": 2}
    assert not req.satisfied(req.reached(map(dc_of, ["a1", "a2", "b1", "b2"])))
    assert req.satisfied(req.reached(map(dc_of, ["a1", "a2", "b1", "b2", "c1"])))


def test_w_plus_r_greater_than_n_overlaps_for_every_choice():
    """The seed's quorum math: any W replicas and any R replicas share one when W + R > N."""
    from itertools import combinations
    for w_cl, r_cl in [(CL.QUORUM, CL.QUORUM), (CL.ALL, CL.ONE), (CL.ONE, CL.ALL)]:
        w = requirement(w_cl, 3, "us", None).total
        r = requirement(r_cl, 3, "us", None).total
        assert w + r > 3
        assert all(set(ws) & set(rs) for ws in combinations(R3, w) for rs in combinations(R3, r))
    w = requirement(CL.ONE, 3, "us", None).total
    r = requirement(CL.ONE, 3, "us", None).total
    assert any(not (set(ws) & set(rs)) for ws in combinations(R3, w) for rs in combinations(R3, r))


def test_requirement_comes_from_the_replication_factor_not_the_known_replicas():
    """A coordinator that knows fewer replicas than RF (just restarted, ring incomplete) must
    still need a majority of RF: 2 of 3, which one known replica cannot give."""
    req = requirement(CL.QUORUM, 3, "us", None)
    assert req.total == 2
    assert not req.satisfied(req.reached(["us"]))


@pytest.mark.parametrize("cl", [CL.ONE, CL.TWO, CL.QUORUM, CL.ALL, CL.LOCAL_ONE, CL.LOCAL_QUORUM,
                                CL.EACH_QUORUM, CL.ANY])
@pytest.mark.parametrize("per_dc", [None, {"dc1": 3, "dc2": 2}, {"dc1": 2, "dc2": 0}])
def test_the_shortcuts_agree_with_counting_every_dc(cl, per_dc):
    """bucket_of and reached_by skip looking DCs up when every reply counts alike; they must
    answer what counts() and reached() do with every DC looked up."""
    rf = 3 if per_dc is None else sum(per_dc.values())
    req = requirement(cl, rf, "dc1", per_dc)
    dcs = {"a": "dc1", "b": "dc1", "c": "dc2", "d": "dc3", "e": ""}
    looked_up = []

    def dc_of(node):
        looked_up.append(node)
        return dcs[node]

    for nodes in ([], ["a"], ["a", "c"], ["a", "b", "c", "d", "e"], ["d", "e"]):
        assert req.reached_by(nodes, dc_of) == req.reached(dcs[n] for n in nodes)
        for n in nodes:
            assert req.bucket_of(n, dc_of) == req.counts(dcs[n])
    if None in req.per_dc:
        assert looked_up == []


def test_requirements_are_kept_per_arguments_and_per_keyspace_factors():
    a, b = {"us": 3, "eu": 3}, {"us": 5, "eu": 1}
    first = requirement(CL.LOCAL_QUORUM, 6, "us", a)
    assert requirement(CL.LOCAL_QUORUM, 6, "us", a) is first and first.per_dc == {"us": 2}
    assert requirement(CL.LOCAL_QUORUM, 6, "us", b).per_dc == {"us": 3}  # other factors, same total
    assert requirement(CL.LOCAL_QUORUM, 6, "eu", a).per_dc == {"eu": 2}
    assert requirement(CL.QUORUM, 3, "us", None).per_dc == {None: 2}
    assert requirement(CL.QUORUM, 5, "us", None).per_dc == {None: 3}
