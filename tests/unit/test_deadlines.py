"""Deadlines under one timer fire exactly as a timer per request would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.coordinator.deadlines import COMPACT_FLOOR, STALE_ARMING_MS, Deadlines
from agora.core.effects import SetTimer

TIMER = ("t",)

# a step: add a key with a delay, end the oldest live key, end a random live key, or let time pass
steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 50)),
    st.tuples(st.just("end_oldest"), st.just(0)),
    st.tuples(st.just("end_any"), st.integers(0, 1000)),
    st.tuples(st.just("wait"), st.integers(0, 30)),
), max_size=120)


def _run(script, constant_delay: int | None, early: int = 0):
    """`early`: the clock read when a timer fires is that many ms behind the timer's time
    (the wall clock and the timers' clock disagree a little); deadlines must not care."""
    live: dict[int, int] = {}  # key -> due
    deadlines = Deadlines(TIMER, live.__contains__)
    now, timer_at, next_key = 0, None, 1
    fired, expected = [], []

    def arm(timer):
        nonlocal timer_at
        if timer is not None:
            assert timer.timer_id == TIMER and timer.delay_ms >= 0
            timer_at = now + timer.delay_ms

    def advance(until):
        nonlocal now, timer_at
        fires = 0
        while timer_at is not None and timer_at <= until:
            fires += 1
            assert fires < 1_000, "the timer keeps firing without progress"
            now, timer_at = timer_at, None
            keys, timer = deadlines.fire(now - early)
            for key in keys:
                fired.append((key, now))
                del live[key]  # the coordinator ends a request that timed out
            if timer is not None:
                timer = SetTimer(timer.timer_id, max(0, timer.delay_ms - early))
            arm(timer)
        now = until
        for key, due in list(live.items()):  # what a timer per key would have fired by now
            assert due > now, f"key {key} due at {due} still waits at {now}"

    for kind, arg in script:
        if kind == "add":
            delay = constant_delay if constant_delay is not None else arg
            live[next_key] = now + delay
            expected.append((next_key, now + delay))
            arm(deadlines.add(next_key, now, delay))
            next_key += 1
        elif kind in ("end_oldest", "end_any") and live:
            key = min(live) if kind == "end_oldest" else sorted(live)[arg % len(live)]
            del live[key]
            expected = [(k, d) for k, d in expected if k != key]
        elif kind == "wait":
            advance(now + arg)
    advance(now + 1_000)
    assert not live
    assert sorted(fired, key=lambda f: (f[1], f[0])) == fired  # earliest first
    assert sorted(fired) == sorted(expected)
    return deadlines


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(0, 2))
def test_each_live_key_fires_at_its_due_time_with_varying_delays(script, early):
    _run(script, None, early)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_each_live_key_fires_at_its_due_time_with_one_delay(script):
    _run(script, 20)


def test_ended_requests_do_not_pile_up_and_need_no_timer_of_their_own():
    """A request that ends costs no timer: one arming for a stream of short requests, and
    the heap keeps about what is in flight."""
    live: set[int] = set()
    deadlines = Deadlines(TIMER, live.__contains__)
    timers = []
    for key in range(10_000):
        live.add(key)
        timer = deadlines.add(key, key // 10, 2_000)  # 10 requests a millisecond
        if timer is not None:
            timers.append(timer)
        live.discard(key - 3)  # three in flight at a time
    assert timers == [SetTimer(TIMER, 2_000)]
    assert len(deadlines) < 10
    keys, timer = deadlines.fire(2_000)
    assert keys == [] and timer == SetTimer(TIMER, 999 + 2_000 - 2_000)  # for the oldest live one


def test_a_stuck_request_at_the_head_does_not_let_the_heap_grow():
    """One request that never ends holds the head: the heap is rebuilt without the ended
    ones whenever it doubles, so it stays within twice what is in flight plus 64."""
    live = {0}
    deadlines = Deadlines(TIMER, live.__contains__)
    deadlines.add(0, 0, 5_000)
    biggest = 0
    for key in range(1, 100_000):
        live.add(key)
        deadlines.add(key, key // 20, 5_000)
        if key > 2:
            live.discard(key - 2)  # two in flight besides the stuck one
        biggest = max(biggest, len(deadlines))
    assert 0 in live and deadlines._heap[0][2] == 0  # still stuck at the head
    assert biggest <= 2 * 3 + COMPACT_FLOOR + 1


def test_a_lost_arming_is_made_good_by_the_next_request():
    """Should a firing be lost (its effects dropped), the next request re-arms the timer once
    the armed time is long past, for the earliest entry."""
    live = {1, 2}
    deadlines = Deadlines(TIMER, live.__contains__)
    assert deadlines.add(1, 0, 2_000) == SetTimer(TIMER, 2_000)
    assert deadlines.add(2, 2_000 + STALE_ARMING_MS, 2_000) is None  # not yet long past
    live.add(3)
    assert deadlines.add(3, 2_001 + STALE_ARMING_MS, 2_000) == SetTimer(TIMER, 0)
    keys, timer = deadlines.fire(2_001 + STALE_ARMING_MS)
    assert keys == [1] and timer == SetTimer(TIMER, 2_000 - 1)
