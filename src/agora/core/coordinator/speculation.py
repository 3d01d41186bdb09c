"""The `speculative_retry` table option: when a read asks one more replica.

Owns: parsing and printing the option's values, as Cassandra 4 accepts and shows them
(SpeculativeRetryPolicy.fromString and its policies' toString), and the wait they give:

- `'NONE'`: never ask another replica; a slow one makes the read wait (up to its timeout);
- `'ALWAYS'`: ask one more replica for data at once, with the first ones;
- `'99p'` (or `'99PERCENTILE'`, any percentile strictly between 0 and 100): after that
  percentile of how long the table's reads wait for their level (the default, `'99p'`);
- `'50ms'`: after a fixed wait;
- `'MIN(99p,50ms)'` and `'MAX(99p,50ms)'`: the shorter or longer of the two.

Pure: the read coordinator asks `delay_ms` with the table's latency window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from agora.core.coordinator.latency import LatencyWindow

NONE, ALWAYS, PERCENTILE, FIXED, MIN, MAX = "NONE", "ALWAYS", "PERCENTILE", "FIXED", "MIN", "MAX"

_PERCENTILE = re.compile(r"^(\d+(?:\.\d+)?)(?:P|PERCENTILE)$")
_FIXED = re.compile(r"^(\d+)MS$")
_HYBRID = re.compile(r"^(MIN|MAX)\((.+),(.+)\)$")


@dataclass(frozen=True)
class Speculation:
    kind: str
    percentile: float = 99.0  # for PERCENTILE, MIN and MAX (what the latency window tracks)
    ms: int = 0  # for FIXED, MIN and MAX

    def delay_ms(self, window: LatencyWindow) -> int | None:
        """How long a read waits before asking one more replica; None for never (and for
        ALWAYS, whose extra request goes with the first ones)."""
        kind = self.kind
        if kind == PERCENTILE:
            return window.threshold_ms()
        if kind == FIXED:
            return self.ms
        if kind == MIN:
            return min(window.threshold_ms(), self.ms)
        if kind == MAX:
            return max(window.threshold_ms(), self.ms)
        return None

    def __str__(self) -> str:
        if self.kind in (NONE, ALWAYS):
            return self.kind
        p = f"{self.percentile:.4f}".rstrip("0").rstrip(".") + "p"
        if self.kind == PERCENTILE:
            return p
        if self.kind == FIXED:
            return f"{self.ms}ms"
        return f"{self.kind}({p},{self.ms}ms)"


DEFAULT = Speculation(PERCENTILE, 99.0)


@lru_cache(maxsize=256)
def parse_speculative_retry(text: str) -> Speculation:
    """The policy `text` names; ValueError (with Cassandra's wording) if it names none."""
    upper = text.strip().upper()
    if upper == NONE:
        return Speculation(NONE)
    if upper == ALWAYS:
        return Speculation(ALWAYS)
    single = _single(upper)
    if single is not None:
        return single
    m = _HYBRID.match(upper)
    if m:
        a, b = _single(m.group(2).strip()), _single(m.group(3).strip())
        kinds = {a.kind if a else None, b.kind if b else None}
        if kinds == {PERCENTILE, FIXED}:
            pct = a if a.kind == PERCENTILE else b
            fixed = b if pct is a else a
            return Speculation(m.group(1), pct.percentile, fixed.ms)
    raise ValueError(f"Invalid value {text!r} for option 'speculative_retry': expected NONE, ALWAYS, "
                     "a percentile (99p), a wait (50ms), or MIN/MAX of a percentile and a wait")


def _single(upper: str) -> Speculation | None:
    m = _PERCENTILE.match(upper)
    if m:
        percentile = float(m.group(1))
        if not 0.0 < percentile < 100.0:
            raise ValueError(f"Invalid value {upper!r} for option 'speculative_retry': "
                             "the percentile must be strictly between 0 and 100")
        return Speculation(PERCENTILE, percentile)
    m = _FIXED.match(upper)
    if m:
        return Speculation(FIXED, ms=int(m.group(1)))
    return None
