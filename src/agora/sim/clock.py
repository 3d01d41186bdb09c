"""One simulated machine's wall clock: virtual time plus an error that can step and drift.

Owns: the clock error of one host, as a fixed offset (skew: the clock is ahead or behind)
and a rate error (drift, in parts per million: the clock runs fast or slow). A node reads
this clock as its `now_ms` for everything, exactly as the real runtime hands every machine
`time.time()` (`agora.runtime.server.now_ms`): write timestamps, the failure detector's
heartbeat arrivals, TTL expiry. A wrong clock therefore has the effects it has in
production: coordinator timestamps out of real-time order (last-write-wins then keeps the
write that happened first: a "lost" write), and heartbeat gaps that look longer or shorter
than they were.

Changing the error re-anchors the drift so the clock moves by exactly the step asked for
(an NTP step can go backwards: so can this clock). Everything is integer arithmetic on
virtual milliseconds, so a clock reads the same on every run.

Does not know: the scheduler or the node; the host asks it `read(virtual_ms)`.
"""

from __future__ import annotations

PPM = 1_000_000  # parts per million: drift_ppm = 1_000 is a clock one second fast per 1000 s
# Largest drift we accept, in ppm. Quartz drifts by tens of ppm; the simulator uses more
# (runs last minutes, not months), but a clock running at twice or zero speed is nonsense.
MAX_DRIFT_PPM = 100_000


class SimClock:
    """error(t) = offset_ms + (t - anchor_ms) * drift_ppm / 10^6, floored to integer ms."""

    __slots__ = ("offset_ms", "drift_ppm", "anchor_ms")

    def __init__(self, offset_ms: int = 0, drift_ppm: int = 0) -> None:
        assert abs(drift_ppm) <= MAX_DRIFT_PPM, f"drift {drift_ppm} ppm is out of range"
        self.offset_ms = int(offset_ms)
        self.drift_ppm = int(drift_ppm)
        self.anchor_ms = 0

    def error_ms(self, virtual_ms: int) -> int:
        """How far this clock is from true (virtual) time at `virtual_ms`."""
        if self.drift_ppm == 0:
            return self.offset_ms
        return self.offset_ms + (virtual_ms - self.anchor_ms) * self.drift_ppm // PPM

    def read(self, virtual_ms: int) -> int:
        return virtual_ms + self.error_ms(virtual_ms)

    def set(self, virtual_ms: int, offset_ms: int | None = None, drift_ppm: int | None = None) -> None:
        """From `virtual_ms` on, the clock is `offset_ms` off (default: where it is now, so
        only the drift changes) and drifts at `drift_ppm` (default: unchanged)."""
        current = self.error_ms(virtual_ms)
        if drift_ppm is not None:
            assert abs(drift_ppm) <= MAX_DRIFT_PPM, f"drift {drift_ppm} ppm is out of range"
            self.drift_ppm = int(drift_ppm)
        self.offset_ms = current if offset_ms is None else int(offset_ms)
        self.anchor_ms = virtual_ms

    def __repr__(self) -> str:
        return f"<SimClock offset={self.offset_ms}ms drift={self.drift_ppm}ppm since {self.anchor_ms}ms>"
