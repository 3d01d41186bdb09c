"""The parts of hinted handoff driven by hand: the hint record and its key order, the
scan/index cutting rules both drivers share, both engines' hint stores (and the memory
engine's model of what a power loss keeps), the replay throttle, the size option parser, and
the write coordinator's hinting decisions on a fake placement."""

from __future__ import annotations

import pytest

from agora.core.config import config_from_dict, parse_size_bytes
from agora.core.coordinator.write import TIMER as WRITE_TIMER
from agora.core.coordinator.write import WriteCoordinator
from agora.core.effects import HintIndex, HintScan, Reply, Send, SetTimer
from agora.core.errors import ConfigError, Unavailable, WriteFailure, WriteTimeout
from agora.core.hints import hint as records
from agora.core.hints.throttle import THROTTLE_BURST_MS, Throttle
from agora.core.messages import MutationRsp
from agora.core.types import Cell, ConsistencyLevel as CL, Partition, Row
from agora.storage.memory import MemoryEngine
from agora.storage.rocks import RocksEngine

TID = bytes(range(16))


def _part(key: bytes = b"k", value: bytes = b"v") -> Partition:
    p = Partition(TID, key)
    p.rows[b""] = Row((), Cell(10, b""), None, {("v", b""): Cell(10, value)})
    return p


# ---- records ---------------------------------------------------------------------------------


def test_a_hint_round_trips_and_keys_order_by_target_then_time_then_id():
    key, value = records.encode("127.0.0.3:7000", "host-3", 5_000, 7, 1, 864_000, (_part(),))
    hint = records.decode(key, value)
    assert (hint.target, hint.host_id, hint.creation_ms, hint.gc_grace_s) == ("127.0.0.3:7000", "host-3", 5_000, 864_000)
    assert hint.partitions == (_part(),) and hint.size == len(value)
    assert key.startswith(records.target_prefix("127.0.0.3:7000"))
    keys = [records.encode(t, None, ms, gen, seq, 1, (_part(),))[0]
            for t, ms, gen, seq in [("127.0.0.3:7000", 9, 1, 1), ("127.0.0.1:7000", 50, 1, 1),
                                    ("127.0.0.3:7000", 9, 1, 2), ("127.0.0.3:7000", 2, 9, 9)]]
    assert sorted(keys) == [keys[1], keys[3], keys[0], keys[2]]


def test_a_hint_is_live_until_its_gc_grace_has_passed():
    hint = records.decode(*records.encode("t", None, 1_000, 1, 1, 10, (_part(),)))
    assert hint.live_at(10_999) and not hint.live_at(11_000)


def test_scan_cuts_at_count_or_bytes_and_index_totals_per_target():
    items = [(b"a\x00%d" % i, b"x" * 10) for i in range(5)]
    assert HintScan(1, b"a\x00", None, 3, 1000).collect(items).hints == tuple(items[:3])
    done = HintScan(1, b"a\x00", None, 100, 25).collect(items)
    assert done.hints == tuple(items[:3]) and not done.exhausted  # the third crosses 25 bytes
    assert HintScan(1, b"a\x00", None, 100, 1000).collect(items).exhausted
    sizes = [(b"a\x00\x01", 3), (b"a\x00\x02", 4), (b"b\x00\x01", 5)]
    assert HintIndex(2).collect(sizes).targets == ((b"a", 2, 7), (b"b", 1, 5))


# ---- engines ---------------------------------------------------------------------------------


def test_engines_keep_hints_ordered_per_prefix_and_apart_from_data(engine):
    engine.put_hints([(b"b\x00\x02", b"22"), (b"a\x00\x01", b"1"), (b"b\x00\x01", b"11")])
    engine.put_hints([(b"b\x00\x03", b"333")], sync=True)
    assert list(engine.hints_after(b"b\x00", None)) == [(b"b\x00\x01", b"11"), (b"b\x00\x02", b"22"), (b"b\x00\x03", b"333")]
    assert list(engine.hints_after(b"b\x00", b"b\x00\x01")) == [(b"b\x00\x02", b"22"), (b"b\x00\x03", b"333")]
    assert list(engine.hints_after(b"b\x00", b"a\x00\x01")) == list(engine.hints_after(b"b\x00", None))
    engine.delete_hints([b"b\x00\x02", b"nope"])
    assert list(engine.hint_sizes()) == [(b"a\x00\x01", 1), (b"b\x00\x01", 2), (b"b\x00\x03", 3)]
    assert list(engine.scan(TID, 0, 0)) == []  # hints are not table data


def test_rocks_hints_survive_a_reopen(tmp_path):
    eng = RocksEngine(str(tmp_path / "db"))
    eng.put_hints([(b"a\x00\x01", b"1")])
    eng.close()
    eng = RocksEngine(str(tmp_path / "db"))
    assert list(eng.hint_sizes()) == [(b"a\x00\x01", 1)]
    eng.close()


def test_memory_engine_power_loss_keeps_only_synced_hint_puts_and_deletes():
    eng = MemoryEngine()
    eng.put_hints([(b"a\x00\x01", b"1"), (b"a\x00\x02", b"2")], sync=True)
    eng.put_hints([(b"a\x00\x03", b"3")])
    eng.delete_hints([b"a\x00\x01"])
    assert eng.unsynced_hints()
    eng.crash()
    assert [k for k, _ in eng.hint_sizes()] == [b"a\x00\x01", b"a\x00\x02"]
    eng.delete_hints([b"a\x00\x01"])
    eng.sync()
    eng.crash()
    assert [k for k, _ in eng.hint_sizes()] == [b"a\x00\x02"]


# ---- throttle, config ------------------------------------------------------------------------


def test_the_throttle_holds_its_rate_over_time():
    t = Throttle(10_000)  # bytes per second
    sent, now = 0, 0
    while now <= 10_000:
        if t.try_take(700, now):
            sent += 700
        else:
            now += t.wait_ms(now)
    assert sent <= 10_000 * 10 + 10_000 * THROTTLE_BURST_MS / 1000 + 700 * 2
    assert sent >= 10_000 * 10 * 0.95
    assert Throttle(0).try_take(10**9, 0) and Throttle(0).unlimited


@pytest.mark.parametrize("text,expected", [("1024KiB", 1 << 20), ("1MiB", 1 << 20), ("2GiB", 2 << 30),
                                           ("512B", 512), ("77", 77), (0, 0), (4096, 4096)])
def test_size_options_take_binary_units(text, expected):
    assert parse_size_bytes("x", text) == expected
    assert config_from_dict({"hinted_handoff_throttle": text}).hinted_handoff_throttle == expected


@pytest.mark.parametrize("bad", ["1KB", "1 mb", "-1", -5, True, 1.5, "KiB"])
def test_bad_sizes_name_the_option(bad):
    with pytest.raises(ConfigError, match="hinted_handoff_throttle"):
        config_from_dict({"hinted_handoff_throttle": bad})


# ---- the write coordinator's hinting ---------------------------------------------------------


class _Placement:
    local, local_dc = "n1", "dc1"

    def __init__(self, alive):
        self.alive = set(alive)
        self._req = 0

    def replicas_for(self, table_id, key):
        return ("n1", "n2", "n3"), None, 3

    def dc_of(self, node):
        return "dc1"

    def is_alive(self, node):
        return node in self.alive

    def next_req_id(self):
        self._req += 1
        return self._req

    def elapsed_ms(self, now_ms):
        return now_ms


class _Hints:
    def __init__(self, allowed=("n1", "n2", "n3")):
        self.allowed = set(allowed)
        self.stored: list = []

    def should_hint(self, target, now_ms):
        return target in self.allowed and target != "n1"

    def store(self, target, partitions, now_ms, on_stored=None):
        self.stored.append((target, now_ms, on_stored))
        return [("hint", target)]


def test_down_replicas_are_hinted_when_sent_and_silent_ones_at_the_timeout():
    hints = _Hints()
    wc = WriteCoordinator(_Placement({"n1", "n2"}), 2_000, hints)
    effects = wc.start(1, [_part()], CL.ONE, now_ms=5)
    assert [e.target for e in effects if isinstance(e, Send)] == ["n1", "n2"]
    assert ("hint", "n3") in effects and [t for t, _, _ in hints.stored] == ["n3"]
    req_id = effects[0].message.req_id
    assert wc.on_response("n1", MutationRsp(req_id)) == [Reply(1, None)]  # ONE met
    assert wc.in_flight == 1  # kept: n2 has not answered yet
    effects = wc.on_timeout(1, now_ms=2_005)
    assert effects == [("hint", "n2")]  # no second reply, a hint for the silent replica
    assert [(t, ms) for t, ms, _ in hints.stored] == [("n3", 5), ("n2", 2_005)]
    assert wc.in_flight == 0


def test_a_write_acked_by_every_sent_replica_is_forgotten_and_its_deadline_passes_quietly():
    hints = _Hints()
    wc = WriteCoordinator(_Placement({"n1", "n2", "n3"}), 2_000, hints)
    effects = wc.start(1, [_part()], CL.QUORUM)
    assert effects[-1] == SetTimer(WRITE_TIMER, 2_000)
    req_id = effects[0].message.req_id
    wc.on_response("n1", MutationRsp(req_id))
    assert wc.on_response("n2", MutationRsp(req_id)) == [Reply(1, None)]
    assert wc.on_response("n3", MutationRsp(req_id)) == []
    assert wc.in_flight == 0
    assert wc.on_timer(2_000) == [] and not hints.stored  # no reply, no hint, no timer left


def test_any_counts_a_stored_hint_and_is_never_unavailable():
    hints = _Hints()
    wc = WriteCoordinator(_Placement(set()), 2_000, hints)  # even the coordinator's own copy is off
    wc.placement.replicas_for = lambda t, k: (("n2", "n3"), None, 2)
    effects = wc.start(1, [_part()], CL.ANY)
    assert not [e for e in effects if isinstance(e, (Send, Reply))]
    assert isinstance(effects[-1], SetTimer)
    _, _, on_stored = hints.stored[0]
    assert on_stored()[0] == Reply(1, None)
    assert hints.stored[1][2]() == []  # the second hint finds the write answered


def test_replica_failures_answer_write_failure_once_the_level_cannot_be_met():
    hints = _Hints()
    wc = WriteCoordinator(_Placement({"n1", "n2", "n3"}), 2_000, hints)
    req_id = wc.start(1, [_part()], CL.QUORUM)[0].message.req_id
    assert wc.on_response("n1", MutationRsp(req_id, "storage error: disk full")) == []  # n2, n3 may still
    assert wc.on_response("n1", MutationRsp(req_id, "again")) == []  # one answer per replica
    (reply,) = wc.on_response("n3", MutationRsp(req_id, "unknown table id 00"))
    err = reply.result
    assert reply.client_id == 1 and isinstance(err, WriteFailure)
    assert (err.consistency, err.received, err.required, err.write_type) == (int(CL.QUORUM), 0, 2, "SIMPLE")
    assert err.failures == {"n1": 0, "n3": 3} and err.num_failures == 2  # 3: INCOMPATIBLE_SCHEMA
    assert wc.in_flight == 1  # n2 is still awaited, for its hint if it stays silent
    assert wc.on_response("n2", MutationRsp(req_id)) == []  # answered already
    assert wc.in_flight == 0 and wc.on_timer(2_000) == [] and not hints.stored  # failed: not hinted


def test_a_failure_the_level_can_spare_changes_nothing_and_is_not_hinted():
    hints = _Hints()
    wc = WriteCoordinator(_Placement({"n1", "n2", "n3"}), 2_000, hints)
    req_id = wc.start(1, [_part()], CL.QUORUM)[0].message.req_id
    assert wc.on_response("n2", MutationRsp(req_id, "storage error")) == []
    assert wc.on_response("n1", MutationRsp(req_id)) == []
    assert wc.on_response("n3", MutationRsp(req_id)) == [Reply(1, None)]
    assert wc.in_flight == 0 and wc.on_timer(2_000) == [] and not hints.stored
    # ALL spares none; a failure after the answer (ONE met) is only counted
    req_id = wc.start(2, [_part()], CL.ALL)[0].message.req_id
    assert isinstance(wc.on_response("n3", MutationRsp(req_id, "x"))[0].result, WriteFailure)
    req_id = wc.start(3, [_part()], CL.ONE)[0].message.req_id
    assert wc.on_response("n2", MutationRsp(req_id)) == [Reply(3, None)]
    assert wc.on_response("n3", MutationRsp(req_id, "x")) == []
    assert wc.on_timeout(3, 2_000) == []  # n1 is never hinted by these fakes; n3 failed
    assert wc.on_timeout(2, 2_000) == [("hint", "n2")]  # silent, unlike n3
    assert wc.in_flight == 0 and [t for t, _, _ in hints.stored] == ["n2"]
    # ANY fails once every replica did and no hint for a down one is on its way ...
    req_id = wc.start(4, [_part()], CL.ANY)[0].message.req_id
    assert wc.on_response("n1", MutationRsp(req_id, "x")) == []
    assert wc.on_response("n2", MutationRsp(req_id, "x")) == []
    (reply,) = wc.on_response("n3", MutationRsp(req_id, "x"))
    assert isinstance(reply.result, WriteFailure) and reply.result.num_failures == 3
    assert wc.in_flight == 0
    # ... but while one is, the stored hint meets it
    wc.placement.alive = {"n1", "n2"}
    effects = wc.start(5, [_part()], CL.ANY)
    req_id = effects[0].message.req_id
    assert wc.on_response("n1", MutationRsp(req_id, "x")) == []
    assert wc.on_response("n2", MutationRsp(req_id, "x")) == []
    _, _, on_stored = hints.stored[-1]  # n3's, down
    assert on_stored() == [Reply(5, None)] and wc.in_flight == 0


def test_a_timed_out_write_names_its_silent_replicas_in_the_log_at_most_once_a_second():
    wc = WriteCoordinator(_Placement({"n1", "n2"}), 2_000, _Hints(allowed=()))
    logs = []
    for client_id, now_ms in [(1, 0), (2, 10), (3, 500), (4, 1_200)]:
        req_id = wc.start(client_id, [_part()], CL.QUORUM, now_ms=now_ms)[0].message.req_id
        wc.on_response("n1", MutationRsp(req_id))
        reply, *log = wc.on_timeout(client_id, now_ms + 2_000)
        assert isinstance(reply.result, WriteTimeout) and reply.result.received == 1
        logs.append([e.text for e in log])
    silent = "write timed out at QUORUM (1 of 2 acknowledged): no answer from n2; not sent to n3 (held down)"
    assert logs == [[silent], [], [], [silent + "; 2 more timed out since the last such line"]]
    wc = WriteCoordinator(_Placement({"n1", "n2", "n3"}), 2_000, _Hints(allowed=()))
    req_id = wc.start(1, [_part()], CL.QUORUM)[0].message.req_id
    wc.on_response("n1", MutationRsp(req_id))
    assert wc.on_response("n2", MutationRsp(req_id, "storage error")) == []  # n3 may still
    _, log = wc.on_timeout(1, 2_000)
    assert log.text == "write timed out at QUORUM (1 of 2 acknowledged): no answer from n3; failed on n2"


def test_any_with_no_hint_possible_times_out_and_other_levels_are_unavailable():
    wc = WriteCoordinator(_Placement(set()), 2_000, _Hints(allowed=()))
    wc.placement.replicas_for = lambda t, k: (("n2", "n3"), None, 2)
    assert len(wc.start(1, [_part()], CL.ANY)) == 1  # only the timer
    reply, log = wc.on_timeout(1, 2_000)
    assert isinstance(reply.result, WriteTimeout) and (reply.result.received, reply.result.required) == (0, 1)
    assert log.text == "write timed out at ANY (0 of 1 acknowledged): no answer from none; not sent to n2, n3 (held down)"
    (reply,) = wc.start(2, [_part()], CL.ONE)
    assert isinstance(reply.result, Unavailable)
