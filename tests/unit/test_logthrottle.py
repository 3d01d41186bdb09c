"""LogThrottle: at most one line per interval, and the next line learns how many it stood for."""

from agora.core.logthrottle import LogThrottle


def test_one_line_per_interval_and_the_next_counts_what_was_left_unsaid():
    t = LogThrottle(1_000)
    assert t.allow(5_000) == 0  # the first line always goes out
    assert [t.allow(ms) for ms in (5_001, 5_500, 5_999)] == [None, None, None]
    assert t.allow(6_000) == 3  # an interval later: three were skipped
    assert t.allow(6_999) is None
    assert t.allow(9_000) == 1 and t.allow(10_000) == 0  # the count restarts after each line
