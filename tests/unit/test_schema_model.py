"""Schema definitions, name rules, and the replicated Schema: lookups, drops, merge laws,
versions and the plain (msgpack) form."""

from __future__ import annotations

import uuid

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.errors import InvalidRequest, ProtocolError, SchemaError
from agora.core.schema.model import (
    MAX_NAME_CHARS, ColumnDef, KeyspaceDef, Schema, TableDef, TypeDef, check_name, identifier,
    merge, replication_options, table_id_for, validate_table_options,
)
from agora.core.schema.types import (
    COUNTER, DURATION, INT, TEXT, TIMEUUID, ListType, MapType, SetType, parse_type,
)

SIMPLE3 = replication_options({"class": "SimpleStrategy", "replication_factor": 3})


def ks(name: str = "ks", rf: int = 3) -> KeyspaceDef:
    return KeyspaceDef(name, replication_options({"class": "SimpleStrategy",
                                                  "replication_factor": rf}))


def table(name: str = "t", keyspace: str = "ks", **kw) -> TableDef:
    args = dict(partition_key=[("k", INT)], clustering=[("c", TEXT, "desc")], regular=[("v", INT)])
    args.update(kw)
    return TableDef.build(keyspace, name, created_ts=7, **args)


def base() -> Schema:
    return Schema().with_keyspace(ks(), 10).with_table(table(), 11)


# ------------------------------------------------------------------------------ names

def test_identifiers():
    assert identifier("MyTable") == "mytable"
    assert identifier('"MyTable"') == "MyTable"
    assert identifier('"a""b"') == 'a"b'
    for bad in ["", "a-b", "a b", '""', '"a"b"', "é"]:
        with pytest.raises(InvalidRequest):
            identifier(bad)


def test_name_rules():
    assert check_name("a" * MAX_NAME_CHARS, "Table")
    assert check_name("_9Ab", "Table")
    for bad in ["", "a" * (MAX_NAME_CHARS + 1), "a-b", "a.b", "ü"]:
        with pytest.raises(InvalidRequest, match="Table name"):
            check_name(bad, "Table")
    with pytest.raises(InvalidRequest):
        KeyspaceDef("bad-name", SIMPLE3)
    with pytest.raises(InvalidRequest):
        table("t" * 49)


def test_replication_options():
    assert SIMPLE3 == {"class": "org.apache.cassandra.locator.SimpleStrategy",
                       "replication_factor": "3"}
    nts = replication_options({"class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
                               "dc2": 2, "dc1": "03"})
    assert nts == {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
                   "dc1": "3", "dc2": "2"}
    assert KeyspaceDef("k", nts).strategy == "NetworkTopologyStrategy"
    for bad in [{}, {"class": "Nope"}, {"class": "SimpleStrategy"},
                {"class": "SimpleStrategy", "replication_factor": "x"},
                {"class": "SimpleStrategy", "replication_factor": 1, "dc1": 1},
                {"class": "NetworkTopologyStrategy", "dc1": "-1"}]:
        with pytest.raises(InvalidRequest):
            replication_options(bad)
    with pytest.raises(InvalidRequest, match="normal form"):
        KeyspaceDef("k", {"class": "SimpleStrategy", "replication_factor": "3"})


# ------------------------------------------------------------------------------ tables

def test_table_helpers():
    t = TableDef.build("ks", "t", partition_key=[("a", INT), ("b", TEXT)],
                       clustering=[("c1", INT, "asc"), ("c2", TIMEUUID, "desc")],
                       static=[("s", INT)], regular=[("z", INT), ("l", ListType(INT)), ("m", INT)],
                       options={"comment": "hi", "gc_grace_seconds": 5}, created_ts=1)
    assert [c.name for c in t.partition_key_columns] == ["a", "b"]
    assert [c.name for c in t.clustering_columns] == ["c1", "c2"]
    assert [c.name for c in t.static_columns] == ["s"]
    assert [c.name for c in t.regular_columns] == ["z", "l", "m"]
    assert t.column("l").type == ListType(INT) and t.column("nope") is None
    assert t.ckey_types() == [(INT, False), (TIMEUUID, True)]
    assert [c.name for c in t.select_order()] == ["a", "b", "c1", "c2", "s", "m", "z", "l"]
    assert t.option("comment") == "hi" and t.option("gc_grace_seconds") == 5
    assert t.option("default_time_to_live") == 0 and TableDef.build(
        "ks", "u", partition_key=[("k", INT)]).option("gc_grace_seconds") == 864000
    assert t.id == table_id_for("ks", "t", 1) != table_id_for("ks", "t", 2)
    assert t.column("a").position == 0 and t.column("s").position == -1
    assert t.column("c2").clustering_order == "desc" and t.column("z").clustering_order == "none"
    assert not t.is_counter
    back = TableDef.from_plain(t.to_plain())
    assert back == t and hash(back) == hash(t)


@pytest.mark.parametrize("kwargs, message", [
    (dict(partition_key=[]), "No PRIMARY KEY"),
    (dict(regular=[("k", INT)]), "Duplicate column 'k'"),
    (dict(partition_key=[("k", ListType(INT))]), "non-frozen list<int> type for PRIMARY KEY"),
    (dict(clustering=[("c", SetType(INT), "asc")]), "non-frozen set<int> type for PRIMARY KEY"),
    (dict(clustering=[("c", COUNTER, "asc")]), "counter type is not supported for PRIMARY KEY"),
    (dict(partition_key=[("k", DURATION)]), "duration type is not supported"),
    (dict(clustering=[("c", ListType(DURATION, True), "asc")]), "duration type is not supported"),
    (dict(clustering=[], static=[("s", INT)]), "Static columns are only useful"),
    (dict(regular=[("v", COUNTER), ("w", INT)]), "Cannot mix counter"),
    (dict(regular=[("v", COUNTER)], options={"default_time_to_live": 5}), "default_time_to_live"),
    (dict(options={"nope": 1}), "Unknown property 'nope'"),
    (dict(options={"gc_grace_seconds": -1}), "Invalid value for property 'gc_grace_seconds'"),
    (dict(options={"default_time_to_live": 10**10}), "default_time_to_live"),
    (dict(options={"compaction": {"class": 5}}), "compaction"),
    (dict(clustering=[("c", INT, "none")]), "clustering order"),
])
def test_table_validation(kwargs, message):
    with pytest.raises(InvalidRequest, match=message):
        table(**kwargs)


def test_column_def_validation():
    with pytest.raises(InvalidRequest):
        ColumnDef("x", INT, "weird")
    with pytest.raises(InvalidRequest):
        ColumnDef("x", INT, "regular", 0)
    with pytest.raises(InvalidRequest):
        ColumnDef("x", INT, "partition_key", -1)
    with pytest.raises(InvalidRequest):
        ColumnDef("x", INT, "regular", -1, "asc")
    with pytest.raises(InvalidRequest):
        ColumnDef("", INT, "regular")
    with pytest.raises(InvalidRequest, match="positions"):
        TableDef("ks", "t", uuid.uuid4(), (ColumnDef("k", INT, "partition_key", 1),))
    assert TableDef.build("ks", "c", partition_key=[("k", INT)],
                          regular=[("n", COUNTER)]).is_counter
    assert validate_table_options({"caching": {"keys": "NONE"}}) == {"caching": {"keys": "NONE"}}


def test_type_defs():
    addr = TypeDef("ks", "address", ("street", "zip"), (TEXT, INT))
    u = addr.user_type()
    assert not u.frozen and addr.user_type(frozen=True).frozen
    assert TypeDef.from_plain(addr.to_plain()) == addr
    nested = TypeDef("ks", "person", ("home", "tags"), (addr.user_type(True), ListType(TEXT)))
    assert TypeDef.from_plain(nested.to_plain()) == nested
    for names, types, message in [
        (("a", "a"), (INT, INT), "Duplicate field"),
        (("a",), (COUNTER,), "counters"),
        (("a",), (addr.user_type(),), "non-frozen UDTs"),
        ((), (), "at least one field"),
        (("a", "b"), (INT,), "one type per field"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            TypeDef("ks", "x", names, types)
    for reserved in ("int", "text", "list", "Map"):
        with pytest.raises(InvalidRequest, match="reserved"):
            TypeDef("ks", reserved, ("a",), (INT,))


# ------------------------------------------------------------------------------ schema

def test_lookups():
    s = base().with_table(table("a"), 12).with_keyspace(ks("other"), 13)
    assert [k.name for k in s.keyspaces()] == ["ks", "other"]
    assert [t.name for t in s.tables("ks")] == ["a", "t"]
    assert s.tables("other") == [] and len(s.tables()) == 2
    t = s.table("ks", "t")
    assert t == table() and s.table("ks", "nope") is None and s.table("nope", "t") is None
    assert s.table_by_id(t.id) == t and s.table_by_id(t.id.bytes) == t
    assert s.table_by_id(uuid.uuid4()) is None
    assert s.max_timestamp() == 13


def test_changes_need_a_keyspace():
    with pytest.raises(SchemaError, match="Keyspace 'ks' doesn't exist"):
        Schema().with_table(table(), 1)
    with pytest.raises(SchemaError):
        Schema().with_type(TypeDef("ks", "u", ("a",), (INT,)), 1)


def test_last_write_wins_and_stale_changes():
    s = base()
    altered = table(regular=[("v", INT), ("w", TEXT)])
    assert s.with_table(altered, 12).table("ks", "t") == altered
    assert s.with_table(altered, 5).table("ks", "t") == table()  # older than what is there
    assert s.drop_table("ks", "t", 5).table("ks", "t") is not None
    dropped = s.drop_table("ks", "t", 12)
    assert dropped.table("ks", "t") is None and dropped.table_by_id(table().id) is None
    assert dropped.with_table(altered, 12).table("ks", "t") is None  # a drop wins a tie
    assert dropped.with_table(altered, 13).table("ks", "t") == altered


def test_drop_keyspace_kills_its_tables_and_types_even_unseen_ones():
    s = base().with_type(TypeDef("ks", "u", ("a",), (INT,)), 12)
    other = s.with_table(table("late"), 15)  # a node that saw one more CREATE TABLE
    dropped = s.drop_keyspace("ks", 20)
    assert dropped.keyspace("ks") is None
    assert dropped.tables("ks") == [] and dropped.types("ks") == []
    merged = merge(dropped, other)
    assert merged.tables() == []  # the unseen table is under the drop horizon
    recreated = merged.with_keyspace(ks(), 30)
    assert recreated.tables("ks") == [] and recreated.types("ks") == []
    assert recreated.with_table(table(), 31).table("ks", "t") == table()


def test_types_and_tables_using_them():
    addr = TypeDef("ks", "address", ("street",), (TEXT,))
    s = base().with_type(addr, 12)
    user = TableDef.build("ks", "users", partition_key=[("id", INT)],
                          regular=[("home", addr.user_type()),
                                   ("old", MapType(TEXT, addr.user_type(True)))])
    s = s.with_table(user, 13)
    assert s.type("ks", "address") == addr and s.types() == [addr]
    assert s.tables_using_type("ks", "address") == [user]
    assert s.drop_type("ks", "address", 14).type("ks", "address") is None
    resolved = parse_type("frozen<address>",
                          lambda n: s.type("ks", n).user_type() if s.type("ks", n) else None)
    assert resolved == addr.user_type(frozen=True)


def test_version():
    a = base()
    b = Schema().with_keyspace(ks(), 1000).with_table(table(), 1001)  # same content, other times
    assert a.version() == b.version()
    assert a.with_table(table("x"), 12).drop_table("ks", "x", 13).version() == a.version()
    assert a.with_table(table("x"), 12).version() != a.version()
    assert a.with_type(TypeDef("ks", "u", ("f",), (INT,)), 12).version() != a.version()
    assert a.with_table(table(regular=[("v", TEXT)]), 12).version() != a.version()
    assert a.with_keyspace(ks(rf=1), 12).version() != a.version()
    assert Schema().version() == Schema().version() != a.version()
    assert isinstance(a.version(), uuid.UUID)


def test_truncations_are_kept_by_table_id_and_the_newest_wins():
    t = table()
    a = base()
    assert a.truncated_at(t.id.bytes) is None
    b = a.truncate_table(t.id.bytes, 500)
    assert b.truncated_at(t.id.bytes) == 500 and b.version() != a.version()
    assert b.truncate_table(t.id.bytes, 400).truncated_at(t.id.bytes) == 500  # an older one changes nothing
    assert merge(b, a.truncate_table(t.id.bytes, 600)).truncated_at(t.id.bytes) == 600
    assert merge(a.truncate_table(t.id.bytes, 600), b).truncated_at(t.id.bytes) == 600
    # a table re-created under the name has another id: not truncated, and the version
    # of a schema does not count truncations of tables it no longer has
    again = b.drop_table("ks", "t", 20).with_table(TableDef.build("ks", "t", created_ts=21, partition_key=[("k", INT)]), 21)
    assert again.truncated_at(again.table("ks", "t").id.bytes) is None
    assert again.version() == a.drop_table("ks", "t", 20).with_table(
        TableDef.build("ks", "t", created_ts=21, partition_key=[("k", INT)]), 21).version()
    # a schema persisted before truncations were kept loads with none
    old = {k: v for k, v in a.to_plain().items() if k != "truncations"}
    assert Schema.from_plain(old) == a


def test_plain_round_trip_through_msgpack():
    s = base().with_type(TypeDef("ks", "u", ("a", "b"), (INT, parse_type("frozen<list<text>>"))),
                         12)
    s = s.drop_table("ks", "gone", 13).drop_keyspace("old", 14).with_table(
        table("o", options={"caching": {"keys": "NONE"}, "comment": "x",
                            "bloom_filter_fp_chance": 0.1}), 15).truncate_table(table().id.bytes, 99)
    wire = msgpack.packb(s.to_plain(), use_bin_type=True)
    back = Schema.from_plain(msgpack.unpackb(wire, raw=False))
    assert back == s and back.version() == s.version()
    assert msgpack.packb(back.to_plain(), use_bin_type=True) == wire


@pytest.mark.parametrize("mutate", [
    lambda p: None,
    lambda p: [],
    lambda p: {**p, "tables": 5},
    lambda p: {**p, "keyspaces": [["ks", "ten", p["keyspaces"][0][2]]]},
    lambda p: {**p, "keyspaces": [["other", 10, p["keyspaces"][0][2]]]},
    lambda p: {**p, "keyspaces": [["ks", True, None]]},
    lambda p: {**p, "tables": [["ks", "t", 11, {**p["tables"][0][3], "id": b"short"}]]},
    lambda p: {**p, "tables": [["ks", "t", 11, {**p["tables"][0][3], "columns": [
        ["k", ["native", "nope"], "partition_key", 0, "none"]]}]]},
    lambda p: {**p, "tables": [["ks", "t", 11, {**p["tables"][0][3], "columns": []}]]},
    lambda p: {**p, "tables": [["ks", "t", 11, {**p["tables"][0][3], "options": {"nope": 1}}]]},
    lambda p: {**p, "horizons": [["ks", 2**64]]},
    lambda p: {**p, "truncations": [[b"short", 5]]},
    lambda p: {**p, "truncations": [[bytes(16), "5"]]},
    lambda p: {k: v for k, v in p.items() if k != "types"},
])
def test_from_plain_rejects_malformed(mutate):
    with pytest.raises(ProtocolError):
        Schema.from_plain(mutate(base().to_plain()))


# ------------------------------------------------------------------------------ merge laws

KS_NAMES, TABLE_NAMES = ["a", "b"], ["t", "u"]
KINDS = ["ks", "drop_ks", "table", "drop_table", "type", "drop_type", "truncate"]
# few timestamps and several contents per object, so equal-timestamp conflicts are common
op = st.tuples(st.sampled_from(KINDS), st.sampled_from(KS_NAMES), st.sampled_from(TABLE_NAMES),
               st.integers(1, 3), st.integers(0, 6))


def apply(s: Schema, o: tuple) -> Schema:
    kind, a, b, variant, ts = o
    column_type = [INT, TEXT, TIMEUUID][variant - 1]
    try:
        if kind == "ks":
            return s.with_keyspace(ks(a, rf=variant), ts)
        if kind == "drop_ks":
            return s.drop_keyspace(a, ts)
        if kind == "table":
            return s.with_table(table(b, keyspace=a, regular=[("v", column_type)]), ts)
        if kind == "drop_table":
            return s.drop_table(a, b, ts)
        if kind == "truncate":
            return s.truncate_table(table(b, keyspace=a).id.bytes, ts * 10 + variant)
        if kind == "type":
            return s.with_type(TypeDef(a, b, ("f",), (column_type,)), ts)
        return s.drop_type(a, b, ts)
    except SchemaError:
        return s


def build(ops: list) -> Schema:
    s = Schema()
    for o in ops:
        s = apply(s, o)
    return s


@given(st.lists(op, max_size=12), st.lists(op, max_size=12), st.lists(op, max_size=12))
@settings(max_examples=150, deadline=None)
def test_merge_is_commutative_associative_idempotent(x, y, z):
    a, b, c = build(x), build(y), build(z)
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a
    assert merge(a, b).version() == merge(b, a).version()
    assert merge(merge(a, b), b) == merge(a, b)


@given(st.lists(st.lists(op, max_size=8), min_size=1, max_size=4),
       st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_nodes_converge_whatever_the_exchange_order(histories, rng):
    """Each node applies its own changes; folding their schemas in any order gives one result."""
    nodes = [build(h) for h in histories]
    expected = Schema()
    for n in nodes:
        expected = merge(expected, n)
    rng.shuffle(nodes)
    merged = nodes[0]
    for n in nodes[1:] + nodes[:1]:  # including a repeat
        merged = merge(n, merged)
    assert merged == expected and merged.version() == expected.version()


def test_dropping_a_table_or_its_keyspace_truncates_the_table():
    from agora.core.schema import ddl
    s = base().with_table(table("u"), 12)
    t, u = s.table("ks", "t").id.bytes, s.table("ks", "u").id.bytes
    dropped = ddl.drop_table({"keyspace": "ks", "name": "t"})(s, 5)
    assert dropped.table("ks", "t") is None
    assert dropped.truncated_at(t) == 13 and dropped.truncated_at(u) is None  # at the drop's (raised) timestamp
    assert dropped.truncations() == {t: 13}
    gone = ddl.drop_keyspace({"name": "ks"})(s, 50)
    assert gone.truncations() == {t: 50, u: 50}
    assert ddl.drop_table({"keyspace": "ks", "name": "t", "if_exists": True})(dropped, 60) is dropped
