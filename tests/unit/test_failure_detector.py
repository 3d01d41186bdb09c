"""The phi-accrual failure detector, driven by hand on virtual milliseconds."""

from __future__ import annotations

import math

import pytest

from agora.core.membership.failure_detector import (
    INITIAL_INTERVAL_MS,
    MAX_INTERVAL_MS,
    MAX_LOCAL_PAUSE_MS,
    PHI_FACTOR,
    WINDOW_SIZE,
    PhiAccrualDetector,
)

NODE = "127.0.0.2:7000"


def beat_every(detector: PhiAccrualDetector, period_ms: int, count: int, start_ms: int = 0) -> int:
    """Heartbeat NODE `count` times, `period_ms` apart; returns the time of the last one."""
    t = start_ms
    for i in range(count):
        t = start_ms + i * period_ms
        detector.heartbeat(NODE, t)
    return t


def first_dead_ms(detector: PhiAccrualDetector, since_ms: int, step_ms: int = 1) -> int:
    """The first time after `since_ms` at which NODE is no longer alive."""
    t = since_ms
    while detector.is_alive(NODE, t):
        t += step_ms
    return t


def test_constants_match_cassandra():
    assert WINDOW_SIZE == 1000
    assert INITIAL_INTERVAL_MS == 2000  # 2 x Gossiper.intervalInMillis
    assert MAX_INTERVAL_MS == INITIAL_INTERVAL_MS  # fd_max_interval_ms defaults to the initial value
    assert MAX_LOCAL_PAUSE_MS == 5000
    assert PHI_FACTOR == pytest.approx(1 / math.log(10))


def test_phi_is_the_exponential_formula():
    fd = PhiAccrualDetector()
    fd.heartbeat(NODE, 10_000)  # first heartbeat: window seeded with the initial interval
    assert fd.mean_interval_ms(NODE) == INITIAL_INTERVAL_MS
    assert fd.phi(NODE, 10_000) == 0.0
    assert fd.phi(NODE, 11_000) == pytest.approx(PHI_FACTOR * 1000 / 2000)
    fd.heartbeat(NODE, 11_000)
    assert fd.mean_interval_ms(NODE) == 1500


def test_phi_grows_with_silence():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 30)
    phis = [fd.phi(NODE, last + silence) for silence in range(0, 30_000, 500)]
    assert phis == sorted(phis)
    assert phis[0] == 0.0 and phis[-1] > 8


def test_heartbeating_every_second_stays_alive():
    fd = PhiAccrualDetector(threshold=8.0)
    for i in range(300):
        now = i * 1000
        fd.heartbeat(NODE, now)
        # just before the next heartbeat is due, and even if it is a second late
        assert fd.is_alive(NODE, now + 999)
        assert fd.phi(NODE, now + 1999) < 1.0


def test_silence_convicts_after_threshold_times_ln10_mean():
    fd = PhiAccrualDetector(threshold=8.0)
    last = beat_every(fd, 1000, 100)
    mean = fd.mean_interval_ms(NODE)
    assert mean == pytest.approx((2000 + 99 * 1000) / 100)  # the seed sample, then 1 s each
    dead_at = first_dead_ms(fd, last)
    silence = dead_at - last
    # threshold 8 on the log10 scale: silence = 8 * ln(10) * mean = 18.42 * mean ~ 18.6 s here
    assert silence == pytest.approx(8 * math.log(10) * mean, abs=1)
    assert 18_000 < silence < 19_000
    assert fd.silence_to_convict_ms(NODE) == pytest.approx(silence, abs=1)


def test_lower_threshold_convicts_sooner():
    fd = PhiAccrualDetector(threshold=4.0)
    last = beat_every(fd, 1000, 100)
    silence = first_dead_ms(fd, last) - last
    assert 9_000 < silence < 9_500  # 4 * ln(10) s


def test_comes_back_on_new_heartbeats_and_ignores_the_long_gap():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 50)
    mean_before = fd.mean_interval_ms(NODE)
    assert not fd.is_alive(NODE, last + 30_000)
    fd.heartbeat(NODE, last + 30_000)
    assert fd.is_alive(NODE, last + 30_000)
    assert fd.phi(NODE, last + 30_000) == 0.0
    # a 30 s interval is above MAX_INTERVAL_MS: not learned, the node is not excused next time
    assert fd.mean_interval_ms(NODE) == mean_before


def test_window_is_bounded():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 500, 1500)
    assert fd.mean_interval_ms(NODE) == 500  # the seed sample has been pushed out
    beat_every(fd, 1000, WINDOW_SIZE + 1, start_ms=last + 1000)
    assert fd.mean_interval_ms(NODE) == 1000


def test_unknown_and_removed_nodes():
    fd = PhiAccrualDetector()
    assert fd.phi(NODE, 0) == math.inf
    assert not fd.is_alive(NODE, 0)
    assert not fd.interpret(NODE, 0)  # nothing to convict
    fd.heartbeat(NODE, 0)
    assert fd.is_alive(NODE, 0)
    fd.remove(NODE)
    assert fd.mean_interval_ms(NODE) is None
    assert not fd.is_alive(NODE, 0)


def test_heartbeat_at_time_zero_counts():
    fd = PhiAccrualDetector()
    fd.heartbeat(NODE, 0)
    fd.heartbeat(NODE, 1000)
    assert fd.mean_interval_ms(NODE) == 1500


def test_interpret_convicts_like_is_alive():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 20)
    t = last
    while not fd.interpret(NODE, t):  # interpreted once a second, like the gossip round
        assert fd.is_alive(NODE, t)
        t += 1000
    assert not fd.is_alive(NODE, t)
    assert 18_000 <= t - last <= 21_000


def test_local_pause_suspends_conviction():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 20)
    assert not fd.interpret(NODE, last)
    # we were paused for 60 s: the silence is ours, not theirs
    resumed = last + 60_000
    assert not fd.is_alive(NODE, resumed)
    assert not fd.interpret(NODE, resumed)
    for t in range(resumed + 1000, resumed + MAX_LOCAL_PAUSE_MS, 1000):
        assert not fd.interpret(NODE, t)
    assert fd.interpret(NODE, resumed + MAX_LOCAL_PAUSE_MS)


def test_bad_arguments():
    with pytest.raises(ValueError):
        PhiAccrualDetector(threshold=0)
    with pytest.raises(ValueError):
        PhiAccrualDetector(window_size=0)
