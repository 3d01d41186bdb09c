"""The write coordinator: sends a mutation to every live replica in parallel and answers the
client once the consistency level is met (Dynamo paper section 4.5, Cassandra's
AbstractWriteResponseHandler).

Owns: per-request write state — who was sent what, which acks count toward the level, the
timeout. Deliberately does not know how messages travel or how storage works; it emits
`Send`, `SetTimer` and `Reply` effects. Unavailable is decided before anything is sent.
Hints for replicas that are down or time out are not stored here yet (hinted handoff has its
own module); ANY therefore still needs one live replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agora.core.coordinator.placement import Placement
from agora.core.effects import CancelTimer, Reply, Send, SetTimer
from agora.core.errors import InvalidRequest, Unavailable, WriteTimeout
from agora.core.messages import MutationReq, MutationRsp
from agora.core.quorum import Requirement, requirement
from agora.core.types import ConsistencyLevel, NodeId, Partition


@dataclass
class _PartitionWrite:
    """One partition's write inside a client request."""

    requirement: Requirement
    replicas: tuple[NodeId, ...]
    got: dict = field(default_factory=dict)
    acked: set = field(default_factory=set)
    done: bool = False


@dataclass
class _ClientWrite:
    client_id: int
    cl: ConsistencyLevel
    parts: dict[int, _PartitionWrite]  # req_id -> partition write
    write_type: str
    remaining: int
    replied: bool = False


class WriteCoordinator:
    def __init__(self, placement: Placement, write_timeout_ms: int):
        self.placement = placement
        self.write_timeout_ms = write_timeout_ms
        self._by_req: dict[int, _ClientWrite] = {}
        self._by_client: dict[int, _ClientWrite] = {}

    @property
    def in_flight(self) -> int:
        return len(self._by_client)

    def start(self, client_id: int, partitions: list[Partition], cl: ConsistencyLevel,
              write_type: str = "SIMPLE") -> list:
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
                if not req.satisfied(req.reached(p.dc_of(r) for r in alive)):
                    counted = sum(req.reached(p.dc_of(r) for r in alive).values())
                    raise Unavailable(int(cl), req.total, counted)
                plans.append((part, replicas, alive, req))
        except (Unavailable, InvalidRequest) as exc:
            return [Reply(client_id, exc)]
        if not plans:  # an empty batch is a no-op that succeeds, as in Cassandra
            return [Reply(client_id, None)]
        cw = _ClientWrite(client_id, cl, {}, write_type, remaining=len(plans))
        effects: list = []
        for part, replicas, alive, req in plans:
            req_id = p.next_req_id()
            cw.parts[req_id] = _PartitionWrite(req, replicas)
            self._by_req[req_id] = cw
            msg = MutationReq(req_id, (part,))
            effects.extend(Send(r, msg) for r in alive)
        self._by_client[client_id] = cw
        effects.append(SetTimer(("write", client_id), self.write_timeout_ms))
        return effects

    def on_response(self, source: NodeId, rsp: MutationRsp) -> list:
        cw = self._by_req.get(rsp.req_id)
        if cw is None or cw.replied:
            return []
        pw = cw.parts[rsp.req_id]
        if rsp.error is not None or source in pw.acked or source not in pw.replicas:
            return []
        pw.acked.add(source)
        bucket = pw.requirement.counts(self.placement.dc_of(source))
        if bucket is not False:
            pw.got[bucket] = pw.got.get(bucket, 0) + 1
        if not pw.done and pw.requirement.satisfied(pw.got):
            pw.done = True
            cw.remaining -= 1
            if cw.remaining == 0:
                return self._finish(cw, None)
        return []

    def on_timeout(self, client_id: int) -> list:
        cw = self._by_client.get(client_id)
        if cw is None or cw.replied:
            return []
        pending = [pw for pw in cw.parts.values() if not pw.done]
        worst = pending[0] if pending else next(iter(cw.parts.values()))
        received = sum(worst.got.values())
        exc = WriteTimeout(int(cw.cl), received, worst.requirement.total, cw.write_type)
        return self._finish(cw, exc)

    def _finish(self, cw: _ClientWrite, error) -> list:
        cw.replied = True
        for req_id in cw.parts:
            self._by_req.pop(req_id, None)
        self._by_client.pop(cw.client_id, None)
        effects = [Reply(cw.client_id, error)]
        if error is None:
            effects.append(CancelTimer(("write", cw.client_id)))
        return effects
