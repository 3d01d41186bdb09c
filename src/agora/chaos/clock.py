"""One real node's wall clock, skewed while it runs, with libfaketime.

Owns: the environment that runs a node process under libfaketime and the file holding its
clock offset. The node is started with `LD_PRELOAD=libfaketime.so.1`,
`FAKETIME_TIMESTAMP_FILE=<file>` and `FAKETIME_NO_CACHE=1`, so every clock read re-reads
the file and a new offset (`+8`, `-3.5`: seconds) takes effect at once, like an NTP step;
`FAKETIME_DONT_FAKE_MONOTONIC=1` leaves CLOCK_MONOTONIC alone, so only the wall clock
(`time.time_ns()`, which the node's timestamps, gossip and failure detector read) moves,
and the event loop's timers (uvloop, monotonic) keep real time.

Known limit of libfaketime 0.9.10 (Debian bookworm): with FAKETIME_DONT_FAKE_MONOTONIC=1,
`clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` fails with EINVAL, so Python's
`time.sleep` raises OSError in the faked process. The node never calls it (asyncio sleeps
through the event loop; RocksDB's threads use condition variables), and a call would fail
loudly, not silently. Each faked clock read costs about 6 microseconds (the file is read
every time), which one node can afford.

The offset file is replaced atomically (write, then rename), so the library never reads
a half-written offset.

Does not know: when to skew (the nemesis decides) or which node (the run does).
"""

from __future__ import annotations

import os
from pathlib import Path

from agora.chaos import tools


class FakeClock:
    """The clock offset of the processes started with `env()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.library = tools.libfaketime()
        self.offset_s = 0.0
        self.set_offset(0.0)

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": self.library, "FAKETIME_TIMESTAMP_FILE": str(self.path),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def set_offset(self, offset_s: float) -> None:
        """Step the clock to real time + offset_s (negative: behind)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.3f}\n")
        os.replace(tmp, self.path)
        self.offset_s = offset_s
