"""Virtual time for the deterministic simulator: one integer clock in milliseconds and one
heap of pending events.

Owns: the order in which everything in a simulated run happens. Events are ordered by
(time, sequence number); the sequence number is a counter taken when the event is
scheduled, so events due at the same millisecond run in the order they were scheduled and
a run never depends on how the heap breaks ties. Nothing here reads a clock or draws a
random number: the one thing a run depends on is the order of `schedule` calls, which is
what makes one seed reproduce a run byte for byte (FoundationDB's and TigerBeetle's
simulators, DESIGN.md section 2).

Does not know: nodes, networks or messages. An event is a callable; cancelling it marks it
dead and the heap skips it when it comes up (lazy deletion keeps `cancel` O(1)). The heap
holds (time, sequence, event) tuples, so ordering is a C-level comparison of two integers
(the sequence numbers are unique: the event itself is never compared).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

# A single run may not hold more pending events than this: a runaway feedback loop (a timer
# re-arming itself with delay 0, a message storm) fails loudly instead of eating the memory.
MAX_PENDING_EVENTS = 1_000_000
# Events that may run at one virtual millisecond before we call it a livelock (something
# keeps scheduling work "now" and time never advances).
MAX_EVENTS_PER_MS = 200_000


class SimEvent:
    """A scheduled callable. `cancel()` keeps it from running."""

    __slots__ = ("at_ms", "seq", "action", "label", "cancelled")

    def __init__(self, at_ms: int, seq: int, action: Callable[[], None], label: str | tuple) -> None:
        self.at_ms = at_ms
        self.seq = seq
        self.action = action
        self.label = label
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def description(self) -> str:
        """The label, formatted: a label may be a tuple of parts, joined only when shown
        (formatting one for every event would cost more than the event)."""
        label = self.label
        return " ".join(map(str, label)) if isinstance(label, tuple) else str(label)

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<SimEvent {self.description} at {self.at_ms}ms #{self.seq}{state}>"


class Scheduler:
    """Virtual clock plus event heap. `now_ms` only moves forward, and only in `step`."""

    def __init__(self) -> None:
        self.now_ms = 0
        self._heap: list[tuple[int, int, SimEvent]] = []
        self._seq = 0
        self._same_ms_count = 0
        self.events_run = 0

    # ---- scheduling ---------------------------------------------------------------------

    def schedule_at(self, at_ms: int, action: Callable[[], None], label: str | tuple = "") -> SimEvent:
        assert isinstance(at_ms, int), f"virtual time is integer milliseconds, got {at_ms!r}"
        assert at_ms >= self.now_ms, f"cannot schedule in the past ({at_ms} < {self.now_ms})"
        assert len(self._heap) < MAX_PENDING_EVENTS, "too many pending events: a runaway loop?"
        self._seq += 1
        event = SimEvent(at_ms, self._seq, action, label)
        heapq.heappush(self._heap, (at_ms, self._seq, event))
        return event

    def schedule(self, delay_ms: int, action: Callable[[], None], label: str | tuple = "") -> SimEvent:
        assert delay_ms >= 0, f"negative delay {delay_ms}"
        return self.schedule_at(self.now_ms + int(delay_ms), action, label)

    # ---- running ------------------------------------------------------------------------

    def next_time(self) -> int | None:
        """When the next live event is due, or None if nothing is pending."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def step(self, limit_ms: int | None = None) -> bool:
        """Run the next live event if it is due at or before `limit_ms` (any time if None).
        Returns whether an event ran."""
        due = self.next_time()
        if due is None or (limit_ms is not None and due > limit_ms):
            return False
        event = heapq.heappop(self._heap)[2]
        if event.at_ms == self.now_ms:
            self._same_ms_count += 1
            assert self._same_ms_count <= MAX_EVENTS_PER_MS, \
                f"livelock: {MAX_EVENTS_PER_MS} events at {self.now_ms}ms without time moving"
        else:
            self._same_ms_count = 0
        self.now_ms = event.at_ms
        self.events_run += 1
        event.action()
        return True

    def advance_to(self, at_ms: int) -> None:
        """Move the clock forward to `at_ms` after every event due by then has run (the
        loop of `step`, inlined: this is the simulator's innermost loop)."""
        heap, pop = self._heap, heapq.heappop
        while heap:
            due, _, event = heap[0]
            if event.cancelled:
                pop(heap)
                continue
            if due > at_ms:
                break
            pop(heap)
            if due == self.now_ms:
                self._same_ms_count += 1
                assert self._same_ms_count <= MAX_EVENTS_PER_MS, \
                    f"livelock: {MAX_EVENTS_PER_MS} events at {self.now_ms}ms without time moving"
            else:
                self._same_ms_count = 0
                self.now_ms = due
            self.events_run += 1
            event.action()
        self.now_ms = max(self.now_ms, at_ms)

    @property
    def pending(self) -> int:
        return sum(1 for *_, e in self._heap if not e.cancelled)
