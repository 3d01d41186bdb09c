"""The range-read coordinator: token-range scans (full-table SELECTs, token() restrictions,
paging across partitions), simplified from Cassandra's RangeCommandIterator,
PartitionRangeReadCommand, DataResolver and its short-read protection.

Owns: per-scan state, and how a requested range is cut into sub-ranges. The range
(start position, end token] is cut at ring tokens (and at the ring's wrap) into
sub-ranges that each have one replica set, in ring order from the start; neighbours with
the same set are joined (`split_range`). Sub-ranges are read **one at a time**, in order:
simple and exact, at one round trip per sub-range; a later change may read a few ahead.

One round reads one sub-range from the cursor on: the consistency level's number of live
replicas, closest first (as single-partition reads choose them), are each asked for DATA
(range reads never use digests, as in Cassandra) with the rows still wanted as their limit.
A replica may stop early (its size bound or that limit) and name its last position, which
may lie inside a partition bigger than one answer (after one of its rows); the round's
answer is then exact only up to the smallest such position (the *frontier*): past it, a
replica that stopped might hold a tombstone or a newer cell for what the others returned.
So partitions (and rows of the partition the frontier is inside) past the frontier are
dropped and the next round starts after it, inside that partition if need be, its rows
joining the result's last partition (this is the simplest correct form of short-read
protection). Within the frontier a
partition one replica did not return is one it does not hold. The versions are merged
(`reconcile.merge_partitions`); every replica that lacked something is sent the
difference, and the round only continues once those repairs are acknowledged (blocking
read repair, as `read.py`, which keeps QUORUM scans monotonic). Then live views are taken,
`per_partition_limit` and the remaining `limit_rows` applied, and the scan ends once
`limit_rows` live rows are gathered or the last sub-range is done.

Errors: `Unavailable` if any sub-range lacks enough live replicas — checked for every
sub-range before anything is sent, and again before each round; `ReadTimeout` if one
round's answers (or its repair acks) take longer than read_request_timeout; `ReadFailure`
at once when a replica answers with an error (a round needs every replica it asked; e.g. an
answer too big for an internode frame). An answer that strays outside what was asked is
ignored (the round then times out). No speculative retry.

The result is a list of live views in ring order (token, then key bytes), holding at most
`limit_rows` live rows; the last partition may be cut short by the limit (its remaining
rows are for the caller to page through with a single-partition read).
Does not know storage layout or CQL; a row is counted as `replica.live_row_count` counts it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agora.core import reconcile
from agora.core.coordinator.placement import Placement
from agora.core.effects import CancelTimer, Reply, Send, SetTimer
from agora.core.errors import InvalidRequest, ReadFailure, ReadTimeout, Unavailable, failure_code
from agora.core.messages import MutationReq, MutationRsp, RangeReadReq, RangeReadRsp
from agora.core.quorum import Requirement, requirement
from agora.core.replica.replica import live_row_count
from agora.core.ring.partitioner import token_for_key
from agora.core.ring.token_ring import unwrap_range
from agora.core.types import (MIN_TOKEN, ConsistencyLevel, NodeId, Partition, RangeCommand,
                              Token)

# A position on the ring: (token, partition key, clustering key). Key None means "after
# every key of that token"; clustering key None means "after that whole partition", and set
# it means "inside that partition, after that row" (a replica's answer stopped there).
# Positions order by (token, key bytes, then inside before after) within a sub-range, which
# never wraps.
Position = tuple[Token, bytes | None, bytes | None]


class RangePlacement(Placement, Protocol):
    def ring_replicas(self, table_id: bytes) -> tuple[tuple[Token, ...], tuple[tuple[NodeId, ...], ...],
                                                     dict[str, int] | None, int]:
        """(the ring's sorted tokens, the replicas of each ring position, the keyspace's
        per-DC factors or None, the total replication factor). InvalidRequest for an
        unknown table."""


@dataclass(frozen=True, slots=True)
class SubRange:
    """Positions after (start_token, start_key) with token <= end_token, all owned by
    `replicas`. It never wraps: every token in it is >= start_token and <= end_token."""

    start_token: Token
    start_key: bytes | None
    end_token: Token
    replicas: tuple[NodeId, ...]


def split_range(tokens: Sequence[Token], replica_table: Sequence[tuple[NodeId, ...]],
                start_token: Token, start_key: bytes | None, end_token: Token) -> list[SubRange]:
    """Cut the range after (start_token, start_key) up to end_token into sub-ranges with one
    replica set each, in ring order from the start. Ring position i owns (tokens[i-1],
    tokens[i]]; tokens above the last ring token belong to position 0. The range wraps when
    its exclusive token start (start_token, or start_token - 1 when a start key is given) is
    >= end_token; it is then also cut at the ring's end (MAX_TOKEN | MIN_TOKEN). Neighbouring
    pieces with the same replica set are joined. [] on an empty ring."""
    if not tokens:
        return []
    if start_token == MIN_TOKEN:
        start_key = None  # no key has MIN_TOKEN
    lo = start_token if start_key is None else start_token - 1
    out: list[SubRange] = []
    for piece_lo, piece_hi in unwrap_range(lo, end_token):
        at = piece_lo
        index = bisect_right(tokens, at)  # the position of the tokens just after `at`
        while at < piece_hi:
            cut = tokens[index] if index < len(tokens) and tokens[index] < piece_hi else piece_hi
            replicas = replica_table[index % len(tokens)]
            prev = out[-1] if out else None
            if prev is not None and prev.end_token == at and set(prev.replicas) == set(replicas):
                out[-1] = SubRange(prev.start_token, prev.start_key, cut, prev.replicas)
            elif at == lo and start_key is not None:
                out.append(SubRange(start_token, start_key, cut, replicas))
            else:
                out.append(SubRange(at, None, cut, replicas))
            at, index = cut, index + 1
    return out


def _position_key(position: Position) -> tuple:
    token, key, ckey = position
    return (token, key is None, key or b"", ckey is None, ckey or b"")


@dataclass
class _Scan:
    client_id: int
    cl: ConsistencyLevel
    command: RangeCommand
    requirement: Requirement
    pieces: list[SubRange]
    piece: int = 0  # the sub-range being read
    cursor: Position = (MIN_TOKEN, None, None)  # resolved up to here in the current sub-range
    results: list[Partition] = field(default_factory=list)
    live_rows: int = 0
    req_id: int = 0
    phase: str = "collect"  # collect -> (repair) -> next round
    answers: dict = field(default_factory=dict)  # node -> RangeReadRsp, this round
    at: dict = field(default_factory=dict)  # node -> its answer's partitions' position keys
    waiting: set = field(default_factory=set)  # nodes whose answer or ack the phase needs
    merged: list = field(default_factory=list)  # this round's merged partitions, in order
    frontier: Position | None = None  # the round is exact up to here; None: to the end
    round_start_ms: int = 0
    replied: bool = False


class RangeReadCoordinator:
    def __init__(self, placement: RangePlacement, read_timeout_ms: int):
        self.placement = placement
        self.read_timeout_ms = read_timeout_ms
        self._by_req: dict[int, _Scan] = {}
        self._by_client: dict[int, _Scan] = {}
        self.stats = {"range_reads": 0, "rounds": 0, "short_rounds": 0, "read_repairs": 0}

    @property
    def in_flight(self) -> int:
        return len(self._by_client)

    def start(self, client_id: int, command: RangeCommand, cl: ConsistencyLevel, now_ms: int) -> list:
        p = self.placement
        try:
            if cl == ConsistencyLevel.ANY:
                raise InvalidRequest("ANY ConsistencyLevel is only supported for writes")
            if cl in (ConsistencyLevel.SERIAL, ConsistencyLevel.LOCAL_SERIAL):
                raise InvalidRequest(f"{cl.name} reads are not supported")
            if command.limit_rows < 0 or command.per_partition_limit < 0:
                raise InvalidRequest("LIMIT must be strictly positive")
            tokens, table, per_dc, rf = p.ring_replicas(command.table_id)
            req = requirement(cl, rf, p.local_dc, per_dc)
            pieces = split_range(tokens, table, command.start_token, command.start_key,
                                 command.end_token)
            if not pieces:
                raise Unavailable(int(cl), req.total, 0)
            for piece in pieces:  # every sub-range, before anything is sent
                self._targets(req, cl, piece.replicas)
        except (Unavailable, InvalidRequest) as exc:
            return [Reply(client_id, exc.with_traceback(None))]  # an answer: no frames kept
        first = pieces[0]
        inside = command.start_ckey if (first.start_token, first.start_key) == \
            (command.start_token, command.start_key) else None
        scan = _Scan(client_id, cl, command, req, pieces,
                     cursor=(first.start_token, first.start_key, inside))
        self._by_client[client_id] = scan
        self.stats["range_reads"] += 1
        return self._start_round(scan, now_ms)

    def _targets(self, req: Requirement, cl: ConsistencyLevel, replicas: tuple[NodeId, ...]) -> list[NodeId]:
        """The fewest live replicas that satisfy the level, closest first; Unavailable if
        the live ones cannot."""
        p = self.placement
        alive = sorted((r for r in replicas if p.serves_reads(r) and req.bucket_of(r, p.dc_of) is not False),
                       key=p.proximity)
        reached = req.reached_by(alive, p.dc_of)
        if not req.satisfied(reached):
            raise Unavailable(int(cl), req.total, sum(reached.values()))
        chosen: list[NodeId] = []
        got: dict = {}
        for node in alive:
            if req.satisfied(got):
                break
            bucket = req.bucket_of(node, p.dc_of)
            if got.get(bucket, 0) < req.per_dc[bucket]:
                chosen.append(node)
                got[bucket] = got.get(bucket, 0) + 1
        return chosen

    # ---- rounds ---------------------------------------------------------------------

    def _start_round(self, scan: _Scan, now_ms: int) -> list:
        piece = scan.pieces[scan.piece]
        try:
            targets = self._targets(scan.requirement, scan.cl, piece.replicas)
        except Unavailable as exc:
            return self._finish(scan, exc)
        cmd = scan.command
        remaining = cmd.limit_rows - scan.live_rows if cmd.limit_rows else 0
        ask = RangeCommand(cmd.table_id, scan.cursor[0], scan.cursor[1], piece.end_token,
                           cmd.slices, cmd.columns, remaining, cmd.per_partition_limit, scan.cursor[2])
        self._rekey(scan)
        scan.phase, scan.answers, scan.at, scan.waiting = "collect", {}, {}, set(targets)
        scan.round_start_ms = now_ms
        self.stats["rounds"] += 1
        effects: list = [Send(node, RangeReadReq(scan.req_id, ask)) for node in targets]
        effects.append(SetTimer(("range", scan.client_id), self.read_timeout_ms))
        return effects

    def on_response(self, source: NodeId, rsp: RangeReadRsp, now_ms: int) -> list:
        scan = self._by_req.get(rsp.req_id)
        if scan is None or scan.replied or scan.phase != "collect" or source not in scan.waiting:
            return []
        if rsp.error is not None:  # a round needs every target it asked: the level is lost
            failure = ReadFailure(int(scan.cl), len(scan.answers), scan.requirement.total,
                                  {source: failure_code(rsp.error)}, bool(scan.answers))
            return self._finish(scan, failure)
        at = self._plausible(scan, rsp)
        if at is None:
            return []
        self.placement.observe_latency(source, now_ms - scan.round_start_ms)
        scan.answers[source] = rsp
        scan.at[source] = at
        scan.waiting.discard(source)
        if scan.waiting:
            return []
        return self._resolve(scan, now_ms)

    @staticmethod
    def _plausible(scan: _Scan, rsp: RangeReadRsp) -> list[tuple] | None:
        """The position keys of an answer's partitions, if it stays inside what was asked
        (so merging cannot mix tables and every round makes progress); None for an answer
        that does not, which is ignored like an error answer."""
        after, end = _position_key(scan.cursor), scan.pieces[scan.piece].end_token
        if rsp.more and not (after < _position_key((rsp.last_token, rsp.last_key, rsp.last_ckey))
                             and rsp.last_token <= end):
            return None
        if not rsp.more and rsp.last_ckey is not None:
            return None
        table_id = scan.command.table_id
        at = []
        for p in rsp.partitions:
            token = token_for_key(p.key)
            position = (token, False, p.key, True, b"")  # _position_key((token, p.key, None))
            if p.table_id != table_id or not after < position or token > end:
                return None
            at.append(position)
        return at

    def _resolve(self, scan: _Scan, now_ms: int) -> list:
        """Every target answered: merge what is exact (up to the frontier), repair."""
        stops = [(r.last_token, r.last_key, r.last_ckey) for r in scan.answers.values() if r.more]
        scan.frontier = frontier = min(stops, key=_position_key) if stops else None
        limit = None if frontier is None else _position_key(frontier)
        _, resumed, after_ckey = scan.cursor  # a partition this round resumes inside of
        held: dict[NodeId, dict[bytes, Partition]] = {}
        versions: dict[bytes, list[Partition]] = {}
        order: dict[bytes, tuple] = {}
        truncated = self.placement.truncated_at(scan.command.table_id)
        for node in sorted(scan.answers):
            held[node] = {}
            for part, at in zip(scan.answers[node].partitions, scan.at[node]):
                if truncated is not None and (part := reconcile.drop_truncated(part, truncated)) is None:
                    continue  # a replica that has not heard of the truncation yet
                if limit is not None and at > limit:
                    if frontier[1] != part.key or frontier[2] is None:
                        continue  # past where every answer is exact
                    part = reconcile.rows_up_to(part, frontier[2])  # the frontier is inside it
                if after_ckey is not None and part.key == resumed:
                    part = _rows_after(part, after_ckey)
                order[part.key] = at
                held[node][part.key] = part
                versions.setdefault(part.key, []).append(part)
        # A partition every replica answered alike (the usual case) is the answer as it came:
        # nothing to merge (live_view honours shadowing in any input) and nothing to repair.
        answered = len(held)
        scan.merged, agreed = [], set()
        for key in sorted(versions, key=order.get):
            alike = versions[key]
            first = alike[0]
            if len(alike) == answered and all(other == first for other in alike[1:]):
                scan.merged.append(first)
                agreed.add(key)
            else:
                scan.merged.append(reconcile.merge_many(alike))
        return self._repair(scan, held, agreed, now_ms)

    def _repair(self, scan: _Scan, held: dict[NodeId, dict[bytes, Partition]], agreed: set[bytes],
                now_ms: int) -> list:
        """Send each replica what it lacked of the merged answer (none of the partitions in
        `agreed`, which every replica holds alike); wait for the acks."""
        if not self.placement.read_options(scan.command.table_id)[1]:  # read_repair = 'NONE'
            return self._advance(scan, now_ms)
        repairs: dict[NodeId, tuple[Partition, ...]] = {}
        for node in sorted(held):
            diffs = [d for m in scan.merged
                     if m.key not in agreed and (d := reconcile.repair_for(m, held[node].get(m.key)))]
            if diffs:
                repairs[node] = tuple(diffs)
        if not repairs:
            return self._advance(scan, now_ms)
        self.stats["read_repairs"] += len(repairs)
        self._rekey(scan)
        scan.phase, scan.waiting = "repair", set(repairs)
        effects: list = [Send(node, MutationReq(scan.req_id, diffs)) for node, diffs in repairs.items()]
        effects.append(SetTimer(("range", scan.client_id), self.read_timeout_ms))
        return effects

    def on_repair_ack(self, source: NodeId, rsp: MutationRsp, now_ms: int) -> list:
        scan = self._by_req.get(rsp.req_id)
        if scan is None or scan.replied or scan.phase != "repair" or rsp.error is not None:
            return []
        scan.waiting.discard(source)
        return [] if scan.waiting else self._advance(scan, now_ms)

    def _advance(self, scan: _Scan, now_ms: int) -> list:
        """Take the round's live rows, then start the next round or answer. A partition the
        last round stopped inside continues the result's last partition; one without live
        rows counts as a row (its static row) only where it ends, and one that reached its
        PER PARTITION LIMIT is not read further."""
        cmd, now_s = scan.command, now_ms // 1000
        ppl = cmd.per_partition_limit
        frontier = scan.frontier
        inside = frontier[1] if frontier is not None and frontier[2] is not None else None
        for merged in scan.merged:
            remaining = cmd.limit_rows - scan.live_rows if cmd.limit_rows else 0
            view = reconcile.live_view(merged, now_s)
            last = scan.results[-1] if scan.results and scan.results[-1].key == view.key else None
            if last is None:  # the partition's first piece with anything live
                view = _cut(view, ppl, remaining)
                if view.rows or view.static is not None:
                    scan.results.append(view)
                    last = view
                added = len(view.rows)
            else:  # its static row came with the first piece
                room = ppl - len(last.rows) if ppl else 0
                more = {} if ppl and room <= 0 else \
                    _cut(Partition(view.table_id, view.key, rows=view.rows), room, remaining).rows
                last.rows.update(more)  # a view this scan built: joined in place, not copied per round
                added = len(more)
            if view.key == inside and last is not None and ppl and len(last.rows) >= ppl:
                scan.frontier, inside = (frontier[0], frontier[1], None), None  # done with it
            elif view.key != inside and last is not None and not last.rows:
                added = 1  # it ended without a live row: its static row is one
            scan.live_rows += added
            if cmd.limit_rows and scan.live_rows >= cmd.limit_rows:
                return self._finish(scan, scan.results)
        scan.merged = []
        if scan.frontier is not None:
            self.stats["short_rounds"] += 1
            scan.cursor = scan.frontier
            return self._start_round(scan, now_ms)
        scan.piece += 1
        if scan.piece == len(scan.pieces):
            return self._finish(scan, scan.results)
        nxt = scan.pieces[scan.piece]
        scan.cursor = (nxt.start_token, nxt.start_key, None)
        return self._start_round(scan, now_ms)

    def on_timer(self, timer_id, now_ms: int) -> list:
        scan = self._by_client.get(timer_id[1])
        if scan is None or scan.replied:
            return []
        if scan.phase == "collect":  # silent replicas lose their place in the proximity order
            for node in sorted(scan.waiting):
                self.placement.observe_latency(node, now_ms - scan.round_start_ms)
        received = sum(scan.requirement.reached_by(list(scan.answers), self.placement.dc_of).values())
        if scan.phase == "repair":  # every replica answered, but not every repair was acked
            received = min(received, scan.requirement.total - 1)
        exc = ReadTimeout(int(scan.cl), received, scan.requirement.total, bool(scan.answers))
        return self._finish(scan, exc)

    # ---- bookkeeping ----------------------------------------------------------------

    def _rekey(self, scan: _Scan) -> None:
        """A fresh request id for the next phase: late answers to the last one are ignored."""
        self._by_req.pop(scan.req_id, None)
        scan.req_id = self.placement.next_req_id()
        self._by_req[scan.req_id] = scan

    def _finish(self, scan: _Scan, result) -> list:
        scan.replied = True
        self._by_req.pop(scan.req_id, None)
        self._by_client.pop(scan.client_id, None)
        return [Reply(scan.client_id, result), CancelTimer(("range", scan.client_id))]


def _rows_after(p: Partition, ckey: bytes) -> Partition:
    """`p` without its clustering rows up to and including `ckey` (header kept)."""
    return Partition(p.table_id, p.key, p.deletion, list(p.range_tombstones), p.static,
                     {c: row for c, row in p.rows.items() if c > ckey})


def _cut(view: Partition, per_partition_limit: int, remaining: int) -> Partition:
    """`view` with at most per_partition_limit rows, then at most `remaining` (0: no bound),
    the first in clustering order; the static row stays."""
    keep = [n for n in (per_partition_limit, remaining) if n]
    if not keep or len(view.rows) <= min(keep):
        return view
    ckeys = sorted(view.rows)[:min(keep)]
    return Partition(view.table_id, view.key, view.deletion, list(view.range_tombstones),
                     view.static, {ckey: view.rows[ckey] for ckey in ckeys})
