"""Split range scans on both engines: `StorageEngine.scan_pieces` and `StorageScan.collect`
with `split` cut a partition bigger than the scan's bounds after a row, resume after it,
and -- chained the way the replica and the range coordinator chain them -- give back every
partition of the range exactly once, each whole, in ring order; a partition sharing its
token with another is never cut."""

from __future__ import annotations

import random

import pytest

from agora.core import reconcile
from agora.core.effects import StorageScan
from agora.core.ring.partitioner import token_for_key
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Bound, Cell, Deletion, Partition, RangeTombstone, Row
from agora.storage.completions import complete
from agora.storage.rocks import RocksEngine

TID = b"t" * 16


def _partition(key: bytes, rows: int, static: bool = False, value_bytes: int = 4) -> Partition:
    return Partition(
        TID, key, Deletion(1, 1),
        [RangeTombstone(Bound(b"\x00", True), Bound(b"\x00\x05", True), Deletion(2, 2))],
        Row((), None, None, {("s", b""): Cell(5, b"static")}) if static else None,
        {i.to_bytes(4, "big"): Row((i.to_bytes(4, "big"),), Cell(10, b""), None,
                                   {("v", b""): Cell(10, bytes([i % 256]) * value_bytes)})
         for i in range(rows)})


def _chain(engine, start_token: int, end_token: int, max_rows: int, max_bytes: int = 0):
    """Scan the range answer after answer, resuming where each stopped (inside a partition
    when it was cut); every answer's partitions, joined per key, and the answers."""
    joined: dict[bytes, Partition] = {}
    order: list[bytes] = []
    answers = []
    key = ckey = None
    token = start_token
    while True:
        done = complete(engine, StorageScan(1, TID, token, key, end_token, max_rows, max_bytes, True, ckey))
        answers.append(done)
        for _, part in done.partitions:
            if part.key in joined:
                assert part.key == order[-1], "a continued partition comes first, right after its start"
                before = joined[part.key].rows
                assert not before or not part.rows or min(part.rows) > max(before), "rows once, in order"
                joined[part.key] = reconcile.merge_partitions(joined[part.key], part)
            else:
                order.append(part.key)
                joined[part.key] = part
        if done.exhausted:
            return [joined[k] for k in order], answers
        assert done.partitions, "every answer makes progress"
        token, last = done.partitions[-1]
        key, ckey = last.key, done.cut_ckey


@pytest.mark.parametrize("seed", range(4))
def test_chained_split_scans_return_every_partition_whole_once_in_ring_order(engine, seed):
    rng = random.Random(seed)
    parts = [_partition(f"k{i}".encode(), rng.choice([0, 1, 3, 40, 250]), static=rng.random() < 0.5)
             for i in range(40)]
    engine.apply(parts)
    expected = sorted((reconcile.canonical(p) for p in parts), key=lambda p: (token_for_key(p.key), p.key))
    for max_rows in (7, 100, 1_000):
        got, answers = _chain(engine, MIN_TOKEN, MAX_TOKEN, max_rows)
        assert got == expected
        for done in answers:  # bounded: one piece beyond the budget at most
            assert sum(len(p.rows) for _, p in done.partitions) <= 2 * max_rows + 1
        assert any(a.cut_ckey is not None for a in answers) == (max_rows < 250)


def test_a_byte_bound_cuts_big_rows_and_a_wrapping_range_resumes_inside_a_partition(engine):
    wide = _partition(b"wide", 30, static=True, value_bytes=10_000)
    others = [_partition(f"o{i}".encode(), 2) for i in range(10)]
    engine.apply([wide, *others])
    tokens = sorted(token_for_key(p.key) for p in [wide, *others])
    start = tokens[5]  # a range that wraps the ring
    got, answers = _chain(engine, start, start, 1_000, max_bytes=50_000)
    assert sorted(p.key for p in got) == sorted(p.key for p in [wide, *others])
    assert next(p for p in got if p.key == b"wide") == reconcile.canonical(wide)
    cuts = [a.cut_ckey for a in answers if a.cut_ckey is not None]
    assert len(cuts) >= 5 and cuts == sorted(cuts)
    for done in answers:
        stored = sum(len(r.cells[("v", b"")].value) for _, p in done.partitions for r in p.rows.values())
        assert stored <= 50_000 + 10_000


def test_a_partition_sharing_its_token_is_never_cut():
    """Murmur3 collisions cannot be made on purpose: the pieces say it (alone=False)."""
    def pieces(alone):
        first = Partition(TID, b"a", rows={bytes([i]): Row((bytes([i]),), Cell(1, b"")) for i in range(3)})
        rest = Partition(TID, b"a", rows={bytes([i]): Row((bytes([i]),), Cell(1, b"")) for i in range(3, 6)})
        return iter([(5, first, False, alone, 0, bytes([2])), (5, rest, True, alone, 0, bytes([5])),
                     (5, Partition(TID, b"b", rows={b"": Row((), Cell(1, b""))}), True, alone, 0, b"")])
    scan = StorageScan(1, TID, 0, None, 9, 2, 0, True)
    cut = scan.collect(pieces(True))
    assert (cut.cut_ckey, [len(p.rows) for _, p in cut.partitions], cut.exhausted) == (bytes([2]), [3], False)
    whole = scan.collect(pieces(False))
    assert whole.cut_ckey is None and [len(p.rows) for _, p in whole.partitions] == [6, 1]
    assert not StorageScan(1, TID, 0, None, 9, 2).collect(pieces(True)).cut_ckey  # split off: whole


def test_resuming_inside_a_partition_reads_its_header_again_and_only_later_rows(engine):
    engine.apply([_partition(b"p", 20, static=True), _partition(b"q", 1)])
    token = token_for_key(b"p")
    done = complete(engine, StorageScan(1, TID, token, b"p", token, 1_000, 0, True, (9).to_bytes(4, "big")))
    [(_, part)] = done.partitions
    assert sorted(part.rows) == [i.to_bytes(4, "big") for i in range(10, 20)]
    assert part.static is not None and part.deletion == Deletion(1, 1) and part.range_tombstones


def test_rocks_steps_over_the_partition_a_scan_starts_after_without_reading_it(tmp_path, monkeypatch):
    """The scan after partition P (the pager's next page, the next chunk of a repair or GC
    pass) seeks past P's rows instead of decoding them all to skip them."""
    from agora.storage import rocks
    engine = RocksEngine(str(tmp_path / "db"))
    try:
        others = [_partition(f"o{i}".encode(), 2) for i in range(20)]
        engine.apply([_partition(b"wide", 500), *others])
        decoded = []
        real = rocks._row_from_bytes
        monkeypatch.setattr(rocks, "_row_from_bytes", lambda raw: decoded.append(1) or real(raw))
        token = token_for_key(b"wide")
        done = complete(engine, StorageScan(1, TID, token, b"wide", MAX_TOKEN, 10_000))
        assert b"wide" not in [p.key for _, p in done.partitions]
        assert len(decoded) == sum(len(p.rows) for _, p in done.partitions) < 500
    finally:
        engine.close()


def test_rocks_cuts_a_partition_whose_rows_a_deletion_shadows(tmp_path, monkeypatch):
    """Rows a partition deletion shadows leave nothing in a piece but the deletion: the scan
    still stops at its bounds (after the last row it read) rather than read the whole dead
    partition in one go, and chained scans give the partition once, as its deletion."""
    from agora.storage import rocks
    engine = RocksEngine(str(tmp_path / "db"))
    try:
        dead = _partition(b"dead", 3_000, value_bytes=100)
        engine.apply([dead, *[_partition(f"o{i}".encode(), 2) for i in range(5)]])
        engine.apply([Partition(TID, b"dead", Deletion(50, 1))])
        decoded = []
        real = rocks._row_from_bytes
        monkeypatch.setattr(rocks, "_row_from_bytes", lambda raw: decoded.append(1) or real(raw))
        got, answers = _chain(engine, MIN_TOKEN, MAX_TOKEN, 1_000, max_bytes=50_000)
        assert [p for p in got if p.key == b"dead"] == [Partition(TID, b"dead", Deletion(50, 1))]
        assert len(answers) >= 3_000 * 100 // 50_000 and any(a.cut_ckey is not None for a in answers)
        assert len(decoded) <= 3_000 * 1.2  # each dead row read about once, not once per answer
    finally:
        engine.close()



@pytest.mark.parametrize("seed", range(6))
def test_a_scan_given_the_truncation_answers_as_one_that_is_not(engine, seed):
    """A scan told the table's truncation (range reads, validation, streaming) may leave the
    rows it covers entirely empty instead of decoding them: what the reader keeps after
    `drop_truncated` is the same, cut at the same places, and on RocksDB those rows are
    indeed not built."""
    rnd = random.Random(seed)
    truncated_at = 100
    stamp = lambda: rnd.choice((50, 99, 100, 101, 150))  # noqa: E731 - at, before and after it
    parts = []
    for k in range(40):
        rows = {}
        for i in range(rnd.randint(0, 6)):
            ckey = i.to_bytes(2, "big")
            marker = Cell(stamp(), b"") if rnd.random() < 0.6 else None
            deletion = Deletion(stamp(), 1) if rnd.random() < 0.1 else None
            cells = {(name, b""): Cell(stamp(), b"v" * rnd.randint(1, 30))
                     for name in ("a", "b") if rnd.random() < 0.7}
            if marker or deletion or cells:
                rows[ckey] = Row((ckey,), marker, deletion, cells)
        static = Row((), None, None, {("s", b""): Cell(stamp(), b"st")}) if rnd.random() < 0.2 else None
        deletion = Deletion(stamp(), 1) if rnd.random() < 0.1 else None
        rts = [RangeTombstone(Bound(b"\x00\x01", True), Bound(b"\x00\x03", True), Deletion(stamp(), 1))] \
            if rnd.random() < 0.2 else []
        if rows or static or deletion or rts:
            parts.append(Partition(TID, f"k{k}".encode(), deletion, rts, static, rows))
    # rows first, tombstones later: stored rows a later tombstone shadows stay on disk until
    # rewritten, and a scan's pieces drop them (the stand-ins must go with them)
    engine.apply([Partition(TID, p.key, rows=p.rows) for p in parts if p.rows])
    engine.apply([Partition(TID, p.key, p.deletion, p.range_tombstones, p.static) for p in parts])
    stored_rows = sum(len(p.rows) for p in parts)
    stand_ins = 0
    for max_rows, max_bytes in ((1, 0), (3, 0), (1000, 0), (5, 200)):
        token, key, ckey = MIN_TOKEN, None, None
        while True:
            plain = complete(engine, StorageScan(1, TID, token, key, MAX_TOKEN, max_rows, max_bytes, True, ckey))
            told = complete(engine, StorageScan(1, TID, token, key, MAX_TOKEN, max_rows, max_bytes, True, ckey,
                                                truncated_at))
            assert (told.exhausted, told.cut_ckey) == (plain.exhausted, plain.cut_ckey)
            assert [(t, p.key, sorted(p.rows)) for t, p in told.partitions] == \
                [(t, p.key, sorted(p.rows)) for t, p in plain.partitions]
            for (_, a), (_, b) in zip(told.partitions, plain.partitions):
                assert reconcile.drop_truncated(a, truncated_at) == reconcile.drop_truncated(b, truncated_at)
                stand_ins += sum(1 for ck, r in a.rows.items() if r != b.rows[ck])
            if told.exhausted:
                break
            token, last = told.partitions[-1]
            key, ckey = last.key, told.cut_ckey
    if isinstance(engine, RocksEngine):  # the rows the truncation covers were not decoded
        assert stand_ins > stored_rows // 10
    else:  # the in-memory engine has nothing to save: it returns the rows as stored
        assert stand_ins == 0


def test_rocks_pieces_without_a_header_come_as_read(tmp_path, monkeypatch):
    """Without a partition deletion, range tombstone or static row nothing shadows a stored
    row, and each is canonical as stored: such pieces are not rebuilt in canonical form."""
    from agora.storage import rocks
    engine = RocksEngine(str(tmp_path / "db"))
    plain = Partition(TID, b"plain", rows=_partition(b"x", 3).rows)
    engine.apply([plain, _partition(b"headed", 3)])
    rebuilt = []
    real = rocks.reconcile.canonical
    monkeypatch.setattr(rocks.reconcile, "canonical", lambda p: rebuilt.append(p.key) or real(p))
    pieces = {piece.key: piece for _, piece, *_ in engine.scan_pieces(TID, MIN_TOKEN, MAX_TOKEN)}
    assert rebuilt == [b"headed"]
    assert pieces[b"plain"] == plain and pieces[b"headed"] == real(_partition(b"headed", 3))
