"""cqlsh 6.2.2 against a real three-node cluster, and garbage on the real node's port 9042.

What a user of cqlsh sees: the version line, the seed example printing Alice, CONSISTENCY
that reaches the server, statements of every kind, a server error turning into exit code 2
with the server's message (cql-compat.md section 7); server-side DESCRIBE in every form
cqlsh prints, and the round trip DESCRIBE KEYSPACE -> DROP -> run the statements again ->
the same DESCRIBE text. Then random, truncated and mutated frames (built with the driver's
own encoder) on fresh sockets, and an envelope claiming 1 GiB: each connection gets at most
well-formed answers and is closed, nothing hangs, and the node keeps serving the driver.

cqlsh runs as a subprocess with HOME in a temp directory (no ~/.cassandra/cqlshrc) and no
CQLSH_* variables. The cluster lives on 127.0.21.x, this module's own loopback subnet."""

from __future__ import annotations

import csv
import os
import re
import socket
import struct
import subprocess

import pytest
from cassandra import ConsistencyLevel as DCL
from cassandra import protocol as dp
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.protocol import ProtocolHandler
from cassandra.query import BatchType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.core.errors import ProtocolError
from agora.cql import frames as F
from agora.cql.error_codes import ERROR_CODES, SERVER_ERROR

from .conftest import make_cluster, wait_schema_agreement

SUBNET = "127.0.21"
HOST = f"{SUBNET}.1"
PORT = 9042
CQLSH_TIMEOUT_S = 60  # one cqlsh run; DDL waits for schema agreement, the rest is sub-second
SOCKET_TIMEOUT_S = 5.0  # a fuzz connection must be answered and closed well within this
GIB = 1 << 30
VERSION_LINE = "[cqlsh 6.2.2 | Cassandra 5.0.0 | CQL spec 3.4.7 | Native protocol v5]"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory, "cqlsh", nodes=3, subnet=SUBNET)
    yield cluster
    cluster.down(kill=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("cqlsh-home")


def cqlsh(home, *args: str, timeout: float = CQLSH_TIMEOUT_S) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQLSH")}
    env["HOME"] = str(home)
    return subprocess.run(["cqlsh", HOST, str(PORT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def ok(home, *args: str) -> str:
    """cqlsh that must succeed: exit 0 and nothing on stderr. Returns stdout."""
    proc = cqlsh(home, *args)
    assert proc.returncode == 0 and proc.stderr == "", (
        f"cqlsh {args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


def run_file(home, tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return ok(home, "-f", str(path))


def driver_cluster() -> Cluster:
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([HOST]))
    return Cluster([HOST], port=PORT, protocol_version=5,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile})


def table_ids(keyspace: str) -> dict[str, object]:
    with driver_cluster() as c:
        rows = c.connect().execute(
            "SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = %s", [keyspace])
        return {r.table_name: r.id for r in rows}


# ------------------------------------------------------------------------------ 1. cqlsh basics


def test_version_and_host(cluster, home):
    out = ok(home, "-e", "SHOW VERSION; SHOW HOST")
    assert out.splitlines()[0] == VERSION_LINE
    assert f"Connected to Agora Local at {HOST}:{PORT}" in out
    # no "cqlsh was built against 5.0.0, but this server is ..." warning either: stderr is empty


def test_seed_example_prints_alice(cluster, home):
    out = ok(home, "-e",
             "CREATE KEYSPACE seed WITH replication = {'class': 'SimpleStrategy', "
             "'replication_factor': 3}; USE seed; "
             "CREATE TABLE users (id int PRIMARY KEY, name text); "
             "INSERT INTO users (id, name) VALUES (1, 'Alice'); "
             "SELECT name FROM users WHERE id = 1;")
    assert out == "\n name\n-------\n Alice\n\n(1 rows)\n"


@pytest.fixture(scope="module")
def scratch(cluster, home):
    """A keyspace (replication factor 3) for tests that need a table of their own. Every DDL
    costs a schema agreement round, so tests share it rather than each making one."""
    ok(home, "-e", "CREATE KEYSPACE scratch WITH replication = "
                   "{'class': 'SimpleStrategy', 'replication_factor': 3}")
    return "scratch"


def test_consistency_levels_reach_the_server(cluster, home, scratch):
    ok(home, "-e",
       "CREATE KEYSPACE cl_four WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 4};"
       "CREATE TABLE scratch.cl (k int PRIMARY KEY, v text);"
       "CREATE TABLE cl_four.t (k int PRIMARY KEY, v text);"
       "INSERT INTO scratch.cl (k, v) VALUES (1, 'one'); INSERT INTO cl_four.t (k, v) VALUES (1, 'one');")
    table = "\n k | v\n---+-----\n 1 | one\n\n(1 rows)\n"
    out = ok(home, "-e", "CONSISTENCY QUORUM; SELECT * FROM scratch.cl WHERE k = 1; "
                         "CONSISTENCY ALL; SELECT * FROM scratch.cl WHERE k = 1; CONSISTENCY")
    assert out == ("Consistency level set to QUORUM.\n" + table
                   + "Consistency level set to ALL.\n" + table
                   + "Current consistency level is ALL.\n")
    # The level really travels: with replication factor 4 on 3 nodes the fourth replica never
    # exists. QUORUM (3 of 4) is met; ALL (4) is not, and the server says so.
    assert ok(home, "-e", "CONSISTENCY QUORUM; SELECT * FROM cl_four.t WHERE k = 1") == (
        "Consistency level set to QUORUM.\n" + table)
    proc = cqlsh(home, "-e", "CONSISTENCY ALL; SELECT * FROM cl_four.t WHERE k = 1")
    assert proc.returncode == 2
    assert "Cannot achieve consistency level ALL: 4 replicas required, 3 alive" in proc.stderr


STATEMENTS = """
CREATE KEYSPACE kinds WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3};
USE kinds;
CREATE TYPE address (street text, city text, zip int);
CREATE TABLE profiles (id int PRIMARY KEY, emails set<text>, phones list<text>,
    attrs map<text, int>, home frozen<address>, t tuple<int, text>);
CREATE TABLE wide (a int, b int, c int, v text, s text static, PRIMARY KEY (a, b, c))
    WITH CLUSTERING ORDER BY (b DESC, c ASC);
INSERT INTO profiles (id, emails, phones, attrs, home, t) VALUES (1, {'b@x.org', 'a@x.org'},
    ['555-1', '555-2'], {'age': 30, 'score': 7}, {street: 'Main', city: 'Oslo', zip: 123},
    (1, 'one'));
UPDATE profiles SET emails = emails + {'c@x.org'}, phones = phones + ['555-3'],
    attrs['age'] = 31 WHERE id = 1;
UPDATE profiles SET emails = emails - {'a@x.org'}, phones = ['555-0'] + phones WHERE id = 1;
DELETE attrs['score'] FROM profiles WHERE id = 1;
SELECT emails, phones, attrs, home, t FROM profiles WHERE id = 1;
BEGIN BATCH
  INSERT INTO wide (a, b, c, v, s) VALUES (1, 1, 1, 'x', 'static');
  INSERT INTO wide (a, b, c, v) VALUES (1, 1, 2, 'y');
  UPDATE wide SET v = 'z' WHERE a = 1 AND b = 2 AND c = 1;
APPLY BATCH;
SELECT * FROM wide WHERE a = 1;
DELETE v FROM wide WHERE a = 1 AND b = 1 AND c = 1;
DELETE FROM wide WHERE a = 1 AND b = 2 AND c = 1;
SELECT a, b, c, v FROM wide WHERE a = 1;
INSERT INTO wide (a, b, c, v) VALUES (2, 0, 0, 'ttl') USING TTL 1000;
SELECT v, TTL(v) FROM wide WHERE a = 2 AND b = 0 AND c = 0;
""" + "".join(f"INSERT INTO wide (a, b, c) VALUES (3, 0, {c});\n" for c in range(250)) + """\
SELECT c FROM wide WHERE a = 3;
ALTER TABLE wide ADD extra text;
ALTER TABLE wide WITH comment = 'altered';
TRUNCATE wide;
SELECT count(*) FROM wide;
DROP TABLE wide;
DROP TYPE IF EXISTS nothing_here;
"""

STATEMENTS_OUTPUT = """
 emails                 | phones                               | attrs       | home                                     | t
------------------------+--------------------------------------+-------------+------------------------------------------+------------
 {'b@x.org', 'c@x.org'} | ['555-0', '555-1', '555-2', '555-3'] | {'age': 31} | {street: 'Main', city: 'Oslo', zip: 123} | (1, 'one')

(1 rows)

 a | b | c | s      | v
---+---+---+--------+---
 1 | 2 | 1 | static | z
 1 | 1 | 1 | static | x
 1 | 1 | 2 | static | y

(3 rows)

 a | b | c | v
---+---+---+------
 1 | 1 | 1 | null
 1 | 1 | 2 |    y

(2 rows)

 v   | ttl(v)
-----+--------
 ttl |   TTL

(1 rows)

 c
----
""" + "".join(f" {c:2}\n" for c in range(100)) + "".join(f" {c:3}\n" for c in range(100, 250)) + """
(250 rows)

 count
-------
     0

(1 rows)
"""


def test_statements_of_every_kind(cluster, home, tmp_path):
    out = run_file(home, tmp_path, "kinds.cql", STATEMENTS)
    m = re.search(r"\n ttl \| +(\d+)\n", out)
    assert m and 990 <= int(m[1]) <= 1000, out  # written with TTL 1000 a moment ago
    # 250 rows come back in cqlsh's pages of 100, each page laid out on its own (hence the
    # column narrower for 0-99): proof that paging state went back and forth
    assert out.replace(m[0], "\n ttl |   TTL\n") == STATEMENTS_OUTPUT
    assert ok(home, "-e", "USE kinds; DESCRIBE TABLES").split() == ["profiles"]  # wide dropped


def test_server_errors_exit_2_with_the_servers_message(cluster, home, scratch):
    proc = cqlsh(home, "-e", "SELECT * FROM scratch.no_such_table")
    assert proc.returncode == 2
    assert 'code=2200 [Invalid query] message="table no_such_table does not exist"' in proc.stderr
    # cqlsh hands statements it cannot parse itself to the server, which answers Syntax_error
    # (cqlsh prints a SyntaxException's message alone, without "Error from server")
    proc = cqlsh(home, "-e", "SELEC release_version FROM system.local")
    assert proc.returncode == 2
    assert "SyntaxException: line 1:0 no viable alternative at input 'SELEC'" in proc.stderr
    proc = cqlsh(home, "-e", "SELECT release_version FROM system.local WHERE key = ;")
    assert proc.returncode == 2 and "SyntaxException: line 1:" in proc.stderr
    # an error does not stop the statements after it; the exit code still says it happened
    proc = cqlsh(home, "-e", "SELECT * FROM scratch.nope; SELECT release_version FROM system.local")
    assert proc.returncode == 2
    assert proc.stdout.endswith(" 5.0.0\n\n(1 rows)\n") and "table nope does not exist" in proc.stderr
    proc = cqlsh(home, "-e", "USE no_such_keyspace")
    assert proc.returncode == 2 and "no_such_keyspace" in proc.stderr
    proc = cqlsh(home, "-e", "CREATE KEYSPACE scratch WITH replication = "
                             "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    assert proc.returncode == 2 and "AlreadyExists" in proc.stderr and "scratch" in proc.stderr


def test_counter_tables_are_refused_or_work(cluster, home, scratch):
    """Never the half state once seen (CREATE accepted, every `n = n + 5` refused): a counter
    table is either refused up front, saying why, or counts."""
    proc = cqlsh(home, "-e", "CREATE TABLE scratch.hits (page text PRIMARY KEY, n counter)")
    if proc.returncode != 0:
        assert proc.returncode == 2 and re.search(r"[Cc]ounter.*not supported", proc.stderr), \
            proc.stderr
        return
    out = ok(home, "-e", "UPDATE scratch.hits SET n = n + 5 WHERE page = 'home'; "
                         "UPDATE scratch.hits SET n = n - 2 WHERE page = 'home'; "
                         "SELECT n FROM scratch.hits WHERE page = 'home'")
    assert out == "\n n\n---\n 3\n\n(1 rows)\n"


# ------------------------------------------------------------------------------ 2. DESCRIBE

SHOP = """
CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3};
CREATE TYPE shop.address (street text, city text, zip int);
CREATE TYPE shop.customer (name text, home frozen<address>, tags set<text>);
CREATE TABLE shop.orders (
    region text, day date, placed timestamp, id uuid, total decimal, note text static,
    PRIMARY KEY ((region, day), placed, id)
) WITH CLUSTERING ORDER BY (placed DESC, id ASC) AND comment = 'it''s orders'
  AND default_time_to_live = 86400;
CREATE TABLE shop.items (sku text PRIMARY KEY, price int);
"""

ORDERS_CQL = """CREATE TABLE shop.orders (
    region text,
    day date,
    placed timestamp,
    id uuid,
    note text static,
    total decimal,
    PRIMARY KEY ((region, day), placed, id)
) WITH CLUSTERING ORDER BY (placed DESC, id ASC)
    AND additional_write_policy = '99p'
    AND bloom_filter_fp_chance = 0.01
    AND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}
    AND cdc = false
    AND comment = 'it''s orders'
    AND compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', \
'max_threshold': '32', 'min_threshold': '4'}
    AND compression = {'chunk_length_in_kb': '16', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}
    AND crc_check_chance = 1.0
    AND default_time_to_live = 86400
    AND extensions = {}
    AND gc_grace_seconds = 864000
    AND max_index_interval = 2048
    AND memtable_flush_period_in_ms = 0
    AND min_index_interval = 128
    AND read_repair = 'BLOCKING'
    AND speculative_retry = '99p';"""

ADDRESS_CQL = "CREATE TYPE shop.address (\n    street text,\n    city text,\n    zip int\n);"
CUSTOMER_CQL = ("CREATE TYPE shop.customer (\n    name text,\n    home frozen<address>,\n"
                "    tags set<text>\n);")
SHOP_KEYSPACE_CQL = ("CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', "
                     "'replication_factor': '3'}  AND durable_writes = true;")


def test_copy_from_and_copy_to_round_trip_a_table(cluster, home, scratch, tmp_path):
    """cqlsh's COPY FROM (prepared inserts, batched, from child processes) loads a CSV with a
    wide partition and a collection column, and COPY TO (token-range scans over every node,
    paged) writes back exactly the same rows."""
    ok(home, "-e", f"CREATE TABLE {scratch}.copied (k int, c int, v text, m map<text, int>, "
                   "PRIMARY KEY (k, c))")
    rows = [(k, c, f"v{k}.{c}", f"{{'a': {k}, 'b': {c}}}")
            for k in range(300) for c in range(1 if k else 1500)]
    source, back = tmp_path / "in.csv", tmp_path / "out.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = ok(home, "-e", f"COPY {scratch}.copied (k, c, v, m) FROM '{source}'")
    assert f"{len(rows)} rows imported" in out
    with driver_cluster() as c:
        session = c.connect()
        count = session.execute(f"SELECT count(*) FROM {scratch}.copied").one()[0]
        wide = session.execute(f"SELECT c, m FROM {scratch}.copied WHERE k = 0 AND c = 1234").one()
    assert count == len(rows) and (wide.c, wide.m) == (1234, {"a": 0, "b": 1234})
    out = ok(home, "-e", f"COPY {scratch}.copied (k, c, v, m) TO '{back}'")
    assert f"{len(rows)} rows exported" in out
    with back.open(newline="") as f:
        exported = [tuple(r) for r in csv.reader(f)]
    assert sorted(exported) == sorted(tuple(str(x) for x in r) for r in rows)


@pytest.fixture(scope="module")
def shop(cluster, home, tmp_path_factory):
    run_file(home, tmp_path_factory.mktemp("shop"), "shop.cql", SHOP)
    return "shop"


def statements(out: str) -> list[str]:
    """The CREATE statements cqlsh printed for a DESCRIBE of elements (blank-line separated)."""
    return [s.strip("\n") for s in out.strip("\n").split("\n\n")]


def test_describe_keyspaces_tables_types(cluster, home, shop):
    names = ok(home, "-e", "DESCRIBE KEYSPACES").split()
    assert {"shop", "system", "system_schema"} <= set(names)
    assert names == sorted(names, key=str.lower)
    assert ok(home, "-e", "USE shop; DESCRIBE TABLES").split() == ["items", "orders"]
    assert ok(home, "-e", "USE shop; DESCRIBE TYPES").split() == ["address", "customer"]
    # without USE: grouped per keyspace under "Keyspace x" headers
    everything = ok(home, "-e", "DESCRIBE TABLES")
    assert "Keyspace shop\n-------------\nitems  orders\n" in everything
    assert "Keyspace system_schema\n" in everything
    assert "Keyspace shop\n-------------\naddress  customer\n" in ok(home, "-e", "DESCRIBE TYPES")


def test_describe_table_type_keyspace(cluster, home, shop):
    assert statements(ok(home, "-e", "DESCRIBE TABLE shop.orders")) == [ORDERS_CQL]
    assert statements(ok(home, "-e", "USE shop; DESC orders")) == [ORDERS_CQL]
    assert statements(ok(home, "-e", "DESCRIBE TYPE shop.customer")) == [CUSTOMER_CQL]
    ks = statements(ok(home, "-e", "DESCRIBE KEYSPACE shop"))
    # keyspace, types (each after the types it uses), then tables, all by name
    assert ks[:3] == [SHOP_KEYSPACE_CQL, ADDRESS_CQL, CUSTOMER_CQL]
    assert ks[3].startswith("CREATE TABLE shop.items (\n    sku text PRIMARY KEY,\n    price int\n)")
    assert ks[4] == ORDERS_CQL and len(ks) == 5
    assert statements(ok(home, "-e", "DESCRIBE ONLY KEYSPACE shop")) == [SHOP_KEYSPACE_CQL]
    proc = cqlsh(home, "-e", "DESCRIBE TABLE shop.nope")
    assert proc.returncode == 2 and "Table 'nope' not found in keyspace 'shop'" in proc.stderr
    proc = cqlsh(home, "-e", "DESCRIBE KEYSPACE nope")
    assert proc.returncode == 2 and "'nope' not found in keyspaces" in proc.stderr


def test_describe_schema(cluster, home, shop):
    out = ok(home, "-e", "DESCRIBE SCHEMA")
    assert SHOP_KEYSPACE_CQL in out and ORDERS_CQL in out and CUSTOMER_CQL in out
    assert "CREATE KEYSPACE system" not in out  # only user keyspaces ...
    assert "CREATE KEYSPACE system_schema" in ok(home, "-e", "DESCRIBE FULL SCHEMA")  # ... or all


def test_describe_cluster(cluster, home, shop):
    assert ok(home, "-e", "DESCRIBE CLUSTER") == (
        "\nCluster: Agora Local\nPartitioner: Murmur3Partitioner\nSnitch: DynamicEndpointSnitch\n\n")
    out = ok(home, "-e", "USE shop; DESCRIBE CLUSTER")
    head, _, ranges = out.partition("Range ownership:\n")
    assert head.endswith("Snitch: DynamicEndpointSnitch\n\n")
    owned = dict(re.fullmatch(r" +(-?\d+)  \[(.*)\]", line).groups()
                 for line in ranges.strip("\n").splitlines())
    with driver_cluster() as c:
        session = c.connect()
        tokens = set(session.execute("SELECT tokens FROM system.local").one().tokens)
        for row in session.execute("SELECT tokens FROM system.peers_v2"):
            tokens |= set(row.tokens)
    assert set(owned) == tokens  # one range per ring token ...
    everyone = {f"/{SUBNET}.{i}:7000" for i in (1, 2, 3)}
    assert all(set(v.split(", ")) == everyone for v in owned.values())  # ... on all 3 (RF 3)


ROUND_TRIP = """
CREATE KEYSPACE "RoundTrip" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 2}
    AND durable_writes = false;
USE "RoundTrip";
CREATE TYPE "Point" ("X" double, y double, "from" text);
CREATE TYPE shape (name text, pts list<frozen<"Point">>, meta map<text, frozen<tuple<int, "Point">>>);
CREATE TYPE aaa_uses_shape (s frozen<shape>, at timestamp);
CREATE TABLE "Readings" (
    "Sensor" text, bucket int, when timeuuid, value decimal,
    tags frozen<set<text>> static, info text static,
    shape frozen<shape>, loc frozen<"Point">, later aaa_uses_shape,
    m map<frozen<list<int>>, varint>, s set<inet>, l list<frozen<map<text, blob>>>,
    d duration, sm smallint, ti tinyint, b boolean, f float, a ascii, ts time, dt date,
    "select" int, "Mixed Case" bigint,
    PRIMARY KEY (("Sensor", bucket), when, value)
) WITH CLUSTERING ORDER BY (when DESC, value ASC)
  AND comment = 'sensor ''readings'''
  AND default_time_to_live = 3600 AND gc_grace_seconds = 7200
  AND bloom_filter_fp_chance = 0.1 AND crc_check_chance = 0.5
  AND caching = {'keys': 'NONE', 'rows_per_partition': '10'}
  AND compaction = {'class': 'LeveledCompactionStrategy', 'sstable_size_in_mb': '64'}
  AND compression = {'class': 'LZ4Compressor', 'chunk_length_in_kb': '64'}
  AND speculative_retry = '50ms' AND additional_write_policy = 'NEVER' AND read_repair = 'NONE'
  AND max_index_interval = 1024 AND min_index_interval = 64
  AND memtable_flush_period_in_ms = 60000 AND cdc = true;
CREATE TABLE fk (k frozen<tuple<int, text>>, c frozen<map<text, int>>, v int,
    PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC);
CREATE TABLE multi (a int, b text, c int, d int, PRIMARY KEY ((a, b), c, d))
    WITH CLUSTERING ORDER BY (c DESC, d DESC);
"""


def test_describe_keyspace_round_trip(cluster, home, tmp_path):
    run_file(home, tmp_path, "create.cql", ROUND_TRIP)
    before = ok(home, "-e", 'DESCRIBE KEYSPACE "RoundTrip"')
    created = statements(before)
    assert [s.split(" (")[0].split(" WITH")[0] for s in created] == [
        'CREATE KEYSPACE "RoundTrip"', 'CREATE TYPE "RoundTrip"."Point"',
        'CREATE TYPE "RoundTrip".shape', 'CREATE TYPE "RoundTrip".aaa_uses_shape',
        'CREATE TABLE "RoundTrip".fk', 'CREATE TABLE "RoundTrip".multi',
        'CREATE TABLE "RoundTrip"."Readings"']  # by name, ignoring case
    ids_before = table_ids("RoundTrip")
    ok(home, "-e", 'DROP KEYSPACE "RoundTrip"')
    assert "RoundTrip" not in ok(home, "-e", "DESCRIBE KEYSPACES")
    run_file(home, tmp_path, "described.cql", before)
    assert ok(home, "-e", 'DESCRIBE KEYSPACE "RoundTrip"') == before
    wait_schema_agreement(cluster)
    # Not in the DESCRIBE text and rightly different: a re-created table is a new table
    # (its id comes from its creation timestamp), so data of the dropped one never reappears.
    ids_after = table_ids("RoundTrip")
    assert ids_after.keys() == ids_before.keys()
    assert all(ids_after[t] != ids_before[t] for t in ids_before)


def test_describe_with_internals_round_trip(cluster, home, tmp_path, scratch):
    ok(home, "-e", "CREATE TABLE scratch.internals (k int PRIMARY KEY, v text)")
    ok(home, "-e", "CONSISTENCY ALL; INSERT INTO scratch.internals (k, v) VALUES (1, 'dropped with the table')")
    before = ok(home, "-e", "DESCRIBE TABLE scratch.internals WITH INTERNALS")
    assert ") WITH ID = " in before
    ok(home, "-e", "DROP TABLE scratch.internals")
    (tmp_path / "described.cql").write_text(before)
    proc = cqlsh(home, "-f", str(tmp_path / "described.cql"))
    assert (proc.returncode, proc.stderr) == (0, "")
    # the same table again, id and all (Cassandra's way to restore a snapshot's table) ...
    assert ok(home, "-e", "DESCRIBE TABLE scratch.internals WITH INTERNALS") == before
    # ... and empty on every node: the drop truncated the old table's data
    assert "(0 rows)" in ok(home, "-e", "CONSISTENCY ALL; SELECT * FROM scratch.internals")


# ------------------------------------------------------------------------------ 3. garbage

FUZZ_KEYSPACE = "fuzz"


@pytest.fixture(scope="module")
def fuzz_target(cluster):
    """A table to aim requests at, and the ids of statements prepared on node1."""
    with driver_cluster() as c:
        session = c.connect()
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {FUZZ_KEYSPACE} WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 3}")
        session.execute(f"CREATE TABLE IF NOT EXISTS {FUZZ_KEYSPACE}.t "
                        "(k int, c int, v text, s set<int>, m map<text, int>, PRIMARY KEY (k, c))")
        session.execute(f"INSERT INTO {FUZZ_KEYSPACE}.t (k, c, v, s) VALUES (1, 1, 'one', {{1, 2}})")
        insert = session.prepare(f"INSERT INTO {FUZZ_KEYSPACE}.t (k, c, v, s, m) VALUES (?, ?, ?, ?, ?)")
        select = session.prepare(f"SELECT * FROM {FUZZ_KEYSPACE}.t WHERE k = ? AND c > ?")
        yield {"insert": (insert.query_id, insert.result_metadata_id),
               "select": (select.query_id, select.result_metadata_id)}


def _encode(msg, version: int, stream: int) -> bytes:
    return ProtocolHandler.encode_message(msg, stream, version, None, False)


def _handshake(version: int) -> bytes:
    return (_encode(dp.OptionsMessage(), version, 0)
            + _encode(dp.StartupMessage("3.4.7", {"DRIVER_NAME": "fuzz"}), version, 1))


STATEMENT_TEXTS = [
    f"SELECT k, c, v, s FROM {FUZZ_KEYSPACE}.t WHERE k = 1 AND c >= 0 ORDER BY c DESC LIMIT 5",
    f"INSERT INTO {FUZZ_KEYSPACE}.t (k, c, v, s, m) VALUES (4, 1, 'it''s', {{1, 2}}, {{'a': 1}}) "
    "USING TTL 60",
    f"UPDATE {FUZZ_KEYSPACE}.t SET m['b'] = 2, s = s - {{1}} WHERE k = 4 AND c = 1",
    f"DELETE m['a'] FROM {FUZZ_KEYSPACE}.t WHERE k = 4 AND c = 1",
    f"BEGIN UNLOGGED BATCH INSERT INTO {FUZZ_KEYSPACE}.t (k, c) VALUES (5, 5); APPLY BATCH",
    f"SELECT count(*), max(c), token(k) FROM {FUZZ_KEYSPACE}.t WHERE token(k) > 0",
    "SELECT keyspace_name, table_name FROM system_schema.tables",
    f"DESCRIBE TABLE {FUZZ_KEYSPACE}.t",
]


@st.composite
def garbled_text(draw) -> str:
    """A statement garbled at the character level: the codec is happy, the parser and the
    statement processor get the damage."""
    text = list(draw(st.sampled_from(STATEMENT_TEXTS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        piece = draw(st.sampled_from(["'", "(", ")", "{", "}", ",", ";", "?", ":", "-", "9" * 30,
                                      "0x", "null", "SELECT", "WHERE", "token(", "\x00", "é",
                                      " ", "e+", "[", "]", "..", "*"]))
        if action == "insert" or at == len(text):
            text[at:at] = [piece]
        elif action == "replace":
            text[at] = piece
        else:
            del text[at:at + draw(st.integers(1, 10))]
    return "".join(text)


def _requests(version: int, prepared: dict) -> list[bytes]:
    """Valid requests a started connection could send, as the driver encodes them."""
    ks = FUZZ_KEYSPACE
    insert_id, insert_meta = prepared["insert"]
    select_id, select_meta = prepared["select"]
    int4 = struct.pack(">i", 7)
    messages = [
        dp.QueryMessage(f"SELECT * FROM {ks}.t WHERE k = 1", DCL.QUORUM, fetch_size=2),
        dp.QueryMessage(f"INSERT INTO {ks}.t (k, c, v, m) VALUES (2, 3, 'x', {{'a': 1}})",
                        DCL.ONE, timestamp=1_700_000_000_000_000),
        dp.QueryMessage(f"UPDATE {ks}.t SET s = s + {{5}} WHERE k = 2 AND c = 3", DCL.ALL),
        dp.QueryMessage("SELECT * FROM system.local WHERE key = 'local'", DCL.ONE),
        dp.QueryMessage(f"DESCRIBE KEYSPACE {ks}", DCL.LOCAL_ONE, fetch_size=100),
        dp.PrepareMessage(f"SELECT v FROM {ks}.t WHERE k = ?"),
        dp.ExecuteMessage(insert_id, [int4, int4, b"text", b"\x00\x00\x00\x01\x00\x00\x00\x04"
                                      + int4, None], DCL.QUORUM, result_metadata_id=insert_meta),
        dp.ExecuteMessage(select_id, [int4, int4], DCL.ONE, fetch_size=1,
                          result_metadata_id=select_meta),
        dp.ExecuteMessage(b"\x13" * 16, [int4], DCL.ONE, result_metadata_id=b"\x14" * 16),
        dp.BatchMessage(BatchType.LOGGED, [
            (False, f"INSERT INTO {ks}.t (k, c, v) VALUES (3, 1, 'b')", []),
            (True, insert_id, [int4, int4, None, None, None])], DCL.QUORUM),
        dp.RegisterMessage(["SCHEMA_CHANGE", "STATUS_CHANGE"]),
        dp.OptionsMessage(),
    ]
    return [_encode(m, version, 10 + i) for i, m in enumerate(messages)]


@st.composite
def mutated(draw, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE]))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def damaged_bodies(draw, requests: list[bytes]) -> list[bytes]:
    """Requests whose bodies (and maybe flags or opcode) are damaged while each header's
    length still fits its body, so the stream stays in step and the damage reaches request
    decoding and the statement processor."""
    out = []
    for envelope in requests:
        version, flags, stream, opcode, _ = struct.unpack_from(">BBhBi", envelope)
        body = draw(mutated(envelope[F.HEADER_BYTES:]))
        if draw(st.integers(0, 9)) == 0:
            flags = draw(st.sampled_from([F.FLAG_TRACING, F.FLAG_CUSTOM_PAYLOAD, F.FLAG_BETA,
                                          F.FLAG_COMPRESSION, 0xFF]))
        if draw(st.integers(0, 9)) == 0:
            opcode = draw(st.sampled_from(sorted(set(range(0x11)) | {0x42, 0xFF})))
        out.append(struct.pack(">BBhBi", version, flags, stream, opcode, len(body)) + body)
    return out


@st.composite
def conversations(draw, prepared: dict) -> bytes:
    """What one fuzz connection sends: random bytes, or a valid conversation (v4, or v5
    with its segments) that is truncated or damaged somewhere."""
    kind = draw(st.sampled_from(["random", "valid", "truncated", "mutated_anywhere",
                                 "mutated_after_handshake", "damaged_bodies", "damaged_bodies",
                                 "v5_random_segment", "garbled_cql", "garbage_values"]))
    if kind in ("garbled_cql", "garbage_values"):
        version = draw(st.sampled_from([4, 5]))
        if kind == "garbled_cql":
            msg = dp.QueryMessage(draw(garbled_text()), draw(st.sampled_from(
                [DCL.ONE, DCL.QUORUM, DCL.ALL, DCL.LOCAL_ONE, DCL.SERIAL, DCL.ANY])), fetch_size=3)
        else:
            query_id, meta = prepared[draw(st.sampled_from(["insert", "select"]))]
            values = draw(st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=6))
            msg = dp.ExecuteMessage(query_id, values, DCL.ONE, result_metadata_id=meta)
        envelope = _encode(msg, version, 3)
        return _handshake(version) + (F.encode_segments([envelope]) if version == 5 else envelope)
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=512))
    if kind == "v5_random_segment":
        return _handshake(5) + F.encode_segment(draw(st.binary(max_size=300)), draw(st.booleans()))
    version = draw(st.sampled_from([4, 5]))
    requests = draw(st.lists(st.sampled_from(_requests(version, prepared)), min_size=1, max_size=4))
    if kind == "damaged_bodies":
        requests = draw(damaged_bodies(requests))
    framed = F.encode_segments(requests) if version == 5 else b"".join(requests)
    if kind == "mutated_after_handshake":
        return _handshake(version) + draw(mutated(framed))
    whole = _handshake(version) + framed
    if kind == "truncated":
        return whole[:draw(st.integers(1, len(whole) - 1))]
    if kind == "mutated_anywhere":
        return draw(mutated(whole))
    return whole  # valid, or valid framing around damaged bodies


KNOWN_CODES = {rule.code for rule in ERROR_CODES}
ANSWER_OPCODES = {F.Opcode.ERROR, F.Opcode.READY, F.Opcode.SUPPORTED, F.Opcode.RESULT}


def expected_answers(data: bytes) -> tuple[int, bool]:
    """What the node must do with `data`, worked out with the same codec it uses: (how
    many envelopes it answers, whether it then closes the connection). Every envelope read
    whole gets exactly one answer; a broken byte stream gets one more answer if its header
    got as far as a stream id, then a close. This is what lets a fuzz connection wait for
    exactly its answers instead of guessing with an idle timeout."""
    envelopes, segments = F.EnvelopeDecoder(), None
    envelopes.feed(data)
    started, answered = False, 0
    try:
        while True:
            if segments is not None:  # as the server does: segments first, then envelopes
                while (segment := segments.next_segment()) is not None:
                    envelopes.feed(segment.payload)
            envelope = envelopes.next_envelope()
            if envelope is None:
                return answered, False
            answered += 1
            if envelope.opcode != F.Opcode.STARTUP or started:
                continue
            try:
                F.decode_request(envelope)
            except ProtocolError:
                continue  # refused (as the server does), the connection stays unstarted
            started = True
            if envelope.version >= 5:
                segments = F.SegmentDecoder()
                segments.feed(envelopes.take_buffer())
    except F.FrameError as exc:
        return answered + (exc.stream is not None), True


def talk(data: bytes) -> bytes:
    """Send `data` on a fresh connection, read until the node has answered all it must (or
    has closed), half-close, and read until it closes. A node that neither answers nor
    closes fails the test after SOCKET_TIMEOUT_S."""
    count, closes = expected_answers(data)
    received = b""
    with socket.create_connection((HOST, PORT), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.settimeout(SOCKET_TIMEOUT_S)
        try:
            sock.sendall(data)
            while not closes and len(answers(received, complete=False)) < count:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node closed first, on an early broken envelope: allowed
        except socket.timeout:
            raise AssertionError(f"the node neither answered nor closed within "
                                 f"{SOCKET_TIMEOUT_S}s; sent {data!r}, got {received!r}") from None
    got = [a for a in answers(received) if a[1] != F.EVENT_STREAM]
    assert len(got) == count if not closes else len(got) <= count, (count, closes, got, data)
    return received


def answers(data: bytes, complete: bool = True) -> list[tuple[int, int, int, bytes]]:
    """Split what the node sent into envelopes (version byte, stream, opcode, body):
    unframed, until a v5 READY switches the rest to segments. With `complete`, anything
    torn fails the test; without, a torn tail is what has not arrived yet."""
    out, pos = [], 0
    while len(data) - pos >= F.HEADER_BYTES:
        version, _, stream, opcode, length = struct.unpack_from(">BBhBi", data, pos)
        if len(data) - pos - F.HEADER_BYTES < length:
            break
        out.append((version, stream, opcode, data[pos + F.HEADER_BYTES:pos + F.HEADER_BYTES + length]))
        pos += F.HEADER_BYTES + length
        if version == 0x85 and opcode == F.Opcode.READY:
            payload, rest = _segment_payloads(data[pos:])
            assert not (complete and rest), f"a torn segment: {rest!r}"
            return out + answers_in(payload, complete)
    assert not (complete and pos != len(data)), f"a torn envelope: {data[pos:]!r}"
    return out


def answers_in(payload: bytes, complete: bool = True) -> list[tuple[int, int, int, bytes]]:
    """Envelopes inside segment payloads."""
    out, pos = [], 0
    while len(payload) - pos >= F.HEADER_BYTES:
        version, _, stream, opcode, length = struct.unpack_from(">BBhBi", payload, pos)
        if len(payload) - pos - F.HEADER_BYTES < length:
            break
        out.append((version, stream, opcode, payload[pos + F.HEADER_BYTES:pos + F.HEADER_BYTES + length]))
        pos += F.HEADER_BYTES + length
    assert not (complete and pos != len(payload)), f"a torn envelope in a segment: {payload[pos:]!r}"
    return out


def _segment_payloads(data: bytes) -> tuple[bytes, bytes]:
    """The payloads of the complete segments at the start of `data`, and what is left."""
    decoder = F.SegmentDecoder()
    decoder.feed(data)
    payload = b""
    while (segment := decoder.next_segment()) is not None:
        payload += segment.payload
    return payload, data[len(data) - decoder.buffered_bytes:]


def check_answers(data: bytes) -> None:
    """Every answer is a response envelope the real driver decodes; no error is the node's
    own failure (Server_error) or a code outside the table."""
    for version, stream, opcode, body in answers(data):
        assert version & 0x80 and version & 0x7F in (3, 4, 5), hex(version)
        if stream == F.EVENT_STREAM:
            assert opcode == F.Opcode.EVENT
            continue
        assert opcode in ANSWER_OPCODES, opcode
        message = ProtocolHandler.decode_message(version & 0x7F, {}, stream, 0, opcode, body,
                                                 None, None)
        if opcode == F.Opcode.ERROR:
            assert message.code != SERVER_ERROR, f"the node failed internally: {message.message}"
            assert message.code in KNOWN_CODES, (hex(message.code), message.message)


def node_log(cluster, name: str = "node1") -> str:
    return cluster.log_path(cluster.node(name)).read_text(errors="replace")


def test_garbage_on_9042_leaves_the_node_serving(cluster, fuzz_target):
    pid = cluster.pid(cluster.node("node1"))
    log_start = len(node_log(cluster))

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(conversations(fuzz_target))
    def fuzz(data):
        check_answers(talk(data))

    fuzz()
    assert cluster.pid(cluster.node("node1")) == pid, "the node process died or restarted"
    with driver_cluster() as c:
        row = c.connect().execute(f"SELECT v FROM {FUZZ_KEYSPACE}.t WHERE k = 1 AND c = 1").one()
    assert row.v == "one"
    new_log = node_log(cluster)[log_start:]
    assert "Traceback" not in new_log and "internal error" not in new_log, new_log[-3000:]


def read_envelope(sock: socket.socket) -> tuple[int, int, int, bytes] | None:
    data = b""
    while len(data) < F.HEADER_BYTES:
        chunk = sock.recv(F.HEADER_BYTES - len(data))
        if not chunk:
            assert not data, "a torn header"
            return None
        data += chunk
    version, _, stream, opcode, length = struct.unpack(">BBhBi", data)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, "a torn body"
        body += chunk
    return version, stream, opcode, body


def error_code(envelope) -> int:
    assert envelope[2] == F.Opcode.ERROR, envelope
    return F.Reader(envelope[3]).read_int()


@pytest.mark.parametrize("framed", [False, True], ids=["v4", "v5-in-a-segment"])
def test_an_envelope_claiming_1_gib_is_refused_and_closed(cluster, framed):
    """Only the header arrives; the node must not wait for (or allocate) a gigabyte. It
    answers Protocol_error on that stream and closes, while we keep our side open."""
    with socket.create_connection((HOST, PORT), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.settimeout(SOCKET_TIMEOUT_S)
        if framed:
            sock.sendall(_handshake(5))
            assert read_envelope(sock)[2] == F.Opcode.SUPPORTED
            assert read_envelope(sock)[2] == F.Opcode.READY
            header = struct.pack(">BBhBi", 5, 0, 7, F.Opcode.QUERY, GIB)
            sock.sendall(F.encode_segment(header + b"SELECT", False))
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            payload, torn = _segment_payloads(rest)
            assert torn == b""
            (answer,) = answers_in(payload)
        else:
            sock.sendall(struct.pack(">BBhBi", 4, 0, 7, F.Opcode.OPTIONS, GIB) + b"\x00" * 100)
            answer = read_envelope(sock)
            assert read_envelope(sock) is None  # closed by the node
        assert answer[1] == 7 and error_code(answer) == 0x000A
        assert "exceeds the limit" in F.Reader(answer[3][4:]).read_string()
    with driver_cluster() as c:  # and the node still serves
        assert c.connect().execute("SELECT release_version FROM system.local").one()[0] == "5.0.0"


@pytest.mark.parametrize("version", [4, 5])
def test_a_broken_header_on_a_negative_stream_is_not_answered_as_an_event(cluster, version):
    """Found by the fuzz above: after a good handshake, a header with the response bit and
    stream -1 was answered with an ERROR on stream -1, the stream of server EVENTs. Now the
    connection just closes."""
    broken = struct.pack(">BBhBi", 0x80 | version, 0, -1, F.Opcode.QUERY, 0)
    data = _handshake(version) + (F.encode_segment(broken, True) if version == 5 else broken)
    assert expected_answers(data) == (2, True)
    received = talk(data)
    assert [(a[1], a[2]) for a in answers(received)] == [(0, F.Opcode.SUPPORTED),
                                                         (1, F.Opcode.READY)]
