"""The checkers on hand-written histories: each rule is shown catching what it must and
letting pass what it may (a checker that never fails proves nothing). The histories are
plain records, as a driver against real nodes would write them."""

from __future__ import annotations

from agora.sim.checkers import Replication, check, percentile, version_of
from agora.sim.history import History

RF3 = Replication(3)
TWO_DCS = Replication.from_options({"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3})


class H:
    """A tiny history builder: times in ms, one key unless said otherwise."""

    def __init__(self) -> None:
        self.h = History()

    def write(self, value, ts, cl="QUORUM", at=(0, 1), outcome="ok", key="k", dc="dc1", kind="write"):
        op = self.h.invoke("c1", kind, key, cl, "n1", dc, at[0], value=value, timestamp=ts)
        History.complete(op, at[1], outcome)
        return op

    def delete(self, ts, cl="QUORUM", at=(0, 1), outcome="ok", key="k", dc="dc1"):
        return self.write(None, ts, cl, at, outcome, key, dc, kind="delete")

    def read(self, value, ts, cl="QUORUM", at=(10, 11), key="k", dc="dc1"):
        op = self.h.invoke("c2", "read", key, cl, "n2", dc, at[0])
        History.complete(op, at[1], "ok", value, ts)
        return op


def kinds(report):
    return [v.kind for v in report.violations]


# ---- quorum overlap ---------------------------------------------------------------------


def test_a_quorum_read_must_see_a_quorum_write_acknowledged_before_it():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.write("b", 200, at=(10, 15))
    b.read("a", 100, at=(20, 22))  # missed b, acknowledged at 15
    report = check(b.h, RF3)
    assert kinds(report) == ["stale-quorum-read"]
    assert report.violations[0].ops == (1, 2)
    assert "missed #1" in report.violations[0].message


def test_a_read_concurrent_with_the_write_may_see_either():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.write("b", 200, at=(10, 30))
    b.read("a", 100, at=(20, 25))  # began before b was acknowledged
    assert check(b.h, RF3).ok


def test_a_newer_version_than_required_is_fine_and_the_older_write_counts_as_superseded():
    b = H()
    b.write("late", 900, at=(0, 5))  # a fast clock
    b.write("b", 200, at=(10, 15))  # acknowledged after "late", lower timestamp: lost
    b.read("late", 900, at=(20, 22))
    report = check(b.h, RF3)
    assert report.ok
    assert report.superseded == [(1, 0)]


def test_at_w_plus_r_not_above_n_a_stale_read_is_measured_not_a_violation():
    b = H()
    b.write("a", 100, cl="ONE", at=(0, 5))
    b.write("b", 200, cl="ONE", at=(10, 15))
    b.write("c", 300, cl="QUORUM", at=(20, 25))
    b.read("a", 100, cl="ONE", at=(40, 41))  # ONE + QUORUM = 3: not above N
    report = check(b.h, RF3)
    assert report.ok
    st = report.staleness
    assert st.by_level == {"ONE": [1, 1]}
    assert st.versions_behind == [2] and st.ms_behind == [40 - 15]


def test_an_all_write_overlaps_a_one_read():
    b = H()
    b.write("a", 100, cl="ALL", at=(0, 5))
    b.read(None, None, cl="ONE", at=(10, 11))
    assert kinds(check(b.h, RF3)) == ["stale-quorum-read"]


def test_a_missing_row_is_explained_by_a_newer_delete_even_an_unacknowledged_one():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.delete(150, at=(6, 9000), outcome="info")  # timed out: it may have happened
    b.read(None, None, at=(20, 21))
    assert check(b.h, RF3).ok
    b2 = H()
    b2.write("a", 100, at=(0, 5))
    b2.delete(150, at=(6, 7), outcome="fail")  # Unavailable: it did not happen
    b2.read(None, None, at=(20, 21))
    assert kinds(check(b2.h, RF3)) == ["stale-quorum-read"]


def test_a_row_that_an_acknowledged_delete_removed_must_not_come_back():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.delete(200, at=(10, 15))
    b.read("a", 100, at=(20, 21))
    assert kinds(check(b.h, RF3)) == ["resurrection"]


def test_at_equal_timestamps_the_tombstone_and_then_the_greater_value_win():
    assert version_of("delete", 5, None) > version_of("write", 5, "zzz") > version_of("write", 5, "aaa")
    b = H()
    b.write("apple", 300, at=(0, 5))
    b.write("banana", 300, at=(6, 9))
    b.read("apple", 300, at=(20, 21))  # banana wins the tie: apple is stale
    assert kinds(check(b.h, RF3)) == ["stale-quorum-read"]


def test_a_quorum_read_never_goes_back_to_an_older_version_than_one_returned_before():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.write("b", 200, at=(10, 9000), outcome="info")  # timed out, reached one replica
    b.read("b", 200, cl="QUORUM", at=(20, 22))  # saw it (and repaired what it asked)
    b.read("a", 100, cl="QUORUM", at=(30, 32))  # must not go back
    assert kinds(check(b.h, RF3)) == ["non-monotonic-read"]
    one = H()
    one.write("a", 100, at=(0, 5))
    one.write("b", 200, at=(10, 9000), outcome="info")
    one.read("b", 200, cl="ONE", at=(20, 22))  # ONE + QUORUM = 3: the next may miss it
    one.read("a", 100, cl="QUORUM", at=(30, 32))
    assert check(one.h, RF3).ok


def test_an_any_write_promises_no_replica_until_its_hint_is_handed_over():
    b = H()
    b.write("a", 100, cl="ANY", at=(0, 5))  # acknowledged by a hint on the coordinator
    b.read(None, None, cl="ALL", at=(10, 11))
    assert check(b.h, RF3).ok
    assert kinds(check(b.h, RF3, final={"k": None})) == ["lost-write"]  # but it must not be lost
    b.h.fault(20, "power-loss", "n1", ["n1"], [])  # the hint went with the power
    assert check(b.h, RF3, durable_acks=False, final={"k": None}).ok


# ---- nothing from thin air --------------------------------------------------------------


def test_a_read_may_only_see_values_that_were_written_with_their_timestamps():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.read("ghost", 100, at=(10, 11))
    b.read("a", 999, at=(12, 13))  # the right value with a wrong writetime
    b.write("never", 300, at=(14, 15), outcome="fail")
    b.read("never", 300, at=(20, 21))
    b.read("future", 400, at=(22, 23))
    b.write("future", 400, at=(30, 31))  # invoked after the read completed
    assert kinds(check(b.h, RF3)) == ["phantom-read"] * 4


# ---- datacenters -----------------------------------------------------------------------


def test_which_levels_overlap_across_two_datacenters():
    def overlaps(w, r):
        return TWO_DCS.overlaps(TWO_DCS.requirement(*w), TWO_DCS.requirement(*r))

    assert overlaps(("LOCAL_QUORUM", "dc1"), ("LOCAL_QUORUM", "dc1"))
    assert not overlaps(("LOCAL_QUORUM", "dc1"), ("LOCAL_QUORUM", "dc2"))
    assert overlaps(("EACH_QUORUM", "dc1"), ("LOCAL_QUORUM", "dc2"))
    assert overlaps(("QUORUM", "dc1"), ("QUORUM", "dc2"))  # 4 + 4 > 6
    assert not overlaps(("QUORUM", "dc1"), ("LOCAL_QUORUM", "dc2"))  # 4 may be 3 in dc1 + 1
    assert overlaps(("ALL", "dc2"), ("LOCAL_ONE", "dc1"))
    assert overlaps(("LOCAL_ONE", "dc1"), ("ALL", "dc2"))
    assert not overlaps(("LOCAL_ONE", "dc1"), ("LOCAL_QUORUM", "dc1"))  # 1 + 2 = 3


def test_local_quorum_in_another_datacenter_may_be_stale():
    b = H()
    b.write("a", 100, cl="LOCAL_QUORUM", at=(0, 5), dc="dc1")
    b.read(None, None, cl="LOCAL_QUORUM", at=(10, 11), dc="dc2")
    assert check(b.h, TWO_DCS).ok
    b.read(None, None, cl="LOCAL_QUORUM", at=(12, 13), dc="dc1")
    assert kinds(check(b.h, TWO_DCS)) == ["stale-quorum-read"]


# ---- after healing ---------------------------------------------------------------------


def test_the_converged_value_must_hold_every_acknowledged_write():
    b = H()
    b.write("a", 100, cl="ONE", at=(0, 5))
    b.write("b", 50, cl="ONE", at=(10, 15))  # superseded by a: fine
    assert check(b.h, RF3, final={"k": ("a", 100)}).ok
    report = check(b.h, RF3, final={"k": ("b", 50)})
    assert kinds(report) == ["lost-write"]
    report = check(b.h, RF3, final={"k": None})
    assert kinds(report) == ["lost-write"]


def test_an_acknowledged_delete_must_not_be_undone_after_healing():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.delete(200, cl="ONE", at=(10, 15))
    assert check(b.h, RF3, final={"k": None}).ok
    assert kinds(check(b.h, RF3, final={"k": ("a", 100)})) == ["resurrection"]


def test_a_power_loss_excuses_a_lost_write_only_without_durable_acks():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.write("b", 200, at=(10, 15))
    b.h.fault(20, "power-loss", "n1", ["n1"], ["k"])
    b.read("a", 100, at=(30, 31))
    final = {"k": ("a", 100)}
    strict = check(b.h, RF3, durable_acks=True, final=final)
    assert kinds(strict) == ["stale-quorum-read", "lost-write"]
    relaxed = check(b.h, RF3, durable_acks=False, final=final)
    assert relaxed.ok and relaxed.lost_to_power_loss == 2
    b.h.faults[0].keys = ("other",)  # a power loss that did not touch this key excuses nothing
    assert not check(b.h, RF3, durable_acks=False, final=final).ok


def test_replicas_that_differ_after_healing_are_a_violation():
    b = H()
    b.write("a", 100)
    same = {"k": {"n1": "ab", "n2": "ab", "n3": "ab"}}
    assert check(b.h, RF3, replicas=same).keys_converged == 1
    differ = {"k": {"n1": "ab", "n2": "ab", "n3": None}}
    report = check(b.h, RF3, replicas=differ)
    assert kinds(report) == ["divergence"] and "n3=nothing" in report.violations[0].message


# ---- the history itself ----------------------------------------------------------------


def test_a_history_round_trips_through_json_lines_and_checks_the_same():
    b = H()
    b.write("a", 100, at=(0, 5))
    b.write("b", 200, at=(10, 15))
    b.read("a", 100, at=(20, 22))
    b.h.fault(12, "partition", "n1 | n2 n3", ["n1"])
    again = History.from_jsonl(list(b.h.to_jsonl()))
    assert again == b.h
    assert kinds(check(again, RF3)) == kinds(check(b.h, RF3)) == ["stale-quorum-read"]


def test_coordinator_timestamps_unknown_to_the_client_are_learned_from_reads():
    b = H()
    b.write("a", None, at=(0, 5))
    b.write("b", None, at=(10, 15))
    b.read("b", 200, cl="ONE", at=(16, 17))
    b.read("a", 100, cl="ONE", at=(18, 19))
    b.read("a", 100, at=(20, 22))  # QUORUM after b's QUORUM ack, b is newer: stale
    assert kinds(check(b.h, RF3)) == ["stale-quorum-read"]


def test_percentile_by_nearest_rank():
    assert percentile([], 50) == 0
    assert percentile([5, 1, 3], 50) == 3
    assert percentile(range(1, 101), 99) == 99
