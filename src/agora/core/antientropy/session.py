"""One repair, coordinated by the node the request reached (Cassandra's RepairSession and
RepairJob): for every (table, range) of its scope, ask each replica of the range for a
Merkle tree, compare the trees pairwise, and have every pair that differs push each other
the differing leaf ranges.

Owns: the per-range jobs and the session's report. A job goes
`trees` (RepairTreeReq to every replica, all of which must be alive: a range with a
replica down fails at once, naming it, as in Cassandra) -> compare (`merkle.difference`
for every pair, in sorted order) -> `sync` (for each differing pair (a, b) a RepairSyncReq
to a naming b and one to b naming a, each with exactly the differing ranges) -> done.
RANGES_IN_FLIGHT jobs run at once, in ring order. A job fails, with its reason kept in the
report, on a replica's error answer, a timeout (TREE_TIMEOUT_MS / SYNC_TIMEOUT_MS), or a
replica that the failure detector convicts while the job waits for it (checked every
LIVENESS_CHECK_MS). A failed range does not stop the others; the session ends "failed" if
any range failed, else "finished".

Does not know how trees are built or data streamed (validator.py, streaming.py), nor which
ranges a request covers (scope.py). Time only comes in as `now_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agora.core.antientropy.merkle import MerkleTree, depth_for_range, differing_leaves, leaf_ranges
from agora.core.antientropy.messages import RepairSyncReq, RepairSyncRsp, RepairTreeReq, RepairTreeRsp
from agora.core.antientropy.scope import RepairRange, RepairRequest
from agora.core.effects import CancelTimer, Send, SetTimer
from agora.core.types import NodeId

# (table, range) jobs of one session in flight at once: enough to overlap one range's
# tree building with another's streaming, few enough that replicas are not asked for many
# trees at once (MAX_CONCURRENT_VALIDATIONS bounds them per node).
RANGES_IN_FLIGHT = 2
# Longest wait for all of a range's trees, in milliseconds. Hashing runs at tens of
# thousands of partitions per second, so 10 minutes is millions of partitions per range;
# a replica that dies meanwhile is caught sooner by the liveness check.
TREE_TIMEOUT_MS = 600_000
# Longest wait for all of a range's pushes, in milliseconds (each chunk of a push also has
# its own STREAM_ACK_TIMEOUT_MS on the sender).
SYNC_TIMEOUT_MS = 1_800_000
# How often a session checks that the replicas it waits for are still alive.
LIVENESS_CHECK_MS = 1_000
# Failed ranges a report lists (the count is always exact).
MAX_REPORTED_FAILURES = 20


class RepairPlacement(Protocol):
    local: NodeId

    def is_alive(self, node: NodeId) -> bool: ...

    def next_req_id(self) -> int: ...


@dataclass
class RangeJob:
    keyspace: str
    table: str
    table_id: bytes
    range: RepairRange
    index: int  # its place in the session's job list (names its timer)
    depth: int = 0
    phase: str = "pending"  # pending -> trees -> sync -> done | failed
    trees: dict = field(default_factory=dict)  # replica -> MerkleTree
    waiting: dict = field(default_factory=dict)  # req_id -> replica
    leaves_out_of_sync: int = 0


@dataclass
class RepairSession:
    session_id: int
    coordinator: NodeId
    request: RepairRequest
    jobs: list[RangeJob]
    started_ms: int
    state: str = "running"  # running -> finished | failed
    next_job: int = 0
    active: int = 0  # jobs in the trees or sync phase
    finished_ms: int | None = None
    counts: dict = field(default_factory=lambda: dict.fromkeys((
        "ranges_done", "ranges_compared", "ranges_out_of_sync", "ranges_failed",
        "leaves_out_of_sync", "partitions_hashed", "partitions_streamed", "rows_streamed",
        "bytes_streamed"), 0))
    failures: list = field(default_factory=list)
    logged: bool = False  # its end has been logged

    def report(self, now_ms: int) -> dict:
        """The session's progress or result, msgpack-native (the admin op returns it)."""
        end = self.finished_ms if self.finished_ms is not None else now_ms
        req = self.request
        return {"id": self.session_id, "coordinator": self.coordinator, "state": self.state,
                "keyspace": req.keyspace,
                "table": req.table, "node": req.node, "start_token": req.start_token,
                "end_token": req.end_token, "primary_only": req.primary_only,
                "ranges_total": len(self.jobs), **self.counts,
                "elapsed_ms": end - self.started_ms, "failures": list(self.failures)}


class SessionRunner:
    """Drives sessions: every input names the session through the request id or timer."""

    def __init__(self, placement: RepairPlacement) -> None:
        self.placement = placement
        self._by_req: dict[int, tuple[RepairSession, RangeJob]] = {}

    # ---- starting ranges ------------------------------------------------------------

    def start(self, session: RepairSession, now_ms: int) -> list:
        effects = [SetTimer(("antientropy", "check", session.session_id), LIVENESS_CHECK_MS)]
        return effects + self._fill(session, now_ms)

    def _fill(self, session: RepairSession, now_ms: int) -> list:
        effects: list = []
        while session.state == "running" and session.next_job < len(session.jobs) \
                and session.active < RANGES_IN_FLIGHT:
            job = session.jobs[session.next_job]
            session.next_job += 1
            effects += self._start_job(session, job, now_ms)
        if session.state == "running" and session.next_job == len(session.jobs) \
                and session.active == 0:
            effects += self._end(session, now_ms)
        return effects

    def _start_job(self, session: RepairSession, job: RangeJob, now_ms: int) -> list:
        down = [r for r in job.range.replicas if not self.placement.is_alive(r)]
        if down:
            return self._fail(session, job, f"replica {down[0]} is down", now_ms, refill=False)
        job.phase, job.depth = "trees", depth_for_range(job.range.start, job.range.end)
        session.active += 1
        effects: list = []
        for replica in job.range.replicas:
            req_id = self.placement.next_req_id()
            job.waiting[req_id] = replica
            self._by_req[req_id] = (session, job)
            effects.append(Send(replica, RepairTreeReq(req_id, job.table_id, job.range.start,
                                                       job.range.end, job.depth)))
        effects.append(SetTimer(self._job_timer(session, job), TREE_TIMEOUT_MS))
        return effects

    @staticmethod
    def _job_timer(session: RepairSession, job: RangeJob) -> tuple:
        return ("antientropy", "job", session.session_id, job.index)

    # ---- trees ----------------------------------------------------------------------

    def on_tree_rsp(self, source: NodeId, rsp: RepairTreeRsp, now_ms: int) -> list:
        hit = self._by_req.get(rsp.req_id)
        if hit is None or hit[1].waiting.get(rsp.req_id) != source or hit[1].phase != "trees":
            return []
        session, job = hit
        del self._by_req[rsp.req_id]
        del job.waiting[rsp.req_id]
        if rsp.error is not None:
            return self._fail(session, job, f"{source} could not build its tree: {rsp.error}", now_ms)
        if rsp.indices and rsp.indices[-1] >= 1 << job.depth:
            return self._fail(session, job, f"{source} answered a tree of another shape", now_ms)
        job.trees[source] = MerkleTree(job.range.start, job.range.end, job.depth, rsp.leaves())
        session.counts["partitions_hashed"] += rsp.partitions
        if job.waiting:
            return []
        return self._compare(session, job, now_ms)

    def _compare(self, session: RepairSession, job: RangeJob, now_ms: int) -> list:
        """All trees are in: find the differing pairs and start their pushes."""
        session.counts["ranges_compared"] += 1
        replicas = sorted(job.trees)
        effects: list = []
        out_of_sync: set[int] = set()
        for i, a in enumerate(replicas):
            for b in replicas[i + 1:]:
                leaves = differing_leaves(job.trees[a], job.trees[b])
                if not leaves:
                    continue
                out_of_sync.update(leaves)
                ranges = leaf_ranges(job.trees[a], leaves)
                for source, peer in ((a, b), (b, a)):
                    req_id = self.placement.next_req_id()
                    job.waiting[req_id] = source
                    self._by_req[req_id] = (session, job)
                    effects.append(Send(source, RepairSyncReq(req_id, job.table_id, peer, tuple(ranges))))
        job.trees = {}  # the trees are not needed any more
        job.leaves_out_of_sync = len(out_of_sync)
        session.counts["leaves_out_of_sync"] += len(out_of_sync)
        if not effects:
            return self._done(session, job, now_ms)
        session.counts["ranges_out_of_sync"] += 1
        job.phase = "sync"
        effects.append(SetTimer(self._job_timer(session, job), SYNC_TIMEOUT_MS))
        return effects

    # ---- sync -----------------------------------------------------------------------

    def on_sync_rsp(self, source: NodeId, rsp: RepairSyncRsp, now_ms: int) -> list:
        hit = self._by_req.get(rsp.req_id)
        if hit is None or hit[1].waiting.get(rsp.req_id) != source or hit[1].phase != "sync":
            return []
        session, job = hit
        del self._by_req[rsp.req_id]
        del job.waiting[rsp.req_id]
        for name, value in (("partitions_streamed", rsp.partitions), ("rows_streamed", rsp.rows),
                            ("bytes_streamed", rsp.bytes)):
            session.counts[name] += value
        if rsp.error is not None:
            return self._fail(session, job, f"streaming from {source} failed: {rsp.error}", now_ms)
        if job.waiting:
            return []
        return self._done(session, job, now_ms)

    # ---- timers ---------------------------------------------------------------------

    def on_job_timer(self, session: RepairSession, index: int, now_ms: int) -> list:
        job = session.jobs[index]
        if job.phase not in ("trees", "sync"):
            return []
        late = sorted(set(job.waiting.values()))
        what = "trees" if job.phase == "trees" else "streaming"
        return self._fail(session, job, f"timed out waiting for {what} from {', '.join(late)}", now_ms)

    def on_check_timer(self, session: RepairSession, now_ms: int) -> list:
        if session.state != "running":
            return []
        effects: list = []
        for job in session.jobs[:session.next_job]:
            if job.phase in ("trees", "sync"):
                down = sorted(r for r in set(job.waiting.values()) if not self.placement.is_alive(r))
                if down:
                    effects += self._fail(session, job, f"replica {down[0]} went down during repair",
                                          now_ms, refill=False)
        effects += self._fill(session, now_ms)
        if session.state == "running":
            effects.append(SetTimer(("antientropy", "check", session.session_id), LIVENESS_CHECK_MS))
        return effects

    # ---- endings --------------------------------------------------------------------

    def _forget(self, session: RepairSession, job: RangeJob) -> None:
        if job.phase in ("trees", "sync"):
            session.active -= 1
        for req_id in job.waiting:
            self._by_req.pop(req_id, None)
        job.waiting = {}
        job.trees = {}

    def _done(self, session: RepairSession, job: RangeJob, now_ms: int) -> list:
        self._forget(session, job)
        job.phase = "done"
        session.counts["ranges_done"] += 1
        return [CancelTimer(self._job_timer(session, job)), *self._fill(session, now_ms)]

    def _fail(self, session: RepairSession, job: RangeJob, reason: str, now_ms: int,
              refill: bool = True) -> list:
        self._forget(session, job)
        job.phase = "failed"
        session.counts["ranges_done"] += 1
        session.counts["ranges_failed"] += 1
        if len(session.failures) < MAX_REPORTED_FAILURES:
            session.failures.append({"keyspace": job.keyspace, "table": job.table,
                                     "start_token": job.range.start, "end_token": job.range.end,
                                     "reason": reason})
        effects: list = [CancelTimer(self._job_timer(session, job))]
        return effects + (self._fill(session, now_ms) if refill else [])

    def _end(self, session: RepairSession, now_ms: int) -> list:
        session.state = "failed" if session.counts["ranges_failed"] else "finished"
        session.finished_ms = now_ms
        return [CancelTimer(("antientropy", "check", session.session_id))]
