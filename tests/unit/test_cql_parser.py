"""The CQL parser: every statement form, the exact texts drivers and cqlsh send
(shared/cql-compat.md sections 2 and 7), identifier and literal rules, bind marker numbering,
and errors."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal

import pytest

from agora.core.errors import CqlSyntaxError, InvalidRequest
from agora.core.schema.types import ListType, MapType, NativeType, UserType, parse_type
from agora.cql import ast
from agora.cql.ast import (
    AddTo, AlterKeyspace, AlterTableAdd, AlterTableDrop, AlterTableRename, AlterTableWith,
    AlterTypeAdd, AlterTypeRename, Batch, BatchKind, BindMarker, Cast, ColumnRef, ColumnRelation,
    ColumnSpec, Condition, CountRows, CreateIndex, CreateKeyspace, CreateTable, CreateType, Delete,
    DeleteColumn, DeleteElement, DeleteField, Describe, DescribeKind, DropIndex, DropKeyspace,
    DropTable, DropType, Duration, FieldRef, FunctionCall, IndexTargetKind, Insert, InsertJson,
    InValues, ListLiteral, Literal, LiteralKind, MapLiteral, MultiColumnRelation, Operator,
    Ordering, PrependTo, RemoveFrom, Select, Selector, SetColumn, SetElement, SetField,
    SetLiteral, TokenRelation, Truncate, Ttl, TupleLiteral, TypeHint, TypeRef, UdtLiteral,
    Update, Use, WriteTime,
)
from agora.cql.parser import PARSE_CACHE_MAX_TEXT_CHARS, parse


def lit(value, kind=None, text=None):
    if kind is None:
        kind = {bool: LiteralKind.BOOLEAN, int: LiteralKind.INTEGER, float: LiteralKind.FLOAT,
                str: LiteralKind.STRING, bytes: LiteralKind.HEX,
                uuid.UUID: LiteralKind.UUID}[type(value)]
    if text is None:
        text = {LiteralKind.BOOLEAN: str(value).lower()}.get(kind, str(value))
    return Literal(kind, value, text)


def rel(column, op, value):
    return ColumnRelation(column, Operator(op), value)


def value_of(text: str):
    """The value of the only term in `INSERT INTO t (a) VALUES (<text>)`."""
    statement = parse(f"INSERT INTO t (a) VALUES ({text})")
    return statement.values[0]


# --------------------------------------------------------------------------- driver and cqlsh

CONTROL_QUERIES = [
    "SELECT * FROM system.peers_v2",
    "SELECT * FROM system.local WHERE key='local'",
    "SELECT * FROM system.peers",
    "SELECT * FROM system_schema.keyspaces",
    "SELECT * FROM system_schema.tables",
    "SELECT * FROM system_schema.columns",
    "SELECT * FROM system_schema.types",
    "SELECT * FROM system_schema.functions",
    "SELECT * FROM system_schema.aggregates",
    "SELECT * FROM system_schema.triggers",
    "SELECT * FROM system_schema.indexes",
    "SELECT * FROM system_schema.views",
    "SELECT * from system_virtual_schema.keyspaces",
    "SELECT * from system_virtual_schema.tables",
    "SELECT * from system_virtual_schema.columns",
    "SELECT host_id, peer, peer_port, native_address, native_port, schema_version "
    "FROM system.peers_v2",
    "SELECT peer, host_id, rpc_address, schema_version FROM system.peers",
    "SELECT schema_version FROM system.local WHERE key='local'",
    "SELECT * FROM system_schema.keyspaces WHERE keyspace_name = 'ks'",
    "SELECT * FROM system_schema.tables   WHERE keyspace_name = 'ks' AND table_name = 't'",
    "SELECT * FROM system_schema.columns  WHERE keyspace_name = 'ks' AND table_name = 't'",
    "SELECT * FROM system_schema.indexes  WHERE keyspace_name = 'ks' AND table_name = 't'",
    "SELECT * FROM system_schema.triggers WHERE keyspace_name = 'ks' AND table_name = 't'",
    "SELECT * FROM system_schema.views    WHERE keyspace_name = 'ks' AND view_name = 't'",
    "SELECT * FROM system_schema.types    WHERE keyspace_name = 'ks' AND type_name = 'u'",
    "SELECT * FROM system_schema.functions WHERE keyspace_name='ks' AND function_name='f' "
    "AND argument_types=['int', 'frozen<list<text>>']",
    "SELECT * FROM system_schema.aggregates WHERE keyspace_name='ks' AND aggregate_name='a' "
    "AND argument_types=[]",
    "select * from system.local where key = 'local'",
    "select * from system.local where key = 'local';",
    'USE "ks"',
]


@pytest.mark.parametrize("text", CONTROL_QUERIES)
def test_every_control_query_parses_to_a_select_or_use(text):
    statement = parse(text)
    assert isinstance(statement, (Select, Use))


def test_system_local_query():
    s = parse("SELECT * FROM system.local WHERE key='local'")
    assert s == Select("system", "local", (), (rel("key", "=", lit("local")),))
    assert s.is_star
    assert parse("select * from system.local where key = 'local';") == s


def test_projection_on_peers_v2():
    s = parse("SELECT host_id, peer, peer_port, native_address, native_port, schema_version "
              "FROM system.peers_v2")
    assert [sel.expr.name for sel in s.selectors] == [
        "host_id", "peer", "peer_port", "native_address", "native_port", "schema_version"]
    assert (s.keyspace, s.table) == ("system", "peers_v2")


def test_functions_refresh_with_list_literal():
    s = parse("SELECT * FROM system_schema.functions WHERE keyspace_name='ks' AND "
              "function_name='f' AND argument_types=['int', 'text']")
    assert s.where[2] == rel("argument_types", "=", ListLiteral((lit("int"), lit("text"))))


# --------------------------------------------------------------------------- lexical rules


def test_keywords_are_case_insensitive():
    assert parse("sElEcT * fRoM t wHeRe k = 1") == parse("SELECT * FROM t WHERE k = 1")


def test_identifier_case_rules():
    s = parse('SELECT Abc, "Abc", "a""b", "select" FROM "MyKs".MyTable')
    assert [x.expr.name for x in s.selectors] == ["abc", "Abc", 'a"b', "select"]
    assert (s.keyspace, s.table) == ("MyKs", "mytable")


def test_keywords_are_names_where_a_keyword_cannot_stand():
    s = parse("SELECT key, type, ttl, count, token, writetime, kind, position, options "
              "FROM system_schema.columns WHERE key = 1 AND type = 'int'")
    assert [x.expr.name for x in s.selectors] == [
        "key", "type", "ttl", "count", "token", "writetime", "kind", "position", "options"]
    assert parse("CREATE TABLE t (key text PRIMARY KEY, type int, values int, ttl int)"
                 ).columns[1].name == "type"


def test_names_that_compete_with_a_keyword_follow_the_next_token():
    s = parse("SELECT json, distinct FROM t WHERE key CONTAINS KEY 'k'")
    assert [x.expr for x in s.selectors] == [ColumnRef("json"), ColumnRef("distinct")]
    assert s.where == (ColumnRelation("key", Operator.CONTAINS_KEY, lit("k")),)
    assert parse("SELECT JSON json FROM t").json
    assert parse("SELECT DISTINCT distinct FROM t").selectors == (Selector(ColumnRef("distinct")),)
    assert parse("DROP KEYSPACE if") == DropKeyspace("if")
    assert parse("DESCRIBE KEYSPACE with") == Describe(DescribeKind.KEYSPACE, "with")
    assert parse("DESCRIBE types") == Describe(DescribeKind.TYPES)
    assert parse("DESCRIBE types.x") == Describe(DescribeKind.NAME, "types", "x")
    assert parse("TRUNCATE table") == Truncate(None, "table")


def test_comments_and_whitespace_anywhere():
    text = """
        -- leading comment
        SELECT /* inline */ a, -- trailing
               b // other style
        FROM
            t   /* multi
                   line */ WHERE k
            = 1 ;
    """
    assert parse(text) == parse("SELECT a, b FROM t WHERE k = 1")


def test_trailing_semicolon_only_one():
    assert parse("USE ks;") == Use("ks")
    assert parse("USE ks ;  \n") == Use("ks")
    with pytest.raises(CqlSyntaxError):
        parse("USE ks;;")
    with pytest.raises(CqlSyntaxError):
        parse("USE ks; USE other")


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize("text,kind,value", [
    ("0", LiteralKind.INTEGER, 0),
    ("-42", LiteralKind.INTEGER, -42),
    ("123456789012345678901234567890", LiteralKind.INTEGER, 123456789012345678901234567890),
    ("1.5", LiteralKind.FLOAT, 1.5),
    ("-0.25", LiteralKind.FLOAT, -0.25),
    ("1e3", LiteralKind.FLOAT, 1000.0),
    ("2.5E-3", LiteralKind.FLOAT, 0.0025),
    ("1.", LiteralKind.FLOAT, 1.0),
    ("Infinity", LiteralKind.FLOAT, math.inf),
    ("-Infinity", LiteralKind.FLOAT, -math.inf),
    ("'it''s'", LiteralKind.STRING, "it's"),
    ("''", LiteralKind.STRING, ""),
    ("$$it's $ a \"dollar\" string$$", LiteralKind.STRING, "it's $ a \"dollar\" string"),
    ("'multi\nline'", LiteralKind.STRING, "multi\nline"),
    ("'ünïcode'", LiteralKind.STRING, "ünïcode"),
    ("true", LiteralKind.BOOLEAN, True),
    ("FALSE", LiteralKind.BOOLEAN, False),
    ("NULL", LiteralKind.NULL, None),
    ("0xCAFEbabe", LiteralKind.HEX, bytes.fromhex("cafebabe")),
    ("0x", LiteralKind.HEX, b""),
    ("550e8400-e29b-41d4-a716-446655440000", LiteralKind.UUID,
     uuid.UUID("550e8400-e29b-41d4-a716-446655440000")),
    ("c8d4a0a0-6f6b-11ee-b962-0242ac120002", LiteralKind.UUID,
     uuid.UUID("c8d4a0a0-6f6b-11ee-b962-0242ac120002")),
    ("1h30m", LiteralKind.DURATION, Duration(0, 0, 5400 * 10**9)),
    ("1y2mo3w4d", LiteralKind.DURATION, Duration(14, 25, 0)),
    ("5s7ms8us9ns", LiteralKind.DURATION, Duration(0, 0, 5_007_008_009)),
    ("3µs", LiteralKind.DURATION, Duration(0, 0, 3000)),
    ("-2d", LiteralKind.DURATION, Duration(0, -2, 0)),
    ("12H", LiteralKind.DURATION, Duration(0, 0, 12 * 3600 * 10**9)),
    ("P1DT2H", LiteralKind.DURATION, Duration(0, 1, 2 * 3600 * 10**9)),
    ("P1Y2M3DT4H5M6S", LiteralKind.DURATION,
     Duration(14, 3, (4 * 3600 + 5 * 60 + 6) * 10**9)),
    ("P2W", LiteralKind.DURATION, Duration(0, 14, 0)),
])
def test_literal_values(text, kind, value):
    term = value_of(text)
    assert isinstance(term, Literal)
    assert term.kind is kind
    assert term.value == value and type(term.value) is type(value)


def test_nan_and_literal_text():
    assert math.isnan(value_of("NaN").value)
    assert math.isnan(value_of("-NaN").value)
    assert value_of("3.14159265358979323846264338327950288").text == \
        "3.14159265358979323846264338327950288"
    assert Decimal(value_of("1.10").text) == Decimal("1.10")
    assert value_of("0xAB").text == "0xAB"
    assert value_of("'x'").text == "x"


def test_duration_is_a_tuple_with_driver_attribute_names():
    d = value_of("1mo2d3ns").value
    assert d == (1, 2, 3)
    assert (d.months, d.days, d.nanoseconds) == (1, 2, 3)


@pytest.mark.parametrize("text,expected", [
    ("P1DT2H", (0, 1, 2 * 3600 * 10**9)),
    ("-P1DT2H", (0, -1, -2 * 3600 * 10**9)),
    ("-P2W", (0, -14, 0)),
    ("-PT30M", (0, 0, -30 * 60 * 10**9)),
    ("P0001-02-03T04:05:06", (14, 3, (4 * 3600 + 5 * 60 + 6) * 10**9)),
    ("-P0001-02-03T04:05:06", (-14, -3, -(4 * 3600 + 5 * 60 + 6) * 10**9)),
])
def test_every_iso_8601_duration_form_of_cassandras_lexer(text, expected):
    """Lexer.g's DURATION: designators, weeks and the alternative format, each with an
    optional '-' (Duration.from)."""
    assert value_of(text).value == expected


@pytest.mark.parametrize("text", ["1h1h", "1m1h", "0x123", "P", "PT", "1d1y", "-P", "-P1Y2W"])
def test_invalid_literals(text):
    with pytest.raises((InvalidRequest, CqlSyntaxError)):
        value_of(text)


def test_collection_tuple_and_udt_literals():
    assert value_of("[1, 2]") == ListLiteral((lit(1), lit(2)))
    assert value_of("[]") == ListLiteral(())
    assert value_of("{1, 2}") == SetLiteral((lit(1), lit(2)))
    assert value_of("{'a': 1, 'b': 2}") == MapLiteral(((lit("a"), lit(1)), (lit("b"), lit(2))))
    assert value_of("{}") == SetLiteral(())  # Cassandra's choice; maps accept it too
    assert value_of("(1, 'x')") == TupleLiteral((lit(1), lit("x")))
    assert value_of("(1)") == TupleLiteral((lit(1),))
    assert value_of("{street: 'x', \"Zip\": 1}") == UdtLiteral(
        (("street", lit("x")), ("Zip", lit(1))))
    assert value_of("[[1], [2, 3]]") == ListLiteral(
        (ListLiteral((lit(1),)), ListLiteral((lit(2), lit(3)))))
    assert value_of("{(1, 2): [{a: 1}]}") == MapLiteral(
        ((TupleLiteral((lit(1), lit(2))), ListLiteral((UdtLiteral((("a", lit(1)),)),))),))


def test_duplicate_udt_literal_field():
    with pytest.raises(InvalidRequest):
        value_of("{a: 1, a: 2}")


def test_function_calls_and_type_hints_as_terms():
    assert value_of("now()") == FunctionCall("now")
    assert value_of("toTimestamp(now())") == FunctionCall("totimestamp", (FunctionCall("now"),))
    assert value_of("ks.f(1, ?)") == FunctionCall("f", (lit(1), BindMarker(0)), "ks")
    assert value_of("token(1, 'a')") == FunctionCall("token", (lit(1), lit("a")))
    assert value_of("(int) ?") == TypeHint(TypeRef("int"), BindMarker(0))
    assert value_of("(frozen<list<int>>) [1]") == TypeHint(
        TypeRef("frozen<list<int>>"), ListLiteral((lit(1),)))


def test_literal_words_are_names_elsewhere():
    s = parse("SELECT true, null, nan FROM t WHERE infinity = 1")
    assert [x.expr for x in s.selectors] == [ColumnRef("true"), ColumnRef("null"),
                                              ColumnRef("nan")]
    assert s.where[0].column == "infinity"


# --------------------------------------------------------------------------- bind markers


def test_bind_markers_numbered_across_the_statement():
    s = parse("UPDATE t USING TTL ? AND TIMESTAMP :ts SET a = ?, m[?] = :v "
              "WHERE k = ? AND c IN ? IF x = ?")
    assert s.bind_markers == (BindMarker(0), BindMarker(1, "ts"), BindMarker(2), BindMarker(3),
                              BindMarker(4, "v"), BindMarker(5), BindMarker(6), BindMarker(7))
    assert s.ttl == BindMarker(0) and s.timestamp == BindMarker(1, "ts")
    assert s.assignments[1] == SetElement("m", BindMarker(3), BindMarker(4, "v"))
    assert s.where[1] == ColumnRelation("c", Operator.IN, BindMarker(6))
    assert s.conditions == (Condition("x", Operator.EQ, BindMarker(7)),)


def test_bind_markers_in_select_limits_and_nested_terms():
    s = parse("SELECT * FROM t WHERE k = ? AND c IN (?, ?) AND (a, b) > (?, ?) "
              "AND m = {?: [?]} PER PARTITION LIMIT ? LIMIT ?")
    assert [m.index for m in s.bind_markers] == list(range(9))
    assert s.per_partition_limit == BindMarker(7) and s.limit == BindMarker(8)


def test_named_markers_and_colons():
    s = parse("INSERT INTO t (a, b, c) VALUES (:a, {'k': :\"Quoted\"}, {f: :x})")
    assert s.bind_markers == (BindMarker(0, "a"), BindMarker(1, "Quoted"), BindMarker(2, "x"))
    assert s.values[2] == UdtLiteral((("f", BindMarker(2, "x")),))
    same = parse("INSERT INTO t (a) VALUES ({'k'::v})")
    assert same.values[0] == MapLiteral(((lit("k"), BindMarker(0, "v")),))
    assert parse("INSERT INTO t (a) VALUES ({f:now()})").values[0] == UdtLiteral(
        (("f", FunctionCall("now")),))
    repeated = parse("SELECT * FROM t WHERE a = :x AND b = :x")
    assert repeated.bind_markers == (BindMarker(0, "x"), BindMarker(1, "x"))


def test_batch_markers_are_global_and_per_child():
    s = parse("BEGIN BATCH INSERT INTO t (k, v) VALUES (?, ?); "
              "UPDATE t SET v = ? WHERE k = ?; DELETE FROM t WHERE k = ? APPLY BATCH")
    assert [m.index for m in s.bind_markers] == [0, 1, 2, 3, 4]
    assert [[m.index for m in c.bind_markers] for c in s.statements] == [[0, 1], [2, 3], [4]]


def test_no_markers():
    assert parse("SELECT * FROM t WHERE k = 1").bind_markers == ()


# --------------------------------------------------------------------------- SELECT


def test_select_full_form():
    s = parse("SELECT JSON DISTINCT k, v AS value FROM ks.t WHERE k = 1 AND c >= 2 AND c < 5 "
              "GROUP BY k, c ORDER BY c DESC, d ASC, e PER PARTITION LIMIT 2 LIMIT 10 "
              "ALLOW FILTERING")
    assert s == Select(
        "ks", "t", (Selector(ColumnRef("k")), Selector(ColumnRef("v"), "value")),
        (rel("k", "=", lit(1)), rel("c", ">=", lit(2)), rel("c", "<", lit(5))),
        json=True, distinct=True, group_by=("k", "c"),
        order_by=(Ordering("c", True), Ordering("d", False), Ordering("e", False)),
        per_partition_limit=lit(2), limit=lit(10), allow_filtering=True)


def test_selectors():
    s = parse("SELECT COUNT(*), count(1), count(v), WRITETIME(v), TTL(v) AS t, token(a, b), "
              "min(v), max(v), sum(v), avg(v), now(), toTimestamp(now()), uuid(), "
              "CAST(v AS text), addr.city, ks.fn(v, 1, 'x'), blobAsText(0x68) FROM t")
    exprs = [x.expr for x in s.selectors]
    assert exprs == [
        CountRows(), CountRows(), FunctionCall("count", (ColumnRef("v"),)), WriteTime("v"),
        Ttl("v"), FunctionCall("token", (ColumnRef("a"), ColumnRef("b"))),
        FunctionCall("min", (ColumnRef("v"),)), FunctionCall("max", (ColumnRef("v"),)),
        FunctionCall("sum", (ColumnRef("v"),)), FunctionCall("avg", (ColumnRef("v"),)),
        FunctionCall("now"), FunctionCall("totimestamp", (FunctionCall("now"),)),
        FunctionCall("uuid"), Cast(ColumnRef("v"), NativeType("text")),
        FieldRef(ColumnRef("addr"), "city"),
        FunctionCall("fn", (ColumnRef("v"), lit(1), lit("x")), "ks"),
        FunctionCall("blobastext", (lit(b"h", text="0x68"),)),
    ]
    assert s.selectors[4].alias == "t"


@pytest.mark.parametrize("text", [
    "SELECT writetime(a, b) FROM t", "SELECT ttl(1) FROM t", "SELECT sum(*) FROM t",
    "SELECT foo(a AS int) FROM t", "SELECT CAST(a AS frozen<list<int>>) FROM t",
    "SELECT CAST(a AS myudt) FROM t", "SELECT a.b.c(x) FROM t",
])
def test_invalid_selectors(text):
    with pytest.raises(InvalidRequest):
        parse(text)


def test_relations():
    s = parse("SELECT * FROM t WHERE k IN (1, 2) AND j IN () AND c IN ? AND m CONTAINS 3 AND "
              "m CONTAINS KEY 'a' AND x != 4 AND m['k'] = 'v' AND s LIKE 'a%' "
              "AND token(a, b) > token(?, ?) AND token(a) <= -9223372036854775808 "
              "AND (c1, c2) > (1, 2) AND (c1, c2) IN ((1, 2), (3, ?)) AND (c1, c2) IN ? "
              "AND (c1, c2) <= ? AND (c1) IN (?)")
    assert s.where == (
        ColumnRelation("k", Operator.IN, InValues((lit(1), lit(2)))),
        ColumnRelation("j", Operator.IN, InValues(())),
        ColumnRelation("c", Operator.IN, BindMarker(0)),
        ColumnRelation("m", Operator.CONTAINS, lit(3)),
        ColumnRelation("m", Operator.CONTAINS_KEY, lit("a")),
        ColumnRelation("x", Operator.NEQ, lit(4)),
        ColumnRelation("m", Operator.EQ, lit("v"), key=lit("k")),
        ColumnRelation("s", Operator.LIKE, lit("a%")),
        TokenRelation(("a", "b"), Operator.GT, FunctionCall("token", (BindMarker(1),
                                                                      BindMarker(2)))),
        TokenRelation(("a",), Operator.LTE, lit(-9223372036854775808)),
        MultiColumnRelation(("c1", "c2"), Operator.GT, TupleLiteral((lit(1), lit(2)))),
        MultiColumnRelation(("c1", "c2"), Operator.IN, InValues((
            TupleLiteral((lit(1), lit(2))), TupleLiteral((lit(3), BindMarker(3)))))),
        MultiColumnRelation(("c1", "c2"), Operator.IN, BindMarker(4)),
        MultiColumnRelation(("c1", "c2"), Operator.LTE, BindMarker(5)),
        MultiColumnRelation(("c1",), Operator.IN, InValues((BindMarker(6),))),
    )


def test_relation_spacing_variants():
    expected = parse("SELECT * FROM t WHERE k = 'local'")
    for text in ("SELECT * FROM t WHERE k='local'", "SELECT * FROM t WHERE k= 'local'",
                 "SELECT * FROM t\nWHERE\tk\n=\n'local'"):
        assert parse(text) == expected


def test_only_token_function_in_a_relation():
    with pytest.raises(InvalidRequest, match="token"):
        parse("SELECT * FROM t WHERE now(k) > 1")


# --------------------------------------------------------------------------- INSERT/UPDATE/DELETE


def test_insert():
    s = parse("INSERT INTO ks.t (k, v) VALUES (1, 'a') IF NOT EXISTS "
              "USING TTL 10 AND TIMESTAMP 123")
    assert s == Insert("ks", "t", ("k", "v"), (lit(1), lit("a")), True, lit(10), lit(123))
    assert parse("INSERT INTO t (k) VALUES (1) USING TIMESTAMP 5").timestamp == lit(5)


def test_insert_checks():
    with pytest.raises(InvalidRequest, match="Unmatched"):
        parse("INSERT INTO t (a, b) VALUES (1)")
    with pytest.raises(InvalidRequest, match="Multiple definitions"):
        parse("INSERT INTO t (a, a) VALUES (1, 2)")
    with pytest.raises(InvalidRequest, match="TTL"):
        parse("INSERT INTO t (a) VALUES (1) USING TTL 1 AND TTL 2")


def test_insert_json():
    assert parse("INSERT INTO t JSON '{\"k\": 1}'") == InsertJson(None, "t", lit('{"k": 1}'))
    s = parse("INSERT INTO t JSON ? DEFAULT UNSET IF NOT EXISTS USING TTL 3")
    assert s == InsertJson(None, "t", BindMarker(0), True, True, lit(3))
    assert parse("INSERT INTO t JSON '{}' DEFAULT NULL").default_unset is False
    with pytest.raises(InvalidRequest):
        parse("INSERT INTO t JSON 1")


def test_update_assignments():
    s = parse("UPDATE ks.t USING TTL 5 SET v = 1, l = l + [1], l = [0] + l, s = s - {'a'}, "
              "m['k'] = 'v', u.f = 3, c = c + 1, d = d - 2, e = e -5 WHERE k = 1")
    assert s == Update("ks", "t", (
        SetColumn("v", lit(1)), AddTo("l", ListLiteral((lit(1),))),
        PrependTo("l", ListLiteral((lit(0),))), RemoveFrom("s", SetLiteral((lit("a"),))),
        SetElement("m", lit("k"), lit("v")), SetField("u", "f", lit(3)), AddTo("c", lit(1)),
        RemoveFrom("d", lit(2)), RemoveFrom("e", lit(5)),
    ), (rel("k", "=", lit(1)),), ttl=lit(5))


@pytest.mark.parametrize("text", [
    "UPDATE t SET a = b + 1 WHERE k = 1", "UPDATE t SET a = [1] + b WHERE k = 1",
    "UPDATE t SET a = b - 1 WHERE k = 1",
])
def test_update_requires_the_same_column(text):
    with pytest.raises(InvalidRequest, match="Only expressions of the form"):
        parse(text)


def test_update_lwt():
    s = parse("UPDATE t SET v = 1 WHERE k = 1 IF EXISTS")
    assert s.if_exists and s.conditions == ()
    s = parse("UPDATE t SET v = 1 WHERE k = 1 IF v = 'x' AND m['k'] != null AND u.f > 2 "
              "AND w IN (1, 2) AND m['j'] IN ? AND u.g IN (3)")
    assert s.conditions == (
        Condition("v", Operator.EQ, lit("x")),
        Condition("m", Operator.NEQ, Literal(LiteralKind.NULL, None, "null"), key=lit("k")),
        Condition("u", Operator.GT, lit(2), field="f"),
        Condition("w", Operator.IN, InValues((lit(1), lit(2)))),
        Condition("m", Operator.IN, BindMarker(0), key=lit("j")),
        Condition("u", Operator.IN, InValues((lit(3),)), field="g"),
    )


def test_update_needs_where():
    with pytest.raises(CqlSyntaxError):
        parse("UPDATE t SET v = 1")


def test_delete():
    assert parse("DELETE FROM t WHERE k = 1") == Delete(None, "t", (), (rel("k", "=", lit(1)),))
    s = parse("DELETE a, m['k'], u.f FROM ks.t USING TIMESTAMP 100 WHERE k IN (1, 2) IF EXISTS")
    assert s == Delete("ks", "t", (DeleteColumn("a"), DeleteElement("m", lit("k")),
                                   DeleteField("u", "f")),
                       (ColumnRelation("k", Operator.IN, InValues((lit(1), lit(2)))),),
                       lit(100), True)
    assert parse("DELETE FROM t WHERE k = 1 IF v = 2").conditions == (
        Condition("v", Operator.EQ, lit(2)),)
    with pytest.raises(CqlSyntaxError):
        parse("DELETE FROM t USING TTL 5 WHERE k = 1")


def test_batches():
    s = parse("BEGIN BATCH INSERT INTO t (k) VALUES (1); UPDATE t SET v = 2 WHERE k = 1; "
              "DELETE FROM t WHERE k = 3; APPLY BATCH;")
    assert isinstance(s, Batch) and s.kind is BatchKind.LOGGED
    assert [type(c) for c in s.statements] == [Insert, Update, Delete]
    s = parse("BEGIN UNLOGGED BATCH USING TIMESTAMP 5 INSERT INTO t (k) VALUES (1) "
              "INSERT INTO t JSON '{}' APPLY BATCH")
    assert s.kind is BatchKind.UNLOGGED and s.timestamp == lit(5) and len(s.statements) == 2
    s = parse("begin counter batch update c set n = n + 1 where k = 1; apply batch")
    assert s.kind is BatchKind.COUNTER
    assert parse("BEGIN BATCH APPLY BATCH").statements == ()
    with pytest.raises(InvalidRequest, match="TTL"):
        parse("BEGIN BATCH USING TTL 5 INSERT INTO t (k) VALUES (1) APPLY BATCH")
    with pytest.raises(CqlSyntaxError):
        parse("BEGIN BATCH SELECT * FROM t APPLY BATCH")


# --------------------------------------------------------------------------- DDL


def test_use_and_keyspaces():
    assert parse("USE ks") == Use("ks")
    assert parse('USE "MyKs"') == Use("MyKs")
    s = parse("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', "
              "'replication_factor': 3} AND durable_writes = false")
    assert s == CreateKeyspace("ks", True, options={
        "replication": {"class": "SimpleStrategy", "replication_factor": "3"},
        "durable_writes": False})
    assert s.options_dict() == {"replication": {"class": "SimpleStrategy",
                                                "replication_factor": "3"},
                                "durable_writes": False}
    assert type(s.options_dict()["replication"]) is dict
    s = parse("ALTER KEYSPACE ks WITH replication = {'class': 'NetworkTopologyStrategy', "
              "'dc1': 3, 'dc2': 2}")
    assert s == AlterKeyspace("ks", options={"replication": {
        "class": "NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}})
    assert parse("DROP KEYSPACE IF EXISTS ks") == DropKeyspace("ks", True)
    assert parse("DROP KEYSPACE ks") == DropKeyspace("ks", False)
    assert parse("ALTER KEYSPACE ks WITH replication = {}").options == {"replication": {}}


def test_options_are_read_only_and_duplicates_refused():
    s = parse("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy'}")
    with pytest.raises(TypeError):
        s.options["x"] = 1  # type: ignore[index]
    with pytest.raises(CqlSyntaxError, match="Multiple definition"):
        parse("CREATE KEYSPACE ks WITH durable_writes = true AND durable_writes = false")
    with pytest.raises(CqlSyntaxError):
        parse("CREATE KEYSPACE ks WITH replication = {'class': now()}")


def test_create_table():
    s = parse("CREATE TABLE IF NOT EXISTS ks.t (k int, k2 text, c timeuuid, d int, "
              "v frozen<map<text, list<int>>>, s int STATIC, u \"MyType\", w ks.addr, "
              "PRIMARY KEY ((k, k2), c, d)) WITH CLUSTERING ORDER BY (c DESC, d ASC) "
              "AND default_time_to_live = 10 AND gc_grace_seconds = 0 AND comment = 'hi' "
              "AND compaction = {'class': 'SizeTieredCompactionStrategy', 'max_threshold': 32} "
              "AND caching = {'keys': 'ALL'} AND speculative_retry = '99p'")
    assert s == CreateTable(
        "ks", "t", (
            ColumnSpec("k", TypeRef("int")), ColumnSpec("k2", TypeRef("text")),
            ColumnSpec("c", TypeRef("timeuuid")), ColumnSpec("d", TypeRef("int")),
            ColumnSpec("v", TypeRef("frozen<map<text, list<int>>>")),
            ColumnSpec("s", TypeRef("int"), True),
            ColumnSpec("u", TypeRef('"MyType"', ("MyType",))),
            ColumnSpec("w", TypeRef("ks.addr", ("ks.addr",))),
        ), ("k", "k2"), ("c", "d"), (Ordering("c", True), Ordering("d", False)), True,
        options={"default_time_to_live": 10, "gc_grace_seconds": 0, "comment": "hi",
                 "compaction": {"class": "SizeTieredCompactionStrategy", "max_threshold": "32"},
                 "caching": {"keys": "ALL"}, "speculative_retry": "99p"})
    assert s.is_descending("c") and not s.is_descending("d")


def test_create_table_key_forms():
    s = parse("CREATE TABLE t (k int PRIMARY KEY, v text,)")
    assert (s.partition_key, s.clustering, s.keyspace) == (("k",), (), None)
    s = parse("CREATE COLUMNFAMILY t (a int, b int, c int, PRIMARY KEY (a, b, c))")
    assert (s.partition_key, s.clustering) == (("a",), ("b", "c"))
    s = parse("CREATE TABLE t (PRIMARY KEY ((a), b), a int, b int)")
    assert (s.partition_key, s.clustering) == (("a",), ("b",))
    s = parse("CREATE TABLE t (a int, b int, PRIMARY KEY (a, b)) WITH CLUSTERING ORDER BY (b DESC)")
    assert s.clustering_order == (Ordering("b", True),)


def test_column_types_resolve_with_parse_type():
    s = parse("CREATE TABLE t (k int PRIMARY KEY, a list<frozen<map<int, text>>>, "
              "b map<text, frozen<addr>>, c varchar)")
    assert s.columns[1].type.resolve() == ListType(MapType(NativeType("int"),
                                                           NativeType("text"), True))
    addr = UserType("ks", "addr", ("street",), (NativeType("text"),))
    assert s.columns[2].type.udt_names == ("addr",)
    assert s.columns[2].type.resolve(lambda name: addr if name == "addr" else None) == \
        MapType(NativeType("text"), addr.freeze())
    assert s.columns[3].type.resolve() == parse_type("text")


@pytest.mark.parametrize("text,message", [
    ("CREATE TABLE t (k int, v int)", "No PRIMARY KEY"),
    ("CREATE TABLE t (k int PRIMARY KEY, v int PRIMARY KEY)", "Multiple PRIMARY KEY"),
    ("CREATE TABLE t (k int, PRIMARY KEY (k), PRIMARY KEY (k))", "Multiple PRIMARY KEY"),
    ("CREATE TABLE t (k int PRIMARY KEY, k text)", "Duplicate column 'k'"),
    ("CREATE TABLE t (k int, PRIMARY KEY (k, x))", "Unknown definition x"),
    ("CREATE TABLE t (k int, c int, PRIMARY KEY (k, c, c))", "Duplicate definition"),
    ("CREATE TABLE t (k int static, c int, PRIMARY KEY (k, c))", "cannot be part"),
    ("CREATE TABLE t (k int PRIMARY KEY, s int static)", "Static columns are only"),
    ("CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c)) "
     "WITH CLUSTERING ORDER BY (v ASC)", "Only clustering key columns"),
    ("CREATE TABLE t (k int, c int, d int, PRIMARY KEY (k, c, d)) "
     "WITH CLUSTERING ORDER BY (d ASC, c DESC)", "must appear before"),
    ("CREATE TABLE t (k int, c int, d int, PRIMARY KEY (k, c, d)) "
     "WITH CLUSTERING ORDER BY (d ASC)", "Missing CLUSTERING ORDER for column c"),
    ("CREATE TABLE t (k int PRIMARY KEY, v int) WITH COMPACT STORAGE", "not supported"),
    ("CREATE TABLE t (k int PRIMARY KEY, v frozen<int>)", "frozen"),
    ("CREATE TABLE t (k int PRIMARY KEY, v map<int>)", "map"),
    ("CREATE TABLE t (k int PRIMARY KEY, v list<list<int>>)", "Non-frozen collections"),
    ("CREATE TABLE t (k int PRIMARY KEY, v list<addr>)", "Non-frozen UDTs"),
    ("CREATE TABLE t (k int PRIMARY KEY, v set<counter>)", "Counters"),
])
def test_create_table_checks(text, message):
    with pytest.raises(InvalidRequest, match=message):
        parse(text)


def test_alter_and_drop_table():
    add = AlterTableAdd(None, "t", (ColumnSpec("x", TypeRef("int")),
                                    ColumnSpec("y", TypeRef("set<text>"), True)))
    assert parse("ALTER TABLE t ADD x int, y set<text> static") == add
    assert parse("ALTER TABLE t ADD (x int, y set<text> STATIC)") == add
    assert parse("ALTER TABLE ks.t DROP x") == AlterTableDrop("ks", "t", ("x",))
    assert parse("ALTER TABLE t DROP (a, b) USING TIMESTAMP 5") == AlterTableDrop(
        None, "t", ("a", "b"), 5)
    assert parse("ALTER TABLE t RENAME a TO b AND c TO d") == AlterTableRename(
        None, "t", (("a", "b"), ("c", "d")))
    assert parse("ALTER TABLE t WITH comment = 'x' AND gc_grace_seconds = 5") == AlterTableWith(
        None, "t", options={"comment": "x", "gc_grace_seconds": 5})
    assert parse("DROP TABLE IF EXISTS ks.t") == DropTable("ks", "t", True)
    assert parse("DROP TABLE t") == DropTable(None, "t", False)
    assert parse("TRUNCATE TABLE ks.t") == Truncate("ks", "t")
    assert parse("TRUNCATE t") == Truncate(None, "t")
    with pytest.raises(InvalidRequest, match="no longer supported"):
        parse("ALTER TABLE t ALTER v TYPE blob")
    with pytest.raises(InvalidRequest, match="CLUSTERING ORDER"):
        parse("ALTER TABLE t WITH CLUSTERING ORDER BY (c DESC)")


def test_user_types():
    assert parse("CREATE TYPE IF NOT EXISTS ks.addr (street text, zip int, "
                 "tags frozen<set<text>>)") == CreateType(
        "ks", "addr", (("street", TypeRef("text")), ("zip", TypeRef("int")),
                       ("tags", TypeRef("frozen<set<text>>"))), True)
    assert parse("ALTER TYPE addr ADD city text") == AlterTypeAdd(None, "addr", "city",
                                                                  TypeRef("text"))
    assert parse("ALTER TYPE ks.addr RENAME zip TO postcode AND a TO b") == AlterTypeRename(
        "ks", "addr", (("zip", "postcode"), ("a", "b")))
    assert parse("DROP TYPE IF EXISTS addr") == DropType(None, "addr", True)
    with pytest.raises(InvalidRequest, match="Duplicate field"):
        parse("CREATE TYPE t (a int, a text)")


def test_indexes():
    assert parse("CREATE INDEX ON t (v)") == CreateIndex(None, "t", None, "v")
    assert parse("CREATE INDEX IF NOT EXISTS idx ON ks.t (keys(m))") == CreateIndex(
        "ks", "t", "idx", "m", IndexTargetKind.KEYS, None, True)
    assert parse("CREATE INDEX i ON t (entries(m))").target is IndexTargetKind.ENTRIES
    assert parse("CREATE INDEX i ON t (full(l))").target is IndexTargetKind.FULL
    assert parse("CREATE INDEX i ON t (values(l))").target is IndexTargetKind.VALUES
    s = parse("CREATE CUSTOM INDEX idx ON t (v) USING 'org.Foo' WITH OPTIONS = {'mode': 'X'}")
    assert s.custom_class == "org.Foo" and s.options == {"options": {"mode": "X"}}
    assert parse("DROP INDEX IF EXISTS ks.idx") == DropIndex("ks", "idx", True)
    with pytest.raises(InvalidRequest):
        parse("CREATE INDEX ON t (bogus(m))")
    with pytest.raises(InvalidRequest):
        parse("CREATE INDEX ON t (v) USING 'org.Foo'")


# --------------------------------------------------------------------------- DESCRIBE


@pytest.mark.parametrize("text,expected", [
    ("DESCRIBE KEYSPACES", Describe(DescribeKind.KEYSPACES)),
    ("DESC KEYSPACE", Describe(DescribeKind.KEYSPACE)),
    ("DESCRIBE KEYSPACE ks", Describe(DescribeKind.KEYSPACE, "ks")),
    ("DESCRIBE ONLY KEYSPACE ks", Describe(DescribeKind.KEYSPACE, "ks", only=True)),
    ("DESCRIBE TABLES", Describe(DescribeKind.TABLES)),
    ("DESCRIBE TABLE t", Describe(DescribeKind.TABLE, None, "t")),
    ("desc table ks.t;", Describe(DescribeKind.TABLE, "ks", "t")),
    ("DESCRIBE COLUMNFAMILY ks.t", Describe(DescribeKind.TABLE, "ks", "t")),
    ("DESCRIBE TYPES", Describe(DescribeKind.TYPES)),
    ("DESCRIBE TYPE ks.addr", Describe(DescribeKind.TYPE, "ks", "addr")),
    ("DESCRIBE FUNCTIONS", Describe(DescribeKind.FUNCTIONS)),
    ("DESCRIBE FUNCTION ks.f", Describe(DescribeKind.FUNCTION, "ks", "f")),
    ("DESCRIBE AGGREGATES", Describe(DescribeKind.AGGREGATES)),
    ("DESCRIBE AGGREGATE a", Describe(DescribeKind.AGGREGATE, None, "a")),
    ("DESCRIBE CLUSTER", Describe(DescribeKind.CLUSTER)),
    ("DESCRIBE SCHEMA", Describe(DescribeKind.SCHEMA)),
    ("DESCRIBE FULL SCHEMA", Describe(DescribeKind.SCHEMA, full=True)),
    ("DESCRIBE INDEX ks.i", Describe(DescribeKind.INDEX, "ks", "i")),
    ("DESCRIBE MATERIALIZED VIEW v", Describe(DescribeKind.MATERIALIZED_VIEW, None, "v")),
    ("DESCRIBE users", Describe(DescribeKind.NAME, None, "users")),
    ('DESCRIBE "Ks"."Users"', Describe(DescribeKind.NAME, "Ks", "Users")),
    ("DESCRIBE ks.users WITH INTERNALS",
     Describe(DescribeKind.NAME, "ks", "users", with_internals=True)),
    ("DESCRIBE KEYSPACE ks WITH INTERNALS",
     Describe(DescribeKind.KEYSPACE, "ks", with_internals=True)),
])
def test_describe(text, expected):
    assert parse(text) == expected


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text,message", [
    ("SELECT * FORM t", "line 1:9 mismatched input 'FORM' expecting FROM"),
    ("SELECT * FROM t WHERE", "line 1:21 mismatched input '<EOF>'"),
    ("SELECT * FROM\nt WHERE k = = 1", "line 2:12 "),
    ("FOO BAR", "line 1:0 no viable alternative at input 'FOO'"),
    ("", "line 1:0"),
    ("SELECT 'abc FROM t", "line 1:7 unterminated string literal"),
    ("SELECT \"abc FROM t", "unterminated quoted identifier"),
    ("SELECT \"\" FROM t", "empty quoted identifier"),
    ("SELECT a FROM t /* never closed", "unterminated comment"),
    ("SELECT $$abc FROM t", "unterminated $$ string"),
    ("SELECT # FROM t", "line 1:7 no viable alternative at character '#'"),
    ("SELECT é FROM t", "character 'é'"),
    ("INSERT INTO t (a) VALUES (:)", "bind marker name"),
    ("SELECT * FROM t WHERE k = 1 LIMIT", "<EOF>"),
])
def test_syntax_errors(text, message):
    with pytest.raises(CqlSyntaxError) as e:
        parse(text)
    assert message in str(e.value)


def test_syntax_error_shows_context():
    with pytest.raises(CqlSyntaxError) as e:
        parse("SELECT a, b, c FROM t WHERE k = 1 ORDER c")
    assert "(" in str(e.value) and "[c]" in str(e.value)


@pytest.mark.parametrize("text,message", [
    ("CREATE MATERIALIZED VIEW v AS SELECT * FROM t WHERE k IS NOT NULL PRIMARY KEY (k)",
     "Materialized views"),
    ("DROP MATERIALIZED VIEW v", "Materialized views"),
    ("CREATE FUNCTION f (a int) RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java "
     "AS 'return a;'", "User-defined functions"),
    ("CREATE OR REPLACE FUNCTION f (a int) CALLED ON NULL INPUT RETURNS int LANGUAGE java "
     "AS $$return a;$$", "User-defined functions"),
    ("DROP FUNCTION f", "User-defined functions"),
    ("CREATE AGGREGATE a (int) SFUNC f STYPE int", "aggregates"),
    ("CREATE TRIGGER tr ON t USING 'x'", "Triggers"),
    ("CREATE ROLE bob WITH PASSWORD = 'x'", "Roles"),
    ("CREATE USER bob WITH PASSWORD 'x'", "Roles"),
    ("GRANT SELECT ON ALL KEYSPACES TO bob", "Roles"),
    ("REVOKE SELECT ON ks.t FROM bob", "Roles"),
    ("LIST ROLES", "Roles"),
    ("/* c */ list users", "Roles"),
])
def test_unsupported_statements_are_invalid_requests(text, message):
    with pytest.raises(InvalidRequest, match=message):
        parse(text)


def test_limits():
    with pytest.raises(InvalidRequest, match="nests brackets"):
        parse("INSERT INTO t (a) VALUES (" + "[" * 100 + "]" * 100 + ")")
    with pytest.raises(InvalidRequest):
        parse("CREATE TABLE t (k int PRIMARY KEY, v " + "frozen<list<" * 40 + "int"
              + ">>" * 40 + ")")
    with pytest.raises(InvalidRequest):
        parse("SELECT " + ".".join(["a"] * 100) + " FROM t")
    with pytest.raises(InvalidRequest):
        parse("INSERT INTO t (a) VALUES (" + "(int) " * 100 + "1)")
    with pytest.raises(InvalidRequest, match="Integer literal"):
        value_of("9" * 5000)


def test_many_markers_within_limit():
    n = 1000
    s = parse("INSERT INTO t (" + ", ".join(f"c{i}" for i in range(n)) + ") VALUES ("
              + ", ".join("?" * n) + ")")
    assert [m.index for m in s.bind_markers] == list(range(n))


# --------------------------------------------------------------------------- cache and shape


def test_equal_texts_share_one_cached_tree():
    text = "SELECT * FROM t WHERE k = ?"
    assert parse(text) is parse(text)
    long_text = "SELECT * FROM t WHERE k IN (" + ", ".join(["1"] * 3000) + ")"
    assert len(long_text) > PARSE_CACHE_MAX_TEXT_CHARS
    assert parse(long_text) == parse(long_text)


def test_every_statement_class_is_frozen():
    s = parse("SELECT * FROM t")
    with pytest.raises(AttributeError):
        s.table = "u"  # type: ignore[misc]
    assert all(getattr(cls, "__dataclass_params__").frozen for cls in ast.ANY_STATEMENT)


def test_the_cached_grammar_is_the_compiled_automaton(tmp_path):
    """Nodes load Lark's cached grammar instead of compiling it: the cached tables, written
    and then read back, must be the same automaton as a fresh compile (states renumbered)."""
    from pathlib import Path

    from agora.cql import parse_lalr, parser
    grammar = Path(parser.__file__).with_name("grammar.lark").read_text()
    fresh = parse_lalr.compile_grammar(grammar, "start", parser._Rules())
    cache = str(tmp_path / "grammar.cache")
    for _ in range(2):  # the first writes the file, the second loads it
        loaded = parse_lalr.compile_grammar(grammar, "start", parser._Rules(), cache=cache)
        assert Path(cache).stat().st_size > 0
        mapping, todo = {fresh.start: loaded.start}, [fresh.start]
        while todo:
            state = todo.pop()
            other = mapping[state]
            mine, theirs = fresh.actions[state], loaded.actions[other]
            assert mine.keys() == theirs.keys()
            assert fresh.gotos[state].keys() == loaded.gotos[other].keys()
            pairs = [(fresh.gotos[state][r], loaded.gotos[other][r]) for r in fresh.gotos[state]]
            for terminal, (shift, reduction) in mine.items():
                if shift is None:  # a reduction: the same rule, as long
                    assert theirs[terminal][0] is None
                    assert reduction[:2] == theirs[terminal][1][:2]
                else:
                    assert theirs[terminal][0] is not None
                    pairs.append((shift, theirs[terminal][0]))
            for a, b in pairs:
                if a not in mapping:
                    mapping[a] = b
                    todo.append(a)
                assert mapping[a] == b, "two states of the fresh table map to one loaded state's successor"
        assert len(mapping) == len(set(mapping.values())) == len(fresh.actions) == len(loaded.actions)
        assert mapping[fresh.end] == loaded.end


def test_the_grammar_cache_is_kept_where_only_this_user_can_write(tmp_path, monkeypatch):
    """Lark's cache is a pickle, which runs code when loaded: it lives in the user's own
    cache directory (made 0700), never in the shared temporary directory, and is not used at
    all if that directory is writable by others."""
    import os
    import stat
    import subprocess
    import sys

    from agora.cql import parse_lalr
    temp, cache = tmp_path / "tmp", tmp_path / "cache"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), XDG_CACHE_HOME=str(cache))
    subprocess.run([sys.executable, "-c", "import agora.cql.parser"], env=env, check=True, timeout=60)
    assert list(temp.iterdir()) == []  # Lark's default would have put its pickle here
    [kept] = list((cache / "agora").iterdir())
    assert kept.name.startswith("cql-grammar-") and kept.stat().st_size > 0
    assert stat.S_IMODE((cache / "agora").stat().st_mode) == 0o700
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert parse_lalr.private_cache_path("g", "cql").startswith(str(cache / "agora") + os.sep)
    (cache / "agora").chmod(0o777)  # another user could plant a file: no cache at all
    assert parse_lalr.private_cache_path("g", "cql") is None
