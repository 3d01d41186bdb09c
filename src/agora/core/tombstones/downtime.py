"""The downtime check: a node that was down longer than a table's gc_grace_seconds must not
bring deleted data of that table back to life (docs/tombstones.md has the whole rule).

The danger (Cassandra's "zombies"): while the node was down, a row it holds was deleted on
the other replicas; once the tombstone is older than gc_grace they purged it; when the node
returns, its old copy of the row meets nothing that shadows it, and read repair or repair
copies it back everywhere. Cassandra leaves this to operators ("repair within gc_grace, or
wipe and rebuild"); this machine does it automatically:

1. Every node persists its last-alive time (LAST_ALIVE_META_KEY) every
   LAST_ALIVE_INTERVAL_MS and at a clean shutdown.
2. At start, if it was down (now - last alive) longer than gc_grace_seconds of some table,
   less CLOCK_MARGIN_S, it enters the *deciding* state: it refuses reads and writes as a
   replica (a clear error; coordinators pick other replicas), gossips REPAIR_NEEDED, and
   asks every other ring member (PurgeHorizonReq) to keep every tombstone newer than its
   last-alive time from now on, and for its purge horizon: the newest tombstone it ever
   purged. A member that is down cannot purge; its gossiped horizon stands in for it.
3. Once every member's horizon is known: if none reaches back past the last-alive time, no
   tombstone the node missed has been purged anywhere, and none will be while its flag
   stands: the node is *guarded* -- it serves reads and writes (its missed deletions reach
   it by read repair, hints and repair as usual) and its flag keeps peers from purging them
   until a repair has run. Otherwise some deletion it missed may be gone for good, and its
   old data could hold zombies: it drops its local data of every table whose gc_grace was
   exceeded and is *rebuilding*: it takes writes but serves no reads, and must not be a
   source of data for repair, until a repair of its ranges has streamed the data back.
4. `mark_repaired()` -- the repair code's call once a repair of this node's ranges has
   completed -- ends both states (serving); the flag is cleared and peers purge again. A
   repair that completes while still deciding is remembered: if the verdict is "guarded",
   the node is serving at once.
5. The state survives restarts (DOWNTIME_META_KEY): a node that restarts while rebuilding
   is still rebuilding; one that restarts while deciding or guarded decides again, about
   the same last-alive time.

Interface for the repair code (agora.core.antientropy): `Node.needs_repair` is True in every
state but serving; while it is, never stream this node's data to others; call
`Node.mark_repaired()` after a repair of all its ranges completed.

Does not know: how peers purge (compaction.py) or how repair runs.
"""

from __future__ import annotations

from typing import Protocol

from agora.core.effects import Log, PersistMeta, Send, SetTimer, StorageDropTable
from agora.core.tombstones.compaction import CLOCK_MARGIN_S, PURGE_HORIZON_STATE
from agora.core.tombstones.messages import PurgeHorizonReq, PurgeHorizonRsp
from agora.core.types import NodeId

LAST_ALIVE_META_KEY = "last_alive_s"
DOWNTIME_META_KEY = "downtime_check"  # "<since_s> <state>" while not serving, else empty
# How often a running node records that it is alive, in ms. Its downtime is measured from
# the last record, so it is overestimated by at most this much (on the safe side).
LAST_ALIVE_INTERVAL_MS = 10_000
# How often a deciding node asks again the members that have not answered, in ms.
HORIZON_RETRY_MS = 2_000

HEARTBEAT_TIMER = ("tombstones", "alive")
RETRY_TIMER = ("tombstones", "horizon")

SERVING, DECIDING, GUARDED, REBUILDING = "serving", "deciding", "guarded", "rebuilding"


class DowntimeHost(Protocol):
    local: NodeId

    def ring_members(self) -> list[NodeId]: ...

    def is_alive(self, node: NodeId) -> bool: ...

    def next_req_id(self) -> int: ...

    def gossip_state(self, node: NodeId, key: str) -> str | None: ...


def suspect_tables(tables: list[tuple[bytes, int]], last_alive_s: int | None,
                   now_s: int) -> list[bytes]:
    """The tables (by id) whose gc_grace the node's downtime exceeded (none on a new node)."""
    if last_alive_s is None:
        return []
    down_s = now_s - last_alive_s
    return sorted(tid for tid, grace in tables if down_s + CLOCK_MARGIN_S > grace)


class Downtime:
    def __init__(self, host: DowntimeHost, generation: int, last_alive_s: int | None,
                 suspects: list[bytes], resumed_state: str | None = None):
        """`last_alive_s`: when the node was last known alive (for a resumed check, the
        time the check is about); `suspects`: the tables whose gc_grace that downtime
        exceeded; `resumed_state`: the state the last run persisted, if it was not serving."""
        self.host = host
        self.generation = generation
        self.since_s = last_alive_s or 0
        self.suspects = list(suspects)
        self.state = DECIDING if suspects else SERVING
        if resumed_state == REBUILDING:  # its data is dropped already; only repair ends it
            self.state, self.suspects = REBUILDING, []
        self._answers: dict[NodeId, int] = {}
        self._req_id = 0
        self._repaired_early = False

    # ---- what the node asks -------------------------------------------------------------

    @property
    def needs_repair(self) -> bool:
        return self.state != SERVING

    @property
    def serves_reads(self) -> bool:
        return self.state in (SERVING, GUARDED)

    @property
    def accepts_writes(self) -> bool:
        return self.state != DECIDING

    def flag(self) -> str:
        """This node's REPAIR_NEEDED gossip value."""
        return f"{self.since_s} {self.state}" if self.needs_repair else ""

    # ---- inputs -------------------------------------------------------------------------

    def persisted(self) -> PersistMeta:
        """The state to survive a restart: a node that restarts while deciding, guarded or
        rebuilding resumes the check (guarded decides again) instead of serving."""
        return PersistMeta(DOWNTIME_META_KEY, self.flag().encode())

    def start(self, now_ms: int) -> list:
        out: list = [*self.heartbeat(now_ms), self.persisted()]
        if self.state == DECIDING:
            out.append(Log("warning", f"down since {self.since_s}, longer than gc_grace of "
                                      f"{len(self.suspects)} table(s): checking peers for purged "
                                      "tombstones before serving"))
            out += self._ask()
        return out

    def heartbeat(self, now_ms: int) -> list:
        # Unsynced: a power loss can only lose the newest records, so the downtime measured
        # at the next start is longer, never shorter (the safe side); synced, it stalled the
        # node's event loop for its fsync every LAST_ALIVE_INTERVAL_MS.
        return [PersistMeta(LAST_ALIVE_META_KEY, str(now_ms // 1000).encode(), sync=False),
                SetTimer(HEARTBEAT_TIMER, LAST_ALIVE_INTERVAL_MS)]

    def on_retry(self, now_ms: int) -> list:
        if self.state != DECIDING:
            return []
        return self._decide() or self._ask()

    def on_horizon_rsp(self, source: NodeId, rsp: PurgeHorizonRsp) -> list:
        if self.state != DECIDING or rsp.req_id != self._req_id:
            return []
        self._answers[source] = rsp.horizon_s
        return self._decide()

    def mark_repaired(self) -> list:
        if self.state == DECIDING:
            self._repaired_early = True
            return [Log("info", "repair completed while deciding; the verdict decides")]
        if self.state == SERVING:
            return []
        self.state = SERVING
        return [Log("info", "repaired: serving reads again, peers may purge again"), self.persisted()]

    # ---- the decision -------------------------------------------------------------------

    def _members(self) -> list[NodeId]:
        return [n for n in self.host.ring_members() if n != self.host.local]

    def _ask(self) -> list:
        if not self._req_id:  # one request id for the whole check: answers accumulate
            self._req_id = self.host.next_req_id()
        req = PurgeHorizonReq(self._req_id, self.since_s, self.generation)
        out: list = [Send(n, req) for n in self._members()
                     if self.host.is_alive(n) and n not in self._answers]
        out.append(SetTimer(RETRY_TIMER, HORIZON_RETRY_MS))
        return out

    def _known_horizons(self) -> dict[NodeId, int] | None:
        """Every member's purge horizon: its answer, or for a member that is down (it cannot
        purge) its gossiped horizon; None while some member is unaccounted for."""
        known = {}
        for node in self._members():
            if node in self._answers:
                known[node] = self._answers[node]
                continue
            gossiped = self.host.gossip_state(node, PURGE_HORIZON_STATE)
            if self.host.is_alive(node) or gossiped is None or not gossiped.isdigit():
                return None
            known[node] = int(gossiped)
        return known

    def _decide(self) -> list:
        known = self._known_horizons()
        if known is None:
            return []
        risky = sorted(n for n, h in known.items() if h >= self.since_s - CLOCK_MARGIN_S)
        if not risky:
            self.state = SERVING if self._repaired_early else GUARDED
            return [Log("info", "no peer purged a tombstone this node missed: serving, "
                                "peers keep newer tombstones until it is repaired"), self.persisted()]
        self.state = REBUILDING
        out: list = [Log("warning", f"{', '.join(risky)} purged tombstones newer than this node's "
                                    f"last-alive time: dropping local data of {len(self.suspects)} "
                                    "table(s) until repair rebuilds them")]
        out += [StorageDropTable(tid) for tid in self.suspects]
        return out + [self.persisted()]
