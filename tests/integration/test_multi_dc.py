"""Three regions of three nodes (`agora up --dc us:3 --dc eu:3 --dc asia:3`): the ring spans
datacenters, NetworkTopologyStrategy places 3 replicas in each, LOCAL_QUORUM waits only for
the local region, EACH_QUORUM for a majority in every region, and a dead node in one region
leaves both working."""

from __future__ import annotations

import pytest

from agora.runtime.admin_client import AdminError
from agora.runtime.cluster import wait_until

from .conftest import make_cluster, wait_schema_agreement


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory, "regions", dcs=["us:3", "eu:3", "asia:3"],
                           overrides={"num_tokens": 8, "hinted_handoff_enabled": False}, subnet="127.0.11")
    yield cluster
    cluster.down(kill=True)


def test_three_regions(regions):
    with regions.client("node1") as us, regions.client("node4") as eu, regions.client("node7") as asia:
        status = us.call("status", {})
        assert sorted({n["dc"] for n in status["nodes"]}) == ["asia", "eu", "us"]
        assert len(status["nodes"]) == 9 and all(n["up"] for n in status["nodes"])
        us.call("create_keyspace", {"name": "geo", "replication": {
            "class": "NetworkTopologyStrategy", "us": "3", "eu": "3", "asia": "3"}})
        us.call("create_table", {"keyspace": "geo", "name": "kv", "columns": [["k", "text"], ["v", "text"]],
                                 "partition_key": ["k"]})
        wait_schema_agreement(regions)
        owns = eu.call("status", {"keyspace": "geo"})["nodes"]
        assert all(abs(n["owns"] - 1.0) < 1e-9 for n in owns)  # RF 3 per DC of 3: everyone holds everything
        for i in range(20):
            us.call("write", {"keyspace": "geo", "table": "kv", "values": {"k": f"k{i}", "v": "us"}, "cl": "LOCAL_QUORUM"})
        for i in range(20):
            rows = asia.call("read", {"keyspace": "geo", "table": "kv", "key": {"k": f"k{i}"}, "cl": "QUORUM"})
            assert rows == [{"k": f"k{i}", "v": "us"}]
        eu.call("write", {"keyspace": "geo", "table": "kv", "values": {"k": "each", "v": "eu"}, "cl": "EACH_QUORUM"})
        assert asia.call("read", {"keyspace": "geo", "table": "kv", "key": {"k": "each"}, "cl": "LOCAL_ONE"}) == \
            [{"k": "each", "v": "eu"}]
        regions.stop("node5", kill=True)
        regions.stop("node6", kill=True)

        def eu_sees_two_down():
            nodes = eu.call("status", {})["nodes"]
            return sum(1 for n in nodes if n["dc"] == "eu" and not n["up"]) == 2
        wait_until(eu_sees_two_down, 30, "node4 to see node5 and node6 down")
        # eu has one live replica: LOCAL_QUORUM there is unavailable, but us is untouched ...
        with pytest.raises(AdminError) as err:
            eu.call("write", {"keyspace": "geo", "table": "kv", "values": {"k": "x", "v": "eu"}, "cl": "LOCAL_QUORUM"})
        assert err.value.kind == "Unavailable" and err.value.details["required"] == 2
        us.call("write", {"keyspace": "geo", "table": "kv", "values": {"k": "x", "v": "us"}, "cl": "LOCAL_QUORUM"})
        # ... and QUORUM over all 9 replicas (5 needed, 7 alive) still works from eu
        eu.call("write", {"keyspace": "geo", "table": "kv", "values": {"k": "y", "v": "eu"}, "cl": "QUORUM"})
        assert eu.call("read", {"keyspace": "geo", "table": "kv", "key": {"k": "y"}, "cl": "QUORUM"}) == [{"k": "y", "v": "eu"}]
