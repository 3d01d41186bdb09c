"""The statement layer (processor, modify, select, where, terms, bind, schema DDL) run end to
end in-process over a one-node in-memory backend: each test pins a rule that the real-driver
integration test (tests/integration/test_cql_statements.py) found broken, so it fails again
if the rule breaks. Values go in as CQL text or serialized bound values and come out as the
driver would decode them."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import math
import random
from decimal import Decimal

import pytest
from cassandra.util import Date, Duration, Time

from agora.core import reconcile
from agora.core.errors import AlreadyExists, ConfigurationError, InvalidRequest
from agora.core.ring.partitioner import token_for_key
from agora.core.schema import ddl
from agora.core.schema import types as T
from agora.core.schema.model import Schema
from agora.core.types import ConsistencyLevel, RangeCommand, ReadCommand, ReadPage
from agora.cql.backend import ClusterView, NodeView
from agora.cql import select
from agora.cql.processor import Processor
from agora.cql.requests import BatchChild, BatchRequest, QueryParams, Session
from agora.cql.results import Rows
from agora.storage.memory import MemoryEngine

NOW_S = 1_700_000_000
QUORUM = int(ConsistencyLevel.QUORUM)
MAX_PAGES = 500  # more pages than any query here needs: past this, paging is going round in circles


class MemoryBackend:
    """A single node's Backend over the in-memory storage engine, recording the consistency
    level of every read."""

    def __init__(self, dcs: tuple[str, ...] = ("dc1",)):
        self.schema = Schema()
        self.engine = MemoryEngine()
        self.read_levels: list[ConsistencyLevel] = []
        self.read_commands: list[ReadCommand] = []
        self._dcs = dcs
        self._ts = 1_000_000

    def cluster_view(self) -> ClusterView:
        nodes = [NodeView(f"127.0.0.{i + 1}:7000", f"127.0.0.{i + 1}", 7000, f"127.0.0.{i + 1}", 9042, dc,
                          "rack1", f"00000000-0000-0000-0000-00000000000{i + 1}", (i,), None, "5.0.0", True)
                 for i, dc in enumerate(self._dcs)]
        return ClusterView("test", nodes[0], tuple(nodes[1:]))

    def timestamp(self) -> int:
        self._ts += 1
        return self._ts

    def now_s(self) -> int:
        return NOW_S

    async def write(self, partitions, cl, write_type="SIMPLE") -> None:
        self.engine.apply(partitions)

    async def read(self, cmd, cl):
        self.read_levels.append(cl)
        self.read_commands.append(cmd)
        page = self.engine.read_page(cmd)
        view = None if page.partition is None else reconcile.live_view(page.partition, NOW_S)
        view = None if view is None or reconcile.is_empty(view) else view
        return ReadPage(view, page.more_after) if cmd.limit_rows else view

    async def read_range(self, cmd: RangeCommand, cl):
        out = []
        for token, stored in self.engine.scan(cmd.table_id, cmd.start_token, cmd.end_token):
            if cmd.start_key is not None and (token, stored.key) <= (cmd.start_token, cmd.start_key):
                continue
            sliced = reconcile.slice_partition(stored, ReadCommand(cmd.table_id, stored.key, cmd.slices, cmd.columns))
            live = reconcile.live_view(sliced, NOW_S)
            if not reconcile.is_empty(live):
                out.append(live)
        return out

    async def schema_change(self, change) -> str:
        self.schema = change(self.schema, self.timestamp())
        return "version"

    async def wait_schema_agreement(self, timeout_s: float) -> bool:
        return True


class Node:
    """A processor over a MemoryBackend with one session, in keyspace ks (RF 1)."""

    def __init__(self, dcs=("dc1",)):
        self.backend = MemoryBackend(dcs)
        self.processor = Processor(self.backend)
        self.session = Session()
        self("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        self("USE ks")

    def __call__(self, text: str, values=None, page_size=None, consistency=QUORUM, paging_state=None):
        params = QueryParams(consistency=consistency, values=list(values or []), page_size=page_size,
                             paging_state=paging_state)
        return asyncio.run(self.processor.query(text, params, self.session))

    def rows(self, text: str, values=None, page_size=None) -> list[tuple]:
        """Every row, following the paging state page after page as a driver does."""
        out, state = [], None
        for _ in range(MAX_PAGES):
            result = self(text, values, page_size, paging_state=state)
            assert isinstance(result, Rows)
            assert page_size is None or len(result.rows) <= page_size
            out += [tuple(None if v is None else T.deserialize(c.type, v) for c, v in zip(result.columns, row))
                    for row in result.rows]
            state = result.paging_state
            if state is None:
                return out
        raise AssertionError(f"paging never ended: {len(out)} rows after {MAX_PAGES} pages")

    def prepared(self, text: str, values: list):
        prepared = asyncio.run(self.processor.prepare(text, None, self.session))
        raw = [None if v is None else T.serialize(spec.type, v) for spec, v in zip(prepared.bind_columns, values)]
        return asyncio.run(self.processor.execute(prepared.statement_id, None,
                                                  QueryParams(consistency=QUORUM, values=raw), self.session))


@pytest.fixture
def node():
    return Node()


# ---- static columns ---------------------------------------------------------------------------


def test_static_columns_are_written_with_the_partition_key_alone(node):
    node("CREATE TABLE t (k int, c int, v int, st text static, PRIMARY KEY (k, c))")
    node("INSERT INTO t (k, st) VALUES (1, 'inserted')")
    assert node.rows("SELECT k, c, v, st FROM t WHERE k = 1") == [(1, None, None, "inserted")]
    node("INSERT INTO t (k, c, v) VALUES (1, 0, 0)")
    node("UPDATE t SET st = 'updated' WHERE k = 1")
    assert node.rows("SELECT c, st FROM t WHERE k = 1") == [(0, "updated")]
    for bad, words in (("UPDATE t SET st = 'x' WHERE k = 1 AND c = 0", "modifies only static columns"),
                       ("DELETE st FROM t WHERE k = 1 AND c = 0", "modifies only static columns"),
                       ("INSERT INTO t (k, v) VALUES (1, 5)", "Some clustering keys are missing: c"),
                       ("UPDATE t SET st = 'x', v = 1 WHERE k = 1", "Some clustering keys are missing: c")):
        with pytest.raises(InvalidRequest, match=words):
            node(bad)
    node("DELETE st FROM t WHERE k = 1")
    assert node.rows("SELECT c, st FROM t WHERE k = 1") == [(0, None)]


def test_insert_of_statics_with_part_of_the_clustering_key_is_refused(node):
    node("CREATE TABLE t2 (k int, a int, b int, st int static, PRIMARY KEY (k, a, b))")
    with pytest.raises(InvalidRequest, match="Some clustering keys are missing: b"):
        node("INSERT INTO t2 (k, a, st) VALUES (1, 1, 1)")


# ---- literals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("literal, expected", [
    ("'00:00:00.000000001'", Time(1)),
    ("'23:59:59.999999999'", Time(86_399_999_999_999)),
    ("'13:30'", Time(datetime.time(13, 30))),
    ("'01:02:03.5'", Time(datetime.time(1, 2, 3, 500_000))),
])
def test_time_literals_keep_nanoseconds(node, literal, expected):
    node("CREATE TABLE IF NOT EXISTS times (k int PRIMARY KEY, v time)")
    node(f"INSERT INTO times (k, v) VALUES (1, {literal})")
    assert node.rows("SELECT v FROM times WHERE k = 1") == [(expected,)]


@pytest.mark.parametrize("literal", ["'24:00:00'", "'12:60:00'", "'1:2:3.1234567890'", "'noon'"])
def test_bad_time_literals_are_invalid(node, literal):
    node("CREATE TABLE IF NOT EXISTS times (k int PRIMARY KEY, v time)")
    with pytest.raises(InvalidRequest, match="formatted time"):
        node(f"INSERT INTO times (k, v) VALUES (1, {literal})")


@pytest.mark.parametrize("literal, days", [
    ("'1970-01-01'", 0), ("'0001-01-01'", -719_162), ("'2024-02-29'", 19_782), ("'9999-12-31'", 2_932_896),
    ("'-5877641-06-23'", -2**31), ("'5881580-07-11'", 2**31 - 1), ("'-0001-03-01'", -719_834),
])
def test_date_literals_cover_the_whole_date_range(node, literal, days):
    node("CREATE TABLE IF NOT EXISTS dates (k int PRIMARY KEY, v date)")
    node(f"INSERT INTO dates (k, v) VALUES (1, {literal})")
    assert node.rows("SELECT v FROM dates WHERE k = 1") == [(Date(days),)]


@pytest.mark.parametrize("literal", ["'2023-02-29'", "'2024-13-01'", "'2024-04-31'", "'-5877641-06-22'",
                                     "'5881580-07-12'", "'2024/01/01'"])
def test_bad_date_literals_are_invalid(node, literal):
    node("CREATE TABLE IF NOT EXISTS dates (k int PRIMARY KEY, v date)")
    with pytest.raises(InvalidRequest, match="formatted date"):
        node(f"INSERT INTO dates (k, v) VALUES (1, {literal})")


def test_days_from_civil_agrees_with_python_dates():
    from agora.cql.terms import _days_from_civil
    epoch = datetime.date(1970, 1, 1)
    for ordinal in range(1, 3_652_059, 997):
        d = datetime.date.fromordinal(ordinal)
        assert _days_from_civil(d.year, d.month, d.day) == (d - epoch).days


def test_list_and_set_literals_only_fit_their_own_collection(node):
    node("CREATE TABLE lits (k int PRIMARY KEY, l list<int>, s set<int>)")
    with pytest.raises(InvalidRequest, match="list literal"):
        node("INSERT INTO lits (k, s) VALUES (1, [1])")
    with pytest.raises(InvalidRequest, match="set literal"):
        node("INSERT INTO lits (k, l) VALUES (1, {1})")
    node("INSERT INTO lits (k, l, s) VALUES (1, [2, 1], {2, 1})")
    assert node.rows("SELECT l, s FROM lits WHERE k = 1") == [([2, 1], {1, 2})]


# ---- DDL errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("replication", [
    {"class": "NoSuchStrategy"}, {"class": "SimpleStrategy"}, {"class": "SimpleStrategy", "replication_factor": "x"},
    {"class": "SimpleStrategy", "replication_factor": "1", "dc1": "1"},
])
def test_bad_replication_is_a_configuration_error(replication):
    with pytest.raises(ConfigurationError):
        ddl.create_keyspace({"name": "k", "replication": replication})
    schema = ddl.create_keyspace({"name": "k", "replication": {"class": "SimpleStrategy",
                                                                "replication_factor": "1"}})(Schema(), 1)
    with pytest.raises(ConfigurationError):
        ddl.alter_keyspace({"name": "k", "replication": replication})(schema, 2)


def test_unknown_datacenter_is_a_configuration_error():
    node = Node(dcs=("dc1", "dc2"))
    with pytest.raises(ConfigurationError, match="nowhere"):
        node("CREATE KEYSPACE geo WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 1, 'nowhere': 1}")
    node("CREATE KEYSPACE geo WITH replication = {'class': 'NetworkTopologyStrategy', 'replication_factor': 2}")
    assert dict(node.backend.schema.keyspace("geo").replication) == {
        "class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "2", "dc2": "2"}
    with pytest.raises(ConfigurationError):
        node("ALTER KEYSPACE geo WITH replication = {'class': 'NetworkTopologyStrategy', 'dc3': 1}")


def test_creating_an_existing_type_is_already_exists(node):
    node("CREATE TYPE u (a int)")
    with pytest.raises(AlreadyExists) as info:
        node("CREATE TYPE u (b int)")
    assert (info.value.keyspace, info.value.table) == ("ks", "u")
    node("CREATE TYPE IF NOT EXISTS u (b int)")


@pytest.mark.parametrize("statement", [
    "CREATE TABLE c1 (k int PRIMARY KEY, n counter)",
    "CREATE TABLE c2 (k int, c int, n counter static, PRIMARY KEY (k, c))",
])
def test_counter_columns_are_refused(node, statement):
    with pytest.raises(InvalidRequest, match="Counter columns are not supported"):
        node(statement)


def test_counter_updates_and_batches_are_refused(node):
    node("CREATE TABLE plain (k int PRIMARY KEY, v int)")
    with pytest.raises(InvalidRequest, match="Counter columns are not supported"):
        node("ALTER TABLE plain ADD n counter")
    with pytest.raises(InvalidRequest, match="Counters are not supported"):
        node("BEGIN COUNTER BATCH UPDATE plain SET v = v + 1 WHERE k = 1 APPLY BATCH")
    request = BatchRequest(2, [BatchChild("UPDATE plain SET v = v + 1 WHERE k = 1", None, [])],
                           QueryParams(consistency=QUORUM))
    with pytest.raises(InvalidRequest, match="Counters are not supported"):
        asyncio.run(node.processor.batch(request, node.session))


def test_a_batch_timestamp_excludes_statement_timestamps(node):
    node("CREATE TABLE b (k int PRIMARY KEY, v int)")
    with pytest.raises(InvalidRequest, match="either on BATCH or individual statements"):
        node("BEGIN BATCH USING TIMESTAMP 5 INSERT INTO b (k, v) VALUES (1, 1) USING TIMESTAMP 6 APPLY BATCH")
    node("BEGIN BATCH USING TIMESTAMP 5 INSERT INTO b (k, v) VALUES (1, 1) APPLY BATCH")
    assert node.rows("SELECT WRITETIME(v) FROM b WHERE k = 1") == [(5,)]


# ---- SELECT ------------------------------------------------------------------------------------


def test_select_star_lists_statics_before_regular_columns(node):
    node("CREATE TABLE order_t (k int, c int, a int, zs int static, b int, PRIMARY KEY (k, c))")
    result = node("SELECT * FROM order_t")
    assert [c.name for c in result.columns] == ["k", "c", "zs", "a", "b"]


def test_select_json_renders_each_type_as_cassandra_does(node):
    node("CREATE TYPE addr (street text, \"Num\" int)")
    node("CREATE TABLE j (k int PRIMARY KEY, d decimal, x double, f float, dt date, tm time, du duration, "
         "ts timestamp, a frozen<addr>, m map<int, text>, tu tuple<int, text>, t text, b blob)")
    node("INSERT INTO j (k, d, x, f, dt, tm, du, ts, a, m, tu, t, b) VALUES (1, 1.50, -Infinity, 0.1, '2024-02-29', "
         "'01:02:03.000000004', -1d2h, '2011-02-03 04:05:06.789Z', {street: 's', \"Num\": 2}, {1: 'a'}, "
         "(1, null), 'é', 0x00ff)")
    (text,), = node.rows("SELECT JSON d, x, f, dt, tm, du, ts, a, m, tu, t, b FROM j WHERE k = 1")
    assert text == ('{"d": 1.50, "x": null, "f": 0.1, "dt": "2024-02-29", "tm": "01:02:03.000000004", '
                    '"du": "-1d2h", "ts": "2011-02-03 04:05:06.789Z", "a": {"street": "s", "\\"Num\\"": 2}, '
                    '"m": {"1": "a"}, "tu": [1, null], "t": "é", "b": "0x00ff"}')
    json.loads(text)


@pytest.mark.parametrize("months, days, nanos, text", [
    (14, 25, 18_367_008_009_010, "1y2mo25d5h6m7s8ms9us10ns"), (0, -1, -7_200 * 10**9, "-1d2h"),
    (12, 0, 0, "1y"), (0, 0, 1, "1ns"), (0, 0, 0, ""),
])
def test_duration_json_text(months, days, nanos, text):
    from agora.cql.select import _json_native
    assert _json_native("duration", Duration(months, days, nanos)) == json.dumps(text)


def test_float_json_is_the_shortest_text_of_the_float32():
    from agora.cql.select import _json_native
    assert [_json_native("float", T.deserialize(T.FLOAT, T.serialize(T.FLOAT, v)))
            for v in (0.1, 1.5, 3.4028234663852886e38, 1e-45, math.nan)] == \
        ["0.1", "1.5", "3.4028235e+38", "1e-45", "null"]


def _events(node):
    node("CREATE TABLE ev (k int, c1 int, c2 int, v int, PRIMARY KEY (k, c1, c2)) "
         "WITH CLUSTERING ORDER BY (c1 ASC, c2 DESC)")
    for k, c1, c2 in itertools.product(range(2), range(4), range(4)):
        node(f"INSERT INTO ev (k, c1, c2, v) VALUES ({k}, {c1}, {c2}, {c1 * 4 + c2})")


def test_order_by_over_in_partitions_merges_them_and_cannot_be_paged(node):
    _events(node)
    query = "SELECT k, c1, c2 FROM ev WHERE k IN (0, 1) AND c1 = 1 ORDER BY c1 DESC"
    with pytest.raises(InvalidRequest, match="Cannot page queries with both ORDER BY and a IN restriction"):
        node(query, page_size=100)
    assert [r[1:] for r in node.rows(query)] == [(1, 0), (1, 0), (1, 1), (1, 1), (1, 2), (1, 2), (1, 3), (1, 3)]
    assert [r[1:] for r in node.rows(query + " LIMIT 3", page_size=100)] == [(1, 0), (1, 0), (1, 1)]


OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


@pytest.mark.parametrize("lower, upper", [
    ((">", (1, 2)), None), ((">=", (1, 2)), None), (None, ("<", (2, 1))), (None, ("<=", (2, 1))),
    ((">", (0, 3)), ("<=", (3, 0))), ((">=", (1, 1)), ("<", (1, 3))), ((">", (2, 2)), ("<", (1, 0))),
    ((">=", (1,)), ("<", (2, 2))), ((">", (1, 1)), ("<=", (3,))),
])
def test_multi_column_slices_over_mixed_clustering_orders_follow_tuple_order(node, lower, upper):
    _events(node)
    where, keep = [], []
    for bound in (lower, upper):
        if bound is not None:
            op, values = bound
            cols = ("c1", "c2")[:len(values)]
            where.append(f"({', '.join(cols)}) {op} ({', '.join(map(str, values))})")
            keep.append(lambda ck, op=op, values=values: OPS[op](ck[:len(values)], values))
    expected = sorted(((c1, c2) for c1, c2 in itertools.product(range(4), range(4))
                       if all(f((c1, c2)) for f in keep)), key=lambda ck: (ck[0], -ck[1]))
    clause = " AND ".join(where)
    assert [r[1:] for r in node.rows(f"SELECT k, c1, c2 FROM ev WHERE k = 0 AND {clause}")] == expected
    assert [r[1:] for r in node.rows(f"SELECT k, c1, c2 FROM ev WHERE k = 0 AND {clause}", page_size=3)] == expected
    assert [r[1:] for r in node.rows(f"SELECT k, c1, c2 FROM ev WHERE k = 0 AND {clause} ORDER BY c1 DESC")] == \
        expected[::-1]
    node(f"DELETE FROM ev WHERE k = 1 AND {clause}")
    left = [r[1:] for r in node.rows("SELECT k, c1, c2 FROM ev WHERE k = 1")]
    assert left == sorted(set(itertools.product(range(4), range(4))) - set(expected), key=lambda ck: (ck[0], -ck[1]))


def test_multi_column_in_needs_no_filtering_and_touches_only_its_tuples(node):
    _events(node)
    assert node.rows("SELECT c1, c2 FROM ev WHERE k = 0 AND (c1, c2) IN ((3, 0), (0, 3))") == [(0, 3), (3, 0)]
    node("UPDATE ev SET v = -1 WHERE k = 0 AND (c1, c2) IN ((3, 0), (0, 3))")
    node("DELETE FROM ev WHERE k = 1 AND (c1, c2) IN ((1, 1), (2, 2))")
    assert node.rows("SELECT c1, c2 FROM ev WHERE k = 0 AND v = -1 ALLOW FILTERING") == [(0, 3), (3, 0)]
    assert len(node.rows("SELECT c1 FROM ev WHERE k = 1")) == 14
    assert node.rows("SELECT c1, c2 FROM ev WHERE k = 1 AND c1 IN (1, 2) AND c2 IN (1, 2)") == [(1, 2), (2, 1)]


def test_token_of_a_key_on_the_right_of_a_token_relation(node):
    node("CREATE TABLE tk (a int, b text, v int, PRIMARY KEY ((a, b)))")
    for a in range(20):
        node(f"INSERT INTO tk (a, b, v) VALUES ({a}, 'x', {a})")
    by_token = sorted(node.rows("SELECT token(a, b), a FROM tk"))
    start = by_token[5][1]
    after = [r[0] for r in node.rows(f"SELECT a FROM tk WHERE token(a, b) > token({start}, 'x')")]
    assert after == [a for _, a in by_token[6:]]
    bound = node.prepared("SELECT a FROM tk WHERE token(a, b) <= token(?, ?)", [start, "x"])
    assert [T.deserialize(T.INT, r[0]) for r in bound.rows] == [a for _, a in by_token[:6]]
    with pytest.raises(InvalidRequest, match="2 required but 1 provided"):
        node("SELECT a FROM tk WHERE token(a, b) > token(1)")


# ---- list operations read at the statement's consistency level ----------------------------


def test_list_operations_by_position_read_at_the_statement_level(node):
    node("CREATE TABLE lists (k int PRIMARY KEY, l list<int>)")
    node("INSERT INTO lists (k, l) VALUES (1, [1, 2, 3])")
    node.backend.read_levels.clear()
    node("UPDATE lists SET l[1] = 20 WHERE k = 1", consistency=int(ConsistencyLevel.ALL))
    node("UPDATE lists SET l = l - [3] WHERE k = 1", consistency=int(ConsistencyLevel.LOCAL_QUORUM))
    node("DELETE l[0] FROM lists WHERE k = 1", consistency=int(ConsistencyLevel.ANY))
    assert node.backend.read_levels == [ConsistencyLevel.ALL, ConsistencyLevel.LOCAL_QUORUM, ConsistencyLevel.ONE]
    assert node.rows("SELECT l FROM lists WHERE k = 1") == [([20],)]


def test_token_for_key_is_what_token_selector_reports(node):
    node("CREATE TABLE single (k int PRIMARY KEY)")
    node("INSERT INTO single (k) VALUES (7)")
    assert node.rows("SELECT token(k) FROM single") == [(token_for_key(T.serialize(T.INT, 7)),)]


def test_decimal_json_is_bare_and_keeps_its_scale(node):
    node("CREATE TABLE dj (k int PRIMARY KEY, d decimal)")
    node("INSERT INTO dj (k, d) VALUES (1, -0.000000123)")
    (text,), = node.rows("SELECT JSON d FROM dj")
    assert text == '{"d": -1.23E-7}' and json.loads(text, parse_float=Decimal) == {"d": Decimal("-1.23E-7")}


def test_group_by_aggregates_per_group_and_limit_counts_groups(node):
    _events(node)  # k 0..1, c1 0..3, c2 0..3, v = 4 * c1 + c2
    assert node.rows("SELECT k, COUNT(*), MAX(v) FROM ev GROUP BY k") in (
        [(0, 16, 15), (1, 16, 15)], [(1, 16, 15), (0, 16, 15)])
    assert node.rows("SELECT c1, COUNT(*), SUM(v) FROM ev WHERE k = 1 GROUP BY k, c1") == \
        [(c1, 4, 16 * c1 + 6) for c1 in range(4)]
    assert node.rows("SELECT c1, c2 FROM ev WHERE k = 0 GROUP BY k, c1") == [(c1, 3) for c1 in range(4)]
    assert node.rows("SELECT c1, COUNT(*) FROM ev WHERE k = 0 GROUP BY k, c1 LIMIT 2") == [(0, 4), (1, 4)]
    for bad in ("SELECT COUNT(*) FROM ev GROUP BY c1", "SELECT COUNT(*) FROM ev WHERE k = 0 GROUP BY k, c2",
                "SELECT COUNT(*) FROM ev GROUP BY k PER PARTITION LIMIT 1"):
        with pytest.raises(InvalidRequest):
            node(bad)


def test_limit_applies_to_the_aggregate_row_not_to_its_input(node):
    _events(node)
    assert node.rows("SELECT COUNT(*) FROM ev LIMIT 5") == [(32,)]
    assert node.rows("SELECT COUNT(*), MIN(v) FROM ev WHERE k = 0 LIMIT 1") == [(16, 0)]


PAGED_QUERIES = [
    "SELECT k, a, b, st FROM pg",
    "SELECT k, a, b FROM pg WHERE k = 3",
    "SELECT k, a, b FROM pg WHERE k = 3 ORDER BY a DESC",
    "SELECT k, a, b FROM pg WHERE k = 3 AND a <= 1 ORDER BY a DESC",
    "SELECT k, a, b FROM pg WHERE k = 3 AND a >= 1 ORDER BY a DESC, b ASC",
    "SELECT k, a, b FROM pg WHERE k = 3 AND a IN (0, 2) ORDER BY a DESC",
    "SELECT k, a, b FROM pg WHERE k IN (0, 2, 3) AND a IN (0, 2)",
    "SELECT k, a, b, st FROM pg WHERE k IN (0, 1, 3)",
    "SELECT k, a, b FROM pg WHERE k = 3 AND (a, b) > (0, 1) AND (a, b) <= (2, 1)",
    "SELECT k, a, b FROM pg WHERE k = 3 AND (a, b) > (0, 1) ORDER BY a DESC",
    "SELECT DISTINCT k, st FROM pg",
    "SELECT k, a, b FROM pg WHERE b = 1 ALLOW FILTERING",
    "SELECT k, st FROM pg WHERE st = 0 ALLOW FILTERING",
    "SELECT k, a, b FROM pg PER PARTITION LIMIT 2",
    "SELECT k, a, b FROM pg LIMIT 7",
    # a table without clustering columns: each partition's one row ends it
    "SELECT k, v FROM flat",
    "SELECT k, v FROM flat WHERE k IN (0, 2, 3, 5)",
    "SELECT k FROM flat WHERE v = 1 ALLOW FILTERING",
    "SELECT k, v FROM flat LIMIT 4",
    "SELECT DISTINCT k FROM flat",
    # GROUP BY: the page size counts groups, and a page ends after a complete group
    "SELECT k, COUNT(*) FROM pg GROUP BY k",
    "SELECT k, a, COUNT(*), MIN(b), MAX(b) FROM pg GROUP BY k, a",
    "SELECT k, a, b FROM pg GROUP BY k, a",
    "SELECT k, a, COUNT(*) FROM pg WHERE k IN (0, 2, 3) GROUP BY k, a",
    "SELECT k, a, SUM(b) FROM pg WHERE k = 3 GROUP BY k, a ORDER BY a DESC",
    "SELECT k, a, COUNT(*) FROM pg WHERE b >= 1 GROUP BY k, a ALLOW FILTERING",
    "SELECT k, a, COUNT(*) FROM pg GROUP BY k, a LIMIT 4",
    "SELECT k, COUNT(*), MAX(v) FROM flat GROUP BY k",
    "SELECT JSON k, COUNT(*) FROM pg GROUP BY k",
]


@pytest.fixture(scope="module")
def paged_node():
    """pg: partitions k = 0..3 with k * 3 rows... k = 0 holds only static data; clustering
    (a ASC, b DESC). flat: 8 one-row partitions (no clustering columns)."""
    node = Node()
    node("CREATE TABLE pg (k int, a int, b int, st int static, PRIMARY KEY (k, a, b)) "
         "WITH CLUSTERING ORDER BY (a ASC, b DESC)")
    for k in range(4):
        node(f"INSERT INTO pg (k, st) VALUES ({k}, {k * 10})")
        for a, b in itertools.product(range(k), range(3)):
            node(f"INSERT INTO pg (k, a, b) VALUES ({k}, {a}, {b})")
    node("CREATE TABLE flat (k int PRIMARY KEY, v int)")
    for k in range(8):
        node(f"INSERT INTO flat (k, v) VALUES ({k}, {k % 3})")
    return node


@pytest.mark.parametrize("query", PAGED_QUERIES)
@pytest.mark.parametrize("page_size", [1, 2, 5])
def test_paging_returns_exactly_the_unpaged_rows(paged_node, query, page_size):
    whole = paged_node.rows(query)
    assert whole, "the query must select something for the comparison to mean anything"
    assert paged_node.rows(query, page_size=page_size) == whole


@pytest.mark.parametrize("seed", range(6))
def test_group_by_equals_grouping_the_rows_at_any_page_and_internal_page_size(monkeypatch, seed):
    """GROUP BY, paged or not and whatever its internal page size, gives what grouping the
    plain SELECT's rows gives: groups straddling internal pages and client pages are counted
    once, and no group is split or lost at a page's end."""
    rnd = random.Random(seed)
    node = Node()
    node("CREATE TABLE g (k int, a int, b int, v int, PRIMARY KEY (k, a, b))")
    for k in range(rnd.randint(1, 6)):
        for a, b in itertools.product(range(rnd.randint(0, 4)), range(rnd.randint(1, 4))):
            if rnd.random() < 0.8:
                node(f"INSERT INTO g (k, a, b, v) VALUES ({k}, {a}, {b}, {rnd.randint(-9, 9)})")
    plain = node.rows("SELECT k, a, b, v FROM g")
    for width, where in ((1, ""), (2, ""), (2, " WHERE k IN (0, 2, 3)"), (1, " WHERE k = 1")):
        keep = plain if not where else [r for r in plain if r[0] in ((0, 2, 3) if "IN" in where else (1,))]
        expected: dict = {}
        for k, a, b, v in keep:
            n, lo, hi, total = expected.get((k, a)[:width], (0, v, v, 0))
            expected[(k, a)[:width]] = (n + 1, min(lo, v), max(hi, v), total + v)
        expected_rows = [key + agg for key, agg in expected.items()]
        names = "k, a" if width == 2 else "k"
        query = f"SELECT {names}, COUNT(*), MIN(v), MAX(v), SUM(v) FROM g{where} GROUP BY {names}"
        for internal in (1, 2, 3, 5000):
            monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", internal)
            for page_size in (None, 1, 2, 3):
                assert node.rows(query, page_size=page_size) == expected_rows, (query, internal, page_size)
            limit = rnd.randint(1, 5)
            assert node.rows(f"{query} LIMIT {limit}", page_size=2) == expected_rows[:limit]


def test_aggregates_count_every_row_once_across_internal_pages(paged_node, monkeypatch):
    """COUNT(*) reads in internal pages; one ending on a partition's last row (every row of
    a table without clustering columns does) must not bring that row back."""
    monkeypatch.setattr(select, "INTERNAL_PAGE_ROWS", 3)
    whole = paged_node.rows("SELECT COUNT(*), COUNT(v), MIN(v), MAX(v), SUM(v), AVG(v), k FROM flat")
    assert whole[0][:6] == (8, 8, 0, 2, 7, 0)  # v = k % 3 for k = 0..7
    # aggregates hold a page at a time: no row limit on what they read, as in Cassandra
    monkeypatch.setattr(select, "MAX_UNPAGED_ROWS", 5)
    assert paged_node.rows("SELECT COUNT(*), COUNT(v), MIN(v), MAX(v), SUM(v), AVG(v), k FROM flat") == whole
    # GROUP BY too: 19 rows in 4 groups, each group's rows read across internal pages
    grouped = [(0, 1), (1, 3), (2, 6), (3, 9)]
    assert sorted(paged_node.rows("SELECT k, COUNT(*) FROM pg GROUP BY k")) == grouped
    assert sorted(paged_node.rows("SELECT k, COUNT(*) FROM pg GROUP BY k", page_size=1)) == grouped
    with pytest.raises(InvalidRequest, match="more than 5 rows"):  # 8 groups: an unpaged result too big
        paged_node.rows("SELECT k, COUNT(*) FROM flat GROUP BY k")
    assert len(paged_node.rows("SELECT k, COUNT(*) FROM flat GROUP BY k", page_size=5)) == 8
    monkeypatch.setattr(select, "MAX_UNPAGED_ROWS", 1_000_000)
    assert paged_node.rows("SELECT COUNT(*) FROM flat") == [(8,)]
    assert paged_node.rows("SELECT COUNT(*) FROM flat WHERE k IN (0, 1, 2, 3, 4)") == [(5,)]
    assert paged_node.rows("SELECT COUNT(*) FROM pg") == [(19,)]  # k = 0 counts once: its static row


def test_static_only_partitions_are_rows_only_for_whole_partition_queries(paged_node):
    assert paged_node.rows("SELECT k, a, st FROM pg WHERE k = 0") == [(0, None, 0)]
    assert paged_node.rows("SELECT k, a, st FROM pg WHERE k = 0 AND a = 1") == []
    assert paged_node.rows("SELECT k, a, st FROM pg WHERE k IN (0, 1) AND a >= 0") == [(1, 0, 10)] * 3
    assert paged_node.rows("SELECT k FROM pg WHERE k = 0 AND b = 1 ALLOW FILTERING") == []


def test_truncate_is_a_schema_change_that_needs_every_node_and_their_agreement(node):
    from agora.core.errors import TruncateError, Unavailable
    node("CREATE TABLE tr (k int PRIMARY KEY, v int)")
    table_id = node.backend.schema.table("ks", "tr").id.bytes
    node("TRUNCATE tr")
    first = node.backend.schema.truncated_at(table_id)
    assert first is not None
    node("TRUNCATE TABLE ks.tr")
    assert node.backend.schema.truncated_at(table_id) > first
    with pytest.raises(InvalidRequest):
        node("TRUNCATE no_such_table")
    view = node.backend.cluster_view
    peers_down = lambda: ClusterView("test", view().local, tuple(  # noqa: E731
        NodeView(n.node_id, f"127.0.0.{i + 2}", 7000, f"127.0.0.{i + 2}", 9042, "dc1", "rack1", n.host_id,
                 (i + 1,), None, "5.0.0", i == 0) for i, n in enumerate([view().local] * 2)))
    node.backend.cluster_view = peers_down
    with pytest.raises(Unavailable) as info:
        node("TRUNCATE tr")
    assert (info.value.required, info.value.alive) == (3, 2)
    node.backend.cluster_view = view

    waited = []

    async def no_agreement(timeout_s: float) -> bool:
        waited.append(timeout_s)
        return False
    node.backend.wait_schema_agreement = no_agreement
    with pytest.raises(TruncateError, match="did not reach every node"):
        node("TRUNCATE tr")
    assert waited == [8.0]  # an answer before the drivers' and cqlsh's 10 s request timeout


def test_named_bind_markers_are_described_by_their_names(node):
    node("CREATE TABLE named (k int, c int, v text, PRIMARY KEY (k, c))")
    prepared = asyncio.run(node.processor.prepare("SELECT v FROM named WHERE k = :key AND c IN :cs LIMIT :n",
                                                  None, node.session))
    assert [(c.name, c.type.cql_name()) for c in prepared.bind_columns] == \
        [("key", "int"), ("cs", "list<int>"), ("n", "int")]
    assert prepared.pk_indexes == [0]


@pytest.mark.parametrize("where", ["c > 1 AND c > 2", "c < 1 AND c <= 2", "(c) > (1) AND (c) >= (2)"])
def test_two_bounds_on_one_side_are_invalid(node, where):
    node("CREATE TABLE IF NOT EXISTS bounds (k int, c int, PRIMARY KEY (k, c))")
    with pytest.raises(InvalidRequest, match="More than one restriction was found"):
        node(f"SELECT * FROM bounds WHERE k = 1 AND {where}")


def test_setting_a_column_excludes_other_operations_on_it(node):
    node("CREATE TABLE conflict (k int PRIMARY KEY, v int, l list<int>)")
    for bad in ("UPDATE conflict SET v = 1, v = 2 WHERE k = 1", "UPDATE conflict SET l = [1], l = l + [2] WHERE k = 1"):
        with pytest.raises(InvalidRequest, match="Multiple incompatible setting of column"):
            node(bad)
    node("UPDATE conflict SET l = l + [1], l = [0] + l WHERE k = 1")
    assert node.rows("SELECT l FROM conflict WHERE k = 1") == [([0, 1],)]


def test_bound_null_and_unset_ttl_and_timestamp(node):
    from agora.cql.requests import UNSET
    node("CREATE TABLE using_t (k int PRIMARY KEY, v int) WITH default_time_to_live = 1000")
    insert = "INSERT INTO using_t (k, v) VALUES (?, 1) USING TTL ? AND TIMESTAMP ?"
    int_ = lambda v: T.serialize(T.INT, v)  # noqa: E731
    node(insert, [int_(1), None, T.serialize(T.BIGINT, 77)])  # null TTL: none at all
    node(insert, [int_(2), UNSET, UNSET])  # unset TTL: the table's default; unset timestamp: now
    assert node.rows("SELECT k, TTL(v), WRITETIME(v) FROM using_t WHERE k IN (1, 2)") == \
        [(1, None, 77), (2, 1000, node.backend._ts)]
    with pytest.raises(InvalidRequest, match="Invalid null value of timestamp"):
        node(insert, [int_(3), UNSET, None])


# ---- plans kept between executions (agora.cql.plans) ----------------------------------------


def test_plan_cache_keeps_a_plan_per_statement_and_table_version():
    from agora.cql.plans import PlanCache

    built = []

    def build(obj, table):
        built.append((obj, table))
        if table == "bad":
            raise InvalidRequest("no plan")
        return (obj, table)

    cache = PlanCache(build, entries=2)
    stmt, other = ("stmt",), ("other",)
    assert cache.get(stmt, "v1") is cache.get(stmt, "v1") and len(built) == 1
    assert cache.get(stmt, "v2") == (stmt, "v2") and len(built) == 2  # a new table version
    for _ in range(2):  # a failed plan is not kept: the error comes back
        with pytest.raises(InvalidRequest):
            cache.get(other, "bad")
    assert len(built) == 4
    assert len(cache) == 2
    cache.get(other, "v1")  # past capacity the cache starts again
    assert len(cache) == 1
    cache.get(other, "v2")  # one statement, two tables (two nodes in one process): two plans
    assert cache.get(other, "v1") == (other, "v1") and cache.get(other, "v2") == (other, "v2")
    assert len(built) == 6


def test_prepared_insert_follows_schema_changes(node):
    node("CREATE TABLE t (k int PRIMARY KEY, v int)")
    node.prepared("INSERT INTO t (k, v) VALUES (?, ?)", [1, 10])
    node("ALTER TABLE t WITH default_time_to_live = 1000")
    node.prepared("INSERT INTO t (k, v) VALUES (?, ?)", [2, 20])
    assert node.rows("SELECT k, v, ttl(v) FROM t WHERE k IN (1, 2)") == [(1, 10, None), (2, 20, 1000)]
    node("ALTER TABLE t DROP v")
    with pytest.raises(InvalidRequest, match="Undefined column name v"):
        node.prepared("INSERT INTO t (k, v) VALUES (?, ?)", [3, 30])
    with pytest.raises(InvalidRequest, match="Undefined column name v"):  # every time
        node.prepared("INSERT INTO t (k, v) VALUES (?, ?)", [3, 30])


# ---- dropped columns -----------------------------------------------------------------------


def test_a_dropped_column_keeps_its_old_cells_hidden_when_added_again(node):
    node("CREATE TABLE t (k int PRIMARY KEY, a int, b text)")
    node("INSERT INTO t (k, a, b) VALUES (1, 10, 'old')")
    node("UPDATE t SET b = 'only b' WHERE k = 2")  # a row that lives by b's cell alone
    node("ALTER TABLE t DROP b")
    assert node.rows("SELECT * FROM t") == [(1, 10)]  # row 2 had no other live data
    assert node.rows("SELECT count(*) FROM t") == [(1,)]
    node("ALTER TABLE t ADD b text")
    assert node.rows("SELECT k, a, b FROM t") == [(1, 10, None)]
    assert node.rows("SELECT k, b, writetime(b) FROM t WHERE k = 1") == [(1, None, None)]
    node("UPDATE t SET b = 'new' WHERE k = 2")
    node("INSERT INTO t (k, b) VALUES (3, 'new')")
    assert node.rows("SELECT k, a, b FROM t") == [(1, 10, None), (2, None, "new"), (3, None, "new")]


def test_drop_using_timestamp_hides_only_cells_written_until_then(node):
    node("CREATE TABLE t (k int PRIMARY KEY, a int, b text)")
    node("INSERT INTO t (k, a, b) VALUES (1, 1, 'before') USING TIMESTAMP 100")
    node("INSERT INTO t (k, a, b) VALUES (2, 2, 'after') USING TIMESTAMP 300")
    node("ALTER TABLE t DROP b USING TIMESTAMP 200")
    node("ALTER TABLE t ADD b text")
    assert node.rows("SELECT k, b FROM t") == [(1, None), (2, "after")]


def test_a_dropped_collection_added_again_starts_empty(node):
    node("CREATE TABLE t (k int PRIMARY KEY, l list<int>, s set<int>)")
    node("INSERT INTO t (k, l, s) VALUES (1, [1, 2], {3})")
    node("ALTER TABLE t DROP l")
    node("ALTER TABLE t ADD l list<int>")
    node("UPDATE t SET l = l + [9] WHERE k = 1")
    assert node.rows("SELECT l, s FROM t") == [([9], {3})]
    node("UPDATE t SET l[0] = 8 WHERE k = 1")  # indexes count only the elements after the drop
    assert node.rows("SELECT l FROM t") == [([8],)]


def test_a_dropped_column_comes_back_only_with_its_type_and_kind(node):
    node("CREATE TABLE t (k int, c int, b text, st int static, PRIMARY KEY (k, c))")
    node("ALTER TABLE t DROP b")
    node("ALTER TABLE t DROP st")
    with pytest.raises(InvalidRequest, match="Cannot re-add previously dropped column 'b' of type int, "
                                             "incompatible with previous type text"):
        node("ALTER TABLE t ADD b int")
    with pytest.raises(InvalidRequest, match="Cannot re-add previously dropped column 'b' of kind STATIC, "
                                             "incompatible with previous kind REGULAR"):
        node("ALTER TABLE t ADD b text static")
    with pytest.raises(InvalidRequest, match="of kind REGULAR, incompatible with previous kind STATIC"):
        node("ALTER TABLE t ADD st int")
    node("ALTER TABLE t ADD b text")
    node("ALTER TABLE t ADD st int static")


def test_system_schema_lists_dropped_columns(node):
    node("CREATE TABLE t (k int PRIMARY KEY, a int, b map<text, int>)")
    assert node.rows("SELECT * FROM system_schema.dropped_columns WHERE keyspace_name = 'ks'") == []
    node("ALTER TABLE t DROP b USING TIMESTAMP 1700000000000000")
    node("ALTER TABLE t DROP a")
    rows = node.rows("SELECT table_name, column_name, dropped_time, kind, type "
                     "FROM system_schema.dropped_columns WHERE keyspace_name = 'ks'")
    assert [r[:2] for r in rows] == [("t", "a"), ("t", "b")]
    assert rows[1][2:] == (datetime.datetime(2023, 11, 14, 22, 13, 20), "regular", "map<text, int>")
    assert rows[0][3:] == ("regular", "int")


def test_describe_with_internals_recreates_dropped_columns(node):
    node("CREATE TABLE t (k int, c int, b text, gone set<int>, st int static, PRIMARY KEY (k, c))")
    node("ALTER TABLE t DROP b USING TIMESTAMP 1000")
    node("ALTER TABLE t ADD b text")
    node("ALTER TABLE t DROP gone USING TIMESTAMP 2000")
    node("ALTER TABLE t DROP st USING TIMESTAMP 3000")
    [[text]] = [[r[-1]] for r in node.rows("DESCRIBE TABLE t WITH INTERNALS")]
    statements = text.split(";\n")
    assert statements[1:] == ["ALTER TABLE ks.t DROP b USING TIMESTAMP 1000",
                              "ALTER TABLE ks.t ADD b text",
                              "ALTER TABLE ks.t DROP gone USING TIMESTAMP 2000",
                              "ALTER TABLE ks.t DROP st USING TIMESTAMP 3000;"]
    assert "    gone set<int>,\n" in statements[0] and "    st int static,\n" in statements[0]
    plain = [r[-1] for r in node.rows("DESCRIBE TABLE t")]
    assert "DROP" not in plain[0] and "gone" not in plain[0]
    again = Node()
    for statement in statements:
        again(statement)
    original = node.backend.schema.table("ks", "t")
    copy = again.backend.schema.table("ks", "t")
    assert (copy.id, copy.columns, copy.dropped) == (original.id, original.columns, original.dropped)


def test_dropped_columns_travel_with_the_schema():
    from agora.core.errors import ProtocolError
    from agora.core.schema.model import TableDef
    node = Node()
    node("CREATE TABLE t (k int PRIMARY KEY, a int, b text)")
    before = node.backend.schema.table("ks", "t")
    assert "dropped" not in before.to_plain()  # tables without drops keep their version
    node("ALTER TABLE t DROP b")
    table = node.backend.schema.table("ks", "t")
    assert TableDef.from_plain(table.to_plain()) == table
    assert table.dropped["b"].type == T.TEXT and table.dropped["b"].kind == "regular"
    merged = Schema().merge(node.backend.schema)
    assert merged.version() == node.backend.schema.version()
    assert merged.table("ks", "t").dropped == table.dropped
    bad = table.to_plain()
    bad["dropped"] = {"b": ["not a time", bad["dropped"]["b"][1], "regular"]}
    with pytest.raises(ProtocolError, match="malformed schema object"):
        TableDef.from_plain(bad)


def test_prepared_statements_check_bound_keys_at_every_execution(node):
    node("CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))")
    node.prepared("INSERT INTO t (k, c, v) VALUES (?, ?, ?)", [1, 2, 3])
    assert node.prepared("SELECT v FROM t WHERE k = ?", [1]).rows == [[T.serialize(T.INT, 3)]]
    for text, values in (("INSERT INTO t (k, c, v) VALUES (?, ?, ?)", [None, 2, 3]),
                         ("INSERT INTO t (k, c, v) VALUES (?, ?, ?)", [1, None, 3]),
                         ("SELECT v FROM t WHERE k = ?", [None])):
        with pytest.raises(InvalidRequest, match="null value"):
            node.prepared(text, values)
    assert node.prepared("SELECT v FROM t WHERE k = ?", [4]).rows == []
    with pytest.raises(InvalidRequest, match="more than one relation"):  # not the one-key shape
        node("SELECT v FROM t WHERE k = 1 AND k = 2")


# ---- CREATE TABLE ... WITH ID ---------------------------------------------------------------


def test_create_table_with_id_takes_that_id_once_no_live_table_has_it(node):
    node("CREATE TABLE t (k int PRIMARY KEY, v text)")
    first = node.backend.schema.table("ks", "t").id
    node("DROP TABLE t")
    node(f"CREATE TABLE t (k int PRIMARY KEY, v text) WITH ID = {first} AND comment = 'again'")
    again = node.backend.schema.table("ks", "t")
    assert again.id == first and again.option("comment") == "again"
    node("INSERT INTO t (k, v) VALUES (1, 'x')")
    assert node.rows("SELECT v FROM t WHERE k = 1") == [("x",)]
    with pytest.raises(InvalidRequest, match="already used by ks.t"):
        node(f"CREATE TABLE u (k int PRIMARY KEY) WITH ID = {first}")
    with pytest.raises(InvalidRequest, match="Cannot alter table id"):
        node(f"ALTER TABLE t WITH ID = {first}")
    with pytest.raises(InvalidRequest, match="not a UUID"):
        node("CREATE TABLE w (k int PRIMARY KEY) WITH ID = 'nope'")
    node("CREATE TABLE x (k int PRIMARY KEY)")  # without ID: from name and time, as before
    assert node.backend.schema.table("ks", "x").id != first


def test_reads_of_a_partition_grow_while_deleted_rows_cut_them_short(node):
    """LIMIT 1 over 200 deleted rows and a live one: each read that deleted rows left short
    asks for twice as many rows, so the live row is reached in a handful of reads (it took
    one read per deleted row), and the answer is the same at every page size."""
    node("CREATE TABLE gone (k int, c int, v int, PRIMARY KEY (k, c))")
    for c in range(201):
        node(f"INSERT INTO gone (k, c, v) VALUES (0, {c}, {c})")
    for c in range(200):
        node(f"DELETE FROM gone WHERE k = 0 AND c = {c}")
    before = len(node.backend.read_commands)
    assert node.rows("SELECT c, v FROM gone WHERE k = 0 LIMIT 1") == [(200, 200)]
    reads = node.backend.read_commands[before:]
    assert len(reads) <= 10 and [r.limit_rows for r in reads[:4]] == [1, 2, 4, 8], [r.limit_rows for r in reads]
    for page_size in (1, 2, 7):
        assert node.rows("SELECT c, v FROM gone WHERE k = 0", page_size=page_size) == [(200, 200)]
    assert node.rows("SELECT c FROM gone WHERE k = 0 ORDER BY c DESC LIMIT 1") == [(200,)]
