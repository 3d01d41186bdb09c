"""What a chaos run says to a person, in the same shape as `agora sim`'s report
(`agora.sim.report`): what ran, what the faults did to the clients, what the checkers
found, and on a violation a short trace of the key involved and the command that reruns
the run (real processes do not replay exactly; the seed fixes the schedule and choices,
not the timing).

Owns: wording, and the few measures only a real run has: how many operations failed or
ended unknown while each fault was in effect, and which writes carried a skewed
coordinator timestamp (their timestamp against this process's wall clock at invoke).

Does not know: how the run was made (`agora.chaos.run`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.sim.checkers import percentile
from agora.sim.history import Op
from agora.sim.report import operation_lines

if TYPE_CHECKING:
    from agora.chaos.run import ChaosResult

TRACE_LINES_SHOWN = 25
TRACE_WINDOW_MS = 30_000
# A write's timestamp this far from the wall clock at its invoke came from a skewed clock
# (client timestamps and a healthy coordinator's are within a request's latency of it).
SKEW_VISIBLE_MS = 1_000
HELD_MS = 1_000  # a request this slow was held up by a fault (healthy ones take milliseconds)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def ops_during_faults(result: ChaosResult) -> dict[str, tuple[int, int, int]]:
    """Fault kind -> (operations that failed or ended unknown, operations the faulted node
    coordinated that succeeded but took at least HELD_MS, operations) among those invoked
    while a fault of that kind was in effect. A paused coordinator answers when it resumes,
    before the client's timeout: the clients feel that pause as held requests, not errors."""
    out: dict[str, list[int]] = {}
    for kind, start, end, node in result.evidence.windows:
        counts = out.setdefault(kind, [0, 0, 0])
        for op in result.history.ops:
            if start <= op.invoke_ms <= end:
                counts[2] += 1
                if op.outcome in ("fail", "info"):
                    counts[0] += 1
                elif op.node == node and op.complete_ms is not None and op.complete_ms - op.invoke_ms >= HELD_MS:
                    counts[1] += 1
    return {k: (bad, held, n) for k, (bad, held, n) in out.items()}


def skewed_writes(result: ChaosResult) -> list[tuple[Op, int]]:
    """(write, its timestamp minus the wall clock at invoke, in ms) for writes whose
    timestamp is more than SKEW_VISIBLE_MS away from the wall clock."""
    out = []
    for op in result.history.ops:
        if op.is_write and op.timestamp is not None:
            offset_ms = (op.timestamp - result.wall_start_us) // 1000 - op.invoke_ms
            if abs(offset_ms) > SKEW_VISIBLE_MS:
                out.append((op, offset_ms))
    return out


def _ops_lines(result: ChaosResult) -> list[str]:
    ops = result.history.ops
    scans = sum(1 for op in ops if op.scan)
    shown = f"; of the reads, {scans} are keys of whole-table scans" if scans else ""
    return operation_lines(ops, len(ops), shown)


def _fault_lines(result: ChaosResult) -> list[str]:
    from agora.chaos.run import INJECTED_KINDS

    shown = [f"{kind} {result.faults[kind]}" for kind in INJECTED_KINDS if result.faults.get(kind)]
    lines = ["faults injected: " + (", ".join(shown) if shown else "none")]
    ev = result.evidence
    for name, old, new in ev.kills:
        lines.append(f"  kill -9 {name}: pid {old} -> {new} after restart")
    for rules in ev.partition_rules:
        lines.append(f"  partition: {len(rules)} iptables rules in place")
    for start, end, offset in ev.skews:
        lines.append(f"  skew: {result.skew_node} {offset:+.1f} s from {start} to {end} ms")
    during = ops_during_faults(result)
    if during:
        lines.append(f"  failed or unknown / held over {HELD_MS} ms by the faulted node, of those invoked while in effect: "
                     + ", ".join(f"{kind} {bad}+{held}/{n}" for kind, (bad, held, n) in sorted(during.items())))
    skewed = skewed_writes(result)
    if skewed:
        worst = max(skewed, key=lambda x: abs(x[1]))[1]
        lines.append(f"  writes carrying a skewed timestamp: {len(skewed)} (largest {worst / 1000:+.1f} s "
                     f"from the wall clock at invoke)")
    if result.rules_left:
        lines.append(f"  IPTABLES RULES LEFT BEHIND: {result.rules_left}")
    return lines


def _staleness_lines(result: ChaosResult) -> list[str]:
    st = result.checks.staleness
    lines = [f"stale reads: {st.stale} of {st.reads} reads ({_pct(st.stale, st.reads)}) missed a write "
             f"acknowledged before they began"]
    if st.by_level:
        lines.append("  by read level: " + ", ".join(f"{cl} {s}/{n}" for cl, (s, n) in sorted(st.by_level.items())))
    if st.versions_behind:
        lines.append(f"  versions behind: p50 {percentile(st.versions_behind, 50)}, max {max(st.versions_behind)}; "
                     f"ms since the missed write: p50 {percentile(st.ms_behind, 50)}, "
                     f"p99 {percentile(st.ms_behind, 99)}, max {max(st.ms_behind)}")
    return lines


def summary_lines(result: ChaosResult) -> list[str]:
    o = result.options
    skew = f", skewed clock on {result.skew_node}" if result.skew_node else ""
    lines = [f"chaos seed {o.seed}: {o.nodes} real nodes on {o.subnet}.x (RF {o.rf}), {o.clients} driver clients, "
             f"{o.keys} keys, faults {','.join(o.faults) or 'none'}{skew}",
             f"wall time {result.elapsed_s:.1f} s (faults for {o.duration_s:g} s, then healing and repair)"]
    lines += _ops_lines(result)
    lines += _fault_lines(result)
    checks = result.checks
    if checks is not None:
        lines += _staleness_lines(result)
        lines.append(f"superseded writes (acknowledged, then lost to an earlier write with a higher timestamp): "
                     f"{len(checks.superseded)}")
        if checks.unversioned_writes:
            lines.append(f"acknowledged writes of unknown timestamp (half-checked): {checks.unversioned_writes}")
        if result.repairs:
            lines.append(f"repair on every node: {sum(r['ranges_out_of_sync'] for r in result.repairs)} ranges out "
                         f"of sync, {sum(r['rows_streamed'] for r in result.repairs)} rows streamed")
        lines.append(f"checked: {checks.reads_checked} reads against quorum overlap (W + R > N), "
                     f"{checks.keys_converged} keys converged, {checks.final_checked} keys' final values")
    for anomaly in result.anomalies[:5]:
        lines.append(f"ANOMALY {anomaly}")
    if result.error:
        lines.append(f"RUN FAILED: {result.error}")
    if result.ok:
        lines.append("OK")
    else:
        count = (checks.violation_count if checks else 0) + len(result.anomalies)
        lines.append(f"VIOLATIONS: {count}" if count else "FAILED")
    return lines


def violation_lines(result: ChaosResult, limit: int = 3) -> list[str]:
    """The first violations, each with the operations and faults leading up to it, where
    the cluster's logs are, and the command that reruns the run."""
    lines = []
    checks = result.checks
    if checks is not None:
        for v in checks.violations[:limit]:
            lines.append(f"VIOLATION {v.describe()}")
            lines.append(f"  trace of key {v.key} (operations and faults, the last {TRACE_WINDOW_MS // 1000} s):")
            lines += ["    " + line for line in result.history.around(v.key, v.at_ms, TRACE_WINDOW_MS,
                                                                      TRACE_LINES_SHOWN)]
        hidden = checks.violation_count - min(limit, len(checks.violations))
        if hidden > 0:
            lines.append(f"... and {hidden} more violations")
    if result.directory:
        lines.append(f"node logs: {result.directory}/cluster/node*/node.log")
    lines.append(f"rerun: {result.options.command_line()}")
    return lines
