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

# Cassandra 4's patterns, matched on the upper-cased text (ASCII digits and dots; spaces
# only around MIN/MAX's comma)
_PERCENTILE = re.compile(r"([0-9.]+)(?:P|PERCENTILE)", re.ASCII)
_FIXED = re.compile(r"([0-9.]+)MS", re.ASCII)
_HYBRID = re.compile(r"(MIN|MAX)\(([0-9.]+[A-Z]+)\s*,\s*([0-9.]+[A-Z]+)\)", re.ASCII)


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
    """The policy `text` names, as Cassandra 4 reads it; ValueError if it names none. A
    fixed wait's fraction is dropped ('10.0ms', what Cassandra 3 showed, is 10 ms)."""
    upper = text.upper()
    if upper == NONE:
        return Speculation(NONE)
    if upper == ALWAYS:
        return Speculation(ALWAYS)
    single = _single(upper)
    if single is not None:
        return single
    m = _HYBRID.fullmatch(upper)
    if m:
        a, b = _single(m.group(2)), _single(m.group(3))
        if a is not None and b is not None and {a.kind, b.kind} == {PERCENTILE, FIXED}:
            pct, fixed = (a, b) if a.kind == PERCENTILE else (b, a)
            return Speculation(m.group(1), pct.percentile, fixed.ms)
    raise ValueError(f"Invalid value {text!r} for option 'speculative_retry': expected NONE, ALWAYS, "
                     "a percentile (99p), a wait (50ms), or MIN/MAX of a percentile and a wait")


def normalized(text: str) -> str:
    """`text` as Cassandra shows it ('99PERCENTILE' is '99p'); ValueError for a value that
    names no policy, or whose shown form names none (a percentile that its four shown
    decimals round to 100 or 0)."""
    shown = str(parse_speculative_retry(text))
    try:
        parse_speculative_retry(shown)
    except ValueError:
        raise ValueError(f"Invalid value {text!r} for option 'speculative_retry': "
                         f"its percentile rounds to {shown!r}") from None
    return shown


def _single(upper: str) -> Speculation | None:
    m = _PERCENTILE.fullmatch(upper)
    if m:
        try:
            percentile = float(m.group(1))
        except ValueError:
            return None
        if not 0.0 < percentile < 100.0:
            raise ValueError(f"Invalid value {upper!r} for option 'speculative_retry': "
                             "the percentile must be strictly between 0 and 100")
        return Speculation(PERCENTILE, percentile)
    m = _FIXED.fullmatch(upper)
    if m:
        try:
            return Speculation(FIXED, ms=int(float(m.group(1))))
        except (ValueError, OverflowError):  # not a number, or too long for one
            return None
    return None
