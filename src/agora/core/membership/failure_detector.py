"""The phi-accrual failure detector: how suspicious is the silence of a node?

Owns: per-node windows of heartbeat inter-arrival times and the phi computed from them. It
deliberately knows nothing of gossip, messages or endpoint state: `gossip.py` calls
`heartbeat()` whenever it learns a newer heartbeat of a node, and `interpret()` once per node
per gossip round to decide whether to convict it.

Rules come from Hayashibara et al., "The phi Accrual Failure Detector" (SRDS 2004), computed as
Akka does (`akka.remote.PhiAccrualFailureDetector`, `HeartbeatHistory`), with Cassandra's
window seeding and local-pause rule (`gms/FailureDetector.java`, CASSANDRA-9183):

- Inter-arrival times are modelled as normally distributed with the window's mean and standard
  deviation, as in the paper. After a silence of t ms since the last heartbeat,
  phi = -log10(1 - F(t)), F the normal CDF: phi = 8 (the default `phi_convict_threshold`) means
  odds of 1 in 10^8 that a heartbeat this late is merely late. A node is convicted when
  phi > threshold.
- Not Cassandra's exponential simplification (CASSANDRA-2597: phi = t / (mean * ln 10)). That
  model ignores the spread of the intervals, so threshold 8 means a silence of
  8 * ln(10) = 18.4 mean intervals: 15..28 s under 1 s gossip rounds, whether the heartbeats
  were metronomic or ragged. The normal model convicts after mean + pause + 5.23 standard
  deviations of the intervals actually seen, so it is fast where arrivals are regular and
  patient, by itself, where they are ragged.
- What that gives under gossip. Heartbeats reach an observer relayed, a round or more late,
  and the relay lag varies: observed intervals spread over 0..2 s in a 3-node cluster
  (deviation ~450 ms) and 0..5 s in a 9-node one (deviation ~900 ms). The slowest observer
  convicts a killed node after ~4..8 s in 3-node clusters and ~10..14 s in 9-node ones (the
  virtual-time network of `tests/unit/test_gossip.py`, which records the figures); part of it
  is the killed node's last heartbeats still being relayed for a few seconds after its death.
  Faster than that at threshold 8 needs fresher liveness news than fanout-1 gossip carries
  (direct probes of suspects, a larger fanout), not a different formula.
- F is Akka's logistic approximation of the normal CDF,
  1 - F(t) = 1 / (1 + e^z), z = y * (1.5976 + 0.070566 * y^2), y = (t - mean') / std'.
  We compute phi = log10(1 + e^z) as a stable softplus, the same function as Akka's two
  branches but never log10(0) when e^-z underflows nor inf/inf when e^z overflows. In the
  tail the approximation is more suspicious than the exact normal: phi = 8 is reached at
  y = 5.23 (the exact CDF would say 5.61).
- mean' = mean + ACCEPTABLE_PAUSE_MS and std' = max(std, MIN_STD_DEVIATION_MS), Akka's
  `acceptable-heartbeat-pause` and `min-std-deviation` (see the constants for the values we
  chose and why).
- The window holds the last WINDOW_SIZE intervals. The first heartbeat of a node records no
  interval; it seeds the window with one INITIAL_INTERVAL_MS sample (two gossip intervals,
  Cassandra's FD_INITIAL_VALUE_MS default) so that a new node is judged leniently.
- An interval is recorded only if the node was not already convictable when its heartbeat
  arrived (Akka's rule: "don't use the first heartbeat after failure for the history"). After
  a partition or a crash we would rather convict quickly again than learn to tolerate long
  silences. This replaces Cassandra's fixed fd_max_interval_ms cap (2 s), which under the
  normal model would drop exactly the long-but-healthy gaps (3..5 s between heartbeats relayed
  through a 9-node cluster) whose spread the standard deviation must see; `max_interval_ms`
  remains available as an optional extra cap.
- If this node itself was paused (GC, a stopped process, a virtual-time gap) for more than
  MAX_LOCAL_PAUSE_MS between two interpretations, every peer looks silent; Cassandra then
  convicts nobody for the next MAX_LOCAL_PAUSE_MS (CASSANDRA-9183), and so do we.

Time is milliseconds as integers from the caller; the window keeps exact integer sums of the
intervals and of their squares, so mean and variance are exact, and phi (a few libm calls on
them) is the same on every run.
"""

from __future__ import annotations

import math
from collections import deque

from agora.core.types import NodeId

# Gossip round period the defaults below are derived from (Cassandra: Gossiper.intervalInMillis).
GOSSIP_INTERVAL_MS = 1000
# Intervals remembered per node (Cassandra: FailureDetector.SAMPLE_SIZE). Bounds memory, and
# lets mean and deviation follow a node whose heartbeat cadence changes over ~15 minutes.
WINDOW_SIZE = 1000
# The interval assumed for a node's first heartbeat: two gossip rounds (Cassandra:
# FD_INITIAL_VALUE_MS = 2 * intervalInMillis). Erring high avoids false convictions.
INITIAL_INTERVAL_MS = 2 * GOSSIP_INTERVAL_MS
# Floor under the window's standard deviation, in ms (Akka: min-std-deviation, 100 ms for its
# direct heartbeats). Ours are relayed by gossip, whose real spreads are 400..900 ms, so the
# floor only acts on a fresh window (one seed sample, deviation 0) and on a node whose
# heartbeats were metronomic (a 2-node cluster, a window of exact 1 s intervals). There,
# 300 ms tolerates one missed round beyond the pause: a silence of mean + 1 s + 5.23 * 300 ms
# ~ 3.6 s; 100 ms would convict after ~2.5 s, 500 ms would slow 3-node clusters by a second.
MIN_STD_DEVIATION_MS = 300
# Silence tolerated on top of the mean, in ms (Akka: acceptable-heartbeat-pause, 3 s for
# cluster heartbeats). The window's deviation covers the jitter it has seen; this covers what
# it has not: a monitored node's short stall (a GC pause, a slow disk flush holding its event
# loop), and the rare relay gap longer than any in the window. Measured: with 0 or 500 ms,
# 10-minute healthy 9-node runs saw false DOWNs; with 1000 ms none did (20 seeds each for 3,
# 5, 7 and 9 nodes). One round of detection time buys it.
ACCEPTABLE_PAUSE_MS = 1000
# A gap this long between two interpret() calls means we, not the peers, were stalled
# (Cassandra: cassandra.max_local_pause_in_ms, default 5000 ms).
MAX_LOCAL_PAUSE_MS = 5000
# Cassandra's (and Akka's cluster) default phi_convict_threshold.
DEFAULT_PHI_CONVICT_THRESHOLD = 8.0
# Coefficients of Akka's logistic approximation of the normal CDF (see module docstring).
_LOGISTIC_A = 1.5976
_LOGISTIC_B = 0.070566
_LN10 = math.log(10.0)


def phi_of(silence_ms: float, mean_ms: float, std_ms: float) -> float:
    """phi after `silence_ms` without a heartbeat, for intervals ~ Normal(mean_ms, std_ms):
    -log10(1 - F), F the logistic approximation of the normal CDF, as a stable softplus."""
    assert std_ms > 0, "phi needs a positive standard deviation"
    y = (silence_ms - mean_ms) / std_ms
    z = y * (_LOGISTIC_A + _LOGISTIC_B * y * y)
    if z > 0:
        return (z + math.log1p(math.exp(-z))) / _LN10
    return math.log1p(math.exp(z)) / _LN10


def silence_for_phi(phi: float, mean_ms: float, std_ms: float) -> float:
    """The inverse of `phi_of` in the silence: how long a silence gives exactly `phi`."""
    assert phi > 0 and std_ms > 0
    # softplus(z) = phi * ln 10  =>  z = ln(10^phi - 1)
    z = math.log(math.expm1(phi * _LN10))
    # z = A y + B y^3 is strictly increasing in y: one real root (Cardano, p = A/B > 0).
    p, q = _LOGISTIC_A / _LOGISTIC_B, -z / _LOGISTIC_B
    root = math.sqrt(q * q / 4 + p * p * p / 27)
    y = math.cbrt(-q / 2 + root) + math.cbrt(-q / 2 - root)
    return mean_ms + y * std_ms


class ArrivalWindow:
    """The last `size` inter-arrival times of one node's heartbeats, with exact integer sums
    of the intervals and of their squares."""

    __slots__ = ("_intervals", "_sum", "_sum_sq", "last_ms")

    def __init__(self, size: int) -> None:
        self._intervals: deque[int] = deque(maxlen=size)
        self._sum = 0
        self._sum_sq = 0
        self.last_ms: int | None = None

    def record(self, interval_ms: int) -> None:
        if len(self._intervals) == self._intervals.maxlen:
            oldest = self._intervals[0]
            self._sum -= oldest
            self._sum_sq -= oldest * oldest
        self._intervals.append(interval_ms)
        self._sum += interval_ms
        self._sum_sq += interval_ms * interval_ms

    def arrived(self, now_ms: int) -> None:
        self.last_ms = now_ms if self.last_ms is None else max(self.last_ms, now_ms)

    def __len__(self) -> int:
        return len(self._intervals)

    def mean(self) -> float:
        return self._sum / len(self._intervals)

    def std_deviation(self) -> float:
        """Population standard deviation (as Akka's HeartbeatHistory), from exact integers."""
        n = len(self._intervals)
        return math.sqrt(n * self._sum_sq - self._sum * self._sum) / n


class PhiAccrualDetector:
    """phi-accrual failure detection for many nodes at once.

    Unknown nodes (never heard, or removed) have phi = inf and are not alive, but are never
    convicted by `interpret()`: there is nothing to convict.
    """

    def __init__(self, threshold: float = DEFAULT_PHI_CONVICT_THRESHOLD, *,
                 initial_interval_ms: int = INITIAL_INTERVAL_MS,
                 min_std_deviation_ms: int = MIN_STD_DEVIATION_MS,
                 acceptable_pause_ms: int = ACCEPTABLE_PAUSE_MS,
                 max_interval_ms: int | None = None,
                 window_size: int = WINDOW_SIZE,
                 max_local_pause_ms: int = MAX_LOCAL_PAUSE_MS) -> None:
        if not threshold > 0:
            raise ValueError(f"phi threshold must be > 0, got {threshold}")
        if initial_interval_ms <= 0 or window_size <= 0 or min_std_deviation_ms <= 0:
            raise ValueError("initial_interval_ms, window_size and min_std_deviation_ms must be > 0")
        if acceptable_pause_ms < 0:
            raise ValueError(f"acceptable_pause_ms must be >= 0, got {acceptable_pause_ms}")
        self.threshold = float(threshold)
        self.initial_interval_ms = initial_interval_ms
        self.min_std_deviation_ms = min_std_deviation_ms
        self.acceptable_pause_ms = acceptable_pause_ms
        self.max_interval_ms = max_interval_ms
        self.window_size = window_size
        self.max_local_pause_ms = max_local_pause_ms
        self._windows: dict[NodeId, ArrivalWindow] = {}
        self._last_interpret_ms: int | None = None
        self._last_pause_ms: int | None = None

    # ---- the model -----------------------------------------------------------------------

    def _mean_and_std(self, window: ArrivalWindow) -> tuple[float, float]:
        """The distribution phi is computed from: mean plus the acceptable pause, and the
        standard deviation raised to its floor."""
        return (window.mean() + self.acceptable_pause_ms,
                max(window.std_deviation(), float(self.min_std_deviation_ms)))

    def _phi(self, window: ArrivalWindow, now_ms: int) -> float:
        assert window.last_ms is not None and len(window) > 0, "phi of an empty window"
        mean, std = self._mean_and_std(window)
        return phi_of(max(0, now_ms - window.last_ms), mean, std)

    # ---- inputs ---------------------------------------------------------------------------

    def heartbeat(self, node: NodeId, now_ms: int) -> None:
        """Record that a fresh heartbeat of `node` arrived at `now_ms`."""
        window = self._windows.get(node)
        if window is None:
            window = self._windows[node] = ArrivalWindow(self.window_size)
        if window.last_ms is None:
            window.record(self.initial_interval_ms)
        else:
            interval = now_ms - window.last_ms
            if (interval >= 0
                    and (self.max_interval_ms is None or interval <= self.max_interval_ms)
                    and self._phi(window, now_ms) <= self.threshold):
                window.record(interval)
        window.arrived(now_ms)

    def remove(self, node: NodeId) -> None:
        """Forget `node`'s history (it restarted, or left)."""
        self._windows.pop(node, None)

    # ---- verdicts -------------------------------------------------------------------------

    def phi(self, node: NodeId, now_ms: int) -> float:
        window = self._windows.get(node)
        if window is None:
            return math.inf
        return self._phi(window, now_ms)

    def is_alive(self, node: NodeId, now_ms: int) -> bool:
        return self.phi(node, now_ms) <= self.threshold

    def interpret(self, node: NodeId, now_ms: int) -> bool:
        """Should `node` be convicted now? Like `not is_alive`, but never for an unknown
        node, and never while this node is recovering from a local pause (see module doc).
        Call it once per node per gossip round."""
        window = self._windows.get(node)
        if window is None:
            return False
        last = self._last_interpret_ms
        self._last_interpret_ms = now_ms
        if last is not None and now_ms - last > self.max_local_pause_ms:
            self._last_pause_ms = now_ms
            return False
        if self._last_pause_ms is not None and now_ms - self._last_pause_ms < self.max_local_pause_ms:
            return False
        return self._phi(window, now_ms) > self.threshold

    # ---- introspection --------------------------------------------------------------------

    def mean_interval_ms(self, node: NodeId) -> float | None:
        """The window's mean inter-arrival time (without the acceptable pause)."""
        window = self._windows.get(node)
        return None if window is None else window.mean()

    def std_deviation_ms(self, node: NodeId) -> float | None:
        """The window's standard deviation (before the floor is applied)."""
        window = self._windows.get(node)
        return None if window is None else window.std_deviation()

    def last_heartbeat_ms(self, node: NodeId) -> int | None:
        window = self._windows.get(node)
        return None if window is None else window.last_ms

    def silence_to_convict_ms(self, node: NodeId) -> float | None:
        """How long after its last heartbeat `node` would be convicted, at the current window:
        the silence at which phi reaches the threshold (conviction is for phi above it)."""
        window = self._windows.get(node)
        if window is None:
            return None
        mean, std = self._mean_and_std(window)
        return silence_for_phi(self.threshold, mean, std)
