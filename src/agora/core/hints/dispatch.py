"""Hint replay: sends a node's stored hints to their target, oldest first, throttled and
with a bounded number in flight, and deletes each one only once the target acknowledged it
(Cassandra's HintsDispatchExecutor and HintsDispatcher; Dynamo paper section 4.6: "once the
transfer succeeds, [the node] may delete the object from its local store").

Owns: replay sessions, one per target at most. A session pages through the target's hints
(`HintScan` of HINT_PAGE_MAX_HINTS or HINT_PAGE_MAX_BYTES), sends each as a `HintReq`
through the shared `Throttle`, keeps at most HINTS_IN_FLIGHT_MAX unacknowledged, and when a
page is done reads the next one after it; a scan that finds nothing ends the session. A hint
is judged before it is sent and dropped (deleted unsent) when its target's host id changed
(the node was replaced: Cassandra keys hint files by host id for this reason), when a table
it writes no longer exists here, or when it is older than its gc_grace (Hint.isLive).

Any failure ends the session and leaves the hints on disk: an error answer, no answer for
`timeout_ms` while hints are in flight, the target going DOWN, a storage error. Whoever
started it (the service: on UP, and every HINTS_FLUSH_PERIOD_MS) starts a new one later,
from the first hint again; answers to an ended session's requests are ignored, so a hint is
forgotten at most once even if it was delivered twice.

Does not know: when to start (the service decides), what counts as pending (the `book`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agora.core.effects import CancelTimer, HintScan, HintScanDone, Log, Send, SetTimer
from agora.core.hints.hint import Hint, decode, target_prefix
from agora.core.hints.messages import HintReq, HintRsp
from agora.core.hints.throttle import Throttle
from agora.core.types import NodeId

# Hints one scan reads at most, and value bytes after which it stops: bounds the memory one
# replay session holds whatever the target missed (Cassandra pages through hint files in
# 512 KiB buffers; a page of this size is a few hundred ordinary mutations).
HINT_PAGE_MAX_HINTS = 512
HINT_PAGE_MAX_BYTES = 1024 * 1024

# Hints sent to one target and not yet acknowledged, at most. Enough to keep a LAN link busy
# (each answer is one replica write), few enough that an aborted session resends little.
HINTS_IN_FLIGHT_MAX = 64

THROTTLE_TIMER = ("hints", "throttle")


def timeout_timer(target: NodeId) -> tuple:
    return ("hints", "timeout", target)


class HintBook(Protocol):
    def forget(self, hint: Hint, outcome: str) -> list:
        """Account for a hint leaving the store ("replayed" or "dropped") and return the
        effect deleting it."""


@dataclass
class _Session:
    target: NodeId
    scan_op: int | None = None
    queue: deque = field(default_factory=deque)  # read, not yet sent
    in_flight: dict[int, Hint] = field(default_factory=dict)  # req_id -> hint
    cursor: bytes | None = None  # key of the last hint read
    page_hints: int = 0  # hints the last scan returned
    page_full: bool = False  # the last scan stopped at a bound


class HintDispatcher:
    def __init__(self, book: HintBook, throttle: Throttle, timeout_ms: int, *,
                 is_alive: Callable[[NodeId], bool], host_id_of: Callable[[NodeId], str | None],
                 knows_table: Callable[[bytes], bool], next_req_id: Callable[[], int],
                 next_op: Callable[[], int]):
        self.book = book
        self.throttle = throttle
        self.timeout_ms = timeout_ms
        self.is_alive = is_alive
        self.host_id_of = host_id_of
        self.knows_table = knows_table
        self.next_req_id = next_req_id
        self.next_op = next_op
        self._sessions: dict[NodeId, _Session] = {}
        self._by_req: dict[int, NodeId] = {}
        self._by_op: dict[int, NodeId] = {}
        self._throttled = False

    def active(self, target: NodeId) -> bool:
        return target in self._sessions

    def in_flight(self) -> int:
        return len(self._by_req)

    def owns_op(self, op_id: int) -> bool:
        return op_id in self._by_op

    # ---- session lifecycle ---------------------------------------------------------------

    def begin(self, target: NodeId, now_ms: int) -> list:
        """Start replaying to `target` unless a session already runs or it is down."""
        if target in self._sessions or not self.is_alive(target):
            return []
        session = _Session(target)
        self._sessions[target] = session
        return self._scan(session)

    def end(self, target: NodeId, why: str | None = None) -> list:
        """Stop replaying to `target`; its unacknowledged hints stay stored."""
        session = self._sessions.pop(target, None)
        if session is None:
            return []
        for req_id in session.in_flight:
            self._by_req.pop(req_id, None)
        if session.scan_op is not None:
            self._by_op.pop(session.scan_op, None)
        out: list = [CancelTimer(timeout_timer(target))]
        if why is not None:
            out.append(Log("info", f"hints: replay to {target} stopped: {why}"))
        return out

    def _scan(self, session: _Session) -> list:
        op = self.next_op()
        session.scan_op = op
        self._by_op[op] = session.target
        return [HintScan(op, target_prefix(session.target), session.cursor,
                         HINT_PAGE_MAX_HINTS, HINT_PAGE_MAX_BYTES)]

    # ---- inputs --------------------------------------------------------------------------

    def on_scan_done(self, done: HintScanDone, now_ms: int) -> list:
        target = self._by_op.pop(done.op_id, None)
        session = self._sessions.get(target) if target is not None else None
        if session is None or session.scan_op != done.op_id:
            return []
        session.scan_op = None
        if done.error is not None:
            return self.end(target, done.error)
        hints = [decode(key, value) for key, value in done.hints]
        session.queue.extend(hints)
        session.page_hints = len(hints)
        session.page_full = not done.exhausted
        if hints:
            session.cursor = hints[-1].key
        return self._pump(session, now_ms)

    def on_response(self, source: NodeId, rsp: HintRsp, now_ms: int) -> list:
        target = self._by_req.get(rsp.req_id)
        if target is None or target != source:
            return []
        del self._by_req[rsp.req_id]
        session = self._sessions[target]
        hint = session.in_flight.pop(rsp.req_id)
        if rsp.error is not None:
            return self.end(target, f"target answered {rsp.error!r}")
        out = self.book.forget(hint, "replayed")
        if session.in_flight:
            out.append(SetTimer(timeout_timer(target), self.timeout_ms))  # progress
        return out + self.pump_all(now_ms)

    def on_timer(self, timer_id: tuple, now_ms: int) -> list:
        if timer_id == THROTTLE_TIMER:
            self._throttled = False
            return self.pump_all(now_ms)
        target = timer_id[2]
        session = self._sessions.get(target)
        if session is None or not session.in_flight:
            return []  # nothing awaited from the target: waiting on the throttle is no failure
        return self.end(target, f"no answer within {self.timeout_ms} ms")

    # ---- sending -------------------------------------------------------------------------

    def pump_all(self, now_ms: int) -> list:
        out: list = []
        for target in sorted(self._sessions):
            session = self._sessions.get(target)
            if session is not None:
                out.extend(self._pump(session, now_ms))
        return out

    def _pump(self, session: _Session, now_ms: int) -> list:
        """Send what the in-flight bound and the throttle allow; read on when a page is done."""
        out: list = []
        sent = False
        while session.queue and len(session.in_flight) < HINTS_IN_FLIGHT_MAX:
            hint = session.queue[0]
            verdict = self._verdict(hint, now_ms)
            if verdict is not None:
                session.queue.popleft()
                out.extend(self.book.forget(hint, "dropped"))
                out.append(Log("debug", f"hints: dropped a hint for {hint.target}: {verdict}"))
                continue
            if self._throttled or not self.throttle.try_take(hint.size, now_ms):
                if not self._throttled:
                    self._throttled = True
                    out.append(SetTimer(THROTTLE_TIMER, self.throttle.wait_ms(now_ms)))
                break
            session.queue.popleft()
            req_id = self.next_req_id()
            session.in_flight[req_id] = hint
            self._by_req[req_id] = session.target
            out.append(Send(session.target, HintReq(req_id, hint.partitions)))
            sent = True
        if sent:
            out.append(SetTimer(timeout_timer(session.target), self.timeout_ms))
        if not session.queue and not session.in_flight and session.scan_op is None:
            if session.page_full or session.page_hints:
                out.extend(self._scan(session))
            else:
                out.extend(self.end(session.target))
        return out

    def _verdict(self, hint: Hint, now_ms: int) -> str | None:
        """Why `hint` must be dropped unsent, or None to send it."""
        current = self.host_id_of(hint.target)
        if hint.host_id is not None and current is not None and current != hint.host_id:
            return f"host id changed from {hint.host_id} to {current} (node replaced)"
        for p in hint.partitions:
            if not self.knows_table(p.table_id):
                return f"table {p.table_id.hex()} no longer exists"
        if not hint.live_at(now_ms):
            return f"older than its gc_grace of {hint.gc_grace_s} s"
        return None
