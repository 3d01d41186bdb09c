"""What a simulated run says to a person: the summary of what happened and, on a violation,
the seed, the command that replays it and a short trace of the key involved.

Owns: wording and layout only (lines of text); the numbers come from the `RunReport`
(`agora.sim.runner`) and its `CheckReport` (`agora.sim.checkers`).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from agora.sim.checkers import percentile

if TYPE_CHECKING:
    from agora.sim.runner import RunReport

TRACE_LINES_SHOWN = 25  # lines of the short trace printed with a violation
TRACE_WINDOW_MS = 30_000  # how far back the short trace looks from the violation
# fault kinds as the nemesis records injections (undoings are not counted)
INJECTED_KINDS = ("partition", "one-way", "dc-cut", "crash", "power-loss", "pause", "skew", "loss",
                  "duplicate", "reorder")


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def operation_lines(ops: list, count: int, scans_note: str = "") -> list[str]:
    """The operations of a history by kind, outcome and level (also `agora chaos`'s report).
    `count` is the operations as the client issued them; `scans_note` says how scans count."""
    by_kind: dict[str, Counter] = {}
    levels: Counter = Counter()
    for op in ops:
        by_kind.setdefault(op.kind, Counter())[op.outcome] += 1
        levels[op.cl] += 1
    parts = []
    for kind in ("write", "delete", "read"):
        c = by_kind.get(kind, Counter())
        detail = " ".join(f"{o} {c[o]}" for o in ("ok", "fail", "info", "pending") if c[o])
        parts.append(f"{kind}s {sum(c.values())} ({detail or 'none'})")
    return [f"operations: {count}: " + "; ".join(parts) + scans_note,
            "  by level: " + ", ".join(f"{cl} {n}" for cl, n in sorted(levels.items()))]


def _ops_line(report: RunReport) -> list[str]:
    scans = sum(1 for op in report.history.ops if op.scan)
    n_scans = report.ops - (len(report.history.ops) - scans)
    shown = f"; {n_scans} scans of the whole table count as {scans} reads" if scans else ""
    return operation_lines(report.history.ops, report.ops, shown)


def _faults_line(report: RunReport) -> str:
    shown = [f"{kind} {report.faults[kind]}" for kind in INJECTED_KINDS if report.faults.get(kind)]
    return "faults injected: " + (", ".join(shown) if shown else "none")


def _staleness_lines(report: RunReport) -> list[str]:
    st = report.checks.staleness
    head = (f"stale reads: {st.stale} of {st.reads} reads ({_pct(st.stale, st.reads)}) missed a write "
            f"acknowledged before they began")
    lines = [head]
    if st.by_level:
        lines.append("  by read level: " + ", ".join(
            f"{cl} {s}/{n}" for cl, (s, n) in sorted(st.by_level.items())))
    if st.versions_behind:
        lines.append(f"  versions behind: p50 {percentile(st.versions_behind, 50)}, "
                     f"max {max(st.versions_behind)}; ms since the missed write: "
                     f"p50 {percentile(st.ms_behind, 50)}, p99 {percentile(st.ms_behind, 99)}, "
                     f"max {max(st.ms_behind)}")
    return lines


def summary_lines(report: RunReport) -> list[str]:
    o, checks = report.options, report.checks
    rep = o.replication()
    rf = rep.get("replication_factor") or ", ".join(f"{dc}:{n}" for dc, n in rep.items() if dc != "class")
    lines = [f"seed {o.seed}: {o.nodes} nodes in {o.dcs} datacenter{'s' if o.dcs > 1 else ''} (RF {rf}), "
             f"commitlog {o.commitlog}, hints {'on' if o.hints else 'off'}, {o.timestamps} timestamps, "
             f"{o.keys} keys, {o.clients} clients, "
             f"faults {','.join(o.faults) or 'none'}",
             f"virtual time {report.virtual_ms / 1000:.1f} s, trace hash {report.trace_hash[:16]}"]
    lines += _ops_line(report)
    lines.append(_faults_line(report))
    lines += _staleness_lines(report)
    lines.append(f"superseded writes (acknowledged, then lost to an earlier write with a higher timestamp): "
                 f"{len(checks.superseded)}")
    if checks.lost_to_power_loss:
        lines.append(f"misses excused by a power loss (a periodic commit log may lose acknowledged writes): "
                     f"{checks.lost_to_power_loss}")
    lines.append(f"read repairs: {report.read_repairs} (during the run and while converging)")
    lines.append(f"checked: {checks.reads_checked} reads against quorum overlap (W + R > N), "
                 f"{checks.keys_converged} keys converged, {checks.final_checked} keys' final values")
    if report.error:
        lines.append(f"RUN FAILED: {report.error}")
    lines.append("OK" if report.ok else f"VIOLATIONS: {report.checks.violation_count}")
    return lines


def violation_lines(report: RunReport, limit: int = 3) -> list[str]:
    """The first violations, each with the operations and faults leading up to it, and
    the command that replays the run."""
    lines = []
    if report.error:
        lines.append(f"run failed: {report.error}")
    for v in report.checks.violations[:limit]:
        lines.append(f"VIOLATION {v.describe()}")
        lines.append(f"  trace of key {v.key} (operations and faults, the last {TRACE_WINDOW_MS // 1000} s):")
        lines += ["    " + line for line in report.history.around(v.key, v.at_ms, TRACE_WINDOW_MS, TRACE_LINES_SHOWN)]
    hidden = report.checks.violation_count - min(limit, len(report.checks.violations))
    if hidden > 0:
        lines.append(f"... and {hidden} more violations")
    lines.append(f"replay: {report.options.command_line()}")
    return lines
