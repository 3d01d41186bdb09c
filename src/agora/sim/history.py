"""The recorded history of a run: every client operation (what was asked, when, through
which coordinator, and what came back) and every fault injected, as plain records.

Owns: the record types and their plain (JSON lines) form. A history is what the checkers
(`agora.sim.checkers`) judge, and it is deliberately free of simulator objects: the same
records can be written by a driver workload against real node processes (issue 5, item 4),
so the checkers run unchanged on a chaos test's history.

Outcomes follow Jepsen's convention, because a client cannot always know:

- `ok`: the operation happened (a write was acknowledged at its level; a read returned).
- `fail`: it certainly did not happen (Unavailable and InvalidRequest are decided before
  anything is sent to a replica).
- `info`: unknown (a timeout, a lost connection, a client-side timeout): a write may or
  may not have been applied, on some replicas or all; a read told us nothing.
- `pending`: never completed before the history was closed (treated as `info`).

A token-range scan of the whole table is recorded as one read per key (`scan=True`), all
with the scan's invoke and complete times: each key was read at some moment in between,
which is all a read record claims. Values written are unique per history (the workload names them `<client>.<n>`), so a read
that returns a value names the one write it saw. Timestamps are the write timestamps in
microseconds (the one the coordinator or client chose; for reads, the `writetime` of the
value seen); None where the client could not know it.

Does not know: consistency rules or what a correct history is (the checkers do).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields

OUTCOMES = ("ok", "fail", "info", "pending")
KINDS = ("write", "delete", "read")


@dataclass(slots=True)
class Op:
    """One client operation. `dc` is the coordinator's datacenter (LOCAL_* levels count
    replicas there). For a read, `value`/`timestamp` are what it saw (None: no row)."""

    index: int
    client: str
    kind: str  # "write" | "delete" | "read"
    key: str
    cl: str  # the consistency level's name, e.g. "QUORUM"
    node: str  # the coordinator
    dc: str
    invoke_ms: int
    complete_ms: int | None = None
    outcome: str = "pending"
    value: str | None = None
    timestamp: int | None = None
    error: str | None = None
    scan: bool = False  # a read that was one key of a token-range scan of the whole table

    @property
    def is_write(self) -> bool:
        return self.kind != "read"

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def may_have_happened(self) -> bool:
        """Whether a write may have reached a replica: anything but a certain failure."""
        return self.outcome != "fail"

    def describe(self) -> str:
        """One line for reports: `#12 c3 write k1=c3.4 QUORUM via 127.0.0.2:7000 [10..15ms] ok ts=..`."""
        what = {"write": f"write {self.key}={self.value}", "delete": f"delete {self.key}",
                "read": f"{'scan' if self.scan else 'read'} {self.key}"}[self.kind]
        end = "?" if self.complete_ms is None else self.complete_ms
        result = self.outcome
        if self.kind == "read" and self.outcome == "ok":
            result += f" saw {self.value if self.value is not None else '(none)'}"
        if self.timestamp is not None:
            result += f" ts={self.timestamp}"
        if self.error:
            result += f" ({self.error})"
        return f"#{self.index} {self.client} {what} {self.cl} via {self.node} [{self.invoke_ms}..{end}ms] {result}"


@dataclass(slots=True)
class FaultRecord:
    """A fault injected (or undone) at `at_ms`. `keys` lists the keys whose data a power
    loss rolled back on `nodes` (the checkers excuse exactly those where the durability
    mode allows it)."""

    at_ms: int
    kind: str
    detail: str = ""
    nodes: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def describe(self) -> str:
        keys = f" rolled back {','.join(self.keys)}" if self.keys else ""
        return f"{self.at_ms}ms fault {self.kind} {self.detail}{keys}".rstrip()


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)

    # ---- recording ----------------------------------------------------------------------

    def invoke(self, client: str, kind: str, key: str, cl: str, node: str, dc: str, at_ms: int,
               value: str | None = None, timestamp: int | None = None, scan: bool = False) -> Op:
        assert kind in KINDS, kind
        op = Op(len(self.ops), client, kind, key, cl, node, dc, at_ms, value=value, timestamp=timestamp,
                scan=scan)
        self.ops.append(op)
        return op

    @staticmethod
    def complete(op: Op, at_ms: int, outcome: str, value: str | None = None,
                 timestamp: int | None = None, error: str | None = None) -> None:
        """Record how `op` ended. For writes `value` stays what was written; a timestamp
        learned only now (the coordinator's) fills in."""
        assert op.outcome == "pending", f"op #{op.index} completed twice"
        assert outcome in OUTCOMES and outcome != "pending", outcome
        op.complete_ms = at_ms
        op.outcome = outcome
        op.error = error
        if op.kind == "read":
            op.value, op.timestamp = value, timestamp
        elif timestamp is not None:
            op.timestamp = timestamp

    def fault(self, at_ms: int, kind: str, detail: str = "", nodes: Iterable[str] = (),
              keys: Iterable[str] = ()) -> FaultRecord:
        record = FaultRecord(at_ms, kind, detail, tuple(nodes), tuple(keys))
        self.faults.append(record)
        return record

    # ---- views --------------------------------------------------------------------------

    def by_key(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            out.setdefault(op.key, []).append(op)
        return out

    def keys(self) -> list[str]:
        return sorted({op.key for op in self.ops})

    def around(self, key: str, at_ms: int, window_ms: int, limit: int) -> list[str]:
        """The operations on `key` and the faults within `window_ms` before `at_ms` (and a
        little after), in time order, at most `limit` lines: the short trace of a
        violation."""
        lo, hi = at_ms - window_ms, at_ms + window_ms // 10
        lines = [(op.invoke_ms, 0, op.index, op.describe()) for op in self.ops
                 if op.key == key and lo <= op.invoke_ms <= hi]
        lines += [(f.at_ms, 1, i, f.describe()) for i, f in enumerate(self.faults) if lo <= f.at_ms <= hi]
        lines.sort()
        return [text for *_, text in lines[-limit:]]

    # ---- plain form -------------------------------------------------------------------

    def to_jsonl(self) -> Iterator[str]:
        """One JSON object per line: {"op": {...}} or {"fault": {...}}, in recording order
        within each kind (ops first)."""
        for op in self.ops:
            yield json.dumps({"op": asdict(op)}, sort_keys=True)
        for f in self.faults:
            yield json.dumps({"fault": asdict(f)}, sort_keys=True)

    @classmethod
    def from_jsonl(cls, lines: Iterable[str]) -> History:
        history = cls()
        op_fields = {f.name for f in fields(Op)}
        for line in lines:
            if not line.strip():
                continue
            obj = json.loads(line)
            if "op" in obj:
                history.ops.append(Op(**{k: v for k, v in obj["op"].items() if k in op_fields}))
            else:
                raw = obj["fault"]
                history.faults.append(FaultRecord(raw["at_ms"], raw["kind"], raw.get("detail", ""),
                                                  tuple(raw.get("nodes", ())), tuple(raw.get("keys", ()))))
        return history
