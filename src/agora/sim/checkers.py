"""Checkers: what a correct history of a Dynamo-style store looks like, judged over a plain
recorded history (`agora.sim.history`) and, for the end of a run, the replicas' final
states. Nothing here touches the simulator, so a history recorded from real node
processes is judged by the same code (issue 5, item 4).

Versions. Every write and delete of a key carries a timestamp; the store keeps, per key,
the greatest version by Agora's merge rule (`agora.core.reconcile`, DESIGN.md section 4):
higher timestamp first, at equal timestamps a tombstone beats a live value, then the
greater value bytes win. `version_of` orders operations by exactly that rule, so "the
read saw something at least as new as w" is a comparison of two tuples. Values written
are unique, so a read's value names the write it saw.

The rules checked (Dynamo paper section 4.5 for the quorum rule; Jepsen's Cassandra
analyses for what last-write-wins does to it):

- Quorum overlap (`reads`): a read that returns must return a version at least as new as
  every write acknowledged before the read began whose replica set is guaranteed to
  intersect the read's (W + R > N, per datacenter where the levels count per datacenter;
  `Replication.overlaps`). Seeing a *newer* version is fine: a write with a higher
  timestamp superseded it.
- Nothing from thin air (`reads`, `final`): a value seen was written by an operation that
  may have happened (not a certain failure), invoked before the read completed, with the
  timestamp the read reports.
- Lost writes of last-write-wins (`superseded`, counted, not a violation): an acknowledged
  write w whose key already held, from a write acknowledged before w began, a higher
  version. w is acknowledged and yet never visible: real-time order and timestamp order
  disagree, which is what clock skew does.
- Monotonic reads (`monotonic`): blocking read repair leaves every replica that answered
  a read with the version it returned, so a later read whose level is sure to meet one of
  them returns that version or a newer one, acknowledged write or not.
- Staleness (`reads`, measured): a read that misses a write acknowledged before it began
  is stale. Where W + R > N that is a violation; elsewhere it is expected, and we report
  how often (per level), how many versions behind and how long after the write.
- After healing (`final`, `convergence`): every replica of a key holds the same data; the
  converged value is at least as new as every acknowledged write (durability: no
  acknowledged write lost across crashes) and, in particular, no acknowledged delete is
  undone by an older value coming back (resurrection).

Power loss. A node whose commit log syncs periodically may lose writes it acknowledged in
the last sync period when the power goes (Cassandra's `commitlog_sync: periodic`). The
history's `power-loss` fault records name the keys each one rolled back; with
`durable_acks=False` a missed write of such a key, rolled back after the write began and
before the observation, is excused and counted (`lost_to_power_loss`). With
`durable_acks=True` (batch mode) nothing is excused.

Does not know: how the history was produced, or how the cluster was healed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agora.core import quorum
from agora.core.types import ConsistencyLevel
from agora.sim.history import History, Op

# A stale read's "versions behind" is counted among at most this many of the writes
# acknowledged just before it (newest first): bounds the checker at O(reads x bound) on
# long histories; a read further behind than this is reported as this many.
MAX_STALENESS_SCAN = 200
# Violations kept in full per check; the rest are only counted (a broken build can produce
# thousands, and the first few are what one debugs).
MAX_VIOLATIONS_KEPT = 50

Version = tuple[int, int, bytes]  # (timestamp, 1 for a tombstone, value bytes)


def version_of(kind: str, timestamp: int, value: str | None) -> Version:
    """The merge order of a write ("write"/"delete") with this timestamp and value."""
    if kind == "delete":
        return (timestamp, 1, b"")
    return (timestamp, 0, (value or "").encode("utf-8"))


# ---- replication: which levels are guaranteed to overlap --------------------------------


@dataclass(frozen=True)
class Replication:
    """A keyspace's replication as the checkers need it: the total replication factor and,
    for NetworkTopologyStrategy, the replicas per datacenter (None for SimpleStrategy)."""

    rf: int
    per_dc: Mapping[str, int] | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> Replication:
        """From keyspace replication options, as in CREATE KEYSPACE."""
        if str(options.get("class", "")).endswith("SimpleStrategy"):
            return cls(int(options["replication_factor"]))
        per_dc = {str(k): int(v) for k, v in sorted(options.items()) if k != "class"}
        return cls(sum(per_dc.values()), per_dc)

    def requirement(self, cl: str, dc: str) -> quorum.Requirement:
        """The replicas a level is sure to reach. ANY reaches none: a hint on the
        coordinator acknowledges it (the hint counts toward ANY, and only ANY)."""
        if cl == "ANY":
            return quorum.Requirement({None: 0})
        per_dc = dict(self.per_dc) if self.per_dc is not None else None
        return quorum.requirement(ConsistencyLevel[cl], self.rf, dc, per_dc)

    def _least_in(self, req: quorum.Requirement, dc: str) -> int:
        """The fewest replicas of `dc` that any set satisfying `req` must contain."""
        if None in req.per_dc:
            return max(0, req.per_dc[None] - (self.rf - self.per_dc.get(dc, 0)))
        return req.per_dc.get(dc, 0)

    def overlaps(self, write: quorum.Requirement, read: quorum.Requirement) -> bool:
        """Whether every replica set that satisfies `write` meets every one that satisfies
        `read`: W + R > N overall, or within one datacenter."""
        if write.total + read.total > self.rf:
            return True
        if self.per_dc is None:
            return False
        return any(self._least_in(write, dc) + self._least_in(read, dc) > n
                   for dc, n in self.per_dc.items())


# ---- results ------------------------------------------------------------------------------


@dataclass
class Violation:
    kind: str  # stale-quorum-read, non-monotonic-read, phantom-read, lost-write, resurrection, divergence
    key: str
    at_ms: int
    message: str
    ops: tuple[int, ...] = ()

    def describe(self) -> str:
        return f"{self.kind} on key {self.key} at {self.at_ms}ms: {self.message}"


@dataclass
class Staleness:
    """Stale reads: per level (read CL -> [stale, reads]) and per stale read how many
    acknowledged versions it missed and how long after the oldest of them it began."""

    by_level: dict[str, list[int]] = field(default_factory=dict)
    versions_behind: list[int] = field(default_factory=list)
    ms_behind: list[int] = field(default_factory=list)

    @property
    def stale(self) -> int:
        return sum(s for s, _ in self.by_level.values())

    @property
    def reads(self) -> int:
        return sum(n for _, n in self.by_level.values())


@dataclass
class CheckReport:
    violations: list[Violation] = field(default_factory=list)
    violation_count: int = 0
    reads_checked: int = 0  # ok reads with at least one overlapping acknowledged write before them
    staleness: Staleness = field(default_factory=Staleness)
    superseded: list[tuple[int, int]] = field(default_factory=list)  # (lost write, the earlier winner)
    lost_to_power_loss: int = 0  # reads and final values whose miss a power loss excused (periodic mode)
    unversioned_writes: int = 0  # acknowledged writes whose timestamp nobody reported
    keys_converged: int = 0
    final_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    def add(self, violation: Violation) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS_KEPT:
            self.violations.append(violation)


# ---- per-key bookkeeping -----------------------------------------------------------------


class _KeyWrites:
    """The writes of one key, indexed for the questions the checks ask."""

    def __init__(self, writes: list[Op], reads: list[Op]) -> None:
        self.by_value: dict[str, list[Op]] = {}
        for w in writes:
            if w.kind == "write" and w.value is not None:
                self.by_value.setdefault(w.value, []).append(w)
        self._learn_timestamps(reads)
        self.versioned = [w for w in writes if w.timestamp is not None]
        self.version = {w.index: version_of(w.kind, w.timestamp, w.value) for w in self.versioned}
        acked = sorted((w for w in self.versioned if w.ok), key=lambda w: (w.complete_ms, w.index))
        self.acked = acked
        self.acked_done = [w.complete_ms for w in acked]
        self.prefix_max = _prefix_max(acked, self.version)
        # the same, per (level, coordinator DC): which writes a read is sure to meet
        # depends only on those two, so a read asks a handful of classes, not every write
        self.by_class: dict[tuple[str, str], tuple[list[int], list[Op]]] = {}
        for cls in sorted({(w.cl, w.dc) for w in acked}):
            members = [w for w in acked if (w.cl, w.dc) == cls]
            self.by_class[cls] = ([w.complete_ms for w in members], _prefix_max(members, self.version))
        self.unversioned = sum(1 for w in writes if w.ok and w.timestamp is None)
        self.deletes = sorted((w for w in self.versioned if w.kind == "delete" and w.may_have_happened),
                              key=lambda w: w.invoke_ms)

    def _learn_timestamps(self, reads: list[Op]) -> None:
        """A coordinator-assigned timestamp the client never heard is learned from any read
        that saw the value (its writetime)."""
        for r in reads:
            if r.ok and r.value is not None and r.timestamp is not None:
                for w in self.by_value.get(r.value, ()):
                    if w.timestamp is None:
                        w.timestamp = r.timestamp

    def acked_before(self, at_ms: int) -> int:
        """How many acknowledged writes completed strictly before `at_ms`."""
        return bisect.bisect_left(self.acked_done, at_ms)

    def latest_before(self, at_ms: int) -> Op | None:
        n = self.acked_before(at_ms)
        return self.prefix_max[n - 1] if n else None

    def explains_absence(self, floor: Version, until_ms: int) -> bool:
        """Whether a read that found no row, completing at `until_ms`, is explained by a
        delete at least as new as `floor` that may have happened by then."""
        for d in self.deletes:
            if d.invoke_ms > until_ms:
                break
            if self.version[d.index] >= floor:
                return True
        return False

    def source_of(self, value: str, timestamp: int | None, until_ms: int) -> Op | None:
        """The write a read's value came from, if it is one that could have been seen."""
        for w in self.by_value.get(value, ()):
            if w.may_have_happened and w.invoke_ms <= until_ms and \
                    (timestamp is None or w.timestamp is None or w.timestamp == timestamp):
                return w
        return None


def _running_max(rows: list[tuple[int, Version, Op]]) -> list[tuple[Version, Op]]:
    out: list[tuple[Version, Op]] = []
    for _, v, op in rows:
        out.append((v, op) if not out or v > out[-1][0] else out[-1])
    return out


def _prefix_max(ops: list[Op], version: dict[int, Version]) -> list[Op]:
    out: list[Op] = []
    best: Op | None = None
    for op in ops:
        if best is None or version[op.index] > version[best.index]:
            best = op
        out.append(best)
    return out


class _PowerLoss:
    """When power losses rolled back each key (from the history's fault records)."""

    def __init__(self, history: History) -> None:
        self.times: dict[str, list[int]] = {}
        self.any: list[int] = sorted(f.at_ms for f in history.faults if f.kind == "power-loss")
        for f in history.faults:
            if f.kind == "power-loss":
                for key in f.keys:
                    self.times.setdefault(key, []).append(f.at_ms)

    def between(self, key: str | None, lo_ms: int, hi_ms: int) -> bool:
        """Whether a power loss rolled `key` back (None: hit any node) within the times."""
        times = self.times.get(key, ()) if key is not None else self.any
        i = bisect.bisect_left(times, lo_ms)
        return i < len(times) and times[i] <= hi_ms


# ---- the checks ----------------------------------------------------------------------------


class Checker:
    """Runs every check over one history. `durable_acks`: the durability mode promises that
    an acknowledged write survives power loss (batch commit log)."""

    def __init__(self, history: History, replication: Replication, durable_acks: bool = True) -> None:
        self.history = history
        self.replication = replication
        self.durable_acks = durable_acks
        self.report = CheckReport()
        self._power = _PowerLoss(history)
        self._keys: dict[str, tuple[_KeyWrites, list[Op]]] = {}
        for key, ops in sorted(history.by_key().items()):
            writes = [op for op in ops if op.is_write]
            reads = [op for op in ops if op.kind == "read"]
            kw = _KeyWrites(writes, reads)
            self.report.unversioned_writes += kw.unversioned
            self._keys[key] = (kw, reads)
        self._overlap_cache: dict[tuple, bool] = {}
        # the final state is observed after everything in the history
        self.end_ms = max([op.complete_ms or op.invoke_ms for op in history.ops]
                          + [f.at_ms for f in history.faults], default=0) + 1

    def run(self, final: Mapping[str, tuple[str, int] | None] | None = None,
            replicas: Mapping[str, Mapping[str, str | None]] | None = None) -> CheckReport:
        """All checks; `final` (key -> converged (value, timestamp) or None for no row) and
        `replicas` (key -> node -> digest of what it holds) when the run was healed."""
        for key, (kw, reads) in self._keys.items():
            self.check_reads(key, kw, reads)
            self.check_monotonic(key, kw, reads)
            self.count_superseded(kw)
            if final is not None:
                self.check_final(key, kw, final.get(key))
        if replicas is not None:
            self.check_convergence(replicas)
        return self.report

    # ---- reads -------------------------------------------------------------------------

    def _overlaps(self, w_class: tuple[str, str], r: Op) -> bool:
        k = (*w_class, r.cl, r.dc)
        hit = self._overlap_cache.get(k)
        if hit is None:
            rep = self.replication
            hit = self._overlap_cache[k] = rep.overlaps(rep.requirement(*w_class),
                                                        rep.requirement(r.cl, r.dc))
        return hit

    def _newest_overlapping(self, kw: _KeyWrites, r: Op) -> Op | None:
        """The newest version among writes acknowledged before `r` began that `r`'s level
        is guaranteed to meet."""
        best: Op | None = None
        for w_class, (done, prefix_max) in kw.by_class.items():
            n = bisect.bisect_left(done, r.invoke_ms)
            if n and self._overlaps(w_class, r):
                w = prefix_max[n - 1]
                if best is None or kw.version[w.index] > kw.version[best.index]:
                    best = w
        return best

    @staticmethod
    def _seen(kw: _KeyWrites, r: Op) -> Version | None:
        """The version a read returned (None: no row, or a value of unknown timestamp)."""
        if r.value is None:
            return None
        if r.timestamp is not None:
            return version_of("write", r.timestamp, r.value)
        src = kw.source_of(r.value, None, r.complete_ms)
        return kw.version.get(src.index) if src is not None else None

    def _at_least(self, kw: _KeyWrites, r: Op, floor: Version) -> bool:
        """Whether read `r`'s answer is at least as new as version `floor`."""
        if r.value is None:
            return floor[1] == 1 or kw.explains_absence(floor, r.complete_ms)
        seen = self._seen(kw, r)
        return seen is not None and seen >= floor

    def _sees(self, key: str, kw: _KeyWrites, r: Op, needed: Op) -> bool:
        """Whether read `r`'s answer is at least as new as write `needed`."""
        return self._at_least(kw, r, kw.version[needed.index])

    def check_reads(self, key: str, kw: _KeyWrites, reads: list[Op]) -> None:
        for r in reads:
            if not r.ok:
                continue
            if r.value is not None and kw.source_of(r.value, r.timestamp, r.complete_ms) is None:
                self.report.add(Violation("phantom-read", key, r.invoke_ms,
                                          f"{r.describe()}: no write of that value and timestamp could have been seen",
                                          (r.index,)))
                continue
            self._measure_staleness(key, kw, r)
            needed = self._newest_overlapping(kw, r)
            if needed is None:
                continue
            self.report.reads_checked += 1
            if self._sees(key, kw, r, needed):
                continue
            if self._excused(key, needed, r.complete_ms):
                continue
            kind = "resurrection" if needed.kind == "delete" else "stale-quorum-read"
            self.report.add(Violation(kind, key, r.invoke_ms,
                                      f"{r.describe()} missed {needed.describe()}", (needed.index, r.index)))

    def _excused(self, key: str, missed: Op, until_ms: int) -> bool:
        # an ANY write may live only as a hint, which no key's rollback shows: any power loss
        return self._excused_window(None if missed.cl == "ANY" else key, missed.invoke_ms, until_ms)

    def _excused_window(self, key: str | None, from_ms: int, until_ms: int) -> bool:
        """Whether a power loss rolled `key` back between the two times, in a durability
        mode that allows it (the miss is then counted, not reported)."""
        if self.durable_acks or not self._power.between(key, from_ms, until_ms):
            return False
        self.report.lost_to_power_loss += 1
        return True

    def _measure_staleness(self, key: str, kw: _KeyWrites, r: Op) -> None:
        counts = self.report.staleness.by_level.setdefault(r.cl, [0, 0])
        counts[1] += 1
        latest = kw.latest_before(r.invoke_ms)
        if latest is None or self._sees(key, kw, r, latest):
            return
        counts[0] += 1
        n = kw.acked_before(r.invoke_ms)
        behind, oldest_ms = 0, r.invoke_ms
        for i in range(n - 1, max(-1, n - 1 - MAX_STALENESS_SCAN), -1):
            w = kw.acked[i]
            if not self._sees(key, kw, r, w):
                behind += 1
                oldest_ms = min(oldest_ms, w.complete_ms)
        st = self.report.staleness
        st.versions_behind.append(behind)
        st.ms_behind.append(r.invoke_ms - oldest_ms)

    # ---- monotonic reads ------------------------------------------------------------------

    def check_monotonic(self, key: str, kw: _KeyWrites, reads: list[Op]) -> None:
        """Blocking read repair: when a read returns version v, every replica that answered
        it holds v or newer, so a later read whose level is sure to meet one of them (R1 +
        R2 > N, as for writes) must return v or newer, even if v's write was never
        acknowledged (DESIGN.md section 4: monotonic quorum reads)."""
        reads = [r for r in reads if r.ok and (r.value is None or kw.source_of(r.value, r.timestamp, r.complete_ms))]
        by_class: dict[tuple[str, str], list[tuple[int, Version, Op]]] = {}
        for r in sorted(reads, key=lambda r: (r.complete_ms, r.index)):
            seen = self._seen(kw, r)
            if seen is not None:
                by_class.setdefault((r.cl, r.dc), []).append((r.complete_ms, seen, r))
        classes = {cls: ([t for t, _, _ in rows], _running_max(rows)) for cls, rows in by_class.items()}
        for r2 in reads:  # phantom reads are reported already, and prove nothing here
            best: tuple[Version, Op] | None = None
            for cls, (done, best_so_far) in classes.items():
                n = bisect.bisect_left(done, r2.invoke_ms)
                if n and self._overlaps(cls, r2) and (best is None or best_so_far[n - 1][0] > best[0]):
                    best = best_so_far[n - 1]
            if best is None or self._at_least(kw, r2, best[0]):
                continue
            if self._excused_window(key, best[1].invoke_ms, r2.complete_ms):
                continue
            self.report.add(Violation("non-monotonic-read", key, r2.invoke_ms,
                                      f"{r2.describe()} is older than what {best[1].describe()} returned before it",
                                      (best[1].index, r2.index)))

    # ---- last-write-wins supersessions ---------------------------------------------------

    def count_superseded(self, kw: _KeyWrites) -> None:
        """Acknowledged writes lost to an earlier acknowledged write with a higher version."""
        for w in kw.acked:
            n = kw.acked_before(w.invoke_ms)
            if not n:
                continue
            winner = kw.prefix_max[n - 1]
            if kw.version[winner.index] > kw.version[w.index]:
                self.report.superseded.append((w.index, winner.index))

    # ---- after healing ---------------------------------------------------------------------

    def check_final(self, key: str, kw: _KeyWrites, final: tuple[str, int] | None) -> None:
        """The converged state holds every acknowledged write (or something newer)."""
        self.report.final_checked += 1
        end_ms = self.end_ms
        fake = Op(-1, "final", "read", key, "ALL", "", "", end_ms, end_ms, "ok",
                  None if final is None else final[0], None if final is None else final[1])
        if final is not None and kw.source_of(final[0], final[1], end_ms) is None:
            self.report.add(Violation("phantom-read", key, end_ms,
                                      f"the converged value {final} was never written", ()))
            return
        needed = kw.latest_before(end_ms)
        if needed is None or self._sees(key, kw, fake, needed):
            return
        if self._excused(key, needed, end_ms):
            return
        kind = "resurrection" if needed.kind == "delete" else "lost-write"
        shown = "no row" if final is None else f"{final[0]} ts={final[1]}"
        self.report.add(Violation(kind, key, end_ms,
                                  f"after healing the key holds {shown}, older than acknowledged {needed.describe()}",
                                  (needed.index,)))

    def check_convergence(self, replicas: Mapping[str, Mapping[str, str | None]]) -> None:
        for key in sorted(replicas):
            held = replicas[key]
            if len(set(held.values())) <= 1:
                self.report.keys_converged += 1
                continue
            shown = ", ".join(f"{node}={digest or 'nothing'}" for node, digest in sorted(held.items()))
            self.report.add(Violation("divergence", key, 0, f"replicas differ after healing: {shown}"))


def check(history: History, replication: Replication, *, durable_acks: bool = True,
          final: Mapping[str, tuple[str, int] | None] | None = None,
          replicas: Mapping[str, Mapping[str, str | None]] | None = None) -> CheckReport:
    """Run every check (see the module docstring) and return the report."""
    return Checker(history, replication, durable_acks).run(final, replicas)


def percentile(values: Iterable[int], p: float) -> int:
    """The `p`-th percentile (0..100) by nearest rank; 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]
