"""Reads with a row limit (ReadCommand.limit_rows -> ReadPage): a wide partition is read a
page at a time, by storage (both engines), by the replicas and the read coordinator (where
pages of unequal reach are cut to the shortest), and by the CQL pager, which never asks for a
partition whole."""

from __future__ import annotations

import pytest

from agora.core import reconcile
from agora.core.coordinator.read import ReadCoordinator
from agora.core.effects import Reply, Send
from agora.core.messages import MutationReq, MutationRsp, ReadReq, ReadRsp
from agora.core.plain import read_command_from_plain, read_command_to_plain
from agora.core.types import Bound, Cell, Deletion, Partition, ReadCommand, ReadPage, Row, Slice
from agora.core.types import ConsistencyLevel as CL
from agora.storage.rocks import RocksEngine
from tests.unit.placement import HandPlacement
from tests.unit.test_cql_statement_rules import Node

TABLE = b"t" * 16
KEY = b"wide"


def _row(ckey: bytes, ts: int = 10, value: bytes = b"v") -> Row:
    return Row((ckey,), None, None, {("v", b""): Cell(ts, value)})


def _partition(ckeys, ts: int = 10) -> Partition:
    return Partition(TABLE, KEY, rows={c: _row(c, ts) for c in ckeys})


# ---- storage ----------------------------------------------------------------------------------


def test_storage_reads_at_most_the_limit_and_says_where_it_stopped(engine):
    ckeys = [b"%03d" % i for i in range(10)]
    engine.apply([_partition(ckeys)])
    page = engine.read_page(ReadCommand(TABLE, KEY, None, None, 4))
    assert list(page.partition.rows) == ckeys[:4] and page.more_after == ckeys[3]
    rest = engine.read_page(ReadCommand(TABLE, KEY, (Slice(Bound(b"003", False), Bound(b"", True)),), None, 6))
    assert list(rest.partition.rows) == ckeys[4:] and rest.more_after is None  # nothing after
    whole = engine.read_page(ReadCommand(TABLE, KEY, None, None, 10))
    assert list(whole.partition.rows) == ckeys and whole.more_after is None
    assert engine.read_page(ReadCommand(TABLE, b"absent", None, None, 3)) == ReadPage(None)


def test_storage_pages_follow_clustering_order_across_slices(engine):
    engine.apply([_partition([b"%03d" % i for i in range(10)])])
    slices = (Slice(Bound(b"006", True), Bound(b"008", True)), Slice(Bound(b"001", True), Bound(b"003", True)))
    page = engine.read_page(ReadCommand(TABLE, KEY, slices, None, 4))
    assert list(page.partition.rows) == [b"001", b"002", b"003", b"006"] and page.more_after == b"006"


def test_storage_reads_a_page_from_the_end_when_reversed(engine):
    ckeys = [b"%03d" % i for i in range(10)]
    engine.apply([_partition(ckeys)])
    page = engine.read_page(ReadCommand(TABLE, KEY, None, None, 4, True))
    assert list(page.partition.rows) == ckeys[6:] and page.more_after == ckeys[6]  # in ckey order
    slices = (Slice(Bound(b"001", True), Bound(b"003", True)), Slice(Bound(b"005", True), Bound(b"007", False)))
    page = engine.read_page(ReadCommand(TABLE, KEY, slices, None, 3, True))
    assert list(page.partition.rows) == [b"003", b"005", b"006"] and page.more_after == b"003"
    rest = engine.read_page(ReadCommand(TABLE, KEY, (Slice(Bound(b"", True), Bound(b"003", False)),), None, 5, True))
    assert list(rest.partition.rows) == ckeys[:3] and rest.more_after is None


def test_storage_pages_of_big_rows_stop_at_a_byte_bound(engine):
    """A page stops before a row that would take its stored bytes past max_bytes, whichever
    way it reads, and says where; its first row is read however big; no bound, or a bound
    no page reaches, changes nothing."""
    ckeys = [b"%03d" % i for i in range(20)]
    engine.apply([Partition(TABLE, KEY, rows={c: _row(c, value=bytes(10_000)) for c in ckeys})])
    page = engine.read_page(ReadCommand(TABLE, KEY, None, None, 100), max_bytes=35_000)
    assert list(page.partition.rows) == ckeys[:3] and page.more_after == ckeys[2]
    back = engine.read_page(ReadCommand(TABLE, KEY, None, None, 100, True), max_bytes=35_000)
    assert list(back.partition.rows) == ckeys[-3:] and back.more_after == ckeys[-3]
    first = engine.read_page(ReadCommand(TABLE, KEY, None, None, 100), max_bytes=5_000)
    assert list(first.partition.rows) == ckeys[:1] and first.more_after == ckeys[0]
    assert list(engine.read_page(ReadCommand(TABLE, KEY, None, None, 2), 35_000).partition.rows) == ckeys[:2]
    assert engine.read_page(ReadCommand(TABLE, KEY, None, None, 100), 10**9).more_after is None
    assert len(engine.read_page(ReadCommand(TABLE, KEY, None, None, 100)).partition.rows) == 20


def test_rocks_counts_tombstoned_rows_it_reads(tmp_path):
    """On disk the limit bounds the rows read, deleted ones included: a page of deleted rows
    comes back empty but says where it stopped, so the reader goes on from there."""
    engine = RocksEngine(str(tmp_path / "db"))
    try:
        engine.apply([_partition([b"%03d" % i for i in range(6)])])
        deleted = Partition(TABLE, KEY, rows={b"%03d" % i: Row((b"%03d" % i,), None, Deletion(20, 1), {})
                                              for i in range(4)})
        engine.apply([deleted])
        page = engine.read_page(ReadCommand(TABLE, KEY, None, None, 3))
        assert page.more_after == b"002"
        assert reconcile.is_empty(reconcile.live_view(page.partition, 1))
    finally:
        engine.close()


def test_limited_read_commands_cross_the_wire():
    for cmd in (ReadCommand(TABLE, KEY, None, ("v",), 250), ReadCommand(TABLE, KEY, None, None, 3, True)):
        assert read_command_from_plain(read_command_to_plain(cmd)) == cmd
    with pytest.raises(Exception, match="read direction"):
        read_command_from_plain(read_command_to_plain(ReadCommand(TABLE, KEY)) + [3, 1])
    assert len(read_command_to_plain(ReadCommand(TABLE, KEY))) == 4  # unlimited: as before
    for bad in (0, -1, True, 2**31):
        with pytest.raises(Exception, match="read row limit"):
            read_command_from_plain(read_command_to_plain(ReadCommand(TABLE, KEY)) + [bad])
    rsp = ReadRsp(7, _partition([b"001"]), None, None, b"001")
    assert ReadRsp.from_wire(rsp.to_wire()) == rsp


# ---- coordinator ------------------------------------------------------------------------------


class _Placement(HandPlacement):
    def __init__(self):
        dcs = {"a1": "dc", "a2": "dc", "a3": "dc"}
        super().__init__("a1", "dc", dcs, dcs)

    def replicas_for(self, table_id, key):
        return ("a1", "a2", "a3"), None, 3


def _start(limit: int):
    rc = ReadCoordinator(_Placement(), read_timeout_ms=1000)
    effects = rc.start(1, ReadCommand(TABLE, KEY, None, None, limit), CL.QUORUM, 0)
    req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
    return rc, req_id


def test_a_digest_covers_where_the_page_ends():
    """Replica a2 holds rows 0-2 only, a1 rows 0-4: the first three rows agree, but a1's page
    goes on after them and a2's does not, so the digests must differ."""
    short, longer = _partition([b"0", b"1", b"2"]), _partition([b"0", b"1", b"2"])
    assert reconcile.page_digest(short, None) != reconcile.page_digest(longer, b"2")
    assert reconcile.page_digest(short, None) == reconcile.digest(short)


def test_pages_of_unequal_reach_are_cut_to_the_shortest():
    rc, req_id = _start(3)
    # a1 (data) read rows 0, 1, 2 and stopped; a2's digest disagrees: its rows are 0, 2, 5
    a1 = _partition([b"0", b"1", b"2"])
    a2 = _partition([b"0", b"2", b"5"], ts=20)
    assert rc.on_response("a1", ReadRsp(req_id, a1, None, None, b"2"), 1) == []
    resolve = rc.on_response("a2", ReadRsp(req_id, None, reconcile.page_digest(a2, None)), 1)
    [ask] = resolve
    assert isinstance(ask.message, ReadReq) and ask.message.command.limit_rows == 3
    repairs = rc.on_response("a2", ReadRsp(ask.message.req_id, a2, None), 2)
    by_target = {e.target: e.message for e in repairs if isinstance(e, Send)}
    assert all(isinstance(m, MutationReq) for m in by_target.values())
    # nothing after a1's last key is repaired or answered: a1 has not said what it holds there
    assert sorted(by_target["a1"].partitions[0].rows) == [b"0", b"2"]  # a2's newer versions
    assert sorted(by_target["a2"].partitions[0].rows) == [b"1"]
    answers = []
    for node, msg in sorted(by_target.items()):
        answers += rc.on_repair_ack(node, MutationRsp(msg.req_id), 3)
    [reply] = [e for e in answers if isinstance(e, Reply)]
    assert isinstance(reply.result, ReadPage) and reply.result.more_after == b"2"
    assert sorted(reply.result.partition.rows) == [b"0", b"1", b"2"]


def test_reversed_pages_are_cut_to_the_shortest_from_the_end():
    rc = ReadCoordinator(_Placement(), read_timeout_ms=1000)
    effects = rc.start(1, ReadCommand(TABLE, KEY, None, None, 2, True), CL.QUORUM, 0)
    req_id = next(e for e in effects if isinstance(e, Send)).message.req_id
    a1, a2 = _partition([b"8", b"9"]), _partition([b"5", b"9"], ts=20)
    rc.on_response("a1", ReadRsp(req_id, a1, None, None, b"8"), 1)
    [ask] = rc.on_response("a2", ReadRsp(req_id, None, reconcile.page_digest(a2, b"5")), 1)
    repairs = rc.on_response("a2", ReadRsp(ask.message.req_id, a2, None, None, b"5"), 2)
    by_target = {e.target: e.message for e in repairs if isinstance(e, Send)}
    assert sorted(by_target["a1"].partitions[0].rows) == [b"9"]  # a2's newer 9; not 5: before 8
    assert sorted(by_target["a2"].partitions[0].rows) == [b"8"]
    answers = []
    for node, msg in sorted(by_target.items()):
        answers += rc.on_repair_ack(node, MutationRsp(msg.req_id), 3)
    [reply] = [e for e in answers if isinstance(e, Reply)]
    assert reply.result.more_after == b"8" and sorted(reply.result.partition.rows) == [b"8", b"9"]


def test_agreeing_pages_answer_with_their_end():
    rc, req_id = _start(2)
    page = _partition([b"0", b"1"])
    rc.on_response("a1", ReadRsp(req_id, page, None, None, b"1"), 1)
    [reply] = [e for e in rc.on_response("a2", ReadRsp(req_id, None, reconcile.page_digest(page, b"1")), 1)
               if isinstance(e, Reply)]
    assert reply.result.more_after == b"1" and list(reply.result.partition.rows) == [b"0", b"1"]


def test_an_unlimited_read_still_answers_a_partition():
    rc, req_id = _start(0)
    page = _partition([b"0"])
    rc.on_response("a1", ReadRsp(req_id, page, None), 1)
    [reply] = [e for e in rc.on_response("a2", ReadRsp(req_id, None, reconcile.digest(page)), 1)
               if isinstance(e, Reply)]
    assert isinstance(reply.result, Partition)


# ---- the CQL pager ----------------------------------------------------------------------------


@pytest.fixture
def node():
    n = Node()
    n("CREATE TABLE wide (k int, c int, v int, s int static, PRIMARY KEY (k, c))")
    return n


def test_paging_a_wide_partition_reads_it_a_page_at_a_time(node):
    for c in range(40):
        node(f"INSERT INTO wide (k, c, v) VALUES (1, {c}, {c})")
    node.backend.read_commands.clear()
    assert node.rows("SELECT c FROM wide WHERE k = 1", page_size=7) == [(c,) for c in range(40)]
    limits = [cmd.limit_rows for cmd in node.backend.read_commands]
    assert limits and all(0 < limit <= 7 for limit in limits)
    node.backend.read_commands.clear()
    assert len(node.rows("SELECT c FROM wide WHERE k = 1 LIMIT 3")) == 3
    assert [cmd.limit_rows for cmd in node.backend.read_commands] == [3]


def test_order_by_against_the_clustering_order_pages_from_the_end(node):
    for c in range(30):
        node(f"INSERT INTO wide (k, c, v) VALUES (1, {c}, {c})")
    node.backend.read_commands.clear()
    assert node.rows("SELECT c FROM wide WHERE k = 1 ORDER BY c DESC", page_size=4) == \
        [(c,) for c in reversed(range(30))]
    assert all(cmd.reversed and 0 < cmd.limit_rows <= 4 for cmd in node.backend.read_commands)
    node.backend.read_commands.clear()
    assert node.rows("SELECT c FROM wide WHERE k = 1 AND c < 20 ORDER BY c DESC LIMIT 3") == [(19,), (18,), (17,)]
    assert [(cmd.limit_rows, cmd.reversed) for cmd in node.backend.read_commands] == [(3, True)]


def test_unpaged_and_filtered_reads_come_in_bounded_pieces(node, monkeypatch):
    from agora.cql import select
    monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", 5)
    monkeypatch.setattr(select, "FILTERING_MIN_FETCH_ROWS", 4)
    for c in range(23):
        node(f"INSERT INTO wide (k, c, v) VALUES (1, {c}, {c % 3})")
    node.backend.read_commands.clear()
    assert node.rows("SELECT count(*) FROM wide WHERE k = 1") == [(23,)]
    assert node.rows("SELECT c FROM wide WHERE k = 1 AND v = 0 ALLOW FILTERING", page_size=2) == \
        [(c,) for c in range(0, 23, 3)]
    assert max(cmd.limit_rows for cmd in node.backend.read_commands) == 5


def test_deleted_rows_do_not_end_a_page_early_nor_hide_the_static_row(node, monkeypatch):
    from agora.cql import select
    monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", 3)
    node("UPDATE wide SET s = 9 WHERE k = 2")
    for c in range(8):
        node(f"INSERT INTO wide (k, c, v) VALUES (2, {c}, {c})")
    for c in range(8):
        if c != 6:
            node(f"DELETE FROM wide WHERE k = 2 AND c = {c}")
    assert node.rows("SELECT c, s FROM wide WHERE k = 2", page_size=2) == [(6, 9)]
    node("DELETE FROM wide WHERE k = 2 AND c = 6")
    assert node.rows("SELECT k, c, s FROM wide WHERE k = 2", page_size=2) == [(2, None, 9)]
    assert node.rows("SELECT c FROM wide WHERE k = 2 ORDER BY c DESC", page_size=2) == [(None,)]


def test_a_page_of_a_scan_is_read_in_chunks_of_the_internal_page(node, monkeypatch):
    """A scan's page bigger than INTERNAL_PAGE_ROWS is fetched in token-range reads of at most
    that many rows, so no one read's work holds the node's event loop for a whole page; the
    rows and the paging are those of one read."""
    from agora.cql import select
    node("CREATE TABLE flat (k int PRIMARY KEY, v int)")
    for k in range(40):
        node(f"INSERT INTO flat (k, v) VALUES ({k}, {k})")
    whole = node.rows("SELECT k, v FROM flat")
    assert sorted(whole) == [(k, k) for k in range(40)]
    monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", 7)
    limits = []
    read_range = node.backend.read_range

    async def recording(cmd, cl):
        limits.append(cmd.limit_rows)
        return await read_range(cmd, cl)

    monkeypatch.setattr(node.backend, "read_range", recording)
    for page_size in (None, 25, 7, 3):
        limits.clear()
        assert node.rows("SELECT k, v FROM flat", page_size=page_size) == whole
        assert limits and max(limits) == min(7, page_size or 7), (page_size, limits)
    limits.clear()
    assert node.rows("SELECT k, v FROM flat LIMIT 30", page_size=25) == whole[:30]
    assert max(limits) == 7
