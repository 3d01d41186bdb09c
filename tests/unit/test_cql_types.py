"""CQL types: parsing and canonical names, value bytes checked against cassandra-driver 3.30.1,
validation, and hand-picked sort orders (the random ones live in tests/property)."""

from __future__ import annotations

import datetime
import ipaddress
import math
import struct
import uuid
from decimal import Decimal

import cassandra.cqltypes as ct
import pytest
from cassandra import util as dutil
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.errors import InvalidRequest, ProtocolError
from agora.core.schema import types as T
from agora.core.schema.types import (
    BIGINT, BLOB, BOOLEAN, DATE, DECIMAL, DOUBLE, DURATION, FLOAT, INET, INT, TEXT, TIME,
    TIMESTAMP, TIMEUUID, TINYINT, UUID, VARINT, ListType, MapType, SetType, TupleType, UserType,
    canonical, comparable, compare, decode_ckey, deserialize, encode_ckey, is_collection,
    is_multicell, parse_type, serialize, validate,
)

PROTO = 4
ADDRESS = UserType("ks", "address", ("street", "zip"), (TEXT, INT))


def udts(name: str) -> UserType | None:
    return {"address": ADDRESS, "ks.address": ADDRESS}.get(name)


def driver_type(t: T.CqlType):
    """The driver's type class for one of ours."""
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
    return ct.UserType.make_udt_class(t.keyspace, t.name, tuple(t.field_names),
                                      tuple(driver_type(f) for f in t.field_types))


# ------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("text, schema_name, plain_name", [
    ("int", "int", "int"),
    ("VARCHAR", "text", "text"),
    ("map<text,int>", "map<text, int>", "map<text, int>"),
    ("frozen<list<int>>", "frozen<list<int>>", "frozen<list<int>>"),
    (" Frozen < map < text , list<int> > > ", "frozen<map<text, frozen<list<int>>>>",
     "frozen<map<text, list<int>>>"),
    ("list<frozen<set<bigint>>>", "list<frozen<set<bigint>>>", "list<frozen<set<bigint>>>"),
    ("tuple<int, text>", "frozen<tuple<int, text>>", "tuple<int, text>"),
    ("list<tuple<int, list<text>>>", "list<frozen<tuple<int, frozen<list<text>>>>>",
     "list<tuple<int, list<text>>>"),
    ("address", "address", "address"),
    ("frozen<address>", "frozen<address>", "frozen<address>"),
    ("set<frozen<ks.address>>", "set<frozen<address>>", "set<frozen<address>>"),
    ("frozen<list<address>>", "frozen<list<frozen<address>>>", "frozen<list<address>>"),
])
def test_parse_and_canonical_names(text, schema_name, plain_name):
    t = parse_type(text, udts)
    assert t.cql_name() == schema_name
    assert t.cql_name(force_frozen=False) == plain_name
    assert parse_type(t.cql_name(), udts) == t  # the canonical text parses back to the same type
    assert T.type_from_plain(T.type_to_plain(t)) == t


def test_parse_structure():
    t = parse_type("map<text, frozen<list<int>>>")
    assert t == MapType(TEXT, ListType(INT, True), False)
    assert is_multicell(t) and is_collection(t)
    assert not is_multicell(t.freeze()) and is_collection(t.freeze())
    assert is_multicell(parse_type("address", udts))
    assert not is_multicell(parse_type("frozen<address>", udts))
    assert not is_multicell(parse_type("tuple<int>"))


def test_quoted_udt_names():
    mixed = UserType("ks", "MyType", ("a",), (INT,))
    t = parse_type('frozen<"MyType">', lambda n: mixed if n == "MyType" else None)
    assert t.cql_name() == 'frozen<"MyType">'
    with pytest.raises(InvalidRequest, match="Unknown type mytype"):
        parse_type("MyType", lambda n: mixed if n == "MyType" else None)


@pytest.mark.parametrize("text, message", [
    ("list<set<int>>", "Non-frozen collections are not allowed inside collections"),
    ("map<int, list<int>>", "Non-frozen collections are not allowed inside collections"),
    ("list<address>", "Non-frozen UDTs are not allowed inside collections"),
    ("list<counter>", "Counters are not allowed inside collections"),
    ("set<duration>", "Durations are not allowed inside sets"),
    ("map<duration, int>", "Durations are not allowed as map keys"),
    ("frozen<int>", "frozen<> is only allowed on collections"),
    ("map<int>", "map takes 2"),
    ("list<int, int>", "list takes 1"),
    ("list<int", "unexpected end"),
    ("int>", "unexpected text"),
    ("nosuchtype", "Unknown type nosuchtype"),
    ("in t", "Unknown type in"),
    ("list<int>;", "unexpected"),
    ("<int>", "unexpected"),
    ("tuple<counter>", "Counters are not allowed inside tuples"),
])
def test_parse_errors(text, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_type(text, udts)


def test_parse_limits():
    deep = "frozen<list<" * 40 + "int" + ">>" * 40
    with pytest.raises(InvalidRequest, match="nested deeper"):
        parse_type(deep)
    with pytest.raises(InvalidRequest, match="longer than"):
        parse_type("int" + " " * T.MAX_TYPE_TEXT_CHARS)


def test_type_from_plain_rejects_garbage():
    for bad in [None, [], ["native", "nope"], ["list", "x", ["native", "int"]],
                ["udt", 1, 2, 3, 4, 5], ["map", True, ["native", "int"]], ["tuple", 5], "int"]:
        with pytest.raises(ProtocolError):
            T.type_from_plain(bad)


# ------------------------------------------------------------------------------ values vs driver

PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
T_UUID1 = uuid.UUID("a8098c1a-f86e-11da-bd1a-00112444be1e")
NATIVE_EXAMPLES = [
    ("ascii", "hello"), ("ascii", ""),
    ("bigint", -(2**63)), ("bigint", 2**63 - 1), ("counter", 42),
    ("blob", b"\x00\xff\x00"), ("blob", b""),
    ("boolean", True), ("boolean", False),
    ("date", dutil.Date(0)), ("date", datetime.date(2024, 2, 29)), ("date", dutil.Date(-5000)),
    ("date", "2020-01-01"), ("date", 2**31 + 7),
    ("decimal", Decimal("-12.3400")), ("decimal", Decimal("0")), ("decimal", Decimal("1E+5")),
    ("decimal", Decimal("123456789012345678901234567890.5")), ("decimal", 3), ("decimal", 0.5),
    ("double", -0.0), ("double", math.inf), ("double", 1e300), ("double", 5),
    ("duration", dutil.Duration(1, 2, 3)), ("duration", dutil.Duration(-1, 0, -(2**62))),
    ("duration", dutil.Duration(0, 0, 0)),
    ("float", 1.5), ("float", -3.4e38), ("float", math.inf),
    ("inet", "127.0.0.1"), ("inet", "::1"), ("inet", "2001:db8::8a2e:370:7334"),
    ("inet", ipaddress.ip_address("10.0.0.2")),
    ("int", -(2**31)), ("int", 2**31 - 1), ("smallint", -32768), ("tinyint", 127),
    ("text", "héllo wörld ✓"), ("text", ""), ("varchar", "x"),
    ("time", dutil.Time(0)), ("time", datetime.time(23, 59, 59, 999999)),
    ("time", 86_399_999_999_999),
    ("time", "12:34:56.123456789"),
    ("timestamp", datetime.datetime(2020, 1, 2, 3, 4, 5, 678000)),
    ("timestamp", datetime.datetime(1969, 12, 31, 23, 59, 59, 500000)),
    ("timestamp", datetime.datetime(2020, 1, 1, tzinfo=PLUS_TWO)),
    ("timestamp", datetime.date(2000, 1, 1)), ("timestamp", 1_600_000_000_123),
    ("timeuuid", T_UUID1), ("uuid", uuid.UUID("12345678-1234-4234-8234-123456789abc")),
    ("varint", 0), ("varint", -1), ("varint", 128), ("varint", -129), ("varint", 2**200),
    ("varint", -(2**200)),
]


@pytest.mark.parametrize("name, value", NATIVE_EXAMPLES)
def test_native_bytes_match_driver(name, value):
    t = parse_type(name)
    data = serialize(t, value)
    assert data == driver_type(t).serialize(value, PROTO)
    validate(t, data)
    ours = deserialize(t, data)
    theirs = driver_type(t).from_binary(data, PROTO)
    if isinstance(theirs, float) and math.isnan(theirs):
        assert math.isnan(ours)
    else:
        assert ours == theirs
    assert serialize(t, ours) == data


def test_driver_lookup_by_java_class_name():
    java = "org.apache.cassandra.db.marshal."
    cases = [("Int32Type", INT, 7), ("UTF8Type", TEXT, "x"), ("TimestampType", TIMESTAMP, 1234),
             ("SimpleDateType", DATE, dutil.Date(3)), ("IntegerType", VARINT, -77),
             ("ListType(org.apache.cassandra.db.marshal.Int32Type)", ListType(INT), [1, 2])]
    for cls, t, v in cases:
        assert serialize(t, v) == ct.lookup_casstype(java + cls).serialize(v, PROTO)


COMPLEX_EXAMPLES = [
    ("list<int>", [1, -2, 3]), ("list<text>", []), ("set<text>", ["b", "a"]),
    ("frozen<set<int>>", {3, 1, 2}), ("map<text, int>", {"a": 1, "b": -1}),
    ("frozen<map<text, frozen<list<int>>>>", {"x": [1], "y": []}),
    ("tuple<int, text, boolean>", (1, "a", None)), ("tuple<int, text>", (5,)),
    ("frozen<tuple<int, frozen<list<tuple<text, int>>>>>", (1, [("a", 1), ("b", None)])),
    ("address", ("Main St", 12345)), ("frozen<address>", ("x", None)),
    ("list<frozen<address>>", [("a", 1), ("b", 2)]),
    ("map<frozen<address>, text>", {("a", 1): "home"}),
]


@pytest.mark.parametrize("text, value", COMPLEX_EXAMPLES)
def test_complex_bytes_match_driver(text, value):
    t = parse_type(text, udts)
    dt = driver_type(t)
    data = serialize(t, value)
    assert data == dt.serialize(value, PROTO)
    validate(t, data)
    assert deserialize(t, data) == dt.from_binary(data, PROTO)


def test_udt_value_forms():
    data = serialize(ADDRESS, ("Main", 1))
    assert serialize(ADDRESS, {"street": "Main", "zip": 1}) == data
    assert serialize(ADDRESS, deserialize(ADDRESS, data)) == data
    assert deserialize(ADDRESS, data).street == "Main"
    assert serialize(ADDRESS, {"street": "Main"}) == serialize(ADDRESS, ("Main", None))
    with pytest.raises(InvalidRequest, match="Unknown field"):
        serialize(ADDRESS, {"nope": 1})
    # a value written before a field was added has fewer fields: the rest read as null
    short = serialize(TupleType((TEXT,)), ("Main",))
    assert deserialize(ADDRESS, short) == ("Main", None)


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_random_values_match_driver(data):
    name = data.draw(st.sampled_from(sorted(SIMPLE_STRATEGIES)))
    t = parse_type(name)
    value = data.draw(SIMPLE_STRATEGIES[name])
    assert serialize(t, value) == driver_type(t).serialize(value, PROTO)
    lt = ListType(t, True)
    values = data.draw(st.lists(SIMPLE_STRATEGIES[name], max_size=4))
    assert serialize(lt, values) == driver_type(lt).serialize(values, PROTO)


SIMPLE_STRATEGIES = {
    "int": st.integers(-(2**31), 2**31 - 1), "bigint": st.integers(-(2**63), 2**63 - 1),
    "smallint": st.integers(-(2**15), 2**15 - 1), "tinyint": st.integers(-128, 127),
    "varint": st.integers(-(2**130), 2**130), "text": st.text(),
    "ascii": st.text(st.characters(max_codepoint=127)),
    "blob": st.binary(), "boolean": st.booleans(), "double": st.floats(allow_nan=False),
    "float": st.floats(width=32, allow_nan=False), "uuid": st.uuids(),
    "timeuuid": st.uuids(version=1),
    "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=None),
    "timestamp": st.datetimes(min_value=datetime.datetime(1, 1, 2)),
    "date": st.dates().map(dutil.Date), "time": st.integers(0, 86_399_999_999_999).map(dutil.Time),
    "duration": st.builds(dutil.Duration, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1),
                          st.integers(0, 2**63 - 1)),
    "inet": st.one_of(st.ip_addresses().map(str)),
}


# ------------------------------------------------------------------------------ bad values

@pytest.mark.parametrize("t, value", [
    (INT, 2**31), (INT, "1"), (TINYINT, 128), (BIGINT, 1.5), (TEXT, b"x"), (T.ASCII, "é"),
    (BLOB, "x"), (BOOLEAN, "yes"), (FLOAT, 1e300), (DOUBLE, "1"), (DECIMAL, Decimal("NaN")),
    (DECIMAL, "abc"), (UUID, "1234"), (TIMEUUID, uuid.UUID("12345678-1234-4234-8234-123456789abc")),
    (TIMESTAMP, "2020-01-01"), (DATE, 2**32), (DATE, "not a date"), (TIME, -1),
    (TIME, 86_400 * 10**9), (INET, "300.1.1.1"), (INET, 5), (DURATION, dutil.Duration(1, -1, 0)),
    (DURATION, 5), (VARINT, 1.0),
    (ListType(INT), "abc"), (ListType(INT), [1, None]), (MapType(TEXT, INT), [1, 2]),
    (TupleType((INT,)), (1, 2)), (ADDRESS, ("a", 1, 2)), (INT, None),
])
def test_bad_values_raise_invalid_request(t, value):
    with pytest.raises(InvalidRequest):
        serialize(t, value)


@pytest.mark.parametrize("t, data, message", [
    (INT, b"\x00\x00\x01", "expected 4 bytes"),
    (BIGINT, b"\x00" * 9, "expected 8 bytes"),
    (TEXT, b"\xff\xfe", "UTF-8"),
    (T.ASCII, b"\x80", "ascii"),
    (UUID, b"\x00" * 15, "16 bytes"),
    (TIMEUUID, bytes(16), "version"),
    (INET, b"\x01\x02\x03", "4 or 16"),
    (DECIMAL, b"\x00\x00\x00\x01", "at least 5"),
    (TIME, struct.pack(">q", -5), "out of"),
    (DURATION, b"\x02\x02", "truncated"),
    (DURATION, b"\x02\x02\x02\x02", "unexpected bytes"),
    (DURATION, b"\x02\x01\x00", "same sign"),
    (ListType(INT), b"\x00\x00\x00\x01", "impossible element count"),
    (ListType(INT), b"\x00\x00\x00\x01\x00\x00\x00\x09\x00\x00\x00\x01", "truncated element"),
    (ListType(INT), b"\x00\x00\x00\x01\xff\xff\xff\xff", "null is not supported"),
    (ListType(INT), b"\x7f\xff\xff\xff", "impossible element count"),
    (ListType(INT), b"\x00\x00\x00\x00\x00", "unexpected bytes"),
    (ListType(INT), b"\x00\x00\x00\x01\x00\x00\x00\x02\x00\x01", "expected 4 bytes"),
    (MapType(INT, INT), b"\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01", "truncated"),
    (TupleType((INT,)), b"\x00\x00\x00\x04\x00\x00\x00\x01\xff\xff\xff\xff", "more than 1 fields"),
    (TupleType((INT,)), b"\x00\x00\x00\x05\x00", "truncated"),
    (TupleType((INT,)), b"\x00\x00\x00\x02\x00\x00", "expected 4 bytes"),
])
def test_validate_rejects_malformed_bytes(t, data, message):
    with pytest.raises(InvalidRequest, match=message):
        validate(t, data)
    with pytest.raises(InvalidRequest):
        deserialize(t, data)
    with pytest.raises(InvalidRequest):
        comparable(t, data)


def test_empty_values():
    for t in (INT, TEXT, BLOB, UUID, DECIMAL, ListType(INT, True), ADDRESS):
        validate(t, b"")
    assert deserialize(TEXT, b"") == "" and deserialize(BLOB, b"") == b""
    assert deserialize(INT, b"") is None
    assert comparable(TEXT, b"") < comparable(TEXT, b"\x00") < comparable(TEXT, b"a")
    assert comparable(INT, b"") < comparable(INT, serialize(INT, -(2**31)))


def test_tuple_with_null_field_round_trips():
    t = TupleType((INT, TEXT))
    data = serialize(t, (None, "x"))
    assert deserialize(t, data) == (None, "x")
    assert comparable(t, data) < comparable(t, serialize(t, (0, "x")))


# ------------------------------------------------------------------------------ hand-picked orders

def ordered(t, values):
    """Assert values (Python) are strictly increasing under the comparable encoding."""
    encodings = [comparable(t, serialize(t, v)) for v in values]
    assert encodings == sorted(encodings) and len(set(encodings)) == len(encodings), values


def test_hand_picked_orders():
    ordered(INT, [-(2**31), -1, 0, 1, 2**31 - 1])
    ordered(DOUBLE, [-math.inf, -1e300, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, math.inf, math.nan])
    ordered(FLOAT, [-math.inf, -1.0, -0.0, 0.0, 1.0, math.inf, math.nan])
    ordered(VARINT, [-(2**2100), -(2**64), -257, -256, -129, -128, -1, 0, 1, 127, 128, 255, 256,
                     2**64, 2**2100])
    ordered(DECIMAL, [Decimal(d) for d in [
        "-1e10", "-10", "-9.99", "-1", "-0.5", "-0.0001", "0", "0.00", "0.0001", "0.5",
        "1", "1.0", "1.00", "1.01", "9.99", "10", "1e10"]])
    ordered(TEXT, ["", "\x00", "\x00\x00", "\x01", "a", "a\x00", "ab", "b", "é", "✓", "\U0001F600"])
    ordered(BLOB, [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x01", b"\xff", b"\xff\x00",
                   b"\xff\xff"])
    ordered(BOOLEAN, [False, True])
    ordered(TIMESTAMP, [-(2**63), -1, 0, 1, 2**63 - 1])
    ordered(DATE, [0, 1, 2**31, 2**32 - 1])
    ordered(TIME, [0, 1, 86_399_999_999_999])
    ordered(INET, ["0.0.0.0", "::", "::1", "1.2.3.4", "ffff::", "255.255.255.255"])  # raw bytes
    ordered(ListType(INT, True), [[], [-1], [-1, 0], [0], [0, -5], [1]])
    ordered(SetType(INT, True), [set(), {-1}, {-1, 0}, {0}])
    ordered(MapType(INT, TEXT, True), [{}, {1: "a"}, {1: "b"}, {1: "b", 2: ""}, {2: ""}])
    ordered(TupleType((INT, TEXT)),
            [(None, None), (None, "a"), (-1, None), (-1, ""), (-1, "a"), (0, None)])


def test_uuid_order_follows_cassandra():
    # version first: any v1 sorts before any v4, whatever the bytes
    v1 = uuid.UUID("ffffffff-ffff-1fff-bfff-ffffffffffff")
    v4 = uuid.UUID("00000000-0000-4000-8000-000000000000")
    ordered(UUID, [v1, v4])
    # v1 by timestamp (time_hi, then time_mid, then time_low), not by bytes
    early = uuid.UUID(fields=(0xFFFFFFFF, 0x0000, 0x1000, 0x80, 0x00, 0))
    late = uuid.UUID(fields=(0x00000000, 0x0001, 0x1000, 0x80, 0x00, 0))
    ordered(UUID, [early, late])
    ordered(TIMEUUID, [early, late])
    # same timestamp: uuid compares lsb unsigned, timeuuid as signed bytes
    lo = uuid.UUID(fields=(1, 1, 0x1001, 0x00, 0x00, 0))
    hi = uuid.UUID(fields=(1, 1, 0x1001, 0x80, 0x00, 0))
    ordered(UUID, [lo, hi])
    ordered(TIMEUUID, [hi, lo])


def test_canonical_forms():
    fs = SetType(INT, True)
    assert canonical(fs, serialize(fs, [3, 1, 3, 2])) == serialize(fs, [1, 2, 3])
    fm = MapType(INT, TEXT, True)
    two = ct.MapType.apply_parameters([ct.Int32Type, ct.UTF8Type])
    messy = two.serialize(dutil.OrderedMap([(2, "b"), (1, "a")]), PROTO)
    assert canonical(fm, messy) == serialize(fm, {1: "a", 2: "b"})
    assert canonical(BOOLEAN, b"\x05") == b"\x01"
    assert canonical(VARINT, b"\x00\x00\x05") == b"\x05"
    assert canonical(TupleType((INT, INT)), serialize(TupleType((INT, INT)), (1,))) == \
        serialize(TupleType((INT, INT)), (1, None))
    assert compare(VARINT, b"\x00\x05", b"\x05") == 0
    assert compare(INT, serialize(INT, -1), serialize(INT, 1)) == -1
    nan_a, nan_b = struct.pack(">d", math.nan), bytes.fromhex("7ff0000000000001")
    assert compare(DOUBLE, nan_a, nan_b) == 0


def test_ckey_prefix_and_bounds():
    types = [(INT, False), (TEXT, True)]
    full = encode_ckey(types, [serialize(INT, 5), serialize(TEXT, "b")])
    prefix = encode_ckey(types, [serialize(INT, 5)])
    assert full.startswith(prefix)
    assert prefix + b"\x00" < full < prefix + b"\xff"
    assert decode_ckey(types, full) == [serialize(INT, 5), serialize(TEXT, "b")]
    assert decode_ckey(types, prefix) == [serialize(INT, 5)]
    assert decode_ckey(types, b"") == []
    with pytest.raises(InvalidRequest):
        encode_ckey(types, [b"\x00\x00\x00\x01"] * 3)
    with pytest.raises(InvalidRequest):
        encode_ckey(types, [None])


@pytest.mark.parametrize("ckey", [b"\x00", b"\x03\x80", b"\x03\x80\x00\x00\x05\xff", b"\x01",
                                  b"\x04", b"\x03\x80\x00\x00\x05\xfc\x97"])
def test_decode_ckey_garbage_is_protocol_error(ckey):
    with pytest.raises(ProtocolError):
        decode_ckey([(INT, False), (TEXT, True)], ckey)


def test_cell_paths():
    assert T.path_element(INT, T.set_element_path(INT, serialize(INT, -3))) == serialize(INT, -3)
    paths = sorted(T.map_entry_path(INT, serialize(INT, v)) for v in (5, -7, 0))
    assert [deserialize(INT, T.path_element(INT, p)) for p in paths] == [-7, 0, 5]
    assert T.udt_field_index(T.udt_field_path(3)) == 3
