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
from agora.core.schema.model import validate_table_options
from agora.core.types import ConsistencyLevel as CL
from agora.core.types import ReadCommand
from tests.unit.placement import HandPlacement

TABLE = b"t" * 16


@pytest.mark.parametrize("text,shown", [
    ("99p", "99p"), ("99PERCENTILE", "99p"), ("99.5p", "99.5p"), ("50.0percentile", "50p"),
    ("50ms", "50ms"), ("0ms", "0ms"), ("none", "NONE"), ("ALWAYS", "ALWAYS"),
    ("MIN(99p,50ms)", "MIN(99p,50ms)"), ("max(20ms, 95PERCENTILE)", "MAX(95p,20ms)"),
])
def test_accepted_values_are_shown_as_cassandra_shows_them(text, shown):
    assert str(parse_speculative_retry(text)) == shown
    assert validate_table_options({"speculative_retry": text}) == {"speculative_retry": shown}


@pytest.mark.parametrize("text", ["", "fast", "100p", "0p", "-5ms", "50 ms", "MIN(99p,95p)",
                                  "MAX(10ms,20ms)", "MIN(99p)", "99"])
def test_other_values_are_refused(text):
    with pytest.raises(ValueError):
        parse_speculative_retry(text)
    with pytest.raises(InvalidRequest):
        validate_table_options({"speculative_retry": text})


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


def test_always_asks_one_more_replica_for_data_with_the_first_ones():
    rc, effects = _start("ALWAYS")
    sends = [e for e in effects if isinstance(e, Send)]
    assert [(s.target, s.message.digest_only) for s in sends] == [("a1", False), ("a2", True), ("a3", False)]
    assert [e.timer_id for e in effects if isinstance(e, SetTimer)] == [("read",)]
    req_id = sends[0].message.req_id
    assert rc.on_response("a1", ReadRsp(req_id, None, None), 1) == []
    [reply] = rc.on_response("a3", ReadRsp(req_id, None, None), 2)  # two data answers: QUORUM
    assert reply.client_id == 1 and rc.stats["speculative_retries"] == 1


def test_the_window_follows_the_policy_percentile():
    rc, _ = _start("50p")
    assert rc.latency[TABLE].percentile == 0.5
    rc.placement.speculation = parse_speculative_retry("99p")  # ALTER TABLE ... WITH speculative_retry
    rc.start(2, ReadCommand(TABLE, b"k"), CL.QUORUM, 0)
    assert rc.latency[TABLE].percentile == 0.99
