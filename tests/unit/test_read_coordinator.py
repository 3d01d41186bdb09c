"""The read coordinator driven by hand (agora.core.coordinator.read): which replicas a read
asks, and what its speculative-retry threshold is measured from."""

from __future__ import annotations

import pytest

from agora.core.coordinator.latency import CLOCK_RESOLUTION_MS
from agora.core.coordinator.read import SPECULATE_TIMER, ReadCoordinator
from agora.core.effects import Send, SetTimer
from agora.core.errors import ReadFailure
from agora.core.messages import ReadRsp
from agora.core.reconcile import digest
from agora.core.types import ConsistencyLevel as CL
from agora.core.types import ReadCommand
from tests.unit.placement import HandPlacement

DCS = {"a1": "us", "a2": "us", "a3": "us", "b1": "eu", "b2": "eu", "b3": "eu", "c1": "asia"}
NTS = ["a1", "a2", "a3", "b1", "b2", "b3", "c1"]
NTS_RF = {"us": 3, "eu": 3, "asia": 1}
TABLE = b"t" * 16


class _Placement(HandPlacement):
    """Every node of DCS alive, this one a1 in us; the replicas of every key are given."""

    def __init__(self, replicas, per_dc):
        super().__init__("a1", "us", DCS, DCS)
        self.replicas, self.per_dc = replicas, per_dc

    def replicas_for(self, table_id, key):
        rf = len(self.replicas) if self.per_dc is None else sum(self.per_dc.values())
        return tuple(self.replicas), self.per_dc, rf


@pytest.mark.parametrize("replicas,per_dc,cl,data,digests", [
    (["a3", "a2", "a1"], None, CL.ONE, "a1", []),
    (["a3", "a2", "a1"], None, CL.QUORUM, "a1", ["a2"]),
    (["a3", "a2", "a1"], None, CL.ALL, "a1", ["a2", "a3"]),
    (NTS, NTS_RF, CL.LOCAL_QUORUM, "a1", ["a2"]),
    (NTS, NTS_RF, CL.QUORUM, "a1", ["a2", "a3", "b1"]),
    (NTS, NTS_RF, CL.EACH_QUORUM, "a1", ["a2", "b1", "b2", "c1"]),
])
def test_a_read_asks_the_closest_replicas_the_level_needs(replicas, per_dc, cl, data, digests):
    """One data request to the closest replica and digest requests to the next closest, as
    few as the level needs (the SimpleStrategy shortcut and the per-DC count agree)."""
    rc = ReadCoordinator(_Placement(replicas, per_dc), read_timeout_ms=1000)
    sends = [e for e in rc.start(1, ReadCommand(TABLE, b"k"), cl, 0) if isinstance(e, Send)]
    assert [s.target for s in sends if not s.message.digest_only] == [data]
    assert sorted(s.target for s in sends if s.message.digest_only) == digests



def test_the_speculation_threshold_follows_what_reads_wait_for():
    """Each QUORUM read gets its own (local) answer at once and the other replica's digest
    later: after 5 ms for most reads, 50 ms for 1.5 % of them. The 99th percentile of what
    reads wait for is 50 ms (the timer waits 1 ms more: latencies are measured in whole
    milliseconds); counting the immediate local answers too would put it at 5 ms."""
    placement = _Placement(["a3", "a2", "a1"], None)
    rc = ReadCoordinator(placement, read_timeout_ms=1000)
    nothing = digest(None)
    for client in range(1, 401):
        start = client * 100
        effects = rc.start(client, ReadCommand(TABLE, b"k%d" % client), CL.QUORUM, start)
        req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
        rc.on_response("a1", ReadRsp(req_id, None, None), start)
        wait = 50 if client % 66 == 0 else 5
        answer = rc.on_response("a2", ReadRsp(req_id, None, nothing), start + wait)
        assert answer and answer[0].client_id == client  # answered when the digest came
    effects = rc.start(999, ReadCommand(TABLE, b"x"), CL.QUORUM, 100_000)
    # the clock counts whole milliseconds: the timer waits one more
    assert SetTimer(SPECULATE_TIMER, 50 + CLOCK_RESOLUTION_MS) in effects
    req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
    rc.on_response("a1", ReadRsp(req_id, None, None), 100_000)
    [ask] = rc.on_timer(SPECULATE_TIMER, 100_051)
    assert ask.target == "a3" and not ask.message.digest_only


def test_errors_that_leave_the_level_out_of_reach_fail_the_read_at_once():
    """QUORUM of three: a1 has answered; a2's error brings in a3; a3's error leaves one
    replica, too few: ReadFailure at once, naming both."""
    rc = ReadCoordinator(_Placement(["a3", "a2", "a1"], None), read_timeout_ms=1000)
    effects = rc.start(1, ReadCommand(TABLE, b"k"), CL.QUORUM, 0)
    req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
    assert rc.on_response("a1", ReadRsp(req_id, None, None), 1) == []
    [ask] = rc.on_response("a2", ReadRsp(req_id, None, None, "unknown table id 00"), 2)
    assert ask.target == "a3" and not ask.message.digest_only
    reply = rc.on_response("a3", ReadRsp(req_id, None, None, "storage error"), 3)[0]
    assert isinstance(reply.result, ReadFailure)
    assert (reply.result.received, reply.result.required, reply.result.failures) == (1, 2, {"a2": 3, "a3": 0})
    assert rc.in_flight == 0


def test_an_error_while_others_can_still_answer_waits_for_them():
    rc = ReadCoordinator(_Placement(["a3", "a2", "a1"], None), read_timeout_ms=1000)
    effects = rc.start(1, ReadCommand(TABLE, b"k"), CL.ONE, 0)
    req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
    [ask] = rc.on_response("a1", ReadRsp(req_id, None, None, "not serving yet"), 1)
    assert ask.target == "a2"
    [reply, *_] = rc.on_response("a2", ReadRsp(req_id, None, None), 2)
    assert reply.result is None  # a2 holds nothing: an answer, not a failure
