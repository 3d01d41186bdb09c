"""PNG charts of one benchmark run: throughput over time (successes and errors per second, from
the per-100 ms timeline) above latency percentiles over time (p50 / p99 / p99.9 per second and
the per-100 ms maximum), with kill / restart markers. matplotlib on the Agg backend (no display).
Shared by `agora bench --chart` and the benchmarks/ scripts."""

from __future__ import annotations

from agora.bench.stats import Timeline, Windows


def write_chart(path: str, title: str, timeline: list[list[int]], windows: list[dict],
                events: list[tuple[float, str]] = (), rate: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_s = 1.0 / Timeline.BUCKET_S
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1.2]})
    t = [i * Timeline.BUCKET_S for i in range(len(timeline))]
    top.step(t, [b[0] * per_s for b in timeline], where="post", lw=0.9, color="tab:blue", label="ok/s (100 ms buckets)")
    if any(b[1] for b in timeline):
        top.step(t, [b[1] * per_s for b in timeline], where="post", lw=0.9, color="tab:red", label="errors/s")
    if rate:
        top.axhline(rate, color="grey", ls=":", lw=0.8, label=f"target {rate:g}/s")
    top.set_ylabel("operations / s")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    if timeline:
        bottom.plot(t, [b[2] / 1000 if b[0] + b[1] else float("nan") for b in timeline], lw=0.6,
                    color="darkgrey", label="max per 100 ms (incl. failures)")
    wt = [(i + 0.5) * Windows.WINDOW_S for i in range(len(windows))]
    for key, label, color in (("p50_us", "p50", "tab:green"), ("p99_us", "p99", "tab:orange"),
                              ("p99.9_us", "p99.9", "tab:red")):
        pts = [(x, w[key] / 1000) for x, w in zip(wt, windows) if w.get("count")]
        if pts:
            bottom.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1.2, color=color,
                        label=f"{label} per {Windows.WINDOW_S:g} s")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms, log)")
    bottom.set_xlabel("seconds into the measured phase")
    bottom.grid(alpha=0.3, which="both")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    for at, what in events:
        for ax in (top, bottom):
            ax.axvline(at, color="black", ls="--", lw=0.9)
        top.annotate(what, (at, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                     textcoords="offset points", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
