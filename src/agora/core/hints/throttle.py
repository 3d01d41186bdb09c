"""The replay throttle: a token bucket over the time the node is told, so that hint replay
never sends more than `hinted_handoff_throttle` bytes per second (Cassandra's
HintsDispatcher rate limiter, `hinted_handoff_throttle`).

Owns: the allowance arithmetic and nothing else. The allowance refills at `rate` bytes per
second up to THROTTLE_BURST_MS worth; a hint may go while the allowance is positive and
costs its size, so the allowance may dip below zero by at most one hint and the average rate
over any window is at most `rate` plus one burst and one hint. A rate of 0 means unthrottled,
as in Cassandra.
"""

from __future__ import annotations

# Most allowance an idle throttle saves up, in milliseconds of its rate. Small, so the rate
# holds over short windows too; a hint larger than the burst still goes (the allowance then
# runs negative and the next hint waits until it has refilled).
THROTTLE_BURST_MS = 100


class Throttle:
    def __init__(self, bytes_per_s: int):
        assert bytes_per_s >= 0, "a throttle rate is not negative"
        self.rate = bytes_per_s
        self._allowance = 0.0
        self._at_ms: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def _refill(self, now_ms: int) -> None:
        if self._at_ms is None:
            self._allowance = self._burst()
        elif now_ms > self._at_ms:
            self._allowance = min(self._burst(), self._allowance + (now_ms - self._at_ms) * self.rate / 1000)
        self._at_ms = now_ms if self._at_ms is None else max(self._at_ms, now_ms)

    def _burst(self) -> float:
        return self.rate * THROTTLE_BURST_MS / 1000

    def try_take(self, size: int, now_ms: int) -> bool:
        """Spend `size` bytes if the allowance is positive now; False means wait."""
        if self.unlimited:
            return True
        self._refill(now_ms)
        if self._allowance <= 0:
            return False
        self._allowance -= size
        return True

    def wait_ms(self, now_ms: int) -> int:
        """Milliseconds until the allowance is positive again (at least 1)."""
        if self.unlimited:
            return 0
        self._refill(now_ms)
        if self._allowance > 0:
            return 1
        return max(1, int(-self._allowance * 1000 // self.rate) + 1)
