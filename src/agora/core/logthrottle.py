"""A log line allowed at most once per interval: what keeps a recurring fault (timed-out
writes during a node's death, a peer message the node fails on) from flooding the log, while
the line that does go out says how many were left unsaid.

Owns: `LogThrottle`. Pure: the caller passes its clock, so the simulator and the runtime
share it (a monotonic clock there, so a wall-clock step neither silences nor floods).
"""

from __future__ import annotations


class LogThrottle:
    def __init__(self, interval_ms: int = 1_000):
        self.interval_ms = interval_ms
        self._last_ms: int | None = None
        self._skipped = 0

    def allow(self, now_ms: int) -> int | None:
        """None if a line went out less than `interval_ms` ago (this one is counted as
        skipped); otherwise the number skipped since the last line, and the count restarts."""
        last = self._last_ms
        if last is not None and now_ms - last < self.interval_ms:
            self._skipped += 1
            return None
        self._last_ms = now_ms
        skipped, self._skipped = self._skipped, 0
        return skipped
