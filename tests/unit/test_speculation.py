"""The speculative_retry table option (agora.core.coordinator.speculation): the values
Cassandra accepts, how they are shown, and when each makes a read ask one more replica."""

from __future__ import annotations

import pytest

from agora.core.coordinator.latency import LatencyWindow
from agora.core.coordinator.read import SPECULATE_TIMER, ReadCoordinator
from agora.core.coordinator.speculation import DEFAULT, parse_speculative_retry
from agora.core.effects import Send, SetTimer
from agora.core.errors import InvalidRequest
from agora.core.messages import ReadRsp
from agora.core.reconcile import digest
from agora.core.schema.model import ddl_options, validate_table_options
from agora.core.types import ConsistencyLevel as CL
from agora.core.types import ReadCommand
from tests.unit.placement import HandPlacement

TABLE = b"t" * 16


@pytest.mark.parametrize("text,shown", [
    ("99p", "99p"), ("99PERCENTILE", "99p"), ("99.5p", "99.5p"), ("50.0percentile", "50p"),
    (".5p", "0.5p"), ("99.p", "99p"), ("50ms", "50ms"), ("0ms", "0ms"),
    ("10.0ms", "10ms"), ("50.7ms", "50ms"),  # Cassandra 3 showed '10.0ms'; fractions are dropped
    ("none", "NONE"), ("ALWAYS", "ALWAYS"),
    ("MIN(99p,50ms)", "MIN(99p,50ms)"), ("max(20ms,95PERCENTILE)", "MAX(95p,20ms)"),
    ("MIN(99p, 50ms)", "MIN(99p,50ms)"), ("max(20ms , 95PERCENTILE)", "MAX(95p,20ms)"),  # as Cassandra
])
def test_accepted_values_are_shown_as_cassandra_shows_them(text, shown):
    assert str(parse_speculative_retry(text)) == shown
    assert ddl_options({"speculative_retry": text}) == {"speculative_retry": shown}


@pytest.mark.parametrize("text", ["", "fast", "100p", "0p", "-5ms", "50 ms", " 99p ", "MIN( 99p , 50ms )",
                                  "MIN(99p,95p)", "MAX(10ms,20ms)", "MIN(99p)", "99", "1.2.3p",
                                  "\u0669\u0669p",  # Arabic-Indic digits
                                  "99.99999p", "0.00001p",  # shown as 100p and 0p: refused
                                  "9" * 400 + "ms", "50ms\n"])
def test_other_values_are_refused_by_ddl(text):
    with pytest.raises(InvalidRequest):
        ddl_options({"speculative_retry": text})


def test_stored_and_peer_values_are_kept_as_they_are():
    """A schema from disk or from a peer (an older or newer version) is not checked against
    this version's parser: a value it cannot read means the default policy at read time."""
    for stored in ("99PERCENTILE", "FUTURE(99p)", "10.0ms"):
        assert validate_table_options({"speculative_retry": stored}) == {"speculative_retry": stored}
    assert ddl_options({"read_repair": "none"}) == {"read_repair": "NONE"}


def test_the_default_is_the_99th_percentile():
    assert DEFAULT == parse_speculative_retry("99p")
    assert validate_table_options({}) == {}  # unset: the default applies (TableDef.option)


def _window(threshold_ms: float) -> LatencyWindow:
    window = LatencyWindow(0.99)
    for _ in range(64):
        window.record(threshold_ms)
    return window


@pytest.mark.parametrize("text,window_ms,delay", [
    ("99p", 30, 31 + 1), ("50ms", 30, 50), ("MIN(99p,50ms)", 30, 32), ("MIN(99p,20ms)", 30, 20),
    ("MAX(99p,50ms)", 30, 50), ("MAX(99p,20ms)", 30, 32), ("NONE", 30, None), ("ALWAYS", 30, None),
])
def test_the_wait_each_policy_gives(text, window_ms, delay):
    # a window at 30 ms gives 31 + 1 ms (rounded up past the percentile, plus the clock's 1 ms)
    assert parse_speculative_retry(text).delay_ms(_window(window_ms + 0.5)) == delay


class _Placement(HandPlacement):
    def __init__(self, speculation):
        super().__init__("a1", "us", {}, ["a1", "a2", "a3"])
        self.speculation = parse_speculative_retry(speculation)

    def replicas_for(self, table_id, key):
        return ("a3", "a2", "a1"), None, 3


def _start(speculation: str):
    rc = ReadCoordinator(_Placement(speculation), read_timeout_ms=1_000)
    effects = rc.start(1, ReadCommand(TABLE, b"k"), CL.QUORUM, 0)
    return rc, effects


def test_none_never_asks_another_replica():
    rc, effects = _start("NONE")
    assert [s.target for s in effects if isinstance(s, Send)] == ["a1", "a2"]
    assert [e.timer_id for e in effects if isinstance(e, SetTimer)] == [("read",)]  # no speculation
    assert rc.on_timer(SPECULATE_TIMER, 999) == []
    assert rc.stats["speculative_retries"] == 0


def test_a_fixed_wait_asks_a_third_replica_for_data_at_that_wait():
    rc, effects = _start("20ms")
    assert SetTimer(SPECULATE_TIMER, 20) in effects
    req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
    rc.on_response("a1", ReadRsp(req_id, None, None), 1)  # a2's digest does not come
    [ask] = rc.on_timer(SPECULATE_TIMER, 20)
    assert ask.target == "a3" and not ask.message.digest_only
    [reply] = rc.on_response("a3", ReadRsp(req_id, None, None), 25)
    assert reply.client_id == 1 and rc.stats["speculative_retries"] == 1


def test_always_asks_one_replica_more_with_the_first_ones():
    """As Cassandra's AlwaysSpeculatingReadExecutor: one replica more than the level needs,
    the closest two for data, the rest for digests."""
    rc, effects = _start("ALWAYS")
    sends = [e for e in effects if isinstance(e, Send)]
    assert [(s.target, s.message.digest_only) for s in sends] == [("a1", False), ("a2", False), ("a3", True)]
    assert [e.timer_id for e in effects if isinstance(e, SetTimer)] == [("read",)]
    req_id = sends[0].message.req_id
    assert rc.on_response("a1", ReadRsp(req_id, None, None), 1) == []
    [reply] = rc.on_response("a3", ReadRsp(req_id, None, digest(None)), 2)  # a digest meets QUORUM
    assert reply.client_id == 1 and rc.stats["speculative_retries"] == 1


def test_always_with_every_replica_asked_already_asks_none_more():
    rc = ReadCoordinator(_Placement("ALWAYS"), read_timeout_ms=1_000)
    sends = [e for e in rc.start(1, ReadCommand(TABLE, b"k"), CL.ALL, 0) if isinstance(e, Send)]
    assert [(s.target, s.message.digest_only) for s in sends] == [("a1", False), ("a2", True), ("a3", True)]
    assert rc.stats["speculative_retries"] == 0


@pytest.mark.parametrize("policy", ["99p", "20ms", "ALWAYS"])
def test_each_quorum_never_speculates(policy):
    """As Cassandra (CASSANDRA-11980): EACH_QUORUM reads ask only what the level needs."""
    placement = _Placement(policy)
    placement.replicas_for = lambda table_id, key: (("a1", "a2", "a3", "b1", "b2", "b3"),
                                                    {"us": 3, "eu": 3}, 6)
    placement.dcs = {"a1": "us", "a2": "us", "a3": "us", "b1": "eu", "b2": "eu", "b3": "eu"}
    placement.alive = set(placement.dcs)
    rc = ReadCoordinator(placement, read_timeout_ms=1_000)
    effects = rc.start(1, ReadCommand(TABLE, b"k"), CL.EACH_QUORUM, 0)
    assert sorted(e.target for e in effects if isinstance(e, Send)) == ["a1", "a2", "b1", "b2"]
    assert [e.timer_id for e in effects if isinstance(e, SetTimer)] == [("read",)]
    assert rc.stats["speculative_retries"] == 0


def test_the_window_follows_the_policy_percentile():
    rc, _ = _start("50p")
    assert rc.latency[TABLE].percentile == 0.5
    rc.placement.speculation = parse_speculative_retry("99p")  # ALTER TABLE ... WITH speculative_retry
    rc.start(2, ReadCommand(TABLE, b"k"), CL.QUORUM, 0)
    assert rc.latency[TABLE].percentile == 0.99
