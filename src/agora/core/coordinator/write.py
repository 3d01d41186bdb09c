"""The write coordinator: sends a mutation to every live replica in parallel and answers the
client once the consistency level is met (Dynamo paper section 4.5, Cassandra's
AbstractWriteResponseHandler).

Owns: per-request write state — who was sent what, which acks count toward the level, the
timeout (every write's deadline under one timer: agora.core.coordinator.deadlines).
Deliberately does not know how messages travel or how storage works; it emits `Send`,
`SetTimer` and `Reply` effects. Unavailable is decided before anything is sent.

Hinted handoff (Cassandra's StorageProxy.sendToHintedReplicas and the expiry of write
callbacks): a replica the failure detector holds down is not sent the mutation but hinted,
and a replica that was sent it but has not acknowledged it when write_request_timeout
passes is hinted then, whether or not the client has been answered; so a request's state
lives until every replica acked or the timeout fired. Whether to hint (enabled, the hint
window) and the storing itself are `agora.core.hints`. Hints never count toward the
consistency level, except for ANY, where a stored hint counts as one acknowledgement; ANY
is therefore never Unavailable (with no live replica and no hint possible it times out).

A replica that answers with an error (its storage failed, it does not know the table, it
is not serving after a long downtime) is a failure, as in Cassandra's
AbstractWriteResponseHandler.onFailure: once the replicas that acknowledged plus those
still awaited cannot meet the level, the client is answered WriteFailure at once (CQL
Write_failure, naming the failed replicas) instead of WriteTimeout later. At ANY a hint being
stored for a down replica can still meet the level, so ANY fails only without one. A failed
replica is not hinted (as in Cassandra, which hints replicas that time out, not those that
fail): it answered, a refusal may well repeat on replay, and a hint its target keeps
refusing would hold up every later hint to it. What it missed is repair's and read repair's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agora.core.coordinator.deadlines import Deadlines
from agora.core.coordinator.placement import Placement
from agora.core.effects import Log, Reply, Send
from agora.core.errors import InvalidRequest, Unavailable, WriteFailure, WriteTimeout, failure_code
from agora.core.logthrottle import LogThrottle
from agora.core.messages import MutationReq, MutationRsp
from agora.core.quorum import Requirement, requirement
from agora.core.types import ConsistencyLevel, NodeId, Partition


class Hinter(Protocol):
    """What the coordinator needs of hinted handoff (`agora.core.hints.service`)."""

    def should_hint(self, target: NodeId, now_ms: int) -> bool: ...

    def store(self, target: NodeId, partitions: tuple[Partition, ...], now_ms: int,
              on_stored=None) -> list: ...


@dataclass
class _PartitionWrite:
    """One partition's write inside a client request."""

    requirement: Requirement
    replicas: tuple[NodeId, ...]
    partition: Partition
    sent: tuple[NodeId, ...] = ()
    got: dict = field(default_factory=dict)
    acked: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)  # node -> failure code (0: unknown)
    any_hints: int = 0  # hints for down replicas that, stored, meet ANY
    done: bool = False


@dataclass
class _ClientWrite:
    client_id: int
    cl: ConsistencyLevel
    parts: dict[int, _PartitionWrite]  # req_id -> partition write
    write_type: str
    remaining: int
    unacked: int = 0  # replicas sent a mutation that have not answered it
    replied: bool = False


TIMER = ("write",)  # the one timer of every write's deadline (agora.core.coordinator.deadlines)
# At most one log line per this many ms names a timed-out write's silent replicas; the
# others are counted into the next line, so an overloaded node does not flood its log.
TIMEOUT_LOG_INTERVAL_MS = 1_000


class WriteCoordinator:
    def __init__(self, placement: Placement, write_timeout_ms: int, hints: Hinter | None = None):
        self.placement = placement
        self.write_timeout_ms = write_timeout_ms
        self.hints = hints
        self._by_req: dict[int, _ClientWrite] = {}
        self._by_client: dict[int, _ClientWrite] = {}
        self.deadlines = Deadlines(TIMER, self._by_client.__contains__)
        self._timeout_log = LogThrottle(TIMEOUT_LOG_INTERVAL_MS)

    @property
    def in_flight(self) -> int:
        return len(self._by_client)

    def start(self, client_id: int, partitions: list[Partition], cl: ConsistencyLevel,
              write_type: str = "SIMPLE", now_ms: int = 0) -> list:
        """Coordinate a write of `partitions` (each to its own replicas) at `cl`."""
        if cl in (ConsistencyLevel.SERIAL, ConsistencyLevel.LOCAL_SERIAL):
            return [Reply(client_id, InvalidRequest(f"{cl.name} is not supported for writes"))]
        p = self.placement
        plans = []
        try:
            for part in partitions:
                replicas, per_dc, rf = p.replicas_for(part.table_id, part.key)
                req = requirement(cl, rf, p.local_dc, per_dc)
                alive = [r for r in replicas if p.is_alive(r)]
                reached = req.reached_by(alive, p.dc_of)
                if cl != ConsistencyLevel.ANY and not req.satisfied(reached):
                    raise Unavailable(int(cl), req.total, sum(reached.values()))
                plans.append((part, replicas, alive, req))
        except (Unavailable, InvalidRequest) as exc:
            return [Reply(client_id, exc.with_traceback(None))]  # an answer: no frames kept
        if not plans:  # an empty batch is a no-op that succeeds, as in Cassandra
            return [Reply(client_id, None)]
        cw = _ClientWrite(client_id, cl, {}, write_type, remaining=len(plans))
        self._by_client[client_id] = cw
        effects: list = []
        for part, replicas, alive, req in plans:
            req_id = p.next_req_id()
            cw.parts[req_id] = _PartitionWrite(req, replicas, part, tuple(alive))
            cw.unacked += len(alive)
            self._by_req[req_id] = cw
            msg = MutationReq(req_id, (part,))
            effects.extend(Send(r, msg) for r in alive)
            effects.extend(self._hint_down(cw, req_id, now_ms))
        timer = self.deadlines.add(client_id, p.elapsed_ms(now_ms), self.write_timeout_ms)
        if timer is not None:
            effects.append(timer)
        return effects

    def _hint_down(self, cw: _ClientWrite, req_id: int, now_ms: int) -> list:
        """Hints for the replicas of one partition that were not sent it (down); for ANY a
        stored hint acknowledges the write."""
        pw = cw.parts[req_id]
        if self.hints is None:
            return []
        effects: list = []
        for r in pw.replicas:
            if r in pw.sent or not self.hints.should_hint(r, now_ms):
                continue
            on_stored = None
            if cw.cl == ConsistencyLevel.ANY:
                pw.any_hints += 1
                on_stored = lambda: self._on_hint_stored(cw, req_id)  # noqa: E731
            effects.extend(self.hints.store(r, (pw.partition,), now_ms, on_stored))
        return effects

    def _on_hint_stored(self, cw: _ClientWrite, req_id: int) -> list:
        return self._count(cw, cw.parts[req_id], None)

    def owns(self, req_id: int) -> bool:
        """Whether `req_id` is one of this coordinator's mutations still awaiting answers."""
        return req_id in self._by_req

    def on_response(self, source: NodeId, rsp: MutationRsp) -> list:
        cw = self._by_req.get(rsp.req_id)
        if cw is None:
            return []
        pw = cw.parts[rsp.req_id]
        if source in pw.acked or source in pw.failed or source not in pw.sent:
            return []
        cw.unacked -= 1
        if rsp.error is not None:
            pw.failed[source] = failure_code(rsp.error)
            effects = self._fail(cw, pw)
        else:
            pw.acked.add(source)
            effects = self._count(cw, pw, pw.requirement.bucket_of(source, self.placement.dc_of))
        if cw.unacked == 0 and cw.replied:
            self._forget(cw)
        return effects

    def _count(self, cw: _ClientWrite, pw: _PartitionWrite, bucket) -> list:
        """One acknowledgement (a replica's, or for ANY a stored hint) into `bucket`."""
        if bucket is not False:
            pw.got[bucket] = pw.got.get(bucket, 0) + 1
        if cw.replied or pw.done or not pw.requirement.satisfied(pw.got):
            return []
        pw.done = True
        cw.remaining -= 1
        if cw.remaining:
            return []
        cw.replied = True
        if cw.unacked == 0:
            self._forget(cw)
        return [Reply(cw.client_id, None)]

    def _fail(self, cw: _ClientWrite, pw: _PartitionWrite) -> list:
        """A replica of `pw` failed: WriteFailure if the acknowledgements so far plus the
        replicas still awaited can no longer meet the level."""
        if cw.replied or pw.done or pw.any_hints:
            return []
        req = pw.requirement
        awaited = [r for r in pw.sent if r not in pw.acked and r not in pw.failed]
        possible = dict(pw.got)
        for bucket, n in req.reached_by(awaited, self.placement.dc_of).items():
            possible[bucket] = possible.get(bucket, 0) + n
        if req.satisfied(possible):
            return []
        cw.replied = True
        return [Reply(cw.client_id, WriteFailure(int(cw.cl), sum(pw.got.values()), req.total,
                                                 dict(sorted(pw.failed.items())), cw.write_type))]

    def on_timer(self, now_ms: int) -> list:
        """The deadlines' timer: every write whose write_request_timeout passed times out."""
        expired, timer = self.deadlines.fire(self.placement.elapsed_ms(now_ms))
        effects: list = []
        for client_id in expired:
            effects.extend(self.on_timeout(client_id, now_ms))
        if timer is not None:
            effects.append(timer)
        return effects

    def on_timeout(self, client_id: int, now_ms: int = 0) -> list:
        """write_request_timeout passed: answer WriteTimeout if not yet answered, and hint
        every replica that was sent the mutation and has not answered it."""
        cw = self._by_client.get(client_id)
        if cw is None:
            return []
        self._forget(cw)
        effects: list = []
        if not cw.replied:
            cw.replied = True
            pending = [pw for pw in cw.parts.values() if not pw.done]
            worst = pending[0] if pending else next(iter(cw.parts.values()))
            received = sum(worst.got.values())
            effects.append(Reply(client_id, WriteTimeout(int(cw.cl), received, worst.requirement.total,
                                                         cw.write_type)))
            effects.extend(self._log_timeout(cw, worst, received, now_ms))
        if self.hints is not None:
            for pw in cw.parts.values():
                for r in pw.sent:
                    if r not in pw.acked and r not in pw.failed and self.hints.should_hint(r, now_ms):
                        effects.extend(self.hints.store(r, (pw.partition,), now_ms))
        return effects

    def _log_timeout(self, cw: _ClientWrite, pw: _PartitionWrite, received: int, now_ms: int) -> list:
        """Which replicas a timed-out write waited for in vain, which failed it, and which it
        never sent to because this node held them down: what tells a lost message from a
        wrong verdict."""
        skipped = self._timeout_log.allow(self.placement.elapsed_ms(now_ms))
        if skipped is None:
            return []
        silent = [r for r in pw.sent if r not in pw.acked and r not in pw.failed]
        unsent = [r for r in pw.replicas if r not in pw.sent]
        text = (f"write timed out at {cw.cl.name} ({received} of {pw.requirement.total} "
                f"acknowledged): no answer from {', '.join(silent) or 'none'}")
        if pw.failed:
            text += f"; failed on {', '.join(pw.failed)}"
        if unsent:
            text += f"; not sent to {', '.join(unsent)} (held down)"
        if skipped:
            text += f"; {skipped} more timed out since the last such line"
        return [Log("info", text)]

    def _forget(self, cw: _ClientWrite) -> None:
        for req_id in cw.parts:
            self._by_req.pop(req_id, None)
        self._by_client.pop(cw.client_id, None)
