"""system.local / peers / system_schema.*: the definitions match Cassandra 5.0, the rows say
what the driver needs, and cassandra-driver 3.30.1's own schema parser (the one it picks for
release_version 5.0.0) reads our system_schema rows back into the schema we started from.
Also the SCHEMA_CHANGE events between two schemas (schema_events)."""

from __future__ import annotations

import re
import types
import uuid

import cassandra
import cassandra.cqltypes as ct
import pytest
from cassandra import metadata as dmeta

from agora.core.errors import InvalidRequest
from agora.core.schema import types as T
from agora.core.schema.model import ColumnDef, KeyspaceDef, Schema, TableDef, TypeDef
from agora.core.schema.types import (
    BIGINT, BLOB, INT, TEXT, TIMESTAMP, UUID, ListType, MapType, SetType, TupleType, parse_type,
    serialize,
)
from agora.cql import system_tables as st
from agora.cql.backend import ClusterView, NodeView
from agora.cql.results import SchemaChange
from agora.cql.schema_events import schema_events

SIMPLE = {"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "3"}
NTS = {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}


# ------------------------------------------------------------------------------ fixtures


def node(i: int, tokens=(), **kw) -> NodeView:
    fields = dict(node_id=f"127.0.0.{i}:7000", address=f"127.0.0.{i}", internode_port=7000,
                  native_address=f"127.0.0.{i}", native_port=9042, dc="dc1", rack="rack1",
                  host_id=str(uuid.UUID(int=i)), tokens=tuple(tokens),
                  schema_version="11111111-2222-3333-4444-555555555555",
                  release_version="5.0.0", up=True)
    fields.update(kw)
    return NodeView(**fields)


def cluster(*peers: NodeView) -> ClusterView:
    return ClusterView("Test Cluster", node(1, (-300, 300)), tuple(peers))


def sample_schema() -> Schema:
    """Keyspaces of both strategies, composite keys, DESC clustering, statics, collections,
    frozen types, tuples, a UDT used by a UDT and by tables, a counter table, odd names."""
    addr = TypeDef("ks", "address", ("street", "zip"), (TEXT, INT))
    person = TypeDef("ks", "person", ("name", "home", "tags"),
                     (TEXT, addr.user_type(frozen=True), SetType(TEXT, True)))
    udts = {"address": addr.user_type(), "person": person.user_type()}.get
    s = Schema().with_keyspace(KeyspaceDef("ks", SIMPLE), 1)
    s = s.with_keyspace(KeyspaceDef("multi", NTS, durable_writes=False), 2)
    s = s.with_type(addr, 3).with_type(person, 4)
    events = TableDef.build(
        "ks", "events",
        partition_key=[("tenant", TEXT), ("day", INT)],
        clustering=[("at", TIMESTAMP, "desc"), ("seq", BIGINT, "asc")],
        static=[("owner", TEXT)],
        regular=[("payload", BLOB), ("tags", parse_type("set<text>")),
                 ("counts", parse_type("map<text, int>")), ("history", parse_type("list<int>")),
                 ("frozen_map", parse_type("frozen<map<text, list<int>>>")),
                 ("pair", parse_type("tuple<int, text>")),
                 ("who", parse_type("frozen<person>", udts)),
                 ("where_", parse_type("address", udts)), ("Mixed", TEXT)],
        options={"comment": "it's a test", "default_time_to_live": 60,
                 "caching": {"keys": "NONE", "rows_per_partition": "10"}},
        created_ts=5)
    users = TableDef.build("ks", "users", partition_key=[("id", UUID)],
                           regular=[("name", TEXT)], created_ts=6)
    hits = TableDef.build("multi", "hits", partition_key=[("page", TEXT)],
                          clustering=[("day", INT, "desc")],
                          regular=[("n", T.COUNTER)], created_ts=7)
    return s.with_table(events, 5).with_table(users, 6).with_table(hits, 7)


# ------------------------------------------------------------------------------ definitions


def columns_of(keyspace: str, table: str) -> dict[str, str]:
    t = st.virtual_table(keyspace, table)
    return {c.name: c.type.cql_name() for c in t.columns}


def test_system_local_columns_as_cassandra_5():
    assert columns_of("system", "local") == {
        "key": "text", "bootstrapped": "text", "broadcast_address": "inet",
        "broadcast_port": "int", "cluster_name": "text", "cql_version": "text",
        "data_center": "text", "gossip_generation": "int", "host_id": "uuid",
        "listen_address": "inet", "listen_port": "int", "native_protocol_version": "text",
        "partitioner": "text", "rack": "text", "release_version": "text",
        "rpc_address": "inet", "rpc_port": "int", "schema_version": "uuid",
        "tokens": "set<text>", "truncated_at": "map<uuid, blob>"}
    local = st.virtual_table("system", "local")
    assert [c.name for c in local.partition_key_columns] == ["key"]
    assert local.id == uuid.UUID("7ad54392-bcdd-35a6-8417-4e047860b377")  # Cassandra's own


def test_peers_tables_keys_and_columns():
    v2 = st.virtual_table("system", "peers_v2")
    assert [c.name for c in v2.partition_key_columns] == ["peer"]
    assert [c.name for c in v2.clustering_columns] == ["peer_port"]
    assert set(columns_of("system", "peers_v2")) == {
        "peer", "peer_port", "data_center", "host_id", "preferred_ip", "preferred_port",
        "rack", "release_version", "native_address", "native_port", "schema_version",
        "tokens"}
    assert set(columns_of("system", "peers")) == {
        "peer", "data_center", "host_id", "preferred_ip", "rack", "release_version",
        "rpc_address", "schema_version", "tokens"}


def test_system_schema_keys_and_types():
    cols = st.virtual_table("system_schema", "columns")
    assert [c.name for c in cols.partition_key_columns] == ["keyspace_name"]
    assert [c.name for c in cols.clustering_columns] == ["table_name", "column_name"]
    assert columns_of("system_schema", "keyspaces")["replication"] == "frozen<map<text, text>>"
    tables = columns_of("system_schema", "tables")
    assert tables["flags"] == "frozen<set<text>>"
    assert tables["extensions"] == "frozen<map<text, blob>>"
    for name in ("caching", "compaction", "compression", "read_repair", "speculative_retry",
                 "additional_write_policy", "id", "gc_grace_seconds", "default_time_to_live"):
        assert name in tables
    funcs = st.virtual_table("system_schema", "functions")
    assert [c.name for c in funcs.clustering_columns] == ["function_name", "argument_types"]
    assert {t.name for t in st.virtual_tables("system_schema")} >= {
        "keyspaces", "tables", "columns", "types", "functions", "aggregates", "triggers",
        "indexes", "views", "dropped_columns"}


def test_is_virtual_and_unserved_keyspace():
    assert st.is_virtual("system") and st.is_virtual("system_schema")
    assert not st.is_virtual("ks")
    assert st.virtual_table("system", "nope") is None
    assert st.virtual_table("ks", "t") is None
    with pytest.raises(InvalidRequest, match="does not exist"):
        st.virtual_table("system_virtual_schema", "keyspaces")
    with pytest.raises(InvalidRequest):
        st.virtual_rows("system_virtual_schema", "tables", Schema(), cluster())


# ------------------------------------------------------------------------------ rows


def assert_serializable(keyspace: str, table: str, rows: list[dict]) -> None:
    t = st.virtual_table(keyspace, table)
    for row in rows:
        assert set(row) == {c.name for c in t.columns}
        for c in t.columns:
            if row[c.name] is not None:
                serialize(c.type, row[c.name])


def test_local_row():
    schema = sample_schema()
    view = cluster()
    [row] = st.virtual_rows("system", "local", schema, view)
    assert_serializable("system", "local", [row])
    assert row["key"] == "local"
    assert row["cluster_name"] == "Test Cluster"
    assert row["release_version"] == "5.0.0" and row["cql_version"] == "3.4.7"
    assert row["partitioner"] == "org.apache.cassandra.dht.Murmur3Partitioner"
    assert row["data_center"] == "dc1" and row["rack"] == "rack1"
    assert row["host_id"] == uuid.UUID(int=1)
    assert row["schema_version"] == uuid.UUID("11111111-2222-3333-4444-555555555555")
    assert list(row["tokens"]) == ["-300", "300"]
    assert row["rpc_address"] == "127.0.0.1" and row["rpc_port"] == 9042
    assert row["bootstrapped"] == "COMPLETED" and row["truncated_at"] is None


def test_local_schema_version_falls_back_to_schema():
    schema = sample_schema()
    view = ClusterView("c", node(1, (5,), schema_version=None), ())
    [row] = st.virtual_rows("system", "local", schema, view)
    assert row["schema_version"] == schema.version()


def test_peer_rows_follow_the_valid_peer_rule():
    view = cluster(node(2, (-100, 100)), node(3, (0,), rack=""), node(4, ()),
                   node(5, (7,), native_port=9043, schema_version=None))
    rows = st.virtual_rows("system", "peers_v2", Schema(), view)
    assert_serializable("system", "peers_v2", rows)
    assert [r["peer"] for r in rows] == ["127.0.0.2", "127.0.0.5"]  # no rack / no tokens: out
    first = rows[0]
    assert first["host_id"] == uuid.UUID(int=2) and first["data_center"] == "dc1"
    assert first["native_address"] == "127.0.0.2" and first["native_port"] == 9042
    assert first["peer_port"] == 7000 and list(first["tokens"]) == ["-100", "100"]
    assert rows[1]["schema_version"] is None and rows[1]["native_port"] == 9043
    legacy = st.virtual_rows("system", "peers", Schema(), view)
    assert_serializable("system", "peers", legacy)
    assert [r["rpc_address"] for r in legacy] == ["127.0.0.2", "127.0.0.5"]


def test_set_values_serialize_identically_in_any_order():
    a = st.SortedTextSet(["b", "a", "c"])
    b = st.SortedTextSet(["c", "b", "a"])
    assert list(a) == ["a", "b", "c"] and a == {"a", "b", "c"}
    assert serialize(SetType(TEXT), a) == serialize(SetType(TEXT), b) \
        == serialize(SetType(TEXT), ["a", "b", "c"])  # Cassandra's element order, always


def test_schema_rows_cover_virtual_and_user_objects():
    schema = sample_schema()
    view = cluster()
    keyspaces = st.virtual_rows("system_schema", "keyspaces", schema, view)
    assert [r["keyspace_name"] for r in keyspaces] == ["ks", "multi", "system", "system_schema"]
    system = next(r for r in keyspaces if r["keyspace_name"] == "system")
    assert system["replication"] == {"class": "org.apache.cassandra.locator.LocalStrategy"}
    tables = st.virtual_rows("system_schema", "tables", schema, view)
    names = {(r["keyspace_name"], r["table_name"]) for r in tables}
    assert {("system", "local"), ("system_schema", "columns"), ("ks", "events")} <= names
    assert all("compound" in r["flags"] for r in tables)
    hits = next(r for r in tables if r["table_name"] == "hits")
    assert set(hits["flags"]) == {"compound", "counter"}
    events = next(r for r in tables if r["table_name"] == "events")
    assert events["default_time_to_live"] == 60 and events["gc_grace_seconds"] == 864000
    assert events["caching"] == {"keys": "NONE", "rows_per_partition": "10"}
    columns = st.virtual_rows("system_schema", "columns", schema, view)
    assert all(r["clustering_order"] in ("none", "asc", "desc") for r in columns)
    at = next(r for r in columns if r["table_name"] == "events" and r["column_name"] == "at")
    assert (at["kind"], at["position"], at["clustering_order"]) == ("clustering", 0, "desc")
    who = next(r for r in columns if r["column_name"] == "who")
    assert who["type"] == "frozen<person>" and who["column_name_bytes"] == b"who"
    types_ = st.virtual_rows("system_schema", "types", schema, view)
    person = next(r for r in types_ if r["type_name"] == "person")
    assert person["field_types"] == ["text", "frozen<address>", "frozen<set<text>>"]
    for table in st.virtual_tables("system_schema"):
        rows = st.virtual_rows("system_schema", table.name, schema, view)
        assert_serializable("system_schema", table.name, rows)


# ------------------------------------------------------------------------------ the driver


def driver_type(t: T.CqlType):
    if isinstance(t, T.NativeType):
        return ct._cqltypes[t.name]
    if isinstance(t, ListType):
        return ct.ListType.apply_parameters([driver_type(t.element)])
    if isinstance(t, SetType):
        return ct.SetType.apply_parameters([driver_type(t.element)])
    if isinstance(t, MapType):
        return ct.MapType.apply_parameters([driver_type(t.key), driver_type(t.value)])
    if isinstance(t, TupleType):
        return ct.TupleType.apply_parameters([driver_type(e) for e in t.elements])
    raise AssertionError(f"no UDTs in system tables: {t}")


_SELECT = re.compile(r"SELECT \* (?:FROM|from) (\w+)\.(\w+)(?: WHERE (.*))?$")
_EQUALS = re.compile(r"(\w+) = '((?:[^']|'')*)'")


class FakeConnection:
    """Answers the driver's schema queries from `virtual_rows`, through real cell bytes:
    our serialize, then the driver's own type classes."""

    def __init__(self, schema: Schema, view: ClusterView) -> None:
        self.schema, self.view, self.queries = schema, view, []

    def wait_for_responses(self, *messages, timeout=None, fail_on_error=True):
        return [self.answer(m.query) for m in messages]

    def answer(self, query: str):
        self.queries.append(query)
        keyspace, table, where = _SELECT.match(query).groups()
        try:
            rows = st.virtual_rows(keyspace, table, self.schema, self.view)
        except InvalidRequest as e:
            return False, cassandra.InvalidRequest(str(e))
        for column, value in _EQUALS.findall(where or ""):
            rows = [r for r in rows if r[column] == value.replace("''", "'")]
        t = st.virtual_table(keyspace, table)
        columns = list(t.select_order())
        parsed = [tuple(None if r[c.name] is None else
                        driver_type(c.type).from_binary(serialize(c.type, r[c.name]), 4)
                        for c in columns) for r in rows]
        return True, types.SimpleNamespace(column_names=[c.name for c in columns],
                                           parsed_rows=parsed)


def driver_keyspaces(schema: Schema, view: ClusterView | None = None):
    conn = FakeConnection(schema, view or cluster())
    parser = dmeta.get_schema_parser(conn, "5.0.0", None, 2.0)
    assert type(parser) is dmeta.SchemaParserV4
    found = {k.name: k for k in parser.get_all_keyspaces()}
    assert any("system_virtual_schema" in q for q in conn.queries)  # asked, got Invalid
    return found, parser, conn


def test_schema_rows_match_driver():
    keyspaces, _, _ = driver_keyspaces(sample_schema())
    assert set(keyspaces) == {"ks", "multi", "system", "system_schema"}
    for k in keyspaces.values():
        assert k._exc_info is None
        for t in k.tables.values():
            assert t._exc_info is None, (t.name, t._exc_info)

    ks = keyspaces["ks"]
    assert isinstance(ks.replication_strategy, dmeta.SimpleStrategy)
    assert ks.replication_strategy.replication_factor == 3 and ks.durable_writes
    multi = keyspaces["multi"]
    assert isinstance(multi.replication_strategy, dmeta.NetworkTopologyStrategy)
    assert multi.replication_strategy.dc_replication_factors == {"dc1": 3, "dc2": 2}
    assert multi.durable_writes is False
    assert isinstance(keyspaces["system"].replication_strategy, dmeta.LocalStrategy)

    events = ks.tables["events"]
    assert not events.is_compact_storage
    assert [c.name for c in events.partition_key] == ["tenant", "day"]
    assert [(c.name, c.is_reversed) for c in events.clustering_key] == [
        ("at", True), ("seq", False)]
    assert events.columns["owner"].is_static and not events.columns["payload"].is_static
    assert {n: c.cql_type for n, c in events.columns.items()} == {
        "tenant": "text", "day": "int", "at": "timestamp", "seq": "bigint", "owner": "text",
        "payload": "blob", "tags": "set<text>", "counts": "map<text, int>",
        "history": "list<int>", "frozen_map": "frozen<map<text, frozen<list<int>>>>",
        "pair": "frozen<tuple<int, text>>", "who": "frozen<person>", "where_": "address",
        "Mixed": "text"}
    assert events.options["default_time_to_live"] == 60
    assert events.options["comment"] == "it's a test"
    assert set(ks.user_types) == {"address", "person"}
    assert ks.user_types["person"].field_types == ["text", "frozen<address>",
                                                   "frozen<set<text>>"]

    exported = events.export_as_string()
    assert exported.startswith("CREATE TABLE ks.events (\n")
    assert "PRIMARY KEY ((tenant, day), at, seq)" in exported
    assert "WITH CLUSTERING ORDER BY (at DESC, seq ASC)" in exported
    assert '    "Mixed" text,' in exported and "    owner text static," in exported
    assert exported.endswith(";")
    assert "COMPACT STORAGE" not in exported


def test_driver_sees_system_tables_for_cqlsh_selects():
    keyspaces, _, _ = driver_keyspaces(sample_schema())
    local = keyspaces["system"].tables["local"]
    assert [c.name for c in local.partition_key] == ["key"]
    assert local.columns["tokens"].cql_type == "set<text>"
    cols = keyspaces["system_schema"].tables["columns"]
    assert [c.name for c in cols.clustering_key] == ["table_name", "column_name"]
    assert len(cols.columns) == 8


def test_driver_targeted_refresh_of_one_table():
    """The queries the driver sends after a Schema_change (cql-compat 2.6)."""
    _, parser, conn = driver_keyspaces(sample_schema())
    table = parser.get_table({}, "ks", "users")
    assert table is not None and [c.name for c in table.partition_key] == ["id"]
    assert list(table.columns) == ["id", "name"]
    assert any("WHERE keyspace_name = 'ks' AND table_name = 'users'" in q for q in conn.queries)
    ks = parser.get_keyspace({}, "multi")
    assert ks.name == "multi"
    udt = parser.get_type({}, "ks", "address")
    assert udt.field_names == ["street", "zip"]


# ------------------------------------------------------------------------------ schema events


def changes(old: Schema, new: Schema) -> list[tuple]:
    return [(e.change, e.target, e.keyspace, e.name) for e in schema_events(old, new)]


def test_events_for_single_ddl():
    base = sample_schema()
    assert schema_events(base, base) == []
    grown = base.with_keyspace(KeyspaceDef("new", SIMPLE), 10)
    assert schema_events(base, grown) == [SchemaChange("CREATED", "KEYSPACE", "new")]
    altered = base.with_keyspace(KeyspaceDef("ks", NTS), 10)
    assert changes(base, altered) == [("UPDATED", "KEYSPACE", "ks", "")]
    users = base.table("ks", "users")
    wider = TableDef(users.keyspace, users.name, users.id,
                     users.columns + (ColumnDef("added", TEXT, "regular"),), users.options)
    assert changes(base, base.with_table(wider, 10)) == [("UPDATED", "TABLE", "ks", "users")]
    assert changes(base, base.drop_table("ks", "users", 10)) == [
        ("DROPPED", "TABLE", "ks", "users")]
    extra = TypeDef("ks", "extra", ("x",), (INT,))
    assert changes(base, base.with_type(extra, 10)) == [("CREATED", "TYPE", "ks", "extra")]
    assert changes(base.with_type(extra, 10), base.with_type(extra, 10).drop_type(
        "ks", "extra", 11)) == [("DROPPED", "TYPE", "ks", "extra")]


def test_dropped_keyspace_is_one_event_created_keyspace_lists_its_objects():
    base = sample_schema()
    assert changes(base, base.drop_keyspace("ks", 10)) == [("DROPPED", "KEYSPACE", "ks", "")]
    assert changes(Schema(), base) == [
        ("CREATED", "KEYSPACE", "ks", ""), ("CREATED", "KEYSPACE", "multi", ""),
        ("CREATED", "TYPE", "ks", "address"), ("CREATED", "TYPE", "ks", "person"),
        ("CREATED", "TABLE", "ks", "events"), ("CREATED", "TABLE", "ks", "users"),
        ("CREATED", "TABLE", "multi", "hits")]


def test_recreated_table_and_mixed_changes_in_order():
    base = sample_schema()
    users = base.table("ks", "users")
    again = TableDef.build("ks", "users", partition_key=[("id", UUID)], created_ts=99)
    assert again.id != users.id
    new = (base.drop_table("ks", "users", 10).with_table(again, 11)
           .drop_keyspace("multi", 12).with_keyspace(KeyspaceDef("aaa", SIMPLE), 13)
           .drop_table("ks", "events", 14).drop_type("ks", "person", 15)
           .with_type(TypeDef("ks", "b", ("x",), (INT,)), 16))
    assert changes(base, new) == [
        ("CREATED", "KEYSPACE", "aaa", ""), ("DROPPED", "KEYSPACE", "multi", ""),
        ("DROPPED", "TABLE", "ks", "events"), ("DROPPED", "TABLE", "ks", "users"),
        ("DROPPED", "TYPE", "ks", "person"),
        ("CREATED", "TYPE", "ks", "b"), ("CREATED", "TABLE", "ks", "users")]
