"""Scans through the statement layer and the real range-read coordinator (one replica over the
in-memory engine), with the chunk sizes small: each page of a scan is read in token-range
reads of at most INTERNAL_PAGE_ROWS rows and replicas answer at most RANGE_RSP_MAX_ROWS, so
every query below crosses many chunk and answer boundaries. Paged and unpaged results must
equal a model of the table; a scan must not end early on rows a client does not see; PER
PARTITION LIMIT must count the rows that pass the filters, and must stop the reading of a
partition once reached."""

from __future__ import annotations

import random
import struct

import pytest

from agora.core.replica import replica
from agora.core.ring.partitioner import token_for_key
from agora.core.types import ConsistencyLevel as CL
from agora.cql import select
from tests.unit.test_cql_statement_rules import MemoryBackend, Node
from tests.unit.test_range_pieces import Cluster


class Coordinated(MemoryBackend):
    """Range reads through a RangeReadCoordinator over the node's engine."""

    async def read_range(self, cmd, cl):
        self.range_commands.append(cmd)
        return Cluster({"a": self.engine}).read(cmd, CL.ONE)


def _node() -> Node:
    node = Node()
    node.backend.__class__ = Coordinated
    node.backend.range_commands = []
    return node


def _ring_order(keys):
    return sorted(keys, key=lambda k: (token_for_key(struct.pack(">i", k)), struct.pack(">i", k)))


def _build(rnd: random.Random):
    """t (k, c, v, s static) with random partitions; the model: k -> {"s": s, "rows": {c: v}}."""
    node = _node()
    node("CREATE TABLE t (k int, c int, v int, s int static, PRIMARY KEY (k, c))")
    model = {}
    for k in range(rnd.randint(0, 8)):
        p = model.setdefault(k, {"s": None, "rows": {}})
        for c in range(rnd.choice([0, 1, 2, 5, 13, 40])):
            if rnd.random() < 0.9:
                v = rnd.randint(0, 2)
                node(f"INSERT INTO t (k, c, v) VALUES ({k}, {c}, {v})")
                p["rows"][c] = v
        if rnd.random() < 0.4:
            node(f"UPDATE t SET s = {k} WHERE k = {k}")
            p["s"] = k
        for c in list(p["rows"]):
            if rnd.random() < 0.15:
                node(f"DELETE FROM t WHERE k = {k} AND c = {c}")
                del p["rows"][c]
        if not p["rows"] and p["s"] is None:
            del model[k]
    return node, model


def _expected(model, v_is, ppl, limit, c_range):
    out = []
    for k in _ring_order(model):
        p = model[k]
        rows = [(k, c, v, p["s"]) for c, v in sorted(p["rows"].items())
                if c_range is None or c_range[0] <= c < c_range[1]]
        if v_is is not None:
            rows = [r for r in rows if r[2] == v_is]  # filtered first, then PER PARTITION LIMIT
        if not p["rows"] and p["s"] is not None and v_is is None and c_range is None:
            rows = [(k, None, None, p["s"])]  # a static-only partition is a row of a whole-partition query
        out += rows[:ppl] if ppl else rows
    return out[:limit] if limit else out


@pytest.mark.parametrize("seed", range(120))
def test_paged_scans_equal_the_model_across_chunks(seed, monkeypatch):
    rnd = random.Random(seed)
    monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", rnd.choice([1, 2, 3, 7, 500]))
    monkeypatch.setattr(select, "FILTERING_MIN_FETCH_ROWS", rnd.choice([1, 4, 100]))
    monkeypatch.setattr(replica, "RANGE_RSP_MAX_ROWS", rnd.choice([1, 2, 5, 100]))
    node, model = _build(rnd)
    for _ in range(6):
        v_is = rnd.choice([None, None, 0, 1])
        c_range = rnd.choice([None, None, (2, 9)])
        ppl = rnd.choice([None, None, 1, 2, 3, 10])
        limit = rnd.choice([None, None, 1, 4, 17])
        conds = ([f"v = {v_is}"] if v_is is not None else []) + \
            ([f"c >= {c_range[0]} AND c < {c_range[1]}"] if c_range else [])
        q = "SELECT k, c, v, s FROM t" + (" WHERE " + " AND ".join(conds) if conds else "") + \
            (f" PER PARTITION LIMIT {ppl}" if ppl else "") + (f" LIMIT {limit}" if limit else "") + \
            (" ALLOW FILTERING" if conds else "")
        want = _expected(model, v_is, ppl, limit, c_range)
        for page_size in (None, 1, 2, 5, 1000):
            assert node.rows(q, page_size=page_size) == want, (q, page_size)
    order = _ring_order(model)
    for page_size in (None, 1, 3):
        assert node.rows("SELECT DISTINCT k, s FROM t", page_size=page_size) == [(k, model[k]["s"]) for k in order]
        assert node.rows("SELECT k, count(*) FROM t GROUP BY k", page_size=page_size) == \
            [(k, len(model[k]["rows"]) or 1) for k in order]
    assert node.rows("SELECT count(*) FROM t") == [(sum(len(p["rows"]) or 1 for p in model.values()),)]
    # COUNT(*) alone reads bare rows (select.Pager.bare); beside a column's aggregates it does not
    vs = [v for p in model.values() for v in p["rows"].values()]
    assert node.rows("SELECT count(*), count(v), max(v) FROM t") == \
        [(sum(len(p["rows"]) or 1 for p in model.values()), len(vs), max(vs, default=None))]
    for k in range(9):
        n = len(model[k]["rows"]) or 1 if k in model else 0
        assert node.rows(f"SELECT count(*) FROM t WHERE k = {k}") == [(n,)]
    assert node.rows("SELECT count(*) FROM t WHERE k IN (1, 3, 5)") == \
        [(sum(len(model[k]["rows"]) or 1 for k in (1, 3, 5) if k in model),)]


def test_rows_a_client_does_not_see_do_not_end_a_scan_early():
    """Rows live only through a dropped column count for the coordinator's row limit but are
    not shown: the pager must tell an exhausted scan by the coordinator's count, not by the
    rows it shows, or it stops with rows left (497 of 1,200 here)."""
    node = _node()
    node("CREATE TABLE d (k int, c int, v int, w int, PRIMARY KEY (k, c))")
    for k in range(1200):
        node(f"INSERT INTO d (k, c, v) VALUES ({k}, 0, {k})")
    for k in range(3):
        node(f"UPDATE d SET w = 1 WHERE k = {k} AND c = 1")  # rows with no marker, only w
    node("ALTER TABLE d DROP w")
    assert len(node.rows("SELECT k, c, v FROM d")) == 1200
    assert len(node.rows("SELECT k, c, v FROM d", page_size=5000)) == 1200
    assert node.rows("SELECT count(*) FROM d") == [(1200,)]


def test_per_partition_limit_stops_the_reading_of_a_wide_partition():
    node = _node()
    node("CREATE TABLE w (k int, c int, v int, PRIMARY KEY (k, c))")
    for c in range(3000):
        node(f"INSERT INTO w (k, c, v) VALUES (1, {c}, 0)")
    for k in range(2, 600):
        node(f"INSERT INTO w (k, c, v) VALUES ({k}, 0, 0)")
    node.backend.read_commands.clear()
    assert len(node.rows("SELECT k, c FROM w PER PARTITION LIMIT 10", page_size=5000)) == 598 + 10
    assert len(node.backend.read_commands) <= 1  # not the 3,000 rows of k = 1 in reads of 500
    node.backend.read_commands.clear()
    assert node.rows("SELECT k, c FROM w WHERE k = 1 PER PARTITION LIMIT 2") == [(1, 0), (1, 1)]
    assert len(node.backend.read_commands) == 1


def test_per_partition_limit_counts_the_rows_that_pass_the_filter(monkeypatch):
    node = _node()
    node("CREATE TABLE f (k int, c int, v int, PRIMARY KEY (k, c))")
    for k in range(20):
        node(f"INSERT INTO f (k, c, v) VALUES ({k}, 0, 0)")
        node(f"INSERT INTO f (k, c, v) VALUES ({k}, 1, 1)")
    query = "SELECT k, c FROM f WHERE v = 1 PER PARTITION LIMIT 1 ALLOW FILTERING"
    want = [(k, 1) for k in _ring_order(range(20))]
    for internal in (500, 3):
        monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", internal)
        monkeypatch.setattr(select, "FILTERING_MIN_FETCH_ROWS", 1)
        assert node.rows(query, page_size=5000) == want, internal
        assert node.rows(query) == want, internal
