"""The phi-accrual failure detector, driven by hand on virtual milliseconds."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from agora.core.membership.failure_detector import (
    ACCEPTABLE_PAUSE_MS,
    INITIAL_INTERVAL_MS,
    MAX_LOCAL_PAUSE_MS,
    MIN_STD_DEVIATION_MS,
    WINDOW_SIZE,
    PhiAccrualDetector,
    phi_of,
    silence_for_phi,
)

NODE = "127.0.0.2:7000"
# What Cassandra's exponential model (phi = t / (mean * ln 10)) needed at threshold 8 with
# heartbeats once a second: 8 * ln(10) = 18.4 mean intervals of silence.
EXPONENTIAL_SILENCE_AT_8_MS = 8 * math.log(10) * 1000


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


def akka_phi(t: float, mean: float, std: float) -> float:
    """Akka's PhiAccrualFailureDetector.phi, verbatim."""
    y = (t - mean) / std
    e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    if t > mean:
        return -math.log10(e / (1.0 + e))
    return -math.log10(1.0 - 1.0 / (1.0 + e))


def exact_normal_phi(t: float, mean: float, std: float) -> float:
    """-log10(1 - F(t)), F the exact normal CDF (Hayashibara et al.)."""
    return -math.log10(0.5 * math.erfc((t - mean) / (std * math.sqrt(2))))


# ---- the formula ------------------------------------------------------------------------


def test_constants():
    assert WINDOW_SIZE == 1000  # Cassandra's SAMPLE_SIZE
    assert INITIAL_INTERVAL_MS == 2000  # 2 x Gossiper.intervalInMillis
    assert MAX_LOCAL_PAUSE_MS == 5000  # cassandra.max_local_pause_in_ms
    assert MIN_STD_DEVIATION_MS == 300
    assert ACCEPTABLE_PAUSE_MS == 1000


@pytest.mark.parametrize("t", [0, 250, 700, 1000, 1300, 1800, 2500, 3000, 3500, 4000])
def test_phi_is_akkas_logistic_normal(t):
    assert phi_of(t, 1000, 400) == pytest.approx(akka_phi(t, 1000, 400), rel=1e-9, abs=1e-12)


def test_phi_follows_the_normal_distribution():
    # close to the exact normal tail where it matters for the mean and a few deviations...
    for y in (-2, -1, 0, 0.5, 1, 2, 3):
        assert phi_of(1000 + y * 300, 1000, 300) == pytest.approx(exact_normal_phi(1000 + y * 300, 1000, 300),
                                                                  abs=0.05)
    assert phi_of(1000, 1000, 300) == pytest.approx(math.log10(2))  # at the mean: odds 1 in 2
    # ...and, being the logistic approximation, more suspicious than it in the far tail
    assert phi_of(2500, 1000, 300) > exact_normal_phi(2500, 1000, 300)
    # threshold 8 is reached 5.23 deviations above the mean (5.61 for the exact normal)
    assert silence_for_phi(8.0, 0, 1) == pytest.approx(5.226, abs=1e-3)
    # the spread, not just the mean, decides: the same silence is damning after metronomic
    # heartbeats and unremarkable after ragged ones
    assert phi_of(3000, 1000, 300) > 8 > 2 > phi_of(3000, 1000, 1000)


def test_phi_is_stable_far_out_in_both_tails():
    # Akka's formula takes log10(0) once e^-z underflows; ours stays finite and increasing
    with pytest.raises(ValueError):
        akka_phi(1e6, 1000, 300)
    phis = [phi_of(t, 1000, 300) for t in (5_000, 10_000, 1e6, 1e9, 1e12)]
    assert all(math.isfinite(p) for p in phis) and phis == sorted(phis) and phis[0] > 8
    assert phi_of(-1e12, 1000, 300) == 0.0


def test_silence_for_phi_inverts_phi():
    for threshold in (0.5, 1.0, 3.0, 8.0, 12.0):
        for mean, std in ((1000, 300), (1500, 900), (3000, 50)):
            silence = silence_for_phi(threshold, mean, std)
            assert phi_of(silence, mean, std) == pytest.approx(threshold, rel=1e-9)


def test_first_heartbeat_seeds_the_window():
    fd = PhiAccrualDetector()
    fd.heartbeat(NODE, 10_000)  # first heartbeat: one sample of the initial interval
    assert fd.mean_interval_ms(NODE) == INITIAL_INTERVAL_MS
    assert fd.std_deviation_ms(NODE) == 0.0  # one sample; the floor stands in
    assert fd.phi(NODE, 10_000) == pytest.approx(phi_of(0, INITIAL_INTERVAL_MS + ACCEPTABLE_PAUSE_MS,
                                                        MIN_STD_DEVIATION_MS))
    assert fd.phi(NODE, 11_000) < 1e-6
    # a new node gets the initial interval, the pause and 5.23 floors: ~4.6 s
    assert fd.silence_to_convict_ms(NODE) == pytest.approx(2000 + 1000 + 5.226 * 300, abs=1)
    fd.heartbeat(NODE, 11_000)
    assert fd.mean_interval_ms(NODE) == 1500
    assert fd.std_deviation_ms(NODE) == 500


def test_mean_and_deviation_are_the_windows():
    fd = PhiAccrualDetector()
    rng = random.Random(7)
    t, intervals = 0, [INITIAL_INTERVAL_MS]
    fd.heartbeat(NODE, t)
    for _ in range(200):
        interval = rng.randint(400, 1800)
        t += interval
        intervals.append(interval)
        fd.heartbeat(NODE, t)
    assert fd.mean_interval_ms(NODE) == pytest.approx(statistics.fmean(intervals), rel=1e-12)
    assert fd.std_deviation_ms(NODE) == pytest.approx(statistics.pstdev(intervals), rel=1e-9)
    mean = statistics.fmean(intervals) + ACCEPTABLE_PAUSE_MS
    std = max(statistics.pstdev(intervals), MIN_STD_DEVIATION_MS)
    assert fd.phi(NODE, t + 2500) == pytest.approx(phi_of(2500, mean, std), rel=1e-9)


# ---- convict times ----------------------------------------------------------------------


def test_phi_grows_with_silence():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 30)
    phis = [fd.phi(NODE, last + silence) for silence in range(0, 30_000, 500)]
    assert phis == sorted(phis)
    assert phis[0] < 0.01 and phis[-1] > 8


def test_heartbeating_every_second_with_jitter_stays_alive():
    fd = PhiAccrualDetector(threshold=8.0)
    rng = random.Random(3)
    now = 0
    for _ in range(600):
        fd.heartbeat(NODE, now)
        # until the next heartbeat, and even if it is a second and a half late
        assert fd.is_alive(NODE, now + 1500)
        assert fd.phi(NODE, now + 1500) < 1.0
        now += rng.randint(700, 1300)


def test_silence_convicts_within_seconds_after_steady_heartbeats():
    fd = PhiAccrualDetector(threshold=8.0)
    last = beat_every(fd, 1000, 100)
    mean = fd.mean_interval_ms(NODE)
    assert mean == pytest.approx((2000 + 99 * 1000) / 100)  # the seed sample, then 1 s each
    assert fd.std_deviation_ms(NODE) < MIN_STD_DEVIATION_MS  # so the floor applies
    silence = first_dead_ms(fd, last) - last
    # mean + acceptable pause + 5.23 floors = 1010 + 1000 + 1568 ~ 3.6 s
    assert silence == pytest.approx(mean + 1000 + 5.226 * 300, abs=2)
    assert 3_000 < silence < 4_000
    assert silence < EXPONENTIAL_SILENCE_AT_8_MS / 4  # Cassandra's model: 18.4 s
    assert fd.silence_to_convict_ms(NODE) == pytest.approx(silence, abs=1)


def test_ragged_heartbeats_buy_a_longer_silence():
    fd = PhiAccrualDetector(threshold=8.0)
    t = 0
    for i in range(200):
        fd.heartbeat(NODE, t)
        t += 400 if i % 2 else 1600  # mean ~1 s, deviation ~600 ms
    last = t - 400
    std = fd.std_deviation_ms(NODE)
    assert 590 < std < 610
    silence = first_dead_ms(fd, last, step_ms=10) - last
    assert silence == pytest.approx(fd.mean_interval_ms(NODE) + 1000 + 5.226 * std, abs=10)
    assert 5_000 < silence < 6_500


def test_lower_threshold_convicts_sooner():
    fd = PhiAccrualDetector(threshold=4.0)
    last = beat_every(fd, 1000, 100)
    silence = first_dead_ms(fd, last) - last
    assert silence == pytest.approx(1010 + 1000 + 3.638 * 300, abs=2)  # phi 4 at 3.64 deviations


def test_interpret_convicts_like_is_alive():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 20)
    t = last
    while not fd.interpret(NODE, t):  # interpreted once a second, like the gossip round
        assert fd.is_alive(NODE, t)
        t += 1000
    assert not fd.is_alive(NODE, t)
    assert 3_000 <= t - last <= 5_000  # the exponential model took 18..21 s here


# ---- what the window learns -------------------------------------------------------------


def test_comes_back_on_new_heartbeats_and_ignores_the_long_gap():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 50)
    mean_before, std_before = fd.mean_interval_ms(NODE), fd.std_deviation_ms(NODE)
    assert not fd.is_alive(NODE, last + 30_000)
    fd.heartbeat(NODE, last + 30_000)
    assert fd.is_alive(NODE, last + 30_000)
    assert fd.phi(NODE, last + 30_000) < 1e-6
    # the 30 s silence had convicted it: not learned, the node is not excused next time
    assert (fd.mean_interval_ms(NODE), fd.std_deviation_ms(NODE)) == (mean_before, std_before)


def test_a_long_but_unconvicted_gap_is_learned():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 50)
    assert fd.is_alive(NODE, last + 3000)
    std_before = fd.std_deviation_ms(NODE)
    fd.heartbeat(NODE, last + 3000)  # slow, but phi was still below the threshold
    assert fd.std_deviation_ms(NODE) > std_before
    assert fd.mean_interval_ms(NODE) == pytest.approx((2000 + 49 * 1000 + 3000) / 51)


def test_an_optional_fixed_cap_on_learned_intervals():
    fd = PhiAccrualDetector(max_interval_ms=2000)  # Cassandra's fd_max_interval_ms
    last = beat_every(fd, 1000, 50)
    mean_before = fd.mean_interval_ms(NODE)
    fd.heartbeat(NODE, last + 3000)
    assert fd.mean_interval_ms(NODE) == mean_before


def test_late_out_of_order_heartbeat_is_not_an_interval():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 1000, 10)
    mean_before = fd.mean_interval_ms(NODE)
    fd.heartbeat(NODE, last - 500)
    assert fd.mean_interval_ms(NODE) == mean_before
    assert fd.last_heartbeat_ms(NODE) == last


def test_window_is_bounded():
    fd = PhiAccrualDetector()
    last = beat_every(fd, 500, 1500)
    assert fd.mean_interval_ms(NODE) == 500  # the seed sample has been pushed out
    assert fd.std_deviation_ms(NODE) == 0.0
    beat_every(fd, 1000, WINDOW_SIZE + 1, start_ms=last + 1000)
    assert fd.mean_interval_ms(NODE) == 1000
    assert fd.std_deviation_ms(NODE) == 0.0


def test_unknown_and_removed_nodes():
    fd = PhiAccrualDetector()
    assert fd.phi(NODE, 0) == math.inf
    assert not fd.is_alive(NODE, 0)
    assert not fd.interpret(NODE, 0)  # nothing to convict
    assert fd.silence_to_convict_ms(NODE) is None and fd.std_deviation_ms(NODE) is None
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
    with pytest.raises(ValueError):
        PhiAccrualDetector(min_std_deviation_ms=0)
    with pytest.raises(ValueError):
        PhiAccrualDetector(acceptable_pause_ms=-1)
