"""The read coordinator: data + digest reads, speculative retry, and blocking read repair
(Dynamo paper section 4.5; Cassandra's AbstractReadExecutor, DigestResolver, DataResolver
and BlockingReadRepair).

Owns: per-request read state. One replica (the closest) is asked for data and the others
the level needs for digests. If the answers' digests differ, every replica that answered is
asked for full data, the versions are merged, each stale replica that took part is sent the
difference, and only after those repairs are acknowledged does the client get its answer —
which is what makes QUORUM reads monotonic. If enough answers have not arrived after the
99th percentile of how long the table's reads wait for their level (agora.core.coordinator.
latency), one more replica is asked for data (speculative retry; the table's
`speculative_retry` option picks the wait, or none, or asks at once:
agora.core.coordinator.speculation). With `read_repair = 'NONE'` a mismatch is still
resolved and the merged version answered, but no replica is repaired (as in Cassandra, QUORUM
reads are then not monotonic). Both deadlines of every
read (that threshold and read_request_timeout) are kept under one timer each
(agora.core.coordinator.deadlines).
A replica that answers with an error (one back from a long downtime that may not serve yet,
agora.core.tombstones) is replaced by the next candidate at once; when none is left and the
replicas still asked cannot meet the level, or an error cuts a resolve short, the read fails
at once with ReadFailure (Cassandra's Read_failure) instead of waiting for its timeout.
Replicas are candidates only if `serves_reads` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agora.core import reconcile
from agora.core.coordinator.deadlines import Deadlines
from agora.core.coordinator.latency import LatencyWindow
from agora.core.coordinator.placement import Placement
from agora.core.coordinator.speculation import ALWAYS
from agora.core.effects import Reply, Send
from agora.core.errors import InvalidRequest, ReadFailure, ReadTimeout, Unavailable, failure_code
from agora.core.messages import MutationReq, MutationRsp, ReadReq, ReadRsp
from agora.core.quorum import Requirement, requirement
from agora.core.types import ConsistencyLevel, NodeId, Partition, ReadCommand, ReadPage


TIMEOUT_TIMER = ("read",)  # the timers of every read's deadlines (agora.core.coordinator.deadlines)
SPECULATE_TIMER = ("speculate",)


@dataclass
class _Read:
    client_id: int
    cl: ConsistencyLevel
    command: ReadCommand
    candidates: list[NodeId]  # live replicas that may serve, best first
    requirement: Requirement
    start_ms: int  # on the monotonic clock (Placement.elapsed_ms)
    req_id: int
    phase: str = "collect"  # collect -> resolve -> repair
    contacted: dict = field(default_factory=dict)  # node -> "data" | "digest"
    data: dict = field(default_factory=dict)  # node -> Partition | None
    more: dict = field(default_factory=dict)  # node -> its data answer's more_after, if any
    digests: dict = field(default_factory=dict)  # node -> bytes
    waiting: set = field(default_factory=set)  # nodes whose answer the current phase needs
    failed: dict = field(default_factory=dict)  # nodes that answered with an error: their codes
    merged: Partition | None = None
    cut: bytes | None = None  # a page's end: the merged answer is complete up to this key
    repair: bool = True  # the table's read_repair: send stale replicas what they lack
    replied: bool = False


class ReadCoordinator:
    def __init__(self, placement: Placement, read_timeout_ms: int):
        self.placement = placement
        self.read_timeout_ms = read_timeout_ms
        self._by_req: dict[int, _Read] = {}
        self._by_client: dict[int, _Read] = {}
        self.latency: dict[bytes, LatencyWindow] = {}
        self.timeouts = Deadlines(TIMEOUT_TIMER, self._by_client.__contains__)
        self.speculations = Deadlines(SPECULATE_TIMER, self._collecting)
        self.stats = {"digest_mismatch": 0, "read_repairs": 0, "speculative_retries": 0}

    @property
    def in_flight(self) -> int:
        return len(self._by_client)

    def start(self, client_id: int, command: ReadCommand, cl: ConsistencyLevel, now_ms: int) -> list:
        p = self.placement
        try:
            if cl == ConsistencyLevel.ANY:
                raise InvalidRequest("ANY ConsistencyLevel is only supported for writes")
            if cl in (ConsistencyLevel.SERIAL, ConsistencyLevel.LOCAL_SERIAL):
                raise InvalidRequest(f"{cl.name} reads are not supported")
            replicas, per_dc, rf = p.replicas_for(command.table_id, command.key)
            req = requirement(cl, rf, p.local_dc, per_dc)
            alive = sorted((r for r in replicas if p.serves_reads(r) and req.bucket_of(r, p.dc_of) is not False),
                           key=p.proximity)
            reached = req.reached_by(alive, p.dc_of)
            if not req.satisfied(reached):
                raise Unavailable(int(cl), req.total, sum(reached.values()))
        except (Unavailable, InvalidRequest) as exc:
            return [Reply(client_id, exc.with_traceback(None))]  # an answer: no frames kept
        elapsed = p.elapsed_ms(now_ms)  # latencies and deadlines: the monotonic clock
        rd = _Read(client_id, cl, command, alive, req, elapsed, p.next_req_id())
        speculation, rd.repair = p.read_options(command.table_id)
        self._by_req[rd.req_id] = rd
        self._by_client[client_id] = rd
        targets, data = self._initial_targets(rd), 1
        # As Cassandra (CASSANDRA-11980), EACH_QUORUM never speculates.
        speculates = cl != ConsistencyLevel.EACH_QUORUM
        if speculation.kind == ALWAYS and speculates:
            # one replica more than the level needs, with the first ones: as Cassandra's
            # AlwaysSpeculatingReadExecutor, the closest two for data, the rest for digests
            extra = next((n for n in alive if n not in targets), None)
            if extra is not None:
                targets, data = [*targets, extra], 2
                self.stats["speculative_retries"] += 1
        effects = [self._ask(rd, node, digest_only=i >= data) for i, node in enumerate(targets)]
        timer = self.timeouts.add(client_id, elapsed, self.read_timeout_ms)
        if timer is not None:
            effects.append(timer)
        window = self.latency.get(command.table_id)
        if window is None or window.percentile != speculation.percentile / 100:
            window = self.latency[command.table_id] = LatencyWindow(speculation.percentile / 100)
        delay = speculation.delay_ms(window) if speculates else None
        if delay is not None:
            timer = self.speculations.add(client_id, elapsed, delay)
            if timer is not None:
                effects.append(timer)
        return effects

    def _collecting(self, client_id: int) -> bool:
        """Whether the read is still collecting its first answers (speculation may help)."""
        rd = self._by_client.get(client_id)
        return rd is not None and rd.phase == "collect"

    def _initial_targets(self, rd: _Read) -> list[NodeId]:
        """The fewest best replicas that satisfy the level, data replica first."""
        per_dc = rd.requirement.per_dc
        if None in per_dc:  # every reply counts alike: the best n
            return rd.candidates[:per_dc[None]]
        chosen: list[NodeId] = []
        got: dict = {}
        for node in rd.candidates:
            if rd.requirement.satisfied(got):
                break
            bucket = rd.requirement.bucket_of(node, self.placement.dc_of)
            if got.get(bucket, 0) < rd.requirement.per_dc[bucket]:
                chosen.append(node)
                got[bucket] = got.get(bucket, 0) + 1
        return chosen

    def _ask(self, rd: _Read, node: NodeId, digest_only: bool):
        rd.contacted[node] = "digest" if digest_only else "data"
        return Send(node, ReadReq(rd.req_id, rd.command, digest_only))

    # ---- inputs ---------------------------------------------------------------------

    def on_response(self, source: NodeId, rsp: ReadRsp, now_ms: int) -> list:
        rd = self._by_req.get(rsp.req_id)
        if rd is None or rd.replied or source not in rd.contacted:
            return []
        if rsp.error is not None:  # e.g. a replica in quarantine: ask another one at once
            rd.failed[source] = failure_code(rsp.error)
            rd.waiting.discard(source)
            rd.digests.pop(source, None)
            if rd.phase == "collect":
                another = self._ask_another(rd)
                if another or self._still_possible(rd):
                    return another
            # the level can no longer be met (or a resolve lost an answer it needs): say so
            failures = dict(sorted(rd.failed.items()))
            responders = [n for n in list(rd.data) + list(rd.digests) if n not in rd.failed]
            received = sum(rd.requirement.reached_by(responders, self.placement.dc_of).values())
            return self._finish(rd, ReadFailure(int(rd.cl), received, rd.requirement.total,
                                                failures, bool(rd.data)))
        collecting = rd.phase == "collect"
        if collecting:  # how long this answer took, on the monotonic clock: read once
            waited = self.placement.elapsed_ms(now_ms) - rd.start_ms
            self.placement.observe_latency(source, waited)
        if rsp.digest is not None and rsp.partition is None and rd.contacted[source] == "digest":
            rd.digests[source] = rsp.digest
        else:
            part = rsp.partition
            if part is not None and (truncated := self.placement.truncated_at(part.table_id)) is not None:
                part = reconcile.drop_truncated(part, truncated)
            rd.data[source] = part
            if rsp.more_after is not None:
                rd.more[source] = rsp.more_after
        rd.waiting.discard(source)
        if collecting:
            return self._check_collect(rd, now_ms, waited)
        if rd.phase == "resolve" and not rd.waiting:
            return self._resolve(rd, now_ms)
        return []

    def on_repair_ack(self, source: NodeId, rsp: MutationRsp, now_ms: int) -> list:
        rd = self._by_req.get(rsp.req_id)
        if rd is None or rd.replied or rd.phase != "repair" or rsp.error is not None:
            return []
        rd.waiting.discard(source)
        if not rd.waiting:
            return self._finish(rd, self._answer(rd, rd.merged, now_ms))
        return []

    def on_timer(self, timer_id, now_ms: int) -> list:
        """One of the two deadline timers: reads past their speculation threshold ask one
        more replica, reads past read_request_timeout time out."""
        deadlines = self.speculations if timer_id == SPECULATE_TIMER else self.timeouts
        expired, timer = deadlines.fire(self.placement.elapsed_ms(now_ms))
        effects: list = []
        for client_id in expired:
            rd = self._by_client.get(client_id)
            if rd is None or rd.replied:
                continue
            if deadlines is self.speculations:
                effects.extend(self._speculate(rd, now_ms))
            else:
                effects.extend(self._timeout(rd))
        if timer is not None:
            effects.append(timer)
        return effects

    def _timeout(self, rd: _Read) -> list:
        responders = set(rd.data) | set(rd.digests)
        received = sum(rd.requirement.reached_by(list(responders), self.placement.dc_of).values())
        if rd.phase != "collect":
            received = min(received, rd.requirement.total - 1) if rd.waiting else received
        exc = ReadTimeout(int(rd.cl), received, rd.requirement.total, bool(rd.data))
        return self._finish(rd, exc)

    # ---- phases ---------------------------------------------------------------------

    def _speculate(self, rd: _Read, now_ms: int) -> list:
        if rd.phase != "collect":
            return []
        for node in rd.contacted:  # slow replicas lose their place in the proximity order
            if node not in rd.data and node not in rd.digests:
                self.placement.observe_latency(node, self.placement.elapsed_ms(now_ms) - rd.start_ms)
        for node in rd.candidates:
            if node not in rd.contacted:
                self.stats["speculative_retries"] += 1
                return [self._ask(rd, node, digest_only=False)]
        return []

    def _still_possible(self, rd: _Read) -> bool:
        """Whether the replicas asked that have not failed can still meet the level."""
        alive = [n for n in rd.contacted if n not in rd.failed]
        return rd.requirement.satisfied(rd.requirement.reached_by(alive, self.placement.dc_of))

    def _ask_another(self, rd: _Read) -> list:
        for node in rd.candidates:
            if node not in rd.contacted:
                return [self._ask(rd, node, digest_only=False)]
        return []

    def _check_collect(self, rd: _Read, now_ms: int, waited: int) -> list:
        responders = list(rd.data) + list(rd.digests)
        got = rd.requirement.reached_by(responders, self.placement.dc_of)
        if not rd.data or not rd.requirement.satisfied(got):
            return []
        # The speculation threshold is a percentile of what a read waits for: the answer
        # that completes its level (Cassandra samples whole reads), not every answer — the
        # closest replica's (often this node's own) would pull it under most reads.
        window = self.latency.get(rd.command.table_id)
        if window is not None:
            window.record(waited)
        answers = list(rd.data.values())
        # one answer alone agrees with itself: no digest to compute
        more = rd.more
        agree = len(answers) + len(rd.digests) == 1 or \
            len({reconcile.page_digest(p, more.get(n)) for n, p in rd.data.items()}
                | set(rd.digests.values())) == 1
        if agree:
            if more:
                rd.cut = next(iter(more.values()))  # agreeing pages end alike
            versions = [p for p in answers if p is not None]
            if not versions:
                return self._finish(rd, self._answer(rd, None, now_ms))
            # live_view honours shadowing in any input: one version needs no canonical copy
            merged = versions[0] if len(versions) == 1 else reconcile.merge_many(versions)
            return self._finish(rd, self._answer(rd, merged, now_ms))
        self.stats["digest_mismatch"] += 1
        rd.phase = "resolve"
        rd.req_id = self._rekey(rd)
        rd.waiting = set(rd.digests)  # those that sent only a digest now send their data
        rd.digests.clear()
        if not rd.waiting:  # every answer so far carried data (e.g. after a speculative retry)
            return self._resolve(rd, now_ms)
        return [Send(n, ReadReq(rd.req_id, rd.command, False)) for n in sorted(rd.waiting)]

    def _resolve(self, rd: _Read, now_ms: int) -> list:
        versions = [p for p in rd.data.values() if p is not None]
        rd.merged = reconcile.merge_many(versions) if versions else None
        ends = list(rd.more.values())
        if ends:  # pages of unequal reach: the answer stops where the shortest stopped, so
            # no row past it is missing one replica's version (or repaired)
            backwards = rd.command.reversed
            rd.cut = max(ends) if backwards else min(ends)
            if rd.merged is not None:
                rd.merged = reconcile.rows_up_to(rd.merged, rd.cut, backwards)
        if rd.merged is None or not rd.repair:  # read_repair = 'NONE': answer, repair nothing
            return self._finish(rd, self._answer(rd, rd.merged, now_ms))
        rd.phase = "repair"
        rd.req_id = self._rekey(rd)
        effects = []
        for node in sorted(rd.data):
            diff = reconcile.repair_for(rd.merged, rd.data[node])
            if diff is not None:
                rd.waiting.add(node)
                effects.append(Send(node, MutationReq(rd.req_id, (diff,))))
        self.stats["read_repairs"] += len(effects)
        if not effects:
            return self._finish(rd, self._answer(rd, rd.merged, now_ms))
        return effects

    @staticmethod
    def _answer(rd: _Read, merged: Partition | None, now_ms: int):
        """What the client gets: the live view of `merged`; for a read with a row limit, a
        ReadPage that also says where the page ends."""
        view = None if merged is None else reconcile.live_view(merged, now_ms // 1000)
        return ReadPage(view, rd.cut) if rd.command.limit_rows else view

    def _rekey(self, rd: _Read) -> int:
        self._by_req.pop(rd.req_id, None)
        req_id = self.placement.next_req_id()
        self._by_req[req_id] = rd
        return req_id

    def _finish(self, rd: _Read, result) -> list:
        rd.replied = True
        self._by_req.pop(rd.req_id, None)
        self._by_client.pop(rd.client_id, None)
        return [Reply(rd.client_id, result)]
