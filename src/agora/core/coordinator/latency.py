"""Read latency percentiles per table, for the speculative-retry threshold.

Owns: a bounded window of recent read latencies and its 99th percentile, as Cassandra's
`speculative_retry = '99p'` uses (ColumnFamilyStore.sampleReadLatency). Pure: the caller
passes measured milliseconds.
"""

from __future__ import annotations

LATENCY_WINDOW_SAMPLES = 1024  # recent reads per table that the percentile looks at
RECOMPUTE_EVERY_SAMPLES = 64  # recompute the percentile this often (sorting costs)
MIN_SAMPLES_FOR_PERCENTILE = 32  # below this, trust the default threshold
DEFAULT_SPECULATION_MS = 50  # before we have measurements: well above a healthy loopback read
MIN_SPECULATION_MS = 2  # never speculate sooner: a retry storm costs more than it saves
CLOCK_RESOLUTION_MS = 1  # the coordinator measures with a whole-millisecond clock


class LatencyWindow:
    def __init__(self, percentile: float = 0.99):
        self.percentile = percentile
        self._samples: list[float] = []
        self._next = 0
        self._count = 0
        self._threshold_ms = float(DEFAULT_SPECULATION_MS)

    def record(self, latency_ms: float) -> None:
        if len(self._samples) < LATENCY_WINDOW_SAMPLES:
            self._samples.append(latency_ms)
        else:
            self._samples[self._next] = latency_ms
            self._next = (self._next + 1) % LATENCY_WINDOW_SAMPLES
        self._count += 1
        if self._count % RECOMPUTE_EVERY_SAMPLES == 0 and len(self._samples) >= MIN_SAMPLES_FOR_PERCENTILE:
            ordered = sorted(self._samples)
            idx = min(len(ordered) - 1, int(len(ordered) * self.percentile))
            self._threshold_ms = ordered[idx]

    def threshold_ms(self) -> int:
        """The percentile, rounded up, plus the clock's 1 ms resolution: latencies are
        differences of whole-millisecond clock readings, so a read measured at n ms may have
        taken almost n + 1, and a timer at n ms would speculate on reads at the percentile."""
        return max(MIN_SPECULATION_MS, int(self._threshold_ms + 0.999) + CLOCK_RESOLUTION_MS)
