"""An aggregate over a token range (COUNT(*) of a table) reads AGGREGATE_SCAN_SLICES slices of
the range at once (agora.cql.select._aggregate): the slices must cover the range exactly and
in ring order, the joined aggregates must equal what one scan in ring order gives (a plain
column among them takes the first row's value), the slices must really be in flight together,
and one failed slice must fail the statement and stop the others."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.errors import ReadTimeout
from agora.core.ring.partitioner import token_for_key
from agora.core.types import MAX_TOKEN, MIN_TOKEN
from agora.cql import select
from agora.cql.processor import Processor
from agora.cql.requests import QueryParams, Session
from agora.runtime.cql_backend import all_of
from tests.unit.test_cql_statement_rules import QUORUM, MemoryBackend, Node

INT64 = st.integers(MIN_TOKEN, MAX_TOKEN)


@settings(max_examples=300, deadline=None)
@given(INT64, INT64, st.integers(1, 9))
def test_token_slices_cover_the_range_exactly_in_ring_order(a, b, n):
    start, end = min(a, b), max(a, b)
    pieces = select.token_slices(start, end, n)
    if start == end:
        assert pieces == [None]  # nothing to cut: read as it is
        return
    assert 1 <= len(pieces) <= n
    assert pieces[0][0] == start and pieces[-1][1] == end
    for (lo, hi), (next_lo, _) in zip(pieces, pieces[1:]):
        assert next_lo == hi  # (lo, hi] then (hi, ..]: no gap, no overlap
    widths = [hi - lo for lo, hi in pieces]
    assert min(widths) >= 1 and max(widths) - min(widths) <= 1


def test_a_range_that_is_not_ascending_is_not_cut():
    assert select.token_slices(5, 5, 4) == [None]
    assert select.token_slices(7, 3, 4) == [None]


def _filled(seed: int) -> tuple[Node, list[tuple[int, int, float]]]:
    rnd = random.Random(seed)
    node = Node()
    node("CREATE TABLE t (k int PRIMARY KEY, v int, d double)")
    rows = []
    for k in rnd.sample(range(-10_000, 10_000), 60):
        v, d = rnd.randint(-50, 50), rnd.choice([0.5, 0.25, 2.0, -1.5])
        node(f"INSERT INTO t (k, v, d) VALUES ({k}, {v}, {d})")
        rows.append((k, v, d))
    node("INSERT INTO t (k) VALUES (123456)")  # a row without v: counted by COUNT(*) only
    rows.append((123456, None, None))
    rows.sort(key=lambda r: token_for_key(r[0].to_bytes(4, "big", signed=True)))  # ring order
    return node, rows


def _expected(rows) -> tuple:
    vs = [v for _, v, _ in rows if v is not None]
    ds = [d for _, _, d in rows if d is not None]
    avg = int(sum(vs) / len(vs)) if vs else 0  # integer AVG truncates, as in Cassandra
    return (len(rows), len(vs), min(vs, default=None), max(vs, default=None), sum(vs), avg,
            sum(ds), rows[0][0] if rows else None)


QUERY = "SELECT COUNT(*), COUNT(v), MIN(v), MAX(v), SUM(v), AVG(v), SUM(d), k FROM t"


@pytest.mark.parametrize("seed", range(4))
def test_sliced_aggregates_equal_one_scan_in_ring_order(seed, monkeypatch):
    node, rows = _filled(seed)
    split = rows[len(rows) // 3][0]
    after = [r for r in rows if token_for_key(r[0].to_bytes(4, "big", signed=True))
             > token_for_key(split.to_bytes(4, "big", signed=True))]
    positive = [r for r in rows if r[1] is not None and r[1] > 0]
    for slices in (1, 2, 4, 7):
        monkeypatch.setattr(select, "AGGREGATE_SCAN_SLICES", slices)
        for internal in (5000, 3):
            monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", internal)
            assert node.rows(QUERY) == [_expected(rows)], (slices, internal)
            assert node.rows(f"{QUERY} WHERE token(k) > token({split})") == [_expected(after)], (slices, internal)
            assert node.rows(f"{QUERY} WHERE v > 0 ALLOW FILTERING") == [_expected(positive)], (slices, internal)
            assert node.rows(f"{QUERY} LIMIT 1") == [_expected(rows)]  # LIMIT cuts the result row
    ks = [k for k, _, _ in rows]
    assert node.rows(f"SELECT COUNT(*), k FROM t WHERE k IN ({ks[5]}, {ks[9]})") == [(2, ks[5])]


class _Recording(MemoryBackend):
    """Range reads that wait until `together` of them are in flight at once (or fail after
    a few seconds), recording the token range of each."""

    def __init__(self, together: int):
        super().__init__()
        self.together = together
        self.ranges: list[tuple[int, int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.all_in = None

    async def read_range(self, cmd, cl):
        if self.all_in is None:
            self.all_in = asyncio.Event()
        self.ranges.append((cmd.start_token, cmd.end_token))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.together:
            self.all_in.set()
        try:
            await asyncio.wait_for(self.all_in.wait(), 5)
        finally:
            self.in_flight -= 1
        return await super().read_range(cmd, cl)


def _node_over(backend) -> Node:
    """A Node (as in the statement tests) over `backend`, with t: k = v = 0..39."""
    node = Node.__new__(Node)
    node.backend, node.processor, node.session = backend, Processor(backend), Session()
    node("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    node("USE ks")
    node("CREATE TABLE t (k int PRIMARY KEY, v int)")
    for k in range(40):
        node(f"INSERT INTO t (k, v) VALUES ({k}, {k})")
    return node


def test_the_slices_are_read_at_once(monkeypatch):
    monkeypatch.setattr(select, "AGGREGATE_SCAN_SLICES", 4)
    backend = _Recording(together=4)
    node = _node_over(backend)
    assert node.rows("SELECT COUNT(*), SUM(v) FROM t") == [(40, sum(range(40)))]
    assert backend.most_in_flight == 4
    firsts = sorted(backend.ranges)[:4]  # each slice's first read starts at its own start
    assert [lo for lo, _ in firsts][0] == MIN_TOKEN and firsts[-1][1] == MAX_TOKEN
    assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(firsts, firsts[1:]))


class _OneFails(MemoryBackend):
    """Once `failing`: the slice from the ring's start times out when the others are reading;
    they never answer. Counts the reads started and those cancelled."""

    def __init__(self):
        super().__init__()
        self.failing = False
        self.started = 0
        self.cancelled = 0

    async def read_range(self, cmd, cl):
        if not self.failing:
            return await super().read_range(cmd, cl)
        self.started += 1
        if cmd.start_token == MIN_TOKEN and cmd.start_key is None:
            for _ in range(100):
                if self.started == select.AGGREGATE_SCAN_SLICES:
                    break
                await asyncio.sleep(0)
            raise ReadTimeout(int(cl), 1, 2, False)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def test_a_failed_slice_fails_the_statement_and_stops_the_others(monkeypatch):
    monkeypatch.setattr(select, "AGGREGATE_SCAN_SLICES", 4)
    backend = _OneFails()
    node = _node_over(backend)
    assert node.rows("SELECT COUNT(*) FROM t") == [(40,)]
    backend.failing = True

    async def failed_count() -> int:
        with pytest.raises(ReadTimeout):
            await node.processor.query("SELECT COUNT(*) FROM t", QueryParams(consistency=QUORUM), node.session)
        await asyncio.sleep(0)  # one pass: a cancelled read sees its cancellation
        return backend.cancelled  # before the loop ends (which would cancel them anyway)

    assert asyncio.run(failed_count()) == 3
    assert backend.started == 4


def test_all_of_stops_its_awaitables_when_the_request_is_closed():
    """The CQL server drives a request's coroutine itself and closes it when its connection
    goes: the slices it was awaiting must be cancelled, not left reading."""
    ended = []

    async def forever(i):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.append(i)
            raise

    async def main():
        request = all_of([forever(0), forever(1)])
        request.send(None)  # up to its first wait, as CqlConnection._step runs it
        await asyncio.sleep(0)  # both awaitables are now waiting
        request.close()  # the connection went away
        await asyncio.sleep(0)
        return sorted(ended)

    assert asyncio.run(main()) == [0, 1]
