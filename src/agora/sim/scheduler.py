"""Virtual time for the deterministic simulator: one integer clock in milliseconds and one
heap of pending events.

Owns: the order in which everything in a simulated run happens. Events are ordered by
(time, sequence number); the sequence number is a counter taken when the event is
scheduled, so events due at the same millisecond run in the order they were scheduled and
a run never depends on how the heap breaks ties. Nothing here reads a clock or draws a
random number: the one thing a run depends on is the order of `schedule` calls, which is
what makes one seed reproduce a run byte for byte (FoundationDB's and TigerBeetle's
simulators, DESIGN.md section 2).

Does not know: nodes, networks or messages. An event is a callable and its argument. The
heap holds (time, sequence, function, argument) tuples, so ordering is a C-level comparison
of two integers (the sequence numbers are unique: nothing else is ever compared). Two kinds:

- `post_at` / `post`: `function(argument)` at that time, no object made and nothing
  returned (network deliveries, a host's inputs: most of a run's events), so it cannot be
  cancelled.
- `schedule_at` / `schedule`: returns a `SimEvent` that `cancel()` keeps from running
  (timers, timeouts); the heap skips it when it comes up (lazy deletion keeps `cancel` O(1)).

Both draw their sequence number from the one counter, so mixing them changes no order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

# A single run may not hold more pending events than this: a runaway feedback loop (a timer
# re-arming itself with delay 0, a message storm) fails loudly instead of eating the memory.
MAX_PENDING_EVENTS = 1_000_000
# Events that may run at one virtual millisecond before we call it a livelock (something
# keeps scheduling work "now" and time never advances).
MAX_EVENTS_PER_MS = 200_000


_NO_ARG = object()


class SimEvent:
    """A scheduled callable (with `arg`, called as `action(arg)`). `cancel()` keeps it from
    running."""

    __slots__ = ("at_ms", "seq", "action", "label", "cancelled", "arg")

    def __init__(self, at_ms: int, seq: int, action: Callable, label: str | tuple,
                 arg: Any = _NO_ARG) -> None:
        self.at_ms = at_ms
        self.seq = seq
        self.action = action
        self.label = label
        self.cancelled = False
        self.arg = arg

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


def _run_event(event: SimEvent) -> None:
    """How the heap runs a `SimEvent` (a cancelled one never gets here)."""
    arg = event.arg
    if arg is _NO_ARG:
        event.action()
    else:
        event.action(arg)


class Scheduler:
    """Virtual clock plus event heap. `now_ms` only moves forward, and only in `step`."""

    def __init__(self) -> None:
        self.now_ms = 0
        self._heap: list[tuple[int, int, Callable, Any]] = []
        self._seq = 0
        self._same_ms_count = 0
        self.events_run = 0

    # ---- scheduling ---------------------------------------------------------------------

    def schedule_at(self, at_ms: int, action: Callable, label: str | tuple = "",
                    arg: Any = _NO_ARG) -> SimEvent:
        """`action()` (or `action(arg)`) at `at_ms`, cancellable through the event returned."""
        assert isinstance(at_ms, int), f"virtual time is integer milliseconds, got {at_ms!r}"
        assert at_ms >= self.now_ms, f"cannot schedule in the past ({at_ms} < {self.now_ms})"
        assert len(self._heap) < MAX_PENDING_EVENTS, "too many pending events: a runaway loop?"
        self._seq = seq = self._seq + 1
        event = SimEvent(at_ms, seq, action, label, arg)
        heapq.heappush(self._heap, (at_ms, seq, _run_event, event))
        return event

    def schedule(self, delay_ms: int, action: Callable, label: str | tuple = "",
                 arg: Any = _NO_ARG) -> SimEvent:
        assert delay_ms >= 0, f"negative delay {delay_ms}"
        return self.schedule_at(self.now_ms + int(delay_ms), action, label, arg)

    def post_at(self, at_ms: int, function: Callable[[Any], None], arg: Any) -> None:
        """`function(arg)` at `at_ms`; cannot be cancelled (the cheap kind of event)."""
        assert type(at_ms) is int, f"virtual time is integer milliseconds, got {at_ms!r}"
        assert at_ms >= self.now_ms, f"cannot schedule in the past ({at_ms} < {self.now_ms})"
        heap = self._heap
        assert len(heap) < MAX_PENDING_EVENTS, "too many pending events: a runaway loop?"
        self._seq = seq = self._seq + 1
        heapq.heappush(heap, (at_ms, seq, function, arg))

    def post(self, delay_ms: int, function: Callable[[Any], None], arg: Any) -> None:
        assert type(delay_ms) is int and delay_ms >= 0, f"bad delay {delay_ms!r}"
        self.post_at(self.now_ms + delay_ms, function, arg)

    # ---- running ------------------------------------------------------------------------

    def next_time(self) -> int | None:
        """When the next live event is due, or None if nothing is pending."""
        heap = self._heap
        while heap and heap[0][2] is _run_event and heap[0][3].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def step(self, limit_ms: int | None = None) -> bool:
        """Run the next live event if it is due at or before `limit_ms` (any time if None).
        Returns whether an event ran."""
        due = self.next_time()
        if due is None or (limit_ms is not None and due > limit_ms):
            return False
        _, _, function, arg = heapq.heappop(self._heap)
        if due == self.now_ms:
            self._same_ms_count += 1
            assert self._same_ms_count <= MAX_EVENTS_PER_MS, \
                f"livelock: {MAX_EVENTS_PER_MS} events at {self.now_ms}ms without time moving"
        else:
            self._same_ms_count = 0
        self.now_ms = due
        self.events_run += 1
        function(arg)
        return True

    def advance_to(self, at_ms: int) -> None:
        """Move the clock forward to `at_ms` after every event due by then has run (the
        loop of `step`, inlined: this is the simulator's innermost loop)."""
        heap, pop, run_event = self._heap, heapq.heappop, _run_event
        ran = 0
        try:
            while heap:
                due, _, function, arg = heap[0]
                if due > at_ms:
                    break
                pop(heap)
                if function is run_event and arg.cancelled:
                    continue
                if due == self.now_ms:
                    self._same_ms_count += 1
                    assert self._same_ms_count <= MAX_EVENTS_PER_MS, \
                        f"livelock: {MAX_EVENTS_PER_MS} events at {self.now_ms}ms without time moving"
                else:
                    self._same_ms_count = 0
                    self.now_ms = due
                ran += 1
                function(arg)
        finally:
            self.events_run += ran
        if at_ms > self.now_ms:
            self.now_ms = at_ms

    @property
    def pending(self) -> int:
        return sum(1 for _, _, f, a in self._heap if not (f is _run_event and a.cancelled))
