"""Printing for the CLI: the `agora status` table, in the shape of `nodetool status`."""

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
        for col in ("", "Address", "Load", "Tokens", "Owns", "Host ID", "Rack"):
            table.add_column(col)
        for r in dcs[dc]:
            owns = "?" if r["owns"] is None else f"{r['owns'] * 100:.1f}%"
            table.add_row(("U" if r["up"] else "D") + r["state"], r["address"], _size(r["load"]),
                          str(r["tokens"]), owns, r["host_id"] or "?", r["rack"])
        console.print(table)
    versions = {r["schema"] for r in status["nodes"] if r["up"]}
    console.print(f"schema version{'s' if len(versions) > 1 else ''}: {', '.join(sorted(v or '?' for v in versions))}")
