"""Printing for the CLI: the `agora status` table, in the shape of `nodetool status`, and the
pending hints a node holds (`agora status`, `agora hints`; nodetool listpendinghints)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_status(status: dict) -> None:
    console = Console()
    dcs: dict[str, list] = {}
    for row in status["nodes"]:
        dcs.setdefault(row["dc"], []).append(row)
    for dc in sorted(dcs):
        table = Table(title=f"Datacenter: {dc}", title_justify="left",
                      caption="Status=Up/Down  State=Normal/Joining", caption_justify="left")
        for col in ("", "Address", "Load", "Tokens", "Owns", "Host ID", "Rack", "Phi"):
            table.add_column(col)
        for r in dcs[dc]:
            owns = "?" if r["owns"] is None else f"{r['owns'] * 100:.1f}%"
            phi = r.get("phi")  # the answering node's suspicion of that node (8 convicts)
            table.add_row(("U" if r["up"] else "D") + r["state"], r["address"], _size(r["load"]),
                          str(r["tokens"]), owns, r["host_id"] or "?", r["rack"],
                          "" if phi is None else f"{phi:.2f}")
        console.print(table)
    versions = {r["schema"] for r in status["nodes"] if r["up"]}
    console.print(f"schema version{'s' if len(versions) > 1 else ''}: {', '.join(sorted(v or '?' for v in versions))}")
    print_hints(status, console)


def hint_lines(status: dict) -> list[str]:
    """One line per target the answering node holds hints for."""
    return [f"hints on {status['local']} for {target}: {h['count']} pending ({_size(h['bytes'])})"
            for target, h in sorted((status.get("hints") or {}).items())]


def print_hints(status: dict, console: Console | None = None) -> None:
    console = console or Console()
    lines = hint_lines(status)
    if not lines:
        console.print(f"hints on {status['local']}: none pending")
    for line in lines:
        console.print(line)
