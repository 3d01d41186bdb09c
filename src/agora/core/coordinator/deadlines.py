"""Per-request deadlines of one coordinator, kept under a single timer.

Owns: the deadlines (write and read timeouts, the speculative-retry threshold) of the
requests one coordinator has in flight, in a heap, and the one `SetTimer` that wakes the
coordinator at the earliest of them. A request costs a heap push, not a timer armed and
then cancelled by the runtime (Cassandra likewise expires its callbacks from one map rather
than a timer each). A request that ends before its deadline leaves its entry behind; the
entry is dropped when it reaches the heap's head (up to two such heads go with every new
entry), and when the heap has doubled since it last held only live entries it is rebuilt
without the dead ones, so it stays within twice what is in flight (plus 64), however long a
stuck request holds the head.

Times are on the driver's monotonic clock (`Placement.elapsed_ms`), as a timer per request
would be: a step of the wall clock moves no deadline. Each deadline fires exactly when it
would have with a timer of its own: the timer is armed for the earliest entry and re-armed,
when it fires, for the next live one. Should an arming ever be lost (its effects dropped),
the next entry re-arms the timer once the armed time is more than STALE_ARMING_MS past.
"""

from __future__ import annotations

import heapq
from typing import Callable, Hashable

from agora.core.effects import SetTimer

COMPACT_FLOOR = 64  # the heap is rebuilt without ended requests past twice its live size plus this
STALE_ARMING_MS = 1_000  # an armed time this far past means its timer was lost: arm again


class Deadlines:
    def __init__(self, timer_id: Hashable, is_live: Callable[[Hashable], bool]):
        self.timer_id = timer_id
        self._is_live = is_live  # whether a key's request still waits for its deadline
        self._heap: list[tuple[int, int, Hashable]] = []  # (due_ms, sequence, key)
        self._seq = 0
        self._armed: int | None = None  # the due time the timer is armed for
        self._compact_at = COMPACT_FLOOR  # rebuild the heap when it reaches this size

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, key: Hashable, now_ms: int, delay_ms: int) -> SetTimer | None:
        """Track `key` until now_ms + delay_ms; the timer to (re-)arm, if it must be."""
        heap = self._heap
        # drop up to two ended requests from the head (where most of them end up)
        for _ in range(2):
            if heap and not self._is_live(heap[0][2]):
                heapq.heappop(heap)
            else:
                break
        if len(heap) >= self._compact_at:  # a stuck request at the head blocks the above
            heap[:] = [entry for entry in heap if self._is_live(entry[2])]
            heapq.heapify(heap)
            self._compact_at = 2 * len(heap) + COMPACT_FLOOR
        due = now_ms + delay_ms
        self._seq += 1
        heapq.heappush(heap, (due, self._seq, key))
        armed = self._armed
        if armed is None or due < armed:
            self._armed = due
            return SetTimer(self.timer_id, delay_ms)
        if armed < now_ms - STALE_ARMING_MS:  # the armed timer should have fired long ago
            self._armed = heap[0][0]
            return SetTimer(self.timer_id, max(0, heap[0][0] - now_ms))
        return None

    def fire(self, now_ms: int) -> tuple[list[Hashable], SetTimer | None]:
        """The timer fired: the live keys whose deadline has passed, earliest first, and
        the timer for the next live deadline (None when nothing is left to wait for)."""
        heap, is_live = self._heap, self._is_live
        # what the timer was armed for is due even if the clock reads a little earlier
        until = now_ms if self._armed is None else max(now_ms, self._armed)
        keys = []
        while heap and (heap[0][0] <= until or not is_live(heap[0][2])):
            _due, _seq, key = heapq.heappop(heap)
            if _due <= until and is_live(key):
                keys.append(key)
        if not heap:
            self._armed = None
            return keys, None
        self._armed = heap[0][0]
        return keys, SetTimer(self.timer_id, max(0, self._armed - now_ms))
