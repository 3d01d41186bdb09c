"""Latency recording (HDR histogram when `hdrhistogram` is installed, else sorted samples), the
per-100 ms timeline of successes, errors and max latency, and per-second latency windows (for
percentiles over time). Values are microseconds. Shared by `agora bench` and the etcd / Redis
load generators in benchmarks/, so every system is measured by the same code."""

from __future__ import annotations

import os
import random

try:
    from hdrh.histogram import HdrHistogram
except ImportError:  # pragma: no cover - depends on the environment
    HdrHistogram = None

HIGHEST_US = 120_000_000  # two minutes
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
MAX_SAMPLES = 1_000_000  # fallback: reservoir size per histogram
SLOW_US = 1_000_000  # "over_1s": successes slower than this (what a kill must not cause)


class Latencies:
    """Mergeable across processes through `export()` / `Latencies.merge()`."""

    def __init__(self):
        if HdrHistogram is not None:
            self._h = HdrHistogram(1, HIGHEST_US, 3)
            self.record = self._record_hdr
        else:
            self._samples: list[int] = []
            self._seen = 0
            self._max = 0
            self._rng = random.Random(1)
            self.record = self._record_sample

    def _record_hdr(self, us: int) -> None:
        self._h.record_value(min(max(us, 1), HIGHEST_US))

    def _record_sample(self, us: int) -> None:
        self._seen += 1
        self._max = max(self._max, us)
        if len(self._samples) < MAX_SAMPLES:
            self._samples.append(us)
        else:
            j = self._rng.randrange(self._seen)
            if j < MAX_SAMPLES:
                self._samples[j] = us

    def export(self):
        if HdrHistogram is not None:
            return ("hdr", self._h.encode())
        return ("samples", self._samples, self._seen, self._max)

    @staticmethod
    def merge(exports) -> dict:
        """Summary dict: count, p50/p95/p99/p99.9, max, mean (µs)."""
        exports = list(exports)
        if not exports:
            return {"count": 0}
        if exports[0][0] == "hdr":
            total = HdrHistogram(1, HIGHEST_US, 3)
            for e in exports:
                total.add(HdrHistogram.decode(e[1]))
            n = total.get_total_count()
            if n == 0:
                return {"count": 0}
            out = {"count": n, "mean_us": round(total.get_mean_value(), 1), "max_us": total.get_max_value()}
            for p in PERCENTILES:
                out[f"p{p:g}_us"] = total.get_value_at_percentile(p)
            out["over_1s"] = sum(it.count_at_value_iterated_to for it in total.get_recorded_iterator()
                                 if total.get_lowest_equivalent_value(it.value_iterated_to) > SLOW_US)
            out["histogram"] = "hdr"
            return out
        samples = sorted(s for e in exports for s in e[1])
        n = sum(e[2] for e in exports)
        if not samples:
            return {"count": 0}
        out = {"count": n, "mean_us": round(sum(samples) / len(samples), 1), "max_us": max(e[3] for e in exports)}
        for p in PERCENTILES:
            out[f"p{p:g}_us"] = samples[min(len(samples) - 1, max(0, int(len(samples) * p / 100.0 + 0.5) - 1))]
        out["over_1s"] = round(sum(1 for s in samples if s > SLOW_US) * n / len(samples))
        out["histogram"] = "samples"
        return out


class Timeline:
    """Per-100 ms buckets from the start of the measured phase: [successes, errors, max latency µs]."""

    BUCKET_S = 0.1

    def __init__(self):
        self.buckets: dict[int, list[int]] = {}

    def record(self, t_since_start: float, ok: bool, us: int) -> None:
        b = self.buckets.get(i := int(t_since_start / self.BUCKET_S))
        if b is None:
            b = self.buckets[i] = [0, 0, 0]
        b[0 if ok else 1] += 1
        if us > b[2]:
            b[2] = us

    @staticmethod
    def merge(parts) -> list[list[int]]:
        """A dense list indexed by bucket: [successes, errors, max µs]."""
        out: dict[int, list[int]] = {}
        for part in parts:
            for i, (ok, err, mx) in part.items():
                b = out.setdefault(int(i), [0, 0, 0])
                b[0] += ok
                b[1] += err
                b[2] = max(b[2], mx)
        if not out:
            return []
        return [out.get(i, [0, 0, 0]) for i in range(max(out) + 1)]


class Windows:
    """One latency histogram per `WINDOW_S` of the measured phase, for percentiles over time."""

    WINDOW_S = 1.0

    def __init__(self):
        self.windows: dict[int, Latencies] = {}

    def record(self, t_since_start: float, us: int) -> None:
        w = self.windows.get(i := int(t_since_start / self.WINDOW_S))
        if w is None:
            w = self.windows[i] = Latencies()
        w.record(us)

    def export(self) -> dict[int, tuple]:
        return {i: w.export() for i, w in self.windows.items()}

    @staticmethod
    def merge(parts) -> list[dict]:
        """A dense list indexed by window: the `Latencies.merge` summary of that window."""
        by_window: dict[int, list] = {}
        for part in parts:
            for i, e in part.items():
                by_window.setdefault(int(i), []).append(e)
        if not by_window:
            return []
        return [Latencies.merge(by_window.get(i, [])) for i in range(max(by_window) + 1)]


def process_cpu_seconds(pid: int | str = "self") -> float | None:
    """utime + stime of a process from /proc/<pid>/stat (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def unavailability(buckets: list[list[int]], after_s: float, bucket_s: float = Timeline.BUCKET_S) -> dict:
    """From a per-100 ms timeline: the longest run of buckets at or after `after_s` with no
    success (the window in which the system answered nothing), and where it started."""
    start = int(after_s / bucket_s)
    best_len, best_at, run_len, run_at = 0, None, 0, None
    for i in range(start, len(buckets)):
        if buckets[i][0] == 0:
            if run_len == 0:
                run_at = i
            run_len += 1
            if run_len > best_len:
                best_len, best_at = run_len, run_at
        else:
            run_len = 0
    return {"longest_no_success_s": round(best_len * bucket_s, 3),
            "starts_at_s": None if best_at is None else round(best_at * bucket_s, 3)}


def summarize(results: list[dict], elapsed: float) -> dict:
    """The report of one run from its processes' results (each: hist {read, write} exports,
    timeline buckets, windows export, errors, error_samples, client_cpu_s)."""
    per_kind = {}
    for kind in ("read", "write"):
        s = Latencies.merge(r["hist"][kind] for r in results)
        if s.get("count"):
            per_kind[kind] = s
    overall = Latencies.merge(r["hist"][k] for r in results for k in ("read", "write"))
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r["error_samples"].items():
            samples.setdefault(k, v)
    ops = overall.get("count", 0)
    client_cpu = [r.get("client_cpu_s") for r in results]
    client = None
    if ops and all(c is not None for c in client_cpu):
        total = sum(client_cpu)
        client = {"total_s": round(total, 3), "us_per_op": round(total * 1e6 / ops, 1),
                  "cores_busy": round(total / elapsed, 2) if elapsed > 0 else None}
    return {"operations": ops, "errors": sum(errors.values()), "errors_by_type": errors, "error_samples": samples,
            "elapsed_s": round(elapsed, 3), "throughput_ops_s": round(ops / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_us": overall, "latency_by_op_us": per_kind,
            "protocol_versions": sorted({r["protocol_version"] for r in results if r.get("protocol_version")}),
            "client_cpu": client, "timeline_100ms": Timeline.merge(r["timeline"] for r in results),
            "latency_windows_1s": Windows.merge(r["windows"] for r in results)}


SPARK = " ▁▂▃▄▅▆▇█"


def render_timeline(buckets: list[list[int]], events: list[tuple[float, str]]) -> list[str]:
    """One line per second: a sparkline of the ten 100 ms success counts, totals, max latency, events."""
    if not buckets:
        return []
    peak = max(b[0] for b in buckets) or 1
    lines = ["  second  successes per 100 ms   ok/s     errors  max ms  events"]
    for s in range((len(buckets) + 9) // 10):
        part = buckets[s * 10:(s + 1) * 10]
        spark = "".join(SPARK[min(8, (b[0] * 8 + peak - 1) // peak)] if b[0] else "·" for b in part).ljust(10)
        ok = sum(b[0] for b in part)
        err = sum(b[1] for b in part)
        mx = max(b[2] for b in part) / 1000.0
        ev = ", ".join(f"{what} @{t:.1f}s" for t, what in events if s <= t < s + 1)
        lines.append(f"  {s:5d}s  |{spark}|  {ok:8d}  {err:9d}  {mx:6.1f}  {ev}")
    return lines
