"""The parts of anti-entropy repair driven by hand: which ranges a request covers (scope),
a push in bounded chunks with acknowledgements (streaming), echo skipping that never skips
a version the peer lacks, and a tree built in chunks (validator)."""

from __future__ import annotations

import pytest

from agora.storage.completions import complete
from agora.core import reconcile
from agora.core.antientropy import streaming
from agora.core.antientropy.merkle import build_tree
from agora.core.antientropy.messages import (RepairStreamAck, RepairStreamData, RepairSyncReq,
                                             RepairSyncRsp, RepairTreeReq, RepairTreeRsp)
from agora.core.antientropy.scope import RepairRequest, parse_request, repair_ranges
from agora.core.antientropy.validator import Validator
from agora.core.effects import Send, SetTimer, StoragePut, StoragePutDone, StorageScan
from agora.core.errors import InvalidRequest
from agora.core.ring.partitioner import token_for_key
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Cell, Partition, ReadCommand, Row
from agora.storage.memory import MemoryEngine

TID = bytes(range(16))
A, B, C = "a:7000", "b:7000", "c:7000"
TOKENS = (-100, 0, 100)
OWNERS = (A, B, C)
TABLE_RF2 = ((A, B), (B, C), (C, A))  # position i: (tokens[i-1], tokens[i]] and its replicas


# ---- scope -------------------------------------------------------------------------------


def test_the_whole_ring_is_cut_at_every_token_and_at_the_wrap():
    got = [(r.start, r.end, r.replicas) for r in repair_ranges(TOKENS, TABLE_RF2, OWNERS, RepairRequest(), None)]
    assert got == [(MIN_TOKEN, -100, (A, B)), (-100, 0, (B, C)), (0, 100, (A, C)), (100, MAX_TOKEN, (A, B))]


def test_node_token_range_and_primary_scopes():
    def spans(req, node):
        return [(r.start, r.end) for r in repair_ranges(TOKENS, TABLE_RF2, OWNERS, req, node)]
    assert spans(RepairRequest(node=C), C) == [(-100, 0), (0, 100)]
    assert spans(RepairRequest(start_token=-50, end_token=50), None) == [(-50, 0), (0, 50)]
    assert spans(RepairRequest(start_token=50, end_token=-150), None) == [(50, 100), (100, MAX_TOKEN),
                                                                        (MIN_TOKEN, -150)]
    assert spans(RepairRequest(node=A, primary_only=True), A) == [(MIN_TOKEN, -100), (100, MAX_TOKEN)]
    single = ((A,), (B,), (C,))  # RF 1: nothing to compare
    assert repair_ranges(TOKENS, single, OWNERS, RepairRequest(), None) == []


@pytest.mark.parametrize("args", [{"table": "t"}, {"start_token": 1}, {"start_token": "x", "end_token": 2},
                                  {"start_token": 2**63, "end_token": 0}, {"keyspace": 5}, {"what": 1},
                                  {"node": "a", "primary_only": True, "start_token": 1, "end_token": 2}])
def test_bad_requests_are_invalid(args):
    with pytest.raises(InvalidRequest):
        parse_request(args)


# ---- streaming ---------------------------------------------------------------------------


def part(key: bytes, value: bytes, ts: int = 1) -> Partition:
    return Partition(TID, key, rows={b"": Row((), Cell(ts, b""), None, {("v", b""): Cell(ts, value)})})


class Ids:
    def __init__(self, start: int) -> None:
        self.n = start

    def __call__(self) -> int:
        self.n += 1
        return self.n


def engine_with(parts) -> MemoryEngine:
    e = MemoryEngine()
    e.apply(parts)
    return e


def run_push(engine, peer_receiver, rows_per_chunk, bytes_per_message, monkeypatch, truncated_at=None):
    """Drive one push by hand; returns (the StreamData messages, the SyncRsp)."""
    monkeypatch.setattr(streaming, "STREAM_CHUNK_ROWS", rows_per_chunk)
    monkeypatch.setattr(streaming, "STREAM_MESSAGE_MAX_BYTES", bytes_per_message)
    sender = streaming.StreamSender(lambda t: True, lambda n: True, Ids(0), Ids(1000), peer_receiver,
                                    truncated_at=lambda t: truncated_at)
    effects = sender.on_sync_req(C, RepairSyncReq(7, TID, B, ((MIN_TOKEN, MAX_TOKEN),)))
    sent, scans = [], 0
    while True:
        (eff,) = [e for e in effects if isinstance(e, (StorageScan, Send))][:1] or [None]
        if isinstance(eff, StorageScan):
            scans += 1
            effects = sender.on_scan_done(complete(engine, eff), 0)
            continue
        data = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, RepairStreamData)]
        if data:
            sent += data
            effects = [x for m in data for x in sender.on_ack(B, RepairStreamAck(m.req_id))]
            continue
        (rsp,) = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, RepairSyncRsp)]
        return sent, rsp, scans


def test_a_push_goes_in_row_chunks_and_size_bounded_messages(monkeypatch):
    parts = [part(f"k{i:02}".encode(), b"x" * 30) for i in range(50)]
    size = streaming.partition_bytes(parts[0])
    assert all(streaming.partition_bytes(p) == size for p in parts)
    sent, rsp, scans = run_push(engine_with(parts), lambda *a: False, 10, 3 * size, monkeypatch)
    assert scans == 5  # 50 one-row partitions, 10 rows a chunk (the last scan sees the end)
    assert [len(m.partitions) for m in sent] == [3, 3, 3, 1] * 5  # at most 3 a message
    assert sorted(p.key for m in sent for p in m.partitions) == sorted(p.key for p in parts)
    assert (rsp.req_id, rsp.partitions, rsp.rows, rsp.bytes, rsp.error) == (7, 50, 50, 50 * size, None)


def test_echoes_are_skipped_but_never_a_version_the_peer_lacks(monkeypatch):
    receiver = streaming.StreamReceiver(lambda t: True, Ids(0), False)
    from_peer = [part(b"same", b"v"), part(b"merged", b"v")]
    (put,) = receiver.on_data(B, RepairStreamData(1, TID, tuple(from_peer)), now_ms=1_000)
    assert isinstance(put, StoragePut)
    assert receiver.on_put_done(StoragePutDone(put.op_id)) == [Send(B, RepairStreamAck(1))]
    ours = engine_with(from_peer)
    ours.apply([part(b"merged", b"newer", ts=2), part(b"own", b"o")])
    sent, rsp, _ = run_push(ours, receiver.pushed_by, 100, 10**6, monkeypatch)
    assert sorted(p.key for m in sent for p in m.partitions) == [b"merged", b"own"]
    assert receiver.pushed_by(B, TID, from_peer[0], 1_000 + streaming.ECHO_MEMORY_MS - 1)
    assert not receiver.pushed_by(B, TID, from_peer[0], 1_000 + streaming.ECHO_MEMORY_MS)
    assert not receiver.pushed_by(C, TID, from_peer[0], 1_000)  # another peer pushed nothing


# ---- validator ----------------------------------------------------------------------------


def run_validation(engine, truncated_at=None) -> tuple[RepairTreeRsp, list]:
    """Drive one validation of the whole ring by hand: (its answer, each chunk's scan)."""
    val = Validator(lambda t: True, Ids(0), lambda t: truncated_at)
    effects = val.on_tree_req(A, RepairTreeReq(9, TID, MIN_TOKEN, MAX_TOKEN, 12))
    chunks = []
    while True:
        (eff,) = effects
        if isinstance(eff, StorageScan):
            chunks.append(complete(engine, eff))
            effects = val.on_scan_done(chunks[-1], 5_000)
        elif isinstance(eff, SetTimer):  # the pause between chunks
            effects = val.on_timer(eff.timer_id[2])
        else:
            return eff.message, chunks


def wide_partition(key: bytes = b"wide", deletion=None) -> Partition:
    """200 rows (every seventh deleted), a range tombstone over 16 of them, a static row."""
    from agora.core.types import Bound, Deletion, RangeTombstone
    rows = {i.to_bytes(2, "big"): Row((i.to_bytes(2, "big"),), Cell(5, b""), Deletion(7, 1) if i % 7 == 0 else None,
                                      {("v", b""): Cell(5, b"r" * 40)}) for i in range(200)}
    return Partition(TID, key, deletion, [RangeTombstone(Bound(b"\x00\x10", True), Bound(b"\x00\x20", False),
                                                         Deletion(6, 1))],
                     Row((), None, None, {("s", b""): Cell(3, b"st")}), rows)


def test_a_tree_is_built_in_chunks_and_matches_one_built_at_once(monkeypatch):
    from agora.core.antientropy import validator as v
    monkeypatch.setattr(v, "VALIDATION_CHUNK_ROWS", 3)
    parts = [part(f"k{i}".encode(), b"x") for i in range(20)]
    rsp, chunks = run_validation(engine_with(parts))
    assert isinstance(rsp, RepairTreeRsp) and rsp.partitions == 20 and len(chunks) == 7
    expected = build_tree(MIN_TOKEN, MAX_TOKEN, 12, sorted(
        (token_for_key(p.key), reconcile.digest(p)) for p in parts))
    assert rsp.leaves() == expected.leaves


@pytest.mark.parametrize("kind", ["memory", "rocks"])
def test_a_wide_partition_is_validated_in_pieces_to_the_same_tree(monkeypatch, tmp_path, kind):
    """A partition bigger than a validation chunk (with a static row, deleted rows and a
    range tombstone) is read in pieces and digested as they come: the tree is the one built
    from whole-partition digests, whatever the chunk bounds, and no chunk holds it whole."""
    from agora.core.antientropy import validator as v
    from agora.storage.rocks import RocksEngine
    parts = [wide_partition()] + [part(f"k{i}".encode(), b"x") for i in range(20)]
    expected = build_tree(MIN_TOKEN, MAX_TOKEN, 12, sorted(
        (token_for_key(p.key), reconcile.digest(reconcile.canonical(p))) for p in parts)).leaves
    for chunk_rows, chunk_bytes in ((7, 4 << 20), (1000, 900), (1000, 4 << 20)):
        monkeypatch.setattr(v, "VALIDATION_CHUNK_ROWS", chunk_rows)
        monkeypatch.setattr(v, "VALIDATION_CHUNK_BYTES", chunk_bytes)
        engine = MemoryEngine() if kind == "memory" else RocksEngine(str(tmp_path / f"db{chunk_rows}-{chunk_bytes}"))
        engine.apply(parts)
        rsp, chunks = run_validation(engine)
        biggest = max(len(p.rows) for done in chunks for _, p in done.partitions)
        engine.close()
        assert rsp.partitions == 21 and rsp.leaves() == expected, (chunk_rows, chunk_bytes)
        assert biggest < 200 or chunk_rows == 1000 and chunk_bytes > 900


@pytest.mark.parametrize("kind", ["memory", "rocks"])
def test_a_wide_partition_is_pushed_in_pieces_that_merge_back_into_it(monkeypatch, tmp_path, kind):
    """A partition bigger than a push chunk goes in pieces (each a fragment with the
    partition's deletion and range tombstones): no message holds it whole, the peer's merge
    of the pieces is the partition, and the push reports it as one partition."""
    from agora.core.types import Deletion
    from agora.storage.rocks import RocksEngine
    parts = [wide_partition(deletion=Deletion(2, 1))] + [part(f"k{i}".encode(), b"x") for i in range(10)]
    engine = MemoryEngine() if kind == "memory" else RocksEngine(str(tmp_path / "db"))
    engine.apply(parts)
    sent, rsp, scans = run_push(engine, lambda *a: False, 7, 10**6, monkeypatch)
    engine.close()
    pieces = [p for m in sent for p in m.partitions if p.key == b"wide"]
    assert len(pieces) >= 20 and max(len(p.rows) for p in pieces) <= 8
    peer = MemoryEngine()
    peer.apply([p for m in sent for p in m.partitions])
    for p in parts:
        assert peer.read(ReadCommand(TID, p.key)) == reconcile.canonical(p)
    assert (rsp.partitions, rsp.error) == (11, None)
    engine = MemoryEngine() if kind == "memory" else RocksEngine(str(tmp_path / "db2"))
    engine.apply(parts)
    _, whole, _ = run_push(engine, lambda *a: False, 10**6, 10**9, monkeypatch)
    engine.close()
    assert (rsp.partitions, rsp.rows) == (whole.partitions, whole.rows)  # pieces count as the whole


# ---- a truncated table ----------------------------------------------------------------------


def half_truncated_partition(key: bytes = b"half") -> Partition:
    """200 rows: the first 120 written at 5 (under a truncation at 6), the rest at 9; a
    static row at 3 and a partition deletion at 2, both truncated too."""
    from agora.core.types import Deletion
    rows = {i.to_bytes(2, "big"): Row((i.to_bytes(2, "big"),), Cell(5 if i < 120 else 9, b""), None,
                                      {("v", b""): Cell(5 if i < 120 else 9, b"r" * 40)}) for i in range(200)}
    return Partition(TID, key, Deletion(2, 1), [], Row((), None, None, {("s", b""): Cell(3, b"st")}), rows)


def truncated_parts() -> list[Partition]:
    """What a truncation at 6 covers all of (k0-k9), part of, and none of (n0-n4)."""
    return ([half_truncated_partition(), wide_partition()] + [part(f"k{i}".encode(), b"x", ts=4) for i in range(10)]
            + [part(f"n{i}".encode(), b"y", ts=8) for i in range(5)])


@pytest.mark.parametrize("kind", ["memory", "rocks"])
def test_a_truncated_table_is_validated_without_what_the_truncation_covers(monkeypatch, tmp_path, kind):
    """The tree of a table truncated at 6 is the tree of what is left after the truncation,
    however the partitions are cut into pieces (a partition whose first pieces are all
    truncated included), so a replica whose compaction has freed that data already and one
    that has not agree."""
    from agora.core.antientropy import validator as v
    from agora.storage.rocks import RocksEngine
    parts = truncated_parts()
    left = [q for p in parts if (q := reconcile.drop_truncated(reconcile.canonical(p), 6)) is not None]
    assert len(left) == 7 and len(left[0].rows) == 80  # "half" keeps its last 80 rows
    expected = build_tree(MIN_TOKEN, MAX_TOKEN, 12, sorted(
        (token_for_key(p.key), reconcile.digest(p)) for p in left)).leaves
    for chunk_rows, chunk_bytes in ((7, 4 << 20), (1000, 900), (1000, 4 << 20)):
        monkeypatch.setattr(v, "VALIDATION_CHUNK_ROWS", chunk_rows)
        monkeypatch.setattr(v, "VALIDATION_CHUNK_BYTES", chunk_bytes)
        for data, name in ((parts, "stored"), (left, "compacted")):
            engine = MemoryEngine() if kind == "memory" else RocksEngine(str(tmp_path / f"db{chunk_rows}-{chunk_bytes}{name}"))
            engine.apply(data)
            rsp, _ = run_validation(engine, truncated_at=6)
            engine.close()
            assert rsp.partitions == 7 and rsp.leaves() == expected, (chunk_rows, chunk_bytes, name)


@pytest.mark.parametrize("kind", ["memory", "rocks"])
def test_a_truncated_table_is_pushed_without_what_the_truncation_covers(monkeypatch, tmp_path, kind):
    from agora.storage.rocks import RocksEngine
    parts = truncated_parts()
    engine = MemoryEngine() if kind == "memory" else RocksEngine(str(tmp_path / "db"))
    engine.apply(parts)
    sent, rsp, _ = run_push(engine, lambda *a: False, 7, 10**6, monkeypatch, truncated_at=6)
    engine.close()
    peer = MemoryEngine()
    peer.apply([p for m in sent for p in m.partitions])
    for p in parts:
        assert peer.read(ReadCommand(TID, p.key)) == reconcile.drop_truncated(reconcile.canonical(p), 6), p.key
    assert all(c.ts > 6 for m in sent for p in m.partitions for r in p.rows.values() for c in r.cells.values())
