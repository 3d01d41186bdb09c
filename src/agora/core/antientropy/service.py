"""Anti-entropy repair on one node: the single entry point `Node` routes repair messages,
timers and storage completions to, and the owner of this node's repair sessions (Dynamo
paper section 4.7; Cassandra's ActiveRepairService).

Owns: starting sessions (from a client request or the schedule), their bounded history and
status reports, the storage operation ids of repair work, and the schedule. The work itself
is done by the parts: `session.SessionRunner` coordinates (trees, comparison, sync),
`validator.Validator` builds this node's trees, `streaming.StreamSender` pushes this node's
partitions to a peer and `streaming.StreamReceiver` merges what peers push here.

Scheduled repair: with the node option `repair_interval` > 0, every node repairs, once per
interval, the primary ranges it owns in every keyspace (`nodetool repair -pr` on a timer),
so that each range of the ring is repaired about once per interval across the cluster. The
first round starts at a random point of the first interval so nodes do not all start
together; a round is skipped while the previous one still runs.

Storage operation ids: repair's ids start at REPAIR_OP_BASE, far above what the replica's
counter reaches, so one completion is never mistaken for another's.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Protocol

from agora.core.antientropy.messages import (RepairStreamAck, RepairStreamData, RepairSyncReq,
                                             RepairSyncRsp, RepairTreeReq, RepairTreeRsp)
from agora.core.antientropy.scope import RepairRequest, parse_request, repair_ranges, resolve_node
from agora.core.antientropy.session import RangeJob, RepairSession, SessionRunner
from agora.core.antientropy.streaming import StreamReceiver, StreamSender
from agora.core.antientropy.validator import Validator
from agora.core.effects import Log, Reply, SetTimer, StoragePutDone, StorageScanDone
from agora.core.errors import InvalidRequest
from agora.core.types import NodeId

REPAIR_OP_BASE = 1 << 48  # first storage op id of repair work (see the module docstring)
# Sessions this node coordinates at once; past this a new repair is refused. Each holds at
# most RANGES_IN_FLIGHT ranges' trees, so this bounds a coordinator's repair memory.
MAX_RUNNING_SESSIONS = 4
# Finished sessions whose reports are kept for `repair_status` (oldest dropped first).
MAX_FINISHED_SESSIONS = 32


class RepairHost(Protocol):
    """What repair needs of its node (agora.core.node.Node provides it)."""

    local: NodeId
    rng: random.Random

    def is_alive(self, node: NodeId) -> bool: ...

    def next_req_id(self) -> int: ...

    def ring_replicas(self, table_id: bytes) -> tuple: ...

    def truncated_at(self, table_id: bytes) -> int | None: ...


class AntiEntropy:
    def __init__(self, node: RepairHost, repair_interval_ms: int, sync_writes: bool) -> None:
        self.node = node
        self.repair_interval_ms = repair_interval_ms
        self._next_op = REPAIR_OP_BASE
        self._next_session = 0
        self.sessions: OrderedDict[int, RepairSession] = OrderedDict()
        self._scheduled: int | None = None  # the session the schedule started last
        self.runner = SessionRunner(node)
        self.validator = Validator(self._knows_table, self._new_op, node.truncated_at)
        self.receiver = StreamReceiver(self._knows_table, self._new_op, sync_writes)
        self.sender = StreamSender(self._knows_table, node.is_alive, self._new_op, node.next_req_id,
                                   self.receiver.pushed_by,
                                   lambda: bool(getattr(node, "needs_repair", False)),
                                   node.truncated_at)

    def _new_op(self) -> int:
        self._next_op += 1
        return self._next_op

    def _knows_table(self, table_id: bytes) -> bool:
        return self.node.schema.schema.table_by_id(table_id) is not None

    # ---- inputs routed by Node --------------------------------------------------------

    def start(self, now_ms: int) -> list:
        """At node start: arm the schedule (if any)."""
        interval = self.repair_interval_ms
        if interval <= 0:
            return []
        first = interval // 2 + self.node.rng.randrange(interval // 2 + 1)
        return [SetTimer(("antientropy", "schedule"), first)]

    def on_message(self, source: NodeId, msg, now_ms: int) -> list:
        if isinstance(msg, RepairTreeReq):
            return self.validator.on_tree_req(source, msg)
        if isinstance(msg, RepairTreeRsp):
            return self._after(self.runner.on_tree_rsp(source, msg, now_ms), now_ms)
        if isinstance(msg, RepairSyncReq):
            return self.sender.on_sync_req(source, msg)
        if isinstance(msg, RepairSyncRsp):
            return self._after(self.runner.on_sync_rsp(source, msg, now_ms), now_ms)
        if isinstance(msg, RepairStreamData):
            return self.receiver.on_data(source, msg, now_ms)
        assert isinstance(msg, RepairStreamAck), f"not a repair message: {msg!r}"
        return self.sender.on_ack(source, msg)

    def owns_op(self, op_id: int) -> bool:
        return op_id >= REPAIR_OP_BASE

    def on_storage_done(self, done, now_ms: int) -> list:
        if isinstance(done, StoragePutDone):
            return self.receiver.on_put_done(done)
        assert isinstance(done, StorageScanDone), f"repair issued no {done!r}"
        if self.validator.owns_op(done.op_id):
            return self.validator.on_scan_done(done, now_ms)
        return self.sender.on_scan_done(done, now_ms)

    def on_timer(self, timer_id: tuple, now_ms: int) -> list:
        kind = timer_id[1]
        if kind == "validate":
            return self.validator.on_timer(timer_id[2])
        if kind == "push":
            return self.sender.on_timer(timer_id[2])
        if kind == "schedule":
            return self._on_schedule(now_ms)
        session = self.sessions.get(timer_id[2])
        if session is None:
            return []
        if kind == "check":
            return self._after(self.runner.on_check_timer(session, now_ms), now_ms)
        return self._after(self.runner.on_job_timer(session, timer_id[3], now_ms), now_ms)

    # ---- sessions ---------------------------------------------------------------------

    def client_repair(self, client_id: int, args: dict, now_ms: int) -> list:
        """Start a repair; the reply is its first report (with its id) at once. The caller
        follows it with `status(id)` (the admin op `repair_status`)."""
        try:
            session = self._new_session(parse_request(args), now_ms)
        except InvalidRequest as exc:
            return [Reply(client_id, exc.with_traceback(None))]  # an answer: no frames kept
        effects = self.runner.start(session, now_ms)
        return [*self._after(effects, now_ms), Reply(client_id, session.report(now_ms))]

    def status(self, session_id: int | None, now_ms: int) -> dict | list:
        """One session's report, or (None) every known session's, newest first."""
        if session_id is None:
            return [s.report(now_ms) for s in reversed(self.sessions.values())]
        session = self.sessions.get(session_id)
        if session is None:
            raise InvalidRequest(f"no repair session {session_id} on {self.node.local}")
        return session.report(now_ms)

    def _new_session(self, req: RepairRequest, now_ms: int) -> RepairSession:
        running = sum(1 for s in self.sessions.values() if s.state == "running")
        if running >= MAX_RUNNING_SESSIONS:
            raise InvalidRequest(f"{running} repairs are running on {self.node.local} already")
        jobs = self._jobs(req)
        self._next_session += 1
        session = RepairSession(self._next_session, self.node.local, req, jobs, now_ms)
        # a full repair started once this node's downtime verdict is in (not while it is still
        # deciding) clears its needs-repair flag when it finishes cleanly (tombstones/downtime.py)
        session.clears_downtime = (getattr(self.node, "needs_repair", False) and _covers_everything(req, self.node.local)
                                   and getattr(getattr(self.node, "tombstones", None), "downtime", None) is not None
                                   and self.node.tombstones.downtime.state != "deciding")
        self.sessions[session.session_id] = session
        finished = [sid for sid, s in self.sessions.items() if s.state != "running"]
        for sid in finished[:max(0, len(finished) - MAX_FINISHED_SESSIONS)]:
            del self.sessions[sid]
        return session

    def _jobs(self, req: RepairRequest) -> list[RangeJob]:
        schema = self.node.schema.schema
        if req.keyspace is not None and schema.keyspace(req.keyspace) is None:
            raise InvalidRequest(f"Keyspace '{req.keyspace}' does not exist")
        tables = schema.tables(req.keyspace)
        if req.table is not None:
            tables = [t for t in tables if t.name == req.table]
            if not tables:
                raise InvalidRequest(f"unknown table {req.keyspace}.{req.table}")
        ring = self.node.ring
        node = None if req.node is None else resolve_node(req.node, ring.nodes)
        jobs: list[RangeJob] = []
        for table in tables:
            try:
                tokens, replica_table, _, _ = self.node.ring_replicas(table.id.bytes)
            except InvalidRequest:
                if req.keyspace is None:
                    continue  # a keyspace repair cannot place (none today): skip it
                raise
            for rng in repair_ranges(tokens, replica_table, ring.owners, req, node):
                jobs.append(RangeJob(table.keyspace, table.name, table.id.bytes, rng, len(jobs)))
        return jobs

    def _after(self, effects: list, now_ms: int) -> list:
        """Log sessions that have just ended (the runner marks them)."""
        for session in self.sessions.values():
            if session.state != "running" and not session.logged:
                session.logged = True
                r = session.report(now_ms)
                if getattr(session, "clears_downtime", False) and r["state"] == "finished" \
                        and not r["ranges_failed"] and self.node.needs_repair:
                    effects.extend(self.node.mark_repaired())
                effects.append(Log("info" if r["state"] == "finished" else "warning",
                                   f"repair #{r['id']} {r['state']}: {r['ranges_compared']} ranges compared, "
                                   f"{r['ranges_out_of_sync']} out of sync, {r['ranges_failed']} failed, "
                                   f"{r['partitions_streamed']} partitions ({r['bytes_streamed']} bytes) "
                                   f"streamed in {r['elapsed_ms']} ms"))
        return effects

    # ---- schedule ---------------------------------------------------------------------

    def _on_schedule(self, now_ms: int) -> list:
        effects: list = [SetTimer(("antientropy", "schedule"), self.repair_interval_ms)]
        last = self.sessions.get(self._scheduled) if self._scheduled is not None else None
        if last is not None and last.state == "running":
            return effects + [Log("info", f"scheduled repair skipped: #{last.session_id} still running")]
        try:
            session = self._new_session(RepairRequest(node=self.node.local, primary_only=True), now_ms)
        except InvalidRequest as exc:
            return effects + [Log("warning", f"scheduled repair not started: {exc}")]
        self._scheduled = session.session_id
        effects.append(Log("info", f"scheduled repair #{session.session_id} of "
                                   f"{len(session.jobs)} primary ranges started"))
        return effects + self._after(self.runner.start(session, now_ms), now_ms)


def _covers_everything(req: RepairRequest, local: NodeId) -> bool:
    """A repair of every keyspace and table over all of `local`'s ranges."""
    return (req.keyspace is None and req.table is None and req.start_token is None
            and not req.primary_only and req.node in (None, local, local.rsplit(":", 1)[0]))
