"""The RocksDB engine's write shortcut agrees with the merge: any sequence of fragments
applied one batch at a time reads back as `reconcile.merge_many` of them. Rows-only
fragments with rising timestamps are generated often, so the shortcut (`_supersedes` in
agora.storage.rocks) is taken, and ties, deletions and collection tombstones make it step
aside; a test also checks that the shortcut is really taken. Batches over several fresh
tables check the engine's list of headed tables: a table is looked up without headers until
its first header, which must then count in the same batch and in every later one."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.core import reconcile
from agora.core.types import Cell, Deletion, Partition, RangeTombstone, ReadCommand, Row, Slice
from agora.storage import rocks
from agora.storage.rocks import RocksEngine

from .test_merge_laws import CKEYS, TABLE, bounds, cells, clustering_of, markers, partitions, rows

_keys = itertools.count()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = RocksEngine(str(tmp_path_factory.mktemp("rocks-merge") / "db"))
    yield e
    e.close()


@st.composite
def rows_only(draw):
    ckeys = draw(st.lists(st.sampled_from(CKEYS), min_size=1, max_size=3, unique=True))
    return Partition(TABLE, b"", rows={ck: draw(rows(clustering_of(ck))) for ck in ckeys})


@st.composite
def full_rows(draw):
    """What an INSERT of every column writes: a marker and all regular cells, one ckey."""
    ck = draw(st.sampled_from(CKEYS[:2]))
    marker = draw(markers)
    cells_ = {("a", b""): draw(cells()), ("b", b""): draw(cells())}
    return Partition(TABLE, b"", rows={ck: Row(clustering_of(ck), marker, None, cells_)})


def _later(p: Partition, key: bytes, by: int, table: bytes = TABLE) -> Partition:
    """p under `key` with every timestamp `by` later: a sequence of overwrites."""
    def cell(c):
        return None if c is None else Cell(c.ts + by, c.value, c.ttl_s, c.ldt_s)

    def deletion(d):
        return None if d is None else Deletion(d.ts + by, d.ldt_s)

    def row(r):
        return None if r is None else Row(r.clustering, cell(r.marker), deletion(r.deletion),
                                          {path: cell(c) for path, c in r.cells.items()})
    return Partition(table, key, deletion(p.deletion),
                     [RangeTombstone(rt.start, rt.end, deletion(rt.deletion)) for rt in p.range_tombstones],
                     row(p.static), {ck: row(r) for ck, r in p.rows.items()})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(full_rows(), full_rows(), rows_only(), partitions()), min_size=1, max_size=6),
       st.sampled_from([0, 2, 5]))
def test_applied_fragments_read_back_as_their_merge(engine, fragments, step):
    key = b"k%d" % next(_keys)
    fragments = [_later(p, key, i * step) for i, p in enumerate(fragments)]
    for i, p in enumerate(fragments, start=1):
        engine.apply([p])
        expected = reconcile.canonical(reconcile.merge_many(fragments[:i]))
        got = engine.read(ReadCommand(TABLE, key, None, None))
        if reconcile.is_empty(expected):
            assert got is None or reconcile.is_empty(got)
        else:
            assert got == expected


_tables = itertools.count(1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2),
                          st.one_of(full_rows(), rows_only(), rows_only(), partitions())),
                min_size=1, max_size=10),
       st.lists(st.integers(1, 4), min_size=10, max_size=10))
def test_batches_over_fresh_tables_read_back_as_their_merge(engine, items, cuts):
    """Fragments for 3 keys of 2 tables new to the engine, applied in batches of 1-4 (rows of
    one key per partition and more, headers first met mid-batch): after every batch each
    partition reads back as the merge of its fragments so far."""
    n = next(_tables)
    tables = [n.to_bytes(8, "big") * 2, (n + 10**6).to_bytes(8, "big") * 2]
    fragments = [_later(p, b"b%d" % k, i, tables[t]) for i, (t, k, p) in enumerate(items)]
    done = 0
    for cut in cuts:
        if done == len(fragments):
            break
        engine.apply(fragments[done:done + cut])
        done = min(done + cut, len(fragments))
        for table in tables:
            for k in range(3):
                key = b"b%d" % k
                mine = [p for p in fragments[:done] if p.table_id == table and p.key == key]
                got = engine.read(ReadCommand(table, key, None, None))
                expected = reconcile.canonical(reconcile.merge_many(mine)) if mine else None
                if expected is None or reconcile.is_empty(expected):
                    assert got is None or reconcile.is_empty(got)
                else:
                    assert got == expected


read_commands = st.builds(
    lambda slices, columns: (None if slices is None else tuple(slices),
                             None if columns is None else tuple(columns)),
    st.none() | st.lists(st.builds(Slice, bounds, bounds), min_size=1, max_size=3),
    st.none() | st.lists(st.sampled_from(["a", "b", "m"]), max_size=3, unique=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(full_rows(), rows_only(), partitions()), min_size=1, max_size=4),
       st.lists(read_commands, min_size=1, max_size=4))
def test_sliced_and_projected_reads_agree_with_the_merge(engine, fragments, commands):
    """Reads of slices and columns (the engine answers them without a canonical copy when
    the partition has no header) equal the slice of the canonical merge, rows in order."""
    key = b"s%d" % next(_keys)
    fragments = [_later(p, key, i * 5) for i, p in enumerate(fragments)]
    engine.apply(fragments)
    merged = reconcile.canonical(reconcile.merge_many(fragments))
    for slices, columns in commands:
        cmd = ReadCommand(TABLE, key, slices, columns)
        expected = reconcile.slice_partition(merged, cmd)
        got = engine.read(cmd)
        if reconcile.is_empty(expected):
            assert got is None or reconcile.is_empty(got)
        else:
            assert got == expected
            assert list(got.rows) == sorted(got.rows)


def test_a_newer_full_row_takes_the_shortcut(engine, monkeypatch):
    """Overwriting a row with newer cells is decided without building the stored row."""
    built = []
    real = rocks._row_from_bytes
    monkeypatch.setattr(rocks, "_row_from_bytes", lambda raw: built.append(raw) or real(raw))
    ckey = CKEYS[0]
    for ts in (10, 20, 30):
        engine.apply([Partition(TABLE, b"shortcut", rows={ckey: Row(clustering_of(ckey), Cell(ts, b""), None,
                                                                    {("a", b""): Cell(ts, b"v%d" % ts)})})])
    assert built == []
    engine.apply([Partition(TABLE, b"shortcut", rows={ckey: Row(clustering_of(ckey), None, None,
                                                                {("a", b""): Cell(30, b"tie")})})])
    assert len(built) == 1  # an equal timestamp takes the full merge
    got = engine.read(ReadCommand(TABLE, b"shortcut", None, None))
    assert got.rows[ckey].cells[("a", b"")].value == b"v30"  # v30 > tie: the greater value wins


def test_a_tie_under_a_newer_marker_takes_the_full_merge(engine):
    ckey = CKEYS[1]
    put = lambda marker_ts, cells_: engine.apply([Partition(TABLE, b"tie", rows={  # noqa: E731
        ckey: Row(clustering_of(ckey), Cell(marker_ts, b""), None, cells_)})])
    put(10, {("a", b""): Cell(10, b"y")})
    put(20, {("a", b""): Cell(10, b"x")})  # newer marker, equal cell timestamp, smaller value
    got = engine.read(ReadCommand(TABLE, b"tie", None, None))
    assert got.rows[ckey].cells[("a", b"")].value == b"y"
    assert got.rows[ckey].marker.ts == 20


def test_a_row_whose_collection_tombstone_shadows_its_own_elements(engine):
    ckey = CKEYS[2]
    engine.apply([Partition(TABLE, b"coll", rows={ckey: Row(clustering_of(ckey), Cell(5, b""), None, {
        ("m", b""): Cell(50, None, 0, 1), ("m", b"\x01"): Cell(40, b"old element")})})])
    got = engine.read(ReadCommand(TABLE, b"coll", None, None))
    assert ("m", b"\x01") not in got.rows[ckey].cells
