"""The storage engines: one behavioural suite run against both the memory and the RocksDB
engine, plus what is particular to each (the memory engine's crash model, the RocksDB
engine's reopen and its survival of SIGKILL)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agora.core import reconcile
from agora.core.ring.partitioner import token_for_key
from agora.core.types import (
    MAX_TOKEN,
    MIN_TOKEN,
    Bound,
    Cell,
    Deletion,
    Partition,
    RangeTombstone,
    ReadCommand,
    Row,
    Slice,
)
from agora.storage.memory import MemoryEngine
from agora.storage.rocks import RocksEngine

TA = b"\xaa" * 16
TB = b"\xbb" * 16
SUBPROCESS_DEADLINE_S = 30.0  # generous: a loaded CI machine may start Python slowly


def row(ckey: bytes, marker=None, deletion=None, **cells) -> Row:
    return Row((ckey,), marker, deletion, {(n, b""): c for n, c in cells.items()})


def write(engine, key: bytes, table: bytes = TA, sync: bool = False, **kw) -> None:
    engine.apply([Partition(table, key, **kw)], sync=sync)


def read(engine, key: bytes, table: bytes = TA, slices=None, columns=None):
    return engine.read(ReadCommand(table, key, slices, columns))


# ---- the shared suite ---------------------------------------------------------------------


def test_write_merge_read(engine):
    assert read(engine, b"k") is None
    write(engine, b"k", rows={b"a": row(b"a", Cell(1, b""), v=Cell(1, b"one"))})
    write(engine, b"k", rows={b"a": row(b"a", v=Cell(2, b"two"), w=Cell(1, b"w")),
                              b"b": row(b"b", v=Cell(1, b"b"))})
    write(engine, b"k", rows={b"a": row(b"a", v=Cell(1, b"stale"))})
    got = read(engine, b"k")
    assert got.rows[b"a"] == row(b"a", Cell(1, b""), v=Cell(2, b"two"), w=Cell(1, b"w"))
    assert list(got.rows) == [b"a", b"b"]
    assert read(engine, b"other") is None


def test_one_batch_may_carry_many_partitions_and_fragments(engine):
    engine.apply([
        Partition(TA, b"k1", rows={b"a": row(b"a", v=Cell(1, b"x"))}),
        Partition(TA, b"k2", static=Row((), None, None, {("s", b""): Cell(1, b"s")})),
        Partition(TA, b"k1", rows={b"a": row(b"a", v=Cell(2, b"y"))}),
        Partition(TB, b"k1", deletion=Deletion(5, 50)),
    ])
    assert read(engine, b"k1").rows[b"a"].cells[("v", b"")] == Cell(2, b"y")
    assert read(engine, b"k2").static.cells[("s", b"")] == Cell(1, b"s")
    assert read(engine, b"k1", TB) == Partition(TB, b"k1", deletion=Deletion(5, 50))


def test_tombstones_of_every_kind_are_stored_and_shadow(engine):
    write(engine, b"k", static=Row((), None, None, {("s", b""): Cell(1, b"s")}),
          rows={ck: row(ck, Cell(1, b""), v=Cell(1, b"x"), w=Cell(1, b"y"))
                for ck in (b"a", b"b", b"c", b"d")})
    write(engine, b"k", rows={b"a": row(b"a", v=Cell(2, None, 0, 10))})  # cell tombstone
    write(engine, b"k", rows={b"b": row(b"b", deletion=Deletion(2, 10))})  # row tombstone
    rt = RangeTombstone(Bound(b"c"), Bound(b"c"), Deletion(2, 10))
    write(engine, b"k", range_tombstones=[rt])
    got = read(engine, b"k")
    assert got.rows[b"a"].cells[("v", b"")] == Cell(2, None, 0, 10)
    assert got.rows[b"b"] == row(b"b", deletion=Deletion(2, 10))
    assert b"c" not in got.rows and got.range_tombstones == [rt]
    assert got.rows[b"d"].cells[("v", b"")] == Cell(1, b"x")
    write(engine, b"k", deletion=Deletion(3, 10))  # partition tombstone
    assert read(engine, b"k") == Partition(TA, b"k", deletion=Deletion(3, 10))
    # Writes newer than the deletion show again; older ones stay shadowed.
    write(engine, b"k", rows={b"e": row(b"e", v=Cell(4, b"new")),
                              b"f": row(b"f", v=Cell(3, b"old"))})
    assert list(read(engine, b"k").rows) == [b"e"]


def test_slices_and_columns(engine):
    rows = {ck: row(ck, Cell(1, b""), v=Cell(1, ck), w=Cell(1, b"w"))
            for ck in (b"a", b"ab", b"b", b"ba", b"c")}
    write(engine, b"k", rows=rows, static=Row((), None, None, {("s", b""): Cell(1, b"s")}))

    def ckeys(*slices, columns=None):
        got = read(engine, b"k", slices=tuple(slices), columns=columns)
        return [] if got is None else list(got.rows)

    assert ckeys(Slice(Bound(b"a", False), Bound(b"b", True))) == [b"b", b"ba"]
    assert ckeys(Slice(Bound(b"a"), Bound(b"b", False))) == [b"a", b"ab"]
    assert ckeys(Slice(Bound(b"b"), Bound(b"")), Slice(Bound(b""), Bound(b"a"))) \
        == [b"a", b"ab", b"b", b"ba", b"c"]
    assert ckeys(Slice(Bound(b"bz"), Bound(b"bzz"))) == []
    got = read(engine, b"k", slices=(Slice(Bound(b"c"), Bound(b"c")),), columns=("v", "s"))
    assert got.rows[b"c"] == row(b"c", Cell(1, b""), v=Cell(1, b"c"))
    assert got.static.cells == {("s", b""): Cell(1, b"s")}


def test_returned_partitions_are_copies(engine):
    mine = Partition(TA, b"k", rows={b"a": row(b"a", v=Cell(1, b"x"))})
    engine.apply([mine])
    mine.rows[b"a"].cells.clear()
    got = read(engine, b"k")
    got.rows[b"a"].cells.clear()
    assert read(engine, b"k").rows[b"a"].cells == {("v", b""): Cell(1, b"x")}


def _fill(engine, count: int, table: bytes = TA) -> list[tuple[int, bytes]]:
    keys = [b"key%d" % i for i in range(count)]
    engine.apply([Partition(table, k, static=Row((), None, None, {("s", b""): Cell(1, k)}),
                            rows={b"r": row(b"r", v=Cell(1, k))}) for k in keys])
    return sorted((token_for_key(k), k) for k in keys)


def test_scan_in_token_order_with_whole_partitions(engine):
    expected = _fill(engine, 40)
    _fill(engine, 5, TB)
    got = list(engine.scan(TA, MIN_TOKEN, MAX_TOKEN))
    assert [(t, p.key) for t, p in got] == expected
    for token, p in got:
        assert p.rows[b"r"].cells[("v", b"")] == Cell(1, p.key)
        assert p.static.cells[("s", b"")] == Cell(1, p.key)


def test_scan_ranges_and_wrap_around(engine):
    expected = _fill(engine, 40)
    tokens = [t for t, _ in expected]
    lo, hi = tokens[10], tokens[30]
    assert [t for t, _ in engine.scan(TA, lo, hi)] == tokens[11:31]  # (lo, hi]
    # start >= end wraps: (hi, MAX] then (MIN, lo].
    assert [t for t, _ in engine.scan(TA, hi, lo)] == tokens[31:] + tokens[:11]
    assert [t for t, _ in engine.scan(TA, lo, lo)] == tokens[11:] + tokens[:11]
    assert list(engine.scan(TA, tokens[-1], MAX_TOKEN)) == []
    assert list(engine.scan(b"\xcc" * 16, MIN_TOKEN, MAX_TOKEN)) == []


def test_meta(engine):
    assert engine.get_meta("schema/t") is None
    engine.put_meta("schema/t", b"1")
    engine.put_meta("schema/a", b"2")
    engine.put_meta("tokens", b"3")
    engine.put_meta("schema/t", b"4")
    assert engine.get_meta("schema/t") == b"4"
    assert engine.meta_items("schema/") == [("schema/a", b"2"), ("schema/t", b"4")]
    assert len(engine.meta_items("")) == 3


def test_unsynced_meta_is_read_back_and_survives_what_the_engine_promises(engine, tmp_path):
    engine.put_meta("last_alive_s", b"10", sync=False)
    engine.put_meta("schema/t", b"1")
    assert engine.get_meta("last_alive_s") == b"10"
    assert engine.meta_items("") == [("last_alive_s", b"10"), ("schema/t", b"1")]
    engine.put_meta("last_alive_s", b"20", sync=False)
    assert engine.get_meta("last_alive_s") == b"20"


def test_memory_engine_loses_unsynced_meta_on_a_power_loss_only():
    engine = MemoryEngine()
    engine.put_meta("last_alive_s", b"10", sync=False)
    engine.sync()
    engine.put_meta("last_alive_s", b"20", sync=False)
    engine.crash()  # power loss: the record written since the last sync is gone
    assert engine.get_meta("last_alive_s") == b"10"
    engine.put_meta("last_alive_s", b"30", sync=False)
    engine.put_meta("schema/t", b"1")  # a synced put makes everything before it durable
    engine.crash()
    assert engine.get_meta("last_alive_s") == b"30" and engine.get_meta("schema/t") == b"1"


def test_rocks_unsynced_meta_survives_a_reopen(tmp_path):
    engine = RocksEngine(str(tmp_path / "db"))
    engine.put_meta("last_alive_s", b"10", sync=False)
    engine.close()
    engine = RocksEngine(str(tmp_path / "db"))
    try:
        assert engine.get_meta("last_alive_s") == b"10"
    finally:
        engine.close()


def test_drop_table(engine):
    _fill(engine, 10)
    kept = _fill(engine, 10, TB)
    engine.drop_table(TA)
    assert list(engine.scan(TA, MIN_TOKEN, MAX_TOKEN)) == []
    assert read(engine, b"key1") is None
    assert [(t, p.key) for t, p in engine.scan(TB, MIN_TOKEN, MAX_TOKEN)] == kept


def test_drop_table_with_all_ones_id(engine):
    ones = b"\xff" * 16
    _fill(engine, 3, ones)
    engine.drop_table(ones)
    assert list(engine.scan(ones, MIN_TOKEN, MAX_TOKEN)) == []


def test_load_bytes_and_sync(engine):
    _fill(engine, 20)
    engine.flush_wal()
    engine.sync()
    assert engine.load_bytes() > 0


# ---- memory engine: crash model -----------------------------------------------------------


def test_memory_crash_drops_only_unsynced_writes():
    e = MemoryEngine()
    write(e, b"synced", sync=True, rows={b"a": row(b"a", v=Cell(1, b"x"))})
    write(e, b"later-synced", rows={b"a": row(b"a", v=Cell(1, b"x"))})
    e.sync()
    write(e, b"synced", rows={b"a": row(b"a", v=Cell(2, b"unsynced update"))})
    write(e, b"synced-by-meta", rows={b"a": row(b"a", v=Cell(1, b"x"))})
    e.put_meta("m", b"v")  # metadata is synced, and so syncs what came before it
    write(e, b"lost2", rows={b"a": row(b"a", v=Cell(1, b"x"))})
    assert e.unsynced_count() == 1
    e.crash()
    assert read(e, b"synced").rows[b"a"].cells[("v", b"")] == Cell(2, b"unsynced update")
    assert read(e, b"later-synced") is not None and read(e, b"synced-by-meta") is not None
    assert read(e, b"lost2") is None
    assert e.get_meta("m") == b"v"

    write(e, b"gone", rows={b"a": row(b"a", v=Cell(1, b"x"))})
    write(e, b"synced", rows={b"a": row(b"a", v=Cell(3, b"gone too"))})
    e.crash()
    assert read(e, b"gone") is None
    assert read(e, b"synced").rows[b"a"].cells[("v", b"")] == Cell(2, b"unsynced update")


# ---- RocksDB engine: persistence ----------------------------------------------------------


def test_rocks_reopen_keeps_data_and_meta(tmp_path):
    path = str(tmp_path / "db")
    e = RocksEngine(path)
    expected = _fill(e, 10)
    e.put_meta("m", b"v")
    e.close()
    e = RocksEngine(path)
    assert [(t, p.key) for t, p in e.scan(TA, MIN_TOKEN, MAX_TOKEN)] == expected
    assert e.get_meta("m") == b"v"
    e.close()


def test_rocks_shadowed_rows_on_disk_are_dropped_on_read(tmp_path):
    e = RocksEngine(str(tmp_path / "db"))
    write(e, b"k", rows={b"a": row(b"a", v=Cell(1, b"x")), b"b": row(b"b", v=Cell(5, b"y"))})
    write(e, b"k", deletion=Deletion(2, 0))  # does not rewrite the stored rows
    assert list(read(e, b"k").rows) == [b"b"]
    assert [list(p.rows) for _, p in e.scan(TA, MIN_TOKEN, MAX_TOKEN)] == [[b"b"]]
    e.close()


def _cells(e, key: bytes, table: bytes = TA) -> dict[bytes, set[str]]:
    return {ckey: {name for name, _ in r.cells} for ckey, r in read(e, key, table).rows.items()}


def test_rocks_batch_of_uneven_partitions_in_a_table_without_headers(tmp_path):
    """Rows of 1, 1 and 2 per partition in one batch, none with a header: each row merges
    with its own stored row (the lookup skips the headers, not the rows after them)."""
    e = RocksEngine(str(tmp_path / "db"))
    write(e, b"k1", rows={b"r": row(b"r", a=Cell(1, b"1"))})
    write(e, b"k2", rows={b"r": row(b"r", b=Cell(1, b"1"))})
    write(e, b"k3", rows={b"r": row(b"r", c=Cell(1, b"1")), b"s": row(b"s", d=Cell(1, b"1"))})
    e.apply([Partition(TA, b"k1", rows={b"r": row(b"r", x=Cell(2, b"2"))}),
             Partition(TA, b"k2", rows={b"r": row(b"r", y=Cell(2, b"2"))}),
             Partition(TA, b"k3", rows={b"r": row(b"r", z=Cell(2, b"2")), b"s": row(b"s", w=Cell(2, b"2"))})])
    assert _cells(e, b"k1") == {b"r": {"a", "x"}}
    assert _cells(e, b"k2") == {b"r": {"b", "y"}}
    assert _cells(e, b"k3") == {b"r": {"c", "z"}, b"s": {"d", "w"}}
    assert not e._may_have_headers(TA)  # rows only: the headers were never looked up
    e.close()


def test_rocks_headers_count_after_reopen(tmp_path):
    """A table's first header lists it as headed, on disk with the header: after a reopen,
    reads and writes still find its partition deletion (a static row written then must not
    replace the stored header), and a table of rows only is still read without headers."""
    path = str(tmp_path / "db")
    e = RocksEngine(path)
    write(e, b"k", rows={b"old": row(b"old", v=Cell(1, b"x"))})
    write(e, b"k", table=TB, rows={b"r": row(b"r", v=Cell(1, b"x"))})
    assert not e._may_have_headers(TA)
    write(e, b"k", deletion=Deletion(2, 0))
    assert e._may_have_headers(TA) and not e._may_have_headers(TB)
    e.close()
    e = RocksEngine(path)
    assert e._may_have_headers(TA) and not e._may_have_headers(TB)
    got = read(e, b"k")
    assert got.deletion == Deletion(2, 0) and not got.rows
    write(e, b"k", static=Row((), None, None, {("s", b""): Cell(3, b"s")}),
          rows={b"new": row(b"new", v=Cell(3, b"y"))})
    assert list(read(e, b"k").rows) == [b"new"]
    assert list(read(e, b"k", slices=(Slice(Bound(b"a"), Bound(b"z")),)).rows) == [b"new"]
    assert read(e, b"k", table=TB) is not None
    e.drop_table(TA)
    assert not e._may_have_headers(TA)
    e.close()
    assert not RocksEngine(path)._may_have_headers(TA)


def test_rocks_data_stored_before_headed_tables_were_listed(tmp_path):
    """A database with data but without the list's marker (written before the list
    existed) counts every table as headed, even across reopens; an empty one starts a list."""
    from agora.storage.rocks import _HEADED, _HEADERS_KNOWN
    path = str(tmp_path / "db")
    e = RocksEngine(path)
    assert not e._may_have_headers(TA)
    write(e, b"k", rows={b"old": row(b"old", v=Cell(1, b"x"))})
    write(e, b"k", deletion=Deletion(2, 0))
    e._tables.delete(_HEADERS_KNOWN)
    e._tables.delete(_HEADED + TA)
    e.close()
    for _ in range(2):
        e = RocksEngine(path)
        assert e._may_have_headers(TA) and e._may_have_headers(TB)
        got = read(e, b"k")
        assert got.deletion == Deletion(2, 0) and not got.rows
        e.close()


_KILLED_WRITER = textwrap.dedent("""
    import signal, sys
    from agora.core.types import Cell, Partition, Row
    from agora.storage.rocks import RocksEngine
    e = RocksEngine(sys.argv[1])
    for batch in range(5):
        e.apply([Partition(b"\\xaa" * 16, b"key%d-%d" % (batch, i),
                           rows={b"r": Row((b"r",), None, None, {("v", b""): Cell(1, b"x")})})
                 for i in range(100)], sync=False)
    print("applied", flush=True)
    while True:
        signal.pause()  # until the test's SIGKILL
""")


def _wait_for_line(proc: subprocess.Popen, deadline: float, errors) -> bytes:
    out = b""
    while b"\n" not in out:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"writer never reported; stderr: {errors.read_text()!r}"
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"writer exited early; stderr: {errors.read_text()!r}"
            out += chunk
    return out


def test_rocks_write_survives_sigkill_after_apply_returns(tmp_path):
    path = str(tmp_path / "db")
    errors = tmp_path / "stderr.txt"
    with open(errors, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, path],
                                stdout=subprocess.PIPE, stderr=stderr)
    try:
        line = _wait_for_line(proc, time.monotonic() + SUBPROCESS_DEADLINE_S, errors)
        assert line == b"applied\n"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=SUBPROCESS_DEADLINE_S)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    e = RocksEngine(path)
    found = list(e.scan(TA, MIN_TOKEN, MAX_TOKEN))
    assert len(found) == 500
    assert all(reconcile.live_view(p, 0).rows for _, p in found)
    e.close()


def _blocks_read_into_cache(path: str, cache_bytes: int) -> int:
    """Write ~4 MB, reopen (so the data is in SST files, not the memtable), read it all:
    the block cache's usage afterwards."""
    e = RocksEngine(path, cache_bytes)
    keys = [b"key%d" % i for i in range(4000)]
    e.apply([Partition(TA, k, rows={b"r": row(b"r", v=Cell(1, os.urandom(1000)))}) for k in keys])
    e.close()
    e = RocksEngine(path, cache_bytes)
    assert all(read(e, k) is not None for k in keys)
    usage = e.block_cache_usage()
    e.close()
    return usage


def test_rocks_block_cache_is_sized_by_the_option(tmp_path):
    """The node option file_cache_size reaches RocksDB: a small cache stays within its
    capacity while reading more than it holds; a large one keeps what was read."""
    small = _blocks_read_into_cache(str(tmp_path / "small"), 256 << 10)
    large = _blocks_read_into_cache(str(tmp_path / "large"), 64 << 20)
    assert 0 < small <= (256 << 10) + (64 << 10)
    assert large > 2 << 20  # most of the ~4 MB read stays cached


def test_file_cache_size_option_parses_sizes():
    from agora.core.config import config_from_dict
    assert config_from_dict({"file_cache_size": "64MiB"}).file_cache_size == 64 << 20
    assert config_from_dict({"file_cache_size": 1 << 30}).file_cache_size == 1 << 30


def test_file_cache_size_auto_is_an_eighth_of_memory_at_least_512_mib(monkeypatch):
    """The default, `auto`, sizes the block cache from the machine's memory: an eighth of
    it, never below 512 MiB; it is also what a config without the option gets."""
    from agora.core import config
    pages = {"SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(config.os, "sysconf", lambda name: pages.get(name, pages.get("phys")))
    pages["phys"] = (64 << 30) // 4096  # a 64 GiB host: 8 GiB
    assert config.config_from_dict({"file_cache_size": "auto"}).file_cache_size == 8 << 30
    assert config.config_from_dict({}).file_cache_size == 8 << 30
    pages["phys"] = (2 << 30) // 4096  # a 2 GiB host: the 512 MiB floor
    assert config.config_from_dict({"file_cache_size": "auto"}).file_cache_size == 512 << 20
    with pytest.raises(config.ConfigError, match="file_cache_size"):
        config.config_from_dict({"file_cache_size": "lots"})


def test_a_table_without_clustering_columns_reads_its_one_row(engine):
    """The row under the empty clustering key (a table without clustering columns) is read
    by point lookup, together with the partition's header: a newer partition deletion
    still shadows it, an older one does not, and columns are cut as asked."""
    only = Row((), Cell(5, b""), None, {("v", b""): Cell(5, b"x"), ("w", b""): Cell(5, b"y")})
    write(engine, b"solo", rows={b"": only})
    got = read(engine, b"solo")
    assert got.rows == {b"": only} and got.deletion is None
    assert read(engine, b"solo", columns=("v",)).rows[b""].cells == {("v", b""): Cell(5, b"x")}
    write(engine, b"solo", deletion=Deletion(4, 0))  # older than the row: shadows nothing
    got = read(engine, b"solo")
    assert got.deletion == Deletion(4, 0) and got.rows[b""].cells[("v", b"")] == Cell(5, b"x")
    write(engine, b"solo", deletion=Deletion(6, 0))  # newer: the row is gone
    got = read(engine, b"solo")
    assert got.deletion == Deletion(6, 0) and got.rows == {}
    assert read(engine, b"absent") is None
