"""Virtual time for the deterministic simulator: one integer clock in milliseconds and one
heap of pending events.

Owns: the order in which everything in a simulated run happens. Events are ordered by
(time, sequence number); the sequence number is a counter taken when the event is
scheduled, so events due at the same millisecond run in the order they were scheduled and
a run never depends on how the heap breaks ties. Nothing here reads a clock or draws a
random number: the one thing a run depends on is the order of `schedule` calls, which is
what makes one seed reproduce a run byte for byte (FoundationDB's and TigerBeetle's
simulators, DESIGN.md section 2).

Does not know: nodes, networks or messages. An event is a callable and its argument, queued
behind the other events of its millisecond (`Scheduler` has the layout). Two kinds:

- `post_at` / `post`: `function(argument)` at that time, no object made and nothing
  returned (network deliveries, a host's inputs: most of a run's events), so it cannot be
  cancelled.
- `schedule_at` / `schedule`: returns a `SimEvent` that `cancel()` keeps from running
  (timers, timeouts); the heap skips it when it comes up (lazy deletion keeps `cancel` O(1)).

Both draw their sequence number from the one counter, so mixing them changes no order.
"""

from __future__ import annotations

import heapq
from collections import deque
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
    """Virtual clock plus event queue. `now_ms` only moves forward, and only in `step` and
    `advance_to`.

    The queue is a heap of the distinct times that have events, plus one FIFO of events per
    time: events at one millisecond run in the order they were scheduled, which is sequence
    order, so (time, sequence) ordering needs no comparison beyond the heap's integers, and
    a second event at a time already pending costs an append instead of a heap push."""

    def __init__(self) -> None:
        self.now_ms = 0
        self._times: list[int] = []  # heap of the times in `_due`
        self._due: dict[int, deque] = {}  # time -> deque of (function, arg), in sequence order
        self._pending = 0  # entries in `_due`, cancelled ones included
        self._seq = 0
        self._same_ms_count = 0
        self.events_run = 0

    # ---- scheduling ---------------------------------------------------------------------

    def schedule_at(self, at_ms: int, action: Callable, label: str | tuple = "",
                    arg: Any = _NO_ARG) -> SimEvent:
        """`action()` (or `action(arg)`) at `at_ms`, cancellable through the event returned."""
        assert isinstance(at_ms, int), f"virtual time is integer milliseconds, got {at_ms!r}"
        assert at_ms >= self.now_ms, f"cannot schedule in the past ({at_ms} < {self.now_ms})"
        assert self._pending < MAX_PENDING_EVENTS, "too many pending events: a runaway loop?"
        self._seq = seq = self._seq + 1
        event = SimEvent(at_ms, seq, action, label, arg)
        self._push(at_ms, _run_event, event)
        return event

    def schedule(self, delay_ms: int, action: Callable, label: str | tuple = "",
                 arg: Any = _NO_ARG) -> SimEvent:
        assert delay_ms >= 0, f"negative delay {delay_ms}"
        return self.schedule_at(self.now_ms + int(delay_ms), action, label, arg)

    def post_at(self, at_ms: int, function: Callable[[Any], None], arg: Any) -> None:
        """`function(arg)` at `at_ms`; cannot be cancelled (the cheap kind of event)."""
        assert type(at_ms) is int, f"virtual time is integer milliseconds, got {at_ms!r}"
        assert at_ms >= self.now_ms, f"cannot schedule in the past ({at_ms} < {self.now_ms})"
        assert self._pending < MAX_PENDING_EVENTS, "too many pending events: a runaway loop?"
        self._seq += 1
        self._pending += 1  # `_push`, inlined: most events come this way
        due = self._due.get(at_ms)
        if due is None:
            self._due[at_ms] = deque(((function, arg),))
            heapq.heappush(self._times, at_ms)
        else:
            due.append((function, arg))

    def post(self, delay_ms: int, function: Callable[[Any], None], arg: Any) -> None:
        """`function(arg)` `delay_ms` from now (`post_at`, inlined)."""
        assert type(delay_ms) is int and delay_ms >= 0, f"bad delay {delay_ms!r}"
        assert self._pending < MAX_PENDING_EVENTS, "too many pending events: a runaway loop?"
        at_ms = self.now_ms + delay_ms
        self._seq += 1
        self._pending += 1
        due = self._due.get(at_ms)
        if due is None:
            self._due[at_ms] = deque(((function, arg),))
            heapq.heappush(self._times, at_ms)
        else:
            due.append((function, arg))

    def _push(self, at_ms: int, function: Callable, arg: Any) -> None:
        self._pending += 1
        due = self._due.get(at_ms)
        if due is None:
            self._due[at_ms] = deque(((function, arg),))
            heapq.heappush(self._times, at_ms)
        else:
            due.append((function, arg))

    # ---- running ------------------------------------------------------------------------

    def next_time(self) -> int | None:
        """When the next live event is due, or None if nothing is pending (cancelled events
        at the front are dropped on the way)."""
        times, due = self._times, self._due
        while times:
            at = times[0]
            queue = due[at]
            while queue:
                function, arg = queue[0]
                if function is _run_event and arg.cancelled:
                    queue.popleft()
                    self._pending -= 1
                    continue
                return at
            heapq.heappop(times)
            del due[at]
        return None

    def step(self, limit_ms: int | None = None) -> bool:
        """Run the next live event if it is due at or before `limit_ms` (any time if None).
        Returns whether an event ran."""
        at = self.next_time()
        if at is None or (limit_ms is not None and at > limit_ms):
            return False
        function, arg = self._due[at].popleft()  # its time stays queued: `next_time` tidies
        self._pending -= 1
        self._count(at)
        self.now_ms = at
        self.events_run += 1
        function(arg)
        return True

    def _count(self, at: int) -> None:
        if at == self.now_ms:
            self._same_ms_count += 1
            assert self._same_ms_count <= MAX_EVENTS_PER_MS, \
                f"livelock: {MAX_EVENTS_PER_MS} events at {self.now_ms}ms without time moving"
        else:
            self._same_ms_count = 0

    def advance_to(self, at_ms: int) -> None:
        """Move the clock forward to `at_ms` after every event due by then has run (the
        loop of `step`, inlined: this is the simulator's innermost loop)."""
        times, due, pop, run_event = self._times, self._due, heapq.heappop, _run_event
        ran = 0
        try:
            while times:
                at = times[0]
                if at > at_ms:
                    break
                queue = due[at]
                if at != self.now_ms:
                    self._same_ms_count = 0
                    self.now_ms = at
                count = self._same_ms_count
                popleft = queue.popleft
                while queue:  # events scheduled for `at` while these run join this queue
                    function, arg = popleft()
                    self._pending -= 1
                    if function is run_event and arg.cancelled:
                        continue
                    count += 1
                    if count > MAX_EVENTS_PER_MS:
                        self._same_ms_count = count
                        raise AssertionError(f"livelock: {MAX_EVENTS_PER_MS} events at {at}ms "
                                             f"without time moving")
                    ran += 1
                    function(arg)
                self._same_ms_count = count
                pop(times)
                del due[at]
        finally:
            self.events_run += ran
        if at_ms > self.now_ms:
            self.now_ms = at_ms

    @property
    def pending(self) -> int:
        return sum(1 for queue in self._due.values() for f, a in queue
                   if not (f is _run_event and a.cancelled))
