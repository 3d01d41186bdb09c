"""Every CQL statement kind and every CQL type, end to end through the real cassandra-driver
3.30.1 against three real node processes (127.0.20.1-3): DDL with the driver's schema
metadata and error classes, INSERT/UPDATE/DELETE with timestamps, TTLs, collections, UDT
fields and batches, and the SELECT forms (keys, slices, multi-column slices, ordering,
limits, DISTINCT, aggregates, token scans, filtering, JSON). Each type is written once as a
literal in the statement text and once as a bound value of a prepared statement.

The driver is the only client: nothing here reaches into a node. Reads and writes run at
QUORUM on RF 3, so a read sees the write before it whichever coordinator the driver picks.
Gossip runs every 200 ms so that a DDL's schema agreement takes a fraction of a second.
Where the parser (owned elsewhere) is wrong the test is a strict xfail naming the bug."""

from __future__ import annotations

import datetime
import itertools
import json
import math
import time
import uuid
from decimal import Decimal

import pytest
from cassandra import AlreadyExists, ConsistencyLevel, InvalidRequest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.protocol import ConfigurationException, SyntaxException
from cassandra.query import BatchStatement, BatchType, SimpleStatement, ValueSequence
from cassandra.util import Date, Duration, Time

from agora.runtime.cluster import wait_until

from .conftest import make_cluster

SUBNET = "127.0.20"  # this module's loopback subnet: other modules run clusters on others
KS = "cql"


# ---- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    nodes = make_cluster(tmp_path_factory, "cql", overrides={"gossip_interval": 200}, subnet=SUBNET)
    yield nodes
    nodes.down(kill=True)


def connect(protocol_version: int, contact: str = f"{SUBNET}.1", **kwargs) -> Cluster:
    profile = ExecutionProfile(consistency_level=ConsistencyLevel.QUORUM,
                               load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc="dc1")))
    return Cluster([contact], protocol_version=protocol_version,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **kwargs)


@pytest.fixture(scope="module")
def driver(cluster):
    client = connect(5)
    session = client.connect()
    session.execute(f"CREATE KEYSPACE {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 3}}")
    session.set_keyspace(KS)
    yield client, session
    client.shutdown()


@pytest.fixture(scope="module")
def session(driver):
    return driver[1]


@pytest.fixture(scope="module")
def metadata(driver):
    return driver[0].metadata


def rows(session, query, params=None) -> list:
    return list(session.execute(query, params))


def fails(session, exc_type, query, params=None) -> Exception:
    """Run a statement that must fail with exactly this driver exception class."""
    with pytest.raises(Exception) as info:
        session.execute(query, params)
    assert type(info.value) is exc_type, f"{query!r} raised {type(info.value).__name__}: {info.value}"
    return info.value


# ---- DDL: keyspaces ---------------------------------------------------------------------------


def test_create_alter_drop_keyspace_with_metadata_and_errors(session, metadata):
    session.execute("CREATE KEYSPACE ks_simple WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}")
    ks = metadata.keyspaces["ks_simple"]
    assert type(ks.replication_strategy).__name__ == "SimpleStrategy"
    assert ks.replication_strategy.replication_factor == 2 and ks.durable_writes is True

    err = fails(session, AlreadyExists,
                "CREATE KEYSPACE ks_simple WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    assert (err.keyspace, err.table) == ("ks_simple", "")  # the protocol's "" for a keyspace
    session.execute("CREATE KEYSPACE IF NOT EXISTS ks_simple WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    assert metadata.keyspaces["ks_simple"].replication_strategy.replication_factor == 2  # untouched

    session.execute("CREATE KEYSPACE ks_nts WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3} "
                    "AND durable_writes = false")
    ks = metadata.keyspaces["ks_nts"]
    assert type(ks.replication_strategy).__name__ == "NetworkTopologyStrategy"
    assert ks.replication_strategy.dc_replication_factors == {"dc1": 3} and ks.durable_writes is False
    session.execute("ALTER KEYSPACE ks_nts WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 1} "
                    "AND durable_writes = true")
    ks = metadata.keyspaces["ks_nts"]
    assert ks.replication_strategy.dc_replication_factors == {"dc1": 1} and ks.durable_writes is True
    # replication_factor under NTS expands to every datacenter of the cluster
    session.execute("ALTER KEYSPACE ks_nts WITH replication = "
                    "{'class': 'NetworkTopologyStrategy', 'replication_factor': 2}")
    assert metadata.keyspaces["ks_nts"].replication_strategy.dc_replication_factors == {"dc1": 2}
    # a keyspace created by CQL is usable at once
    session.execute("CREATE TABLE ks_nts.kv (k int PRIMARY KEY, v text)")
    session.execute("INSERT INTO ks_nts.kv (k, v) VALUES (1, 'nts')")
    assert rows(session, "SELECT v FROM ks_nts.kv WHERE k = 1")[0].v == "nts"

    for bad in ("{'class': 'NoSuchStrategy'}", "{'class': 'SimpleStrategy'}",
                "{'class': 'SimpleStrategy', 'replication_factor': -1}",
                "{'class': 'NetworkTopologyStrategy', 'nowhere': 3}"):
        fails(session, ConfigurationException, f"CREATE KEYSPACE ks_bad WITH replication = {bad}")
        assert "ks_bad" not in metadata.keyspaces
    fails(session, SyntaxException, "CREATE KEYSPAC ks_bad WITH replication = {'class': 'SimpleStrategy'}")
    fails(session, InvalidRequest, "ALTER KEYSPACE ks_missing WITH durable_writes = false")

    session.execute("DROP KEYSPACE ks_nts")
    assert "ks_nts" not in metadata.keyspaces
    fails(session, InvalidRequest, "SELECT * FROM ks_nts.kv")
    fails(session, InvalidRequest, "DROP KEYSPACE ks_nts")
    session.execute("DROP KEYSPACE IF EXISTS ks_nts")
    session.execute("DROP KEYSPACE IF EXISTS ks_simple")
    assert "ks_simple" not in metadata.keyspaces


# ---- DDL: tables, types, USE, TRUNCATE ------------------------------------------------------


def test_create_table_shapes_options_and_metadata(session, metadata):
    session.execute("CREATE TABLE shapes (a int, b text, c int, d timeuuid, s text static, v text, "
                    "PRIMARY KEY ((a, b), c, d)) WITH CLUSTERING ORDER BY (c ASC, d DESC) "
                    "AND default_time_to_live = 3600 AND gc_grace_seconds = 300 AND comment = 'all shapes'")
    t = metadata.keyspaces[KS].tables["shapes"]
    assert [c.name for c in t.partition_key] == ["a", "b"]
    assert [(c.name, c.is_reversed) for c in t.clustering_key] == [("c", False), ("d", True)]
    assert t.columns["s"].is_static and not t.columns["v"].is_static
    assert {n: c.cql_type for n, c in t.columns.items()} == {
        "a": "int", "b": "text", "c": "int", "d": "timeuuid", "s": "text", "v": "text"}
    assert (t.options["default_time_to_live"], t.options["gc_grace_seconds"], t.options["comment"]) == \
        (3600, 300, "all shapes")

    err = fails(session, AlreadyExists, "CREATE TABLE shapes (k int PRIMARY KEY)")
    assert (err.keyspace, err.table) == (KS, "shapes")
    session.execute("CREATE TABLE IF NOT EXISTS shapes (k int PRIMARY KEY)")
    assert list(metadata.keyspaces[KS].tables["shapes"].columns) == ["a", "b", "c", "d", "s", "v"]

    session.execute("ALTER TABLE shapes ADD (w int, tags set<text>)")
    session.execute("ALTER TABLE shapes DROP v")
    session.execute("ALTER TABLE shapes WITH comment = 'altered' AND gc_grace_seconds = 10 "
                    "AND speculative_retry = 'min(95PERCENTILE,20ms)' AND read_repair = 'none'")
    fails(session, InvalidRequest, "ALTER TABLE shapes WITH speculative_retry = 'fast'")
    t = metadata.keyspaces[KS].tables["shapes"]
    assert (t.options["speculative_retry"], t.options["read_repair"]) == ("MIN(95p,20ms)", "NONE")
    assert sorted(t.columns) == ["a", "b", "c", "d", "s", "tags", "w"]
    assert (t.columns["tags"].cql_type, t.options["comment"], t.options["gc_grace_seconds"]) == \
        ("set<text>", "altered", 10)
    session.execute("INSERT INTO shapes (a, b, c, d, w, tags) VALUES (1, 'x', 2, now(), 5, {'t'})")
    got = rows(session, "SELECT * FROM shapes WHERE a = 1 AND b = 'x'")
    assert [(r.c, r.w, set(r.tags)) for r in got] == [(2, 5, {"t"})] and not hasattr(got[0], "v")
    assert 3500 < rows(session, "SELECT TTL(w) FROM shapes WHERE a = 1 AND b = 'x'")[0][0] <= 3600

    for bad in ("ALTER TABLE shapes ADD w text",               # exists
                "ALTER TABLE shapes DROP nope",                # unknown column
                "ALTER TABLE shapes DROP a",                   # primary key part
                "CREATE TABLE nokey (a int, b int)",           # no primary key
                "CREATE TABLE lonely_static (k int PRIMARY KEY, s int static)",
                "CREATE TABLE badtype (k int PRIMARY KEY, v nosuchtype)",
                "CREATE TABLE nosuchks.t (k int PRIMARY KEY)",
                "INSERT INTO shapes (a, b, c, d, v) VALUES (1, 'x', 2, now(), 'gone')"):  # dropped column
        fails(session, InvalidRequest, bad)
    fails(session, SyntaxException, "CREATE TABLE broken (k int PRIMARY KEY")

    session.execute("DROP TABLE shapes")
    assert "shapes" not in metadata.keyspaces[KS].tables
    fails(session, InvalidRequest, "SELECT * FROM shapes")
    fails(session, InvalidRequest, "DROP TABLE shapes")
    session.execute("DROP TABLE IF EXISTS shapes")


def test_dropped_column_added_again_hides_old_values_on_every_coordinator(session, metadata):
    session.execute("CREATE TABLE dropped (k int PRIMARY KEY, a int, b text)")
    at_all = SimpleStatement("INSERT INTO dropped (k, a, b) VALUES (%s, %s, %s)",
                             consistency_level=ConsistencyLevel.ALL)
    session.execute(at_all, (1, 10, "old"))
    session.execute("UPDATE dropped SET b = 'only b' WHERE k = 2")
    session.execute("ALTER TABLE dropped DROP b")
    session.execute("ALTER TABLE dropped ADD b text")
    session.execute("INSERT INTO dropped (k, b) VALUES (3, 'new')")
    hosts = list(metadata.all_hosts())
    assert len(hosts) == 3
    read = SimpleStatement("SELECT k, a, b FROM dropped", consistency_level=ConsistencyLevel.ALL)
    registry = "SELECT column_name, kind, type FROM system_schema.dropped_columns " \
               "WHERE keyspace_name = %s AND table_name = 'dropped'"
    for host in hosts:  # each node coordinates with the schema it was sent
        got = sorted((r.k, r.a, r.b) for r in session.execute(read, host=host))
        assert got == [(1, 10, None), (3, None, "new")], host
        assert [tuple(r) for r in session.execute(registry, (KS,), host=host)] == [("b", "regular", "text")]
    session.execute("ALTER TABLE dropped DROP b")
    err = fails(session, InvalidRequest, "ALTER TABLE dropped ADD b int")
    assert "Cannot re-add previously dropped column 'b' of type int" in str(err)


def test_a_wide_partition_pages_in_order_on_every_coordinator(session, metadata):
    """Each page of a wide partition is read as a bounded page of rows (ReadCommand
    .limit_rows), across replicas at QUORUM and ALL, with deleted rows in between, forwards
    and (ORDER BY against the clustering order) from the end."""
    session.execute("CREATE TABLE wide (k int, c int, v text, PRIMARY KEY (k, c))")
    insert = session.prepare("INSERT INTO wide (k, c, v) VALUES (1, ?, ?)")
    for c in range(1200):
        session.execute(insert, (c, f"v{c}"))
    session.execute("DELETE FROM wide WHERE k = 1 AND c >= 300 AND c < 700")
    want = [c for c in range(1200) if not 300 <= c < 700]
    for host in metadata.all_hosts():
        for level in (ConsistencyLevel.QUORUM, ConsistencyLevel.ALL):
            read = SimpleStatement("SELECT c, v FROM wide WHERE k = 1", fetch_size=150, consistency_level=level)
            got = [(r.c, r.v) for r in session.execute(read, host=host)]
            assert got == [(c, f"v{c}") for c in want], (host, level)
    count = SimpleStatement("SELECT count(*) FROM wide WHERE k = 1", consistency_level=ConsistencyLevel.ALL)
    assert session.execute(count).one()[0] == len(want)
    backwards = SimpleStatement("SELECT c FROM wide WHERE k = 1 ORDER BY c DESC", fetch_size=150,
                                consistency_level=ConsistencyLevel.QUORUM)
    assert [r.c for r in session.execute(backwards)] == want[::-1]
    latest = SimpleStatement("SELECT c FROM wide WHERE k = 1 ORDER BY c DESC LIMIT 5",
                             consistency_level=ConsistencyLevel.ALL)
    assert [r.c for r in session.execute(latest)] == want[:-6:-1]


def test_a_partition_bigger_than_an_internode_frame_is_read_by_scans_and_by_key(session):
    """A partition of 17 MiB (17 rows of 1 MiB): a replica's answer holding it whole would be
    over the 16 MiB internode frame, so replicas answer scans and reads by key in pieces of
    about 4 MiB (cut after a row) and the coordinator resumes inside the partition. A
    full-table scan and a read by key at the driver's default page size return every row,
    once, in order; smaller pages too."""
    session.execute("CREATE TABLE huge (k int, c int, v blob, PRIMARY KEY (k, c))")
    insert = session.prepare("INSERT INTO huge (k, c, v) VALUES (?, ?, ?)")
    for c in range(17):
        session.execute(insert, (0, c, bytes([c]) * (1 << 20)))
    session.execute(insert, (1, 0, b"small"))
    want = [(0, c, bytes([c]), 1 << 20) for c in range(17)]
    for query, fetch_size in (("SELECT k, c, v FROM huge", 5000), ("SELECT k, c, v FROM huge WHERE k = 0", 5000),
                              ("SELECT k, c, v FROM huge", 3), ("SELECT k, c, v FROM huge WHERE k = 0", 4)):
        statement = SimpleStatement(query, fetch_size=fetch_size, consistency_level=ConsistencyLevel.QUORUM)
        got = [(r.k, r.c, r.v[:1], len(r.v)) for r in session.execute(statement, timeout=60) if r.k == 0]
        assert got == want, (query, fetch_size)
    session.execute("DROP TABLE huge")


def test_a_mutation_bigger_than_an_internode_frame_is_an_invalid_request(session):
    """A 160 KB request whose mutation is over 16 MiB (20,000 set elements, each a cell that
    carries its 1,000-character column name) could never reach a replica: it is refused
    with InvalidRequest at once, nothing of it is stored, the node keeps serving, and a
    write of 8 MiB (under the limit) goes through and reads back whole."""
    name = "l" * 1000
    session.execute(f"CREATE TABLE big_writes (k int PRIMARY KEY, {name} set<int>, v blob)")
    append = session.prepare(f"UPDATE big_writes SET {name} = {name} + ? WHERE k = ?")
    quorum = ConsistencyLevel.QUORUM
    append.consistency_level = quorum
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="oversized mutation"):
        session.execute(append, (set(range(20_000)), 1), timeout=30)
    assert time.monotonic() - started < 5, "an answer, not a timeout"
    read = SimpleStatement("SELECT k FROM big_writes WHERE k = 1", consistency_level=ConsistencyLevel.ALL)
    assert rows(session, read) == []
    session.execute(append, (set(range(100)), 1))
    blob = bytes(range(256)) * (8 * 4096)
    put = session.prepare("INSERT INTO big_writes (k, v) VALUES (?, ?)")
    put.consistency_level = quorum
    session.execute(put, (2, blob), timeout=30)
    got = rows(session, SimpleStatement("SELECT k, v FROM big_writes WHERE k IN (1, 2)",
                                        consistency_level=ConsistencyLevel.ALL))
    assert [(r.k, r.v) for r in got] == [(1, None), (2, blob)]
    assert rows(session, f"SELECT {name} FROM big_writes WHERE k = 1")[0][0] == set(range(100))
    session.execute("DROP TABLE big_writes")


def test_create_alter_drop_type(session, metadata):
    session.execute("CREATE TYPE point (x int, y int)")
    assert metadata.keyspaces[KS].user_types["point"].field_names == ["x", "y"]
    err = fails(session, AlreadyExists, "CREATE TYPE point (z int)")
    assert err.keyspace == KS
    session.execute("CREATE TYPE IF NOT EXISTS point (z int)")
    session.execute("ALTER TYPE point ADD label text")
    session.execute("ALTER TYPE point RENAME x TO east AND y TO north")
    udt = metadata.keyspaces[KS].user_types["point"]
    assert (udt.field_names, udt.field_types) == (["east", "north", "label"], ["int", "int", "text"])
    session.execute("CREATE TABLE pins (k int PRIMARY KEY, p frozen<point>)")
    session.execute("INSERT INTO pins (k, p) VALUES (1, {east: 1, north: 2, label: 'home'})")
    assert tuple(rows(session, "SELECT p FROM pins WHERE k = 1")[0].p) == (1, 2, "home")
    fails(session, InvalidRequest, "DROP TYPE point")  # still used by pins
    fails(session, InvalidRequest, "ALTER TYPE point ADD label int")
    session.execute("DROP TABLE pins")
    session.execute("DROP TYPE point")
    assert "point" not in metadata.keyspaces[KS].user_types
    fails(session, InvalidRequest, "DROP TYPE point")
    session.execute("DROP TYPE IF EXISTS point")


def test_use_and_truncate(driver):
    client, _ = driver
    own = client.connect()  # a session without a keyspace
    try:
        fails(own, InvalidRequest, "SELECT * FROM kv_use")  # no keyspace yet
        fails(own, InvalidRequest, "USE no_such_keyspace")
        own.execute(f"USE {KS}")
        own.execute("CREATE TABLE kv_use (k int PRIMARY KEY, v text)")
        insert = own.prepare("INSERT INTO kv_use (k, v) VALUES (?, ?)")
        for k in range(20):
            own.execute(insert, (k, f"v{k}"))
        assert len(rows(own, "SELECT * FROM kv_use")) == 20
        own.execute("TRUNCATE kv_use")
        assert rows(own, "SELECT * FROM kv_use") == []
        own.execute(insert, (1, "after"))
        own.execute(f"TRUNCATE TABLE {KS}.kv_use")
        assert rows(own, f"SELECT * FROM {KS}.kv_use") == []
    finally:
        own.shutdown()


# ---- types ------------------------------------------------------------------------------------

SAME = object()  # bind the expected value itself

# (id, cql type, literal in the statement text, value as the driver returns it, value to bind)
TYPE_CASES = [
    ("int-min", "int", "-2147483648", -2**31, SAME),
    ("int-max", "int", "2147483647", 2**31 - 1, SAME),
    ("bigint-min", "bigint", "-9223372036854775808", -2**63, SAME),
    ("bigint-max", "bigint", "9223372036854775807", 2**63 - 1, SAME),
    ("smallint", "smallint", "-32768", -32768, SAME),
    ("tinyint-min", "tinyint", "-128", -128, SAME),
    ("tinyint-max", "tinyint", "127", 127, SAME),
    ("varint-negative", "varint", "-123456789012345678901234567890", -123456789012345678901234567890, SAME),
    ("varint-2^100", "varint", str(2**100), 2**100, SAME),
    ("varint-zero", "varint", "0", 0, SAME),
    ("decimal", "decimal", "-1234567890.0987654321", Decimal("-1234567890.0987654321"), SAME),
    ("decimal-tiny", "decimal", "1E-10", Decimal("1E-10"), SAME),
    ("float", "float", "1.5", 1.5, SAME),
    ("float-max", "float", "3.4028235e38", 3.4028234663852886e38, SAME),
    ("float-nan", "float", "NaN", math.nan, SAME),
    ("double-nan", "double", "NaN", math.nan, SAME),
    ("double-infinity", "double", "Infinity", math.inf, SAME),
    ("double-minus-infinity", "double", "-Infinity", -math.inf, SAME),
    ("double-huge", "double", "-1.5e300", -1.5e300, SAME),
    ("double-subnormal", "double", "5e-324", 5e-324, SAME),
    ("boolean-true", "boolean", "true", True, SAME),
    ("boolean-false", "boolean", "FALSE", False, SAME),
    ("text-unicode", "text", "'héllo ✓ 𝄞 日本'", "héllo ✓ 𝄞 日本", SAME),
    ("text-empty", "text", "''", "", SAME),
    ("text-quote", "text", "'it''s'", "it's", SAME),
    ("text-dollar-quoted", "text", "$$it's $ fine$$", "it's $ fine", SAME),
    ("varchar", "varchar", "'v'", "v", SAME),
    ("ascii", "ascii", "'plain ~ascii!'", "plain ~ascii!", SAME),
    ("blob-empty", "blob", "0x", b"", SAME),
    ("blob", "blob", "0xDEADbeef00", b"\xde\xad\xbe\xef\x00", SAME),
    ("uuid", "uuid", "123e4567-e89b-12d3-a456-426614174000", uuid.UUID("123e4567-e89b-12d3-a456-426614174000"), SAME),
    ("timeuuid", "timeuuid", "50554d6e-29bb-11e5-b345-feff819cdc9f",
     uuid.UUID("50554d6e-29bb-11e5-b345-feff819cdc9f"), SAME),
    ("timestamp", "timestamp", "'2011-02-03 04:05:06.789+0000'", datetime.datetime(2011, 2, 3, 4, 5, 6, 789000), SAME),
    ("timestamp-offset", "timestamp", "'2011-02-03T04:05:06.789-0130'",
     datetime.datetime(2011, 2, 3, 5, 35, 6, 789000), SAME),
    ("timestamp-before-epoch", "timestamp", "-1000", datetime.datetime(1969, 12, 31, 23, 59, 59), SAME),
    ("date", "date", "'2024-02-29'", Date(datetime.date(2024, 2, 29)), SAME),
    ("date-year-one", "date", "'0001-01-01'", Date(datetime.date(1, 1, 1)), SAME),
    ("date-min", "date", "'-5877641-06-23'", Date(-2**31), SAME),
    ("date-max", "date", "'5881580-07-11'", Date(2**31 - 1), SAME),
    ("time", "time", "'13:30:54.234'", Time(datetime.time(13, 30, 54, 234000)), SAME),
    ("time-one-nanosecond", "time", "'00:00:00.000000001'", Time(1), SAME),
    ("time-last-nanosecond", "time", "'23:59:59.999999999'", Time(86_399_999_999_999), SAME),
    ("inet4", "inet", "'192.168.0.1'", "192.168.0.1", SAME),
    ("inet6", "inet", "'2001:db8::ff00:42:8329'", "2001:db8::ff00:42:8329", SAME),
    ("duration", "duration", "1y2mo3w4d5h6m7s8ms9us10ns", Duration(14, 25, 18_367_008_009_010), SAME),
    ("duration-iso", "duration", "P1DT2H", Duration(0, 1, 7200 * 10**9), SAME),
    ("duration-negative", "duration", "-2w3d", Duration(0, -17, 0), SAME),
    pytest.param("duration-negative-iso", "duration", "-P1DT2H", Duration(0, -1, -7200 * 10**9), SAME,
                 id="duration-negative-iso"),
    pytest.param("duration-iso-alternative", "duration", "P0001-02-03T04:05:06",
                 Duration(14, 3, (4 * 3600 + 5 * 60 + 6) * 10**9), SAME, id="duration-iso-alternative"),
    ("list", "list<int>", "[3, 1, 2, 1]", [3, 1, 2, 1], SAME),
    ("list-empty-is-null", "list<int>", "[]", None, []),
    ("set", "set<text>", "{'b', 'a', 'b'}", {"a", "b"}, SAME),
    ("map", "map<text, int>", "{'b': 2, 'a': -1}", {"a": -1, "b": 2}, SAME),
    ("map-empty-is-null", "map<text, int>", "{}", None, {}),
    ("frozen-list", "frozen<list<int>>", "[3, 1]", [3, 1], SAME),
    ("frozen-list-empty", "frozen<list<int>>", "[]", [], SAME),
    ("frozen-set", "frozen<set<bigint>>", "{3, 1}", {1, 3}, SAME),
    ("frozen-map", "frozen<map<int, text>>", "{1: 'a', -1: 'b'}", {-1: "b", 1: "a"}, SAME),
    ("tuple", "tuple<int, text, boolean>", "(1, 'a', true)", (1, "a", True), SAME),
    ("tuple-with-null", "frozen<tuple<int, text>>", "(1, null)", (1, None), SAME),
    ("udt-frozen", "frozen<addr>", "{street: 'main', num: 1}", ("main", 1), SAME),
    ("udt-frozen-partial", "frozen<addr>", "{num: 7}", (None, 7), SAME),
    ("udt", "addr", "{street: 'elm', num: -2}", ("elm", -2), SAME),
    ("nested-list-of-maps", "list<frozen<map<text, list<int>>>>", "[{'a': [1, 2]}, {}]", [{"a": [1, 2]}, {}], SAME),
    ("nested-map-of-sets", "map<text, frozen<set<int>>>", "{'x': {2, 1}}", {"x": {1, 2}}, SAME),
    ("nested-set-of-tuples", "set<frozen<tuple<int, text>>>", "{(2, 'b'), (1, 'a')}", {(1, "a"), (2, "b")}, SAME),
    ("nested-list-of-udts", "list<frozen<addr>>", "[{street: 's', num: 1}, {num: 2}]", [("s", 1), (None, 2)], SAME),
    ("null", "int", "null", None, SAME),
]


def _case_values(case):
    return case.values if hasattr(case, "values") else case


@pytest.fixture(scope="module")
def types_table(session) -> dict[str, str]:
    """One table with a column per CQL type of TYPE_CASES: type -> column name."""
    session.execute("CREATE TYPE addr (street text, num int)")
    columns = {}
    for case in TYPE_CASES:
        columns.setdefault(_case_values(case)[1], f"c{len(columns)}")
    session.execute("CREATE TABLE types (k int PRIMARY KEY, "
                    + ", ".join(f"{col} {t}" for t, col in columns.items()) + ")")
    return columns


def same(actual, expected) -> bool:
    """Equal as the driver returns it, with NaN equal to NaN and the Python type checked for
    scalars (so 1 is not True and '1' is not 1)."""
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    if expected is None or isinstance(expected, (list, set, dict, tuple)):
        return actual == expected if expected is not None else actual is None
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("case_id, cql_type, literal, expected, bound",
                         [c if hasattr(c, "values") else pytest.param(*c, id=c[0]) for c in TYPE_CASES])
def test_type_round_trips_as_literal_and_as_bound_value(session, types_table, case_id, cql_type, literal,
                                                        expected, bound):
    column = types_table[cql_type]
    key = [_case_values(c)[0] for c in TYPE_CASES].index(case_id) * 2
    session.execute(f"INSERT INTO types (k, {column}) VALUES ({key}, {literal})")
    insert = session.prepare(f"INSERT INTO types (k, {column}) VALUES (?, ?)")
    session.execute(insert, (key + 1, expected if bound is SAME else bound))
    from_literal = rows(session, f"SELECT {column} FROM types WHERE k = {key}")
    from_bound = rows(session, session.prepare(f"SELECT {column} FROM types WHERE k = ?"), (key + 1,))
    assert len(from_literal) == 1 and len(from_bound) == 1
    assert same(from_literal[0][0], expected), f"literal {literal} came back as {from_literal[0][0]!r}"
    assert same(from_bound[0][0], expected), f"bound value came back as {from_bound[0][0]!r}"


def test_literals_of_the_wrong_type_or_range_are_invalid(session, types_table):
    for cql_type, literal in (("int", "2147483648"), ("tinyint", "128"), ("int", "'1'"), ("text", "1"),
                              ("ascii", "'é'"), ("date", "'2023-02-29'"), ("time", "'24:00:00'"),
                              ("uuid", "'not-a-uuid'"), ("inet", "'300.1.1.1'"), ("boolean", "1"),
                              ("list<int>", "{'a': 1}")):
        fails(session, InvalidRequest, f"INSERT INTO types (k, {types_table[cql_type]}) VALUES (-1, {literal})")
    assert rows(session, "SELECT k FROM types WHERE k = -1") == []


def test_select_json_renders_every_type(session, types_table):
    session.execute("CREATE TABLE json_t (k int PRIMARY KEY, \"Mixed\" int, i varint, d decimal, f float, "
                    "x double, t text, b blob, u uuid, ts timestamp, dt date, tm time, ip inet, du duration, "
                    "l list<int>, s set<text>, m map<int, text>, tu tuple<int, text>, a frozen<addr>, "
                    "n int, ok boolean)")
    session.execute("INSERT INTO json_t (k, \"Mixed\", i, d, f, x, t, b, u, ts, dt, tm, ip, du, l, s, m, tu, a, ok) "
                    "VALUES (1, 7, 123456789012345678901234567890, -12.50, 0.1, NaN, 'é \"q\"', 0xcafe, "
                    "123e4567-e89b-12d3-a456-426614174000, '2011-02-03 04:05:06.789+0000', '2024-02-29', "
                    "'13:30:54.000000001', '::1', 1y2mo25d5h, [3, 1], {'b', 'a'}, {2: 'two', 1: 'one'}, "
                    "(1, 'x'), {street: 'main', num: 3}, true)")
    (text,), = rows(session, "SELECT JSON * FROM json_t WHERE k = 1")
    doc = json.loads(text, parse_float=Decimal)
    assert doc == {
        "k": 1, '"Mixed"': 7, "i": 123456789012345678901234567890, "d": Decimal("-12.50"), "f": Decimal("0.1"),
        "x": None, "t": 'é "q"', "b": "0xcafe", "u": "123e4567-e89b-12d3-a456-426614174000",
        "ts": "2011-02-03 04:05:06.789Z", "dt": "2024-02-29", "tm": "13:30:54.000000001", "ip": "::1",
        "du": "1y2mo25d5h", "l": [3, 1], "s": ["a", "b"], "m": {"1": "one", "2": "two"}, "tu": [1, "x"],
        "a": {"street": "main", "num": 3}, "n": None, "ok": True}
    assert list(doc)[:2] == ["k", '"Mixed"']  # keys first, then columns in select order
    (text,), = rows(session, "SELECT JSON k, writetime(n), t AS label FROM json_t WHERE k = 1")
    assert json.loads(text) == {"k": 1, "writetime(n)": None, "label": 'é "q"'}


# ---- DML --------------------------------------------------------------------------------------


def test_insert_update_delete_cells_rows_partitions_and_ranges(session):
    session.execute("CREATE TABLE dml (k int, c int, v text, w int, st text static, PRIMARY KEY (k, c))")
    insert = session.prepare("INSERT INTO dml (k, c, v, w) VALUES (?, ?, ?, ?) USING TIMESTAMP ?")
    for c in range(6):
        session.execute(insert, (1, c, f"v{c}", c, 1000))
    assert [(r.c, r[1]) for r in rows(session, "SELECT c, WRITETIME(v) FROM dml WHERE k = 1")] == \
        [(c, 1000) for c in range(6)]

    def state():
        return [(r.c, r.v, r.w) for r in rows(session, "SELECT c, v, w FROM dml WHERE k = 1")]

    session.execute("UPDATE dml USING TIMESTAMP 999 SET v = 'older' WHERE k = 1 AND c = 0")  # loses
    session.execute("UPDATE dml USING TIMESTAMP 2000 SET v = 'newer' WHERE k = 1 AND c = 0")  # wins
    session.execute("DELETE v FROM dml USING TIMESTAMP 500 WHERE k = 1 AND c = 1")  # older: no effect
    session.execute("DELETE w FROM dml USING TIMESTAMP 1500 WHERE k = 1 AND c = 1")  # a cell
    session.execute("DELETE FROM dml WHERE k = 1 AND c = 2")  # a row
    assert state() == [(0, "newer", 0), (1, "v1", None), (3, "v3", 3), (4, "v4", 4), (5, "v5", 5)]
    assert rows(session, "SELECT WRITETIME(v) FROM dml WHERE k = 1 AND c = 0")[0][0] == 2000
    session.execute("DELETE FROM dml WHERE k = 1 AND c > 4")  # clustering ranges
    session.execute("DELETE FROM dml WHERE k = 1 AND c >= 3 AND c < 4")
    assert state() == [(0, "newer", 0), (1, "v1", None), (4, "v4", 4)]
    session.execute("INSERT INTO dml (k, c, v) VALUES (1, 3, 'back')")  # newer than the range tombstone
    assert [r[0] for r in state()] == [0, 1, 3, 4]
    session.execute("UPDATE dml SET w = 9 WHERE k = 1 AND c IN (0, 4)")
    assert [(r[0], r[2]) for r in state()] == [(0, 9), (1, None), (3, None), (4, 9)]

    # static columns: written without the clustering key, seen by every row of the partition
    session.execute("INSERT INTO dml (k, st) VALUES (1, 'static one')")
    assert {r.st for r in rows(session, "SELECT st FROM dml WHERE k = 1")} == {"static one"}
    session.execute("UPDATE dml SET st = 'static two' WHERE k = 1")
    assert rows(session, "SELECT DISTINCT k, st FROM dml WHERE k = 1") == [(1, "static two")]
    session.execute("INSERT INTO dml (k, st) VALUES (2, 'alone')")  # a partition with only static data
    assert [(r.k, r.c, r.v, r.st) for r in rows(session, "SELECT * FROM dml WHERE k = 2")] == [(2, None, None, "alone")]
    fails(session, InvalidRequest, "UPDATE dml SET st = 'x' WHERE k = 1 AND c = 0")
    fails(session, InvalidRequest, "DELETE st FROM dml WHERE k = 1 AND c = 0")
    session.execute("DELETE st FROM dml WHERE k = 1")
    assert {r.st for r in rows(session, "SELECT st FROM dml WHERE k = 1")} == {None}

    # whole partitions, one and several
    session.execute("DELETE FROM dml WHERE k = 1")
    assert rows(session, "SELECT * FROM dml WHERE k = 1") == []
    session.execute("INSERT INTO dml (k, c, v) VALUES (3, 0, 'a')")
    session.execute("INSERT INTO dml (k, c, v) VALUES (4, 0, 'b')")
    session.execute("DELETE FROM dml WHERE k IN (2, 3, 4)")
    assert rows(session, "SELECT * FROM dml") == []

    for bad in ("INSERT INTO dml (k, v) VALUES (5, 'no clustering')",
                "INSERT INTO dml (c, v) VALUES (5, 'no partition key')",
                "UPDATE dml SET v = 'x' WHERE k = 5",
                "UPDATE dml SET v = 'x' WHERE c = 5",
                "UPDATE dml SET v = 'x' WHERE k = 5 AND c > 1",
                "UPDATE dml SET k = 1 WHERE k = 5 AND c = 1",
                "DELETE v FROM dml WHERE k = 5 AND c > 1",
                "DELETE FROM dml WHERE k = 5 AND v = 'x'",
                "INSERT INTO dml (k, c, nope) VALUES (5, 1, 2)",
                "INSERT INTO dml (k, c, v) VALUES (5, 1, 'x') USING TTL -1"):
        fails(session, InvalidRequest, bad)
    fails(session, SyntaxException, "INSERT INTO dml (k, c) VALUES (5 1)")


def test_range_deletions_on_descending_and_multi_column_clustering(session):
    session.execute("CREATE TABLE ranges (k int, a int, b int, v int, PRIMARY KEY (k, a, b)) "
                    "WITH CLUSTERING ORDER BY (a ASC, b DESC)")
    insert = session.prepare("INSERT INTO ranges (k, a, b, v) VALUES (?, ?, ?, 0)")
    for k in (1, 2, 3):
        for a in range(3):
            for b in range(3):
                session.execute(insert, (k, a, b))

    def left(k):
        return [(r.a, r.b) for r in rows(session, f"SELECT a, b FROM ranges WHERE k = {k}")]

    assert left(1) == [(0, 2), (0, 1), (0, 0), (1, 2), (1, 1), (1, 0), (2, 2), (2, 1), (2, 0)]
    session.execute("DELETE FROM ranges WHERE k = 1 AND a = 1 AND b < 2")  # a DESC column's range
    assert left(1) == [(0, 2), (0, 1), (0, 0), (1, 2), (2, 2), (2, 1), (2, 0)]
    session.execute("DELETE FROM ranges WHERE k = 2 AND (a, b) > (0, 1) AND (a, b) <= (2, 1)")  # mixed order
    assert left(2) == [(0, 1), (0, 0), (2, 2)]
    session.execute("DELETE FROM ranges WHERE k = 3 AND (a, b) > (2, 2) AND (a, b) < (1, 0)")  # empty range
    assert len(left(3)) == 9
    session.execute("DELETE FROM ranges WHERE k = 3 AND a > 0")
    assert left(3) == [(0, 2), (0, 1), (0, 0)]


def test_using_ttl_timestamp_and_expiry(session):
    session.execute("CREATE TABLE ttl_t (k int PRIMARY KEY, v text, w int)")
    session.execute("CREATE TABLE ttl_default (k int PRIMARY KEY, v text) WITH default_time_to_live = 300")
    session.execute("INSERT INTO ttl_t (k, v) VALUES (1, 'a') USING TTL 100 AND TIMESTAMP 123456")
    (ttl, wt, ttl_w), = rows(session, "SELECT TTL(v), WRITETIME(v), TTL(w) FROM ttl_t WHERE k = 1")
    assert 90 < ttl <= 100 and wt == 123456 and ttl_w is None
    update = session.prepare("UPDATE ttl_t USING TTL ? AND TIMESTAMP ? SET w = ? WHERE k = ?")
    session.execute(update, (50, 777, 5, 1))
    (ttl, wt), = rows(session, "SELECT TTL(w), WRITETIME(w) FROM ttl_t WHERE k = 1")
    assert 40 < ttl <= 50 and wt == 777
    session.execute("INSERT INTO ttl_default (k, v) VALUES (1, 'default ttl')")
    session.execute("INSERT INTO ttl_default (k, v) VALUES (2, 'no ttl') USING TTL 0")
    got = dict(rows(session, "SELECT k, TTL(v) FROM ttl_default"))
    assert 290 < got[1] <= 300 and got[2] is None

    # expiry: a row inserted with a 2 s TTL vanishes; a cell updated with one leaves its row
    session.execute("INSERT INTO ttl_t (k, v, w) VALUES (2, 'short', 1) USING TTL 2")
    session.execute("INSERT INTO ttl_t (k, v, w) VALUES (3, 'stays', 1)")
    session.execute("UPDATE ttl_t USING TTL 2 SET w = 2 WHERE k = 3")
    (ttl,), = rows(session, "SELECT TTL(v) FROM ttl_t WHERE k = 2")
    assert 0 < ttl <= 2
    wait_until(lambda: rows(session, "SELECT * FROM ttl_t WHERE k = 2") == [], 15, "the 2 s TTL row to expire")
    wait_until(lambda: rows(session, "SELECT v, w FROM ttl_t WHERE k = 3") == [("stays", None)], 15,
               "the 2 s TTL cell to expire")
    assert rows(session, "SELECT v FROM ttl_t WHERE k = 1") == [("a",)]  # the long TTL still lives


def test_collection_updates_with_literals(session):
    session.execute("CREATE TYPE addr2 (street text, num int)")
    session.execute("CREATE TABLE colls (k int PRIMARY KEY, l list<int>, s set<text>, m map<text, int>, "
                    "u addr2, fu frozen<addr2>)")

    def state(k=1):
        (l, s, m, u), = rows(session, f"SELECT l, s, m, u FROM colls WHERE k = {k}")
        return (l, None if s is None else set(s), None if m is None else dict(m), None if u is None else tuple(u))

    steps = [
        ("INSERT INTO colls (k, l, s, m) VALUES (1, [1, 2], {'a'}, {'x': 1})", ([1, 2], {"a"}, {"x": 1}, None)),
        ("UPDATE colls SET l = l + [3, 4] WHERE k = 1", ([1, 2, 3, 4], {"a"}, {"x": 1}, None)),
        ("UPDATE colls SET l = [-1, 0] + l WHERE k = 1", ([-1, 0, 1, 2, 3, 4], {"a"}, {"x": 1}, None)),
        ("UPDATE colls SET l[1] = 10 WHERE k = 1", ([-1, 10, 1, 2, 3, 4], {"a"}, {"x": 1}, None)),
        ("UPDATE colls SET l = l - [2, 3] WHERE k = 1", ([-1, 10, 1, 4], {"a"}, {"x": 1}, None)),
        ("DELETE l[0] FROM colls WHERE k = 1", ([10, 1, 4], {"a"}, {"x": 1}, None)),
        ("UPDATE colls SET s = s + {'b', 'c'} WHERE k = 1", ([10, 1, 4], {"a", "b", "c"}, {"x": 1}, None)),
        ("UPDATE colls SET s = s - {'a', 'zz'} WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 1}, None)),
        ("UPDATE colls SET m['y'] = 2 WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 1, "y": 2}, None)),
        ("UPDATE colls SET m = m + {'z': 3, 'x': 9} WHERE k = 1",
         ([10, 1, 4], {"b", "c"}, {"x": 9, "y": 2, "z": 3}, None)),
        ("UPDATE colls SET m = m - {'y'} WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 9, "z": 3}, None)),
        ("DELETE m['z'] FROM colls WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 9}, None)),
        ("UPDATE colls SET u = {street: 'main', num: 1} WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 9}, ("main", 1))),
        ("UPDATE colls SET u.num = 2 WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 9}, ("main", 2))),
        ("DELETE u.street FROM colls WHERE k = 1", ([10, 1, 4], {"b", "c"}, {"x": 9}, (None, 2))),
        ("UPDATE colls SET l = [7], s = {'q'}, m = {'k': 0} WHERE k = 1", ([7], {"q"}, {"k": 0}, (None, 2))),
        ("UPDATE colls SET s = {}, u = null WHERE k = 1", ([7], None, {"k": 0}, None)),
        ("DELETE l, m FROM colls WHERE k = 1", (None, None, None, None)),
    ]
    for statement, expected in steps:
        session.execute(statement)
        assert state() == expected, statement

    session.execute("INSERT INTO colls (k, l) VALUES (1, [1])")
    for bad in ("UPDATE colls SET l[5] = 1 WHERE k = 1",           # out of bounds
                "UPDATE colls SET fu.num = 1 WHERE k = 1",         # frozen UDT field
                "UPDATE colls SET fu = fu + {num: 1} WHERE k = 1",  # frozen: no element ops
                "UPDATE colls SET s = s + ['x'] WHERE k = 1",       # list literal for a set
                "UPDATE colls SET u.nope = 1 WHERE k = 1",
                "UPDATE colls SET m = m + {'a': null} WHERE k = 1"):
        fails(session, InvalidRequest, bad)
    assert state() == ([1], None, None, None)
    fields = session.prepare("UPDATE colls SET u.num = ?, u.street = ? WHERE k = ?")
    session.execute(fields, (5, "bound street", 1))
    assert state() == ([1], None, None, ("bound street", 5))
    session.execute(fields, (6, None, 1))  # a null field deletes just that field
    assert state() == ([1], None, None, (None, 6))


def test_collection_updates_with_bound_values(session):
    session.execute("CREATE TABLE colls_bound (k int PRIMARY KEY, l list<text>, s set<int>, m map<int, text>, "
                    "u frozen<tuple<int, text>>)")

    def state(k):
        (l, s, m, u), = rows(session, "SELECT l, s, m, u FROM colls_bound WHERE k = %s", (k,))
        return (l, None if s is None else set(s), None if m is None else dict(m), u)

    def run(statement, values):
        session.execute(session.prepare(statement), values)

    run("INSERT INTO colls_bound (k, l, s, m, u) VALUES (?, ?, ?, ?, ?)", (1, ["a"], {1}, {1: "one"}, (1, "x")))
    assert state(1) == (["a"], {1}, {1: "one"}, (1, "x"))
    run("UPDATE colls_bound SET l = l + ?, s = s + ?, m = m + ? WHERE k = ?", (["b", "c"], {2, 3}, {2: "two"}, 1))
    assert state(1) == (["a", "b", "c"], {1, 2, 3}, {1: "one", 2: "two"}, (1, "x"))
    run("UPDATE colls_bound SET l = ? + l WHERE k = ?", (["first"], 1))
    run("UPDATE colls_bound SET l[?] = ?, m[?] = ? WHERE k = ?", (2, "B", 3, "three", 1))
    assert state(1) == (["first", "a", "B", "c"], {1, 2, 3}, {1: "one", 2: "two", 3: "three"}, (1, "x"))
    run("DELETE l[?], m[?] FROM colls_bound WHERE k = ?", (0, 1, 1))
    assert state(1) == (["a", "B", "c"], {1, 2, 3}, {2: "two", 3: "three"}, (1, "x"))
    run("UPDATE colls_bound SET l = l - ?, s = s - ?, m = m - ? WHERE k = ?", (["a", "c"], {1, 3}, {2}, 1))
    assert state(1) == (["B"], {2}, {3: "three"}, (1, "x"))
    run("UPDATE colls_bound SET l = ?, s = ?, m = ?, u = ? WHERE k = ?", (["z"], {9}, {9: "nine"}, (2, None), 1))
    assert state(1) == (["z"], {9}, {9: "nine"}, (2, None))
    run("UPDATE colls_bound SET l = ?, s = ?, m = ?, u = ? WHERE k = ?", (None, set(), {}, None, 1))
    assert state(1) == (None, None, None, None)  # empty collections are nulls; the INSERT's row stays


def test_batches_logged_unlogged_and_prepared(session):
    session.execute("CREATE TABLE batched (k int, c int, v text, PRIMARY KEY (k, c))")

    def written(*keys):
        got = rows(session, "SELECT k, c, v, WRITETIME(v) FROM batched WHERE k IN %s", (ValueSequence(keys),))
        return sorted(tuple(r) for r in got)

    session.execute("BEGIN BATCH USING TIMESTAMP 5000 "
                    "INSERT INTO batched (k, c, v) VALUES (1, 1, 'a'); "
                    "UPDATE batched SET v = 'b' WHERE k = 1 AND c = 2; "
                    "INSERT INTO batched (k, c, v) VALUES (2, 1, 'c'); "
                    "APPLY BATCH")
    assert written(1, 2) == [(1, 1, "a", 5000), (1, 2, "b", 5000), (2, 1, "c", 5000)]
    session.execute("BEGIN UNLOGGED BATCH "
                    "INSERT INTO batched (k, c, v) VALUES (3, 1, 'd') USING TIMESTAMP 7; "
                    "DELETE FROM batched WHERE k = 1 AND c = 1; "
                    "APPLY BATCH")
    assert written(1, 2, 3) == [(1, 2, "b", 5000), (2, 1, "c", 5000), (3, 1, "d", 7)]
    fails(session, InvalidRequest, "BEGIN BATCH USING TIMESTAMP 1 "
                                   "INSERT INTO batched (k, c, v) VALUES (9, 9, 'x') USING TIMESTAMP 2; APPLY BATCH")
    fails(session, SyntaxException, "BEGIN BATCH SELECT * FROM batched; APPLY BATCH")
    assert written(9) == []

    insert = session.prepare("INSERT INTO batched (k, c, v) VALUES (?, ?, ?)")
    update = session.prepare("UPDATE batched USING TIMESTAMP ? SET v = ? WHERE k = ? AND c = ?")
    for batch_type, k in ((BatchType.LOGGED, 10), (BatchType.UNLOGGED, 20)):
        batch = BatchStatement(batch_type=batch_type)
        batch.add(insert, (k, 1, "prepared"))
        batch.add(update, (42, "prepared ts", k, 2))
        batch.add(SimpleStatement(f"INSERT INTO batched (k, c, v) VALUES ({k + 1}, 1, 'simple')"))
        batch.add("INSERT INTO batched (k, c, v) VALUES (%s, %s, %s)", (k + 1, 2, "with params"))
        session.execute(batch)
        got = written(k, k + 1)
        assert [(r[0], r[1], r[2]) for r in got] == [
            (k, 1, "prepared"), (k, 2, "prepared ts"), (k + 1, 1, "simple"), (k + 1, 2, "with params")]
        assert got[1][3] == 42  # the child's own USING TIMESTAMP
        assert got[0][3] == got[2][3] == got[3][3] > 10**15  # the batch's one (client) timestamp
    # a batch is applied as a whole: one bad child and nothing is written
    bad = BatchStatement()
    bad.add(insert, (30, 1, "never"))
    bad.add(SimpleStatement("INSERT INTO batched (k, c, nope) VALUES (30, 2, 'x')"))
    with pytest.raises(InvalidRequest):
        session.execute(bad)
    assert written(30) == []


# ---- SELECT -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events(session):
    """3 partitions (p1 = 0..2, p2 = 'p') x 3 x 3 rows, clustering (c1 ASC, c2 DESC), a static
    column per partition; n = 3 * c1 + c2."""
    session.execute("CREATE TABLE events (p1 int, p2 text, c1 int, c2 int, st text static, v text, n int, "
                    "PRIMARY KEY ((p1, p2), c1, c2)) WITH CLUSTERING ORDER BY (c1 ASC, c2 DESC)")
    insert = session.prepare("INSERT INTO events (p1, p2, c1, c2, v, n) VALUES (?, 'p', ?, ?, ?, ?)")
    for p1 in range(3):
        for c1 in range(3):
            for c2 in range(3):
                session.execute(insert, (p1, c1, c2, f"v{p1}{c1}{c2}", 3 * c1 + c2))
        session.execute("UPDATE events SET st = %s WHERE p1 = %s AND p2 = 'p'", (f"s{p1}", p1))
    return "events"


PARTITION_ORDER = [(0, 2), (0, 1), (0, 0), (1, 2), (1, 1), (1, 0), (2, 2), (2, 1), (2, 0)]


def cks(session, query, params=None):
    return [(r.c1, r.c2) for r in rows(session, query, params)]


def test_select_partition_keys_and_clustering_slices(session, events):
    assert cks(session, "SELECT c1, c2 FROM events WHERE p1 = 0 AND p2 = 'p'") == PARTITION_ORDER
    got = rows(session, "SELECT p1, c1, c2 FROM events WHERE p1 IN (0, 2) AND p2 = 'p'")
    assert sorted((r.p1, r.c1, r.c2) for r in got) == sorted((p, *ck) for p in (0, 2) for ck in PARTITION_ORDER)
    assert [tuple(r)[1:] for r in got if r.p1 == 2] == PARTITION_ORDER  # each partition in clustering order
    bound = session.prepare("SELECT p1, c1, c2 FROM events WHERE p1 IN ? AND p2 = ? AND c1 = ?")
    assert sorted(tuple(r) for r in rows(session, bound, ([1, 2], "p", 2))) == \
        [(1, 2, 0), (1, 2, 1), (1, 2, 2), (2, 2, 0), (2, 2, 1), (2, 2, 2)]
    base = "SELECT c1, c2 FROM events WHERE p1 = 1 AND p2 = 'p' AND "
    assert cks(session, base + "c1 = 1 AND c2 = 2") == [(1, 2)]
    assert cks(session, base + "c1 = 1 AND c2 > 0") == [(1, 2), (1, 1)]
    assert cks(session, base + "c1 = 1 AND c2 >= 0 AND c2 < 2") == [(1, 1), (1, 0)]
    assert cks(session, base + "c1 > 0 AND c1 <= 1") == [(1, 2), (1, 1), (1, 0)]
    assert cks(session, base + "c1 IN (0, 2) AND c2 = 1") == [(0, 1), (2, 1)]
    assert cks(session, base + "c1 = 2 AND c2 IN (0, 2)") == [(2, 2), (2, 0)]
    # multi-column slices over (ASC, DESC) clustering: tuple order, not byte order
    assert cks(session, base + "(c1, c2) > (1, 1)") == [(1, 2), (2, 2), (2, 1), (2, 0)]
    assert cks(session, base + "(c1, c2) >= (0, 1) AND (c1, c2) < (1, 1)") == [(0, 2), (0, 1), (1, 0)]
    assert cks(session, base + "(c1, c2) > (1, 1) AND (c1, c2) <= (2, 1)") == [(1, 2), (2, 1), (2, 0)]
    assert cks(session, base + "(c1, c2) IN ((2, 0), (0, 2))") == [(0, 2), (2, 0)]
    named = session.prepare("SELECT c1, c2 FROM events WHERE p1 = :one AND p2 = :two AND c1 = :first")
    assert cks(session, named, {"one": 1, "two": "p", "first": 0}) == PARTITION_ORDER[:3]  # bound by name
    fails(session, InvalidRequest, base + "c1 > 0 AND c1 > 1")  # two start bounds
    multi = session.prepare("SELECT c1, c2 FROM events WHERE p1 = ? AND p2 = ? AND (c1, c2) >= (?, ?)")
    assert cks(session, multi, (1, "p", 2, 1)) == [(2, 2), (2, 1)]
    # the same on clustering columns of one order, where tuple order is byte order
    session.execute("CREATE TABLE asc2 (k int, a int, b int, PRIMARY KEY (k, a, b))")
    for a in range(3):
        for b in range(3):
            session.execute("INSERT INTO asc2 (k, a, b) VALUES (0, %s, %s)", (a, b))
    got = rows(session, "SELECT a, b FROM asc2 WHERE k = 0 AND (a, b) > (1, 1) AND (a, b) < (2, 2)")
    assert [tuple(r) for r in got] == [(1, 2), (2, 0), (2, 1)]
    fails(session, InvalidRequest, base + "(c2, c1) > (1, 1)")  # not in primary key order


def test_select_order_limit_distinct_count(session, events):
    key = "FROM events WHERE p1 = 0 AND p2 = 'p'"
    assert cks(session, f"SELECT c1, c2 {key} ORDER BY c1 DESC") == PARTITION_ORDER[::-1]
    assert cks(session, f"SELECT c1, c2 {key} ORDER BY c1 DESC, c2 ASC LIMIT 4") == PARTITION_ORDER[::-1][:4]
    assert cks(session, f"SELECT c1, c2 {key} ORDER BY c1 ASC") == PARTITION_ORDER
    fails(session, InvalidRequest, f"SELECT c1, c2 {key} ORDER BY c2 DESC")
    fails(session, InvalidRequest, "SELECT c1 FROM events ORDER BY c1 DESC")  # no partition restricted
    assert cks(session, f"SELECT c1, c2 {key} LIMIT 2") == PARTITION_ORDER[:2]
    assert cks(session, session.prepare(f"SELECT c1, c2 {key} LIMIT ?"), (3,)) == PARTITION_ORDER[:3]
    fails(session, InvalidRequest, f"SELECT c1 {key} LIMIT 0")
    # ORDER BY across IN partitions sorts them together, which cannot be paged (as Cassandra)
    in_order = "SELECT p1, c1, c2 FROM events WHERE p1 IN (0, 1) AND p2 = 'p' AND c1 = 2 ORDER BY c1 DESC, c2 ASC"
    fails(session, InvalidRequest, in_order)
    unpaged = rows(session, SimpleStatement(in_order, fetch_size=None))
    assert [(r.c1, r.c2) for r in unpaged] == [(2, 0), (2, 0), (2, 1), (2, 1), (2, 2), (2, 2)]
    assert sorted(r.p1 for r in unpaged) == [0, 0, 0, 1, 1, 1]
    # PER PARTITION LIMIT, with and without LIMIT, on a scan and on IN
    got = rows(session, "SELECT p1, c1, c2 FROM events PER PARTITION LIMIT 2")
    assert sorted(tuple(r) for r in got) == sorted((p, *ck) for p in range(3) for ck in PARTITION_ORDER[:2])
    got = rows(session, "SELECT p1, c1, c2 FROM events WHERE p1 IN (0, 1, 2) AND p2 = 'p' "
                        "PER PARTITION LIMIT 1 LIMIT 2")
    assert len(got) == 2 and len({r.p1 for r in got}) == 2 and all((r.c1, r.c2) == (0, 2) for r in got)
    # DISTINCT partition keys, with statics
    got = rows(session, "SELECT DISTINCT p1, p2, st FROM events")
    assert sorted(tuple(r) for r in got) == [(0, "p", "s0"), (1, "p", "s1"), (2, "p", "s2")]
    assert rows(session, "SELECT DISTINCT p1, p2 FROM events WHERE p1 = 1 AND p2 = 'p'") == [(1, "p")]
    fails(session, InvalidRequest, "SELECT DISTINCT p1, p2 FROM events WHERE p1 = 1 AND p2 = 'p' AND c1 = 1")
    # COUNT and the other aggregates
    assert rows(session, "SELECT COUNT(*) FROM events")[0][0] == 27
    assert rows(session, "SELECT count(*) AS n FROM events WHERE p1 = 1 AND p2 = 'p' AND c1 > 0")[0].n == 6
    (aggregates,) = rows(session, "SELECT COUNT(1), MIN(n), MAX(n), SUM(n), AVG(n) FROM events "
                                  "WHERE p1 = 2 AND p2 = 'p'")
    assert tuple(aggregates) == (9, 0, 8, 36, 4)
    assert rows(session, "SELECT COUNT(*) FROM events LIMIT 3")[0][0] == 27  # LIMIT counts result rows
    grouped = rows(session, "SELECT p1, c1, COUNT(*), MAX(n) FROM events WHERE p1 = 1 AND p2 = 'p' GROUP BY p1, p2, c1")
    assert [tuple(r) for r in grouped] == [(1, c1, 3, 3 * c1 + 2) for c1 in range(3)]
    assert sorted(tuple(r) for r in rows(session, "SELECT p1, COUNT(*) FROM events GROUP BY p1, p2")) == \
        [(0, 9), (1, 9), (2, 9)]
    # SELECT * puts partition key, clustering, statics, then regular columns by name
    result = session.execute("SELECT * FROM events WHERE p1 = 2 AND p2 = 'p' LIMIT 1")
    assert result.column_names == ["p1", "p2", "c1", "c2", "st", "n", "v"]
    assert tuple(result.one()) == (2, "p", 0, 2, "s2", 2, "v202")


def test_select_writetime_ttl_token_and_full_scans(session, events):
    (v, wt, ttl, token), = rows(session, "SELECT v, WRITETIME(v), TTL(v), token(p1, p2) FROM events "
                                         "WHERE p1 = 0 AND p2 = 'p' AND c1 = 0 AND c2 = 0")
    assert v == "v000" and wt > 10**15 and ttl is None and isinstance(token, int)
    fails(session, InvalidRequest, "SELECT WRITETIME(c1) FROM events")
    fails(session, InvalidRequest, "SELECT TTL(p1) FROM events")
    everything = sorted(tuple(r) for r in rows(session, "SELECT p1, c1, c2, v FROM events"))
    assert len(everything) == 27
    # the whole table as a union of token ranges, with paging inside each range
    bounds = [-2**63, -2**62, 0, 2**62, 2**63 - 1]
    by_literal, by_bound = [], []
    ranged = session.prepare("SELECT p1, c1, c2, v, token(p1, p2) FROM events "
                             "WHERE token(p1, p2) > ? AND token(p1, p2) <= ?")
    for lo, hi in zip(bounds, bounds[1:]):
        part = rows(session, SimpleStatement(f"SELECT p1, c1, c2, v, token(p1, p2) FROM events "
                                             f"WHERE token(p1, p2) > {lo} AND token(p1, p2) <= {hi}", fetch_size=4))
        assert all(lo < r[4] <= hi for r in part)
        by_literal += [tuple(r)[:4] for r in part]
        by_bound += [tuple(r)[:4] for r in rows(session, ranged, (lo, hi))]
    assert sorted(by_literal) == sorted(by_bound) == everything
    assert len(set(by_literal)) == 27  # no row twice
    # token(k) > token(?): the resume idiom of full-table readers
    tokens = sorted((r[0], r[1]) for r in rows(session, "SELECT DISTINCT token(p1, p2), p1 FROM events"))
    after_first = rows(session, session.prepare("SELECT DISTINCT p1 FROM events WHERE token(p1, p2) > token(?, ?)"),
                       (tokens[0][1], "p"))
    assert sorted(r.p1 for r in after_first) == sorted(p for _, p in tokens[1:])
    # a paged full scan returns every row once
    paged = rows(session, SimpleStatement("SELECT p1, c1, c2, v FROM events", fetch_size=5))
    assert sorted(tuple(r) for r in paged) == everything


def test_allow_filtering(session, events):
    for needs in ("SELECT p1 FROM events WHERE n = 4",
                  "SELECT p1 FROM events WHERE c2 = 1",
                  "SELECT p1 FROM events WHERE p1 = 1",  # part of the partition key
                  "SELECT p1 FROM events WHERE p1 = 1 AND p2 = 'p' AND c2 = 1"):
        fails(session, InvalidRequest, needs)
        rows(session, needs + " ALLOW FILTERING")
    got = rows(session, "SELECT p1, c1, c2 FROM events WHERE n = 4 ALLOW FILTERING")
    assert sorted(tuple(r) for r in got) == [(0, 1, 1), (1, 1, 1), (2, 1, 1)]
    got = rows(session, "SELECT p1, c1, c2 FROM events WHERE c2 = 1 AND n > 4 ALLOW FILTERING")
    assert sorted(tuple(r) for r in got) == [(p, 2, 1) for p in range(3)]
    got = rows(session, "SELECT c1, c2 FROM events WHERE p1 = 1 AND p2 = 'p' AND c2 = 1 ALLOW FILTERING")
    assert [tuple(r) for r in got] == [(0, 1), (1, 1), (2, 1)]
    got = rows(session, session.prepare("SELECT p1 FROM events WHERE v = ? ALLOW FILTERING"), ("v212",))
    assert [r.p1 for r in got] == [2]


def test_paging_through_the_driver_returns_exactly_the_unpaged_rows(session):
    session.execute("CREATE TABLE paged (k int, a int, b int, st int static, v int, PRIMARY KEY (k, a, b)) "
                    "WITH CLUSTERING ORDER BY (a ASC, b DESC)")
    insert = session.prepare("INSERT INTO paged (k, a, b, v) VALUES (?, ?, ?, ?)")
    for k in range(5):  # k = 0 holds only static data
        session.execute("INSERT INTO paged (k, st) VALUES (%s, %s)", (k, k))
        for a in range(k):
            for b in range(3):
                session.execute(insert, (k, a, b, a + b))
    session.execute("CREATE TABLE paged_flat (k int PRIMARY KEY, v int)")
    for k in range(8):
        session.execute("INSERT INTO paged_flat (k, v) VALUES (%s, %s)", (k, k % 3))
    for query in ("SELECT k, a, b, st FROM paged",
                  "SELECT DISTINCT k, st FROM paged",
                  "SELECT k, a, b, st FROM paged WHERE k IN (0, 1, 4)",
                  "SELECT k, a, b FROM paged WHERE k = 4 AND a <= 2 ORDER BY a DESC",
                  "SELECT k, a, b FROM paged WHERE k = 4 AND a IN (1, 3) ORDER BY a DESC",
                  "SELECT k, a, b FROM paged WHERE k IN (2, 4) AND a IN (0, 1) AND b > 0",
                  "SELECT k, a, b FROM paged WHERE k = 4 AND (a, b) >= (1, 1) ORDER BY a DESC",
                  "SELECT k, a, b FROM paged WHERE v = 2 ALLOW FILTERING",
                  "SELECT k, a, b FROM paged PER PARTITION LIMIT 2",
                  "SELECT k, v FROM paged_flat",  # no clustering columns: a row ends its partition
                  "SELECT k, v FROM paged_flat WHERE k IN (0, 2, 3, 5)",
                  # GROUP BY: a page holds fetch_size groups
                  "SELECT k, a, COUNT(*), MAX(b), SUM(v) FROM paged GROUP BY k, a",
                  "SELECT k, COUNT(*) FROM paged GROUP BY k",
                  "SELECT k, COUNT(*) FROM paged_flat GROUP BY k"):
        whole = rows(session, SimpleStatement(query, fetch_size=None))
        assert len(whole) > 3, query
        for fetch_size in (1, 3):
            # bounded: a pager that goes round in circles must fail here, not hang
            paged = list(itertools.islice(session.execute(SimpleStatement(query, fetch_size=fetch_size)),
                                          len(whole) + 5))
            assert paged == whole, (query, fetch_size)
        if "GROUP BY" in query:
            first = session.execute(SimpleStatement(query, fetch_size=2))
            assert len(first.current_rows) == 2 and first.has_more_pages, query
    # a partition with only static data is a row only when whole partitions are selected
    assert rows(session, "SELECT k, a, st FROM paged WHERE k = 0") == [(0, None, 0)]
    assert rows(session, "SELECT k, a, st FROM paged WHERE k = 0 AND a = 0") == []


def test_protocol_v4_client(session, types_table):
    """The same statements over native protocol v4, with the driver's timestamps fixed so the
    protocol-level timestamp of queries and batches is visible in WRITETIME()."""
    client = connect(4, contact=f"{SUBNET}.2", timestamp_generator=lambda: 424242)
    try:
        v4 = client.connect(KS)
        assert client.protocol_version == 4
        v4.execute("CREATE TABLE v4_t (k int, c int, d decimal, du duration, a frozen<addr>, m map<text, date>, "
                   "PRIMARY KEY (k, c))")
        values = (Decimal("-0.5"), Duration(1, 2, 3), ("v4 street", 4), {"d": Date(datetime.date(1999, 12, 31))})
        v4.execute("INSERT INTO v4_t (k, c, d, du, a, m) VALUES (1, 0, -0.5, 1mo2d3ns, "
                   "{street: 'v4 street', num: 4}, {'d': '1999-12-31'})")
        v4.execute(v4.prepare("INSERT INTO v4_t (k, c, d, du, a, m) VALUES (?, ?, ?, ?, ?, ?)"), (1, 1, *values))
        batch = BatchStatement()
        insert = v4.prepare("INSERT INTO v4_t (k, c, d) VALUES (?, ?, ?)")
        for c in range(2, 12):
            batch.add(insert, (1, c, Decimal(c)))
        v4.execute(batch)
        got = list(v4.execute(SimpleStatement("SELECT c, d, du, a, m, WRITETIME(d) FROM v4_t WHERE k = 1",
                                              fetch_size=3)))
        assert [r.c for r in got] == list(range(12))
        for r in got[:2]:
            assert (r.d, r.du, tuple(r.a), dict(r.m)) == (values[0], values[1], values[2], values[3])
        assert [r.d for r in got[2:]] == [Decimal(c) for c in range(2, 12)]
        assert {r[5] for r in got} == {424242}
        # the v5 session sees what v4 wrote, and the types table is shared by both versions
        assert rows(session, "SELECT COUNT(*) FROM v4_t WHERE k = 1")[0][0] == 12
        column = types_table["frozen<addr>"]
        v4.execute(v4.prepare(f"INSERT INTO types (k, {column}) VALUES (?, ?)"), (-4, ("from v4", 4)))
        assert tuple(rows(session, f"SELECT {column} FROM types WHERE k = -4")[0][0]) == ("from v4", 4)
    finally:
        client.shutdown()


# ---- out of scope: refused clearly ------------------------------------------------------------


def test_unsupported_features_are_clear_invalid_requests(session):
    session.execute("CREATE TABLE lwt (k int PRIMARY KEY, v int)")
    session.execute("INSERT INTO lwt (k, v) VALUES (1, 1)")
    for statement, words in (
            ("INSERT INTO lwt (k, v) VALUES (2, 2) IF NOT EXISTS", "lightweight transactions"),
            ("UPDATE lwt SET v = 3 WHERE k = 1 IF v = 1", "lightweight transactions"),
            ("UPDATE lwt SET v = 3 WHERE k = 1 IF EXISTS", "lightweight transactions"),
            ("DELETE FROM lwt WHERE k = 1 IF EXISTS", "lightweight transactions"),
            ("CREATE TABLE counts (k int PRIMARY KEY, n counter)", "Counter"),
            ("ALTER TABLE lwt ADD n counter", "Counter"),
            ("BEGIN COUNTER BATCH UPDATE lwt SET v = v + 1 WHERE k = 1; APPLY BATCH", "Counter"),
            ("CREATE INDEX ON lwt (v)", "indexes"),
            ("CREATE MATERIALIZED VIEW lwt_by_v AS SELECT * FROM lwt WHERE v IS NOT NULL AND k IS NOT NULL "
             "PRIMARY KEY (v, k)", "aterialized views")):
        err = fails(session, InvalidRequest, statement)
        assert words in str(err), str(err)
    counter_batch = BatchStatement(batch_type=BatchType.COUNTER)
    counter_batch.add(SimpleStatement("UPDATE lwt SET v = v + 1 WHERE k = 1"))
    with pytest.raises(InvalidRequest, match="Counter"):
        session.execute(counter_batch)
    assert rows(session, "SELECT k, v FROM lwt") == [(1, 1)]  # nothing was applied
