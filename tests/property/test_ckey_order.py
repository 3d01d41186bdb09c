"""Clustering-key encoding: bytewise order of `comparable` equals Cassandra's order, per type.

The reference order is computed independently of Agora's encoder: values are serialized by
cassandra-driver and compared in Python with a key function written from Cassandra's
`*Type.compareCustom` (numbers by value, NaN last and -0.0 < 0.0, UUIDType by version then
timestamp/msb then lsb, TimeUUIDType by timestamp then signed lsb bytes, empty value first,
collections element-wise then shorter first, null tuple fields first).
"""

from __future__ import annotations

import math
import struct
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import cassandra.cqltypes as ct
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.schema.types import (
    ASCII, BIGINT, BLOB, BOOLEAN, DATE, DECIMAL, DOUBLE, FLOAT, INET, INT, SMALLINT, TEXT, TIME,
    TIMESTAMP, TIMEUUID, TINYINT, UUID, VARINT, CqlType, ListType, MapType, SetType, TupleType,
    UserType, comparable, decode_ckey, encode_ckey,
)

PROTO = 4


def driver_type(t: CqlType):
    if isinstance(t, ListType):
        return ct.ListType.apply_parameters([driver_type(t.element)])
    if isinstance(t, SetType):
        return ct.SetType.apply_parameters([driver_type(t.element)])
    if isinstance(t, MapType):
        return ct.MapType.apply_parameters([driver_type(t.key), driver_type(t.value)])
    if isinstance(t, TupleType):
        return ct.TupleType.apply_parameters([driver_type(e) for e in t.elements])
    if isinstance(t, UserType):
        return ct.UserType.make_udt_class(t.keyspace, t.name, t.field_names,
                                          tuple(driver_type(f) for f in t.field_types))
    return ct._cqltypes[t.name]


# ---------------------------------------------------------------- reference keys (Python values)

def float_key(x: float) -> tuple:
    return (1,) if math.isnan(x) else (0, x, math.copysign(1.0, x))


def decimal_key(d: Decimal) -> tuple:
    # value first; Agora then orders equal values by scale (documented deviation)
    return (d, -d.as_tuple().exponent)


def uuid_key(u) -> tuple:
    b = u.bytes
    version = b[6] >> 4
    msb = u.time if version == 1 else int.from_bytes(b[:8], "big")
    return (version, msb, int.from_bytes(b[8:], "big"))


def timeuuid_key(u) -> tuple:
    return (u.time, tuple(x - 256 if x > 127 else x for x in u.bytes[8:]))


def nullable(key: Callable) -> Callable:
    return lambda v: (0,) if v is None else (1, key(v))


def list_key(elem: Callable) -> Callable:
    return lambda v: [elem(e) for e in v]


def set_key(elem: Callable) -> Callable:
    return lambda v: sorted(elem(e) for e in v)


def map_key(k: Callable, val: Callable) -> Callable:
    return lambda m: sorted((k(a), val(b)) for a, b in m.items())


def fields_key(*keys: Callable) -> Callable:
    """Missing trailing fields are nulls (TupleType.compareCustom)."""
    def key(v: Any) -> tuple:
        padded = tuple(v) + (None,) * (len(keys) - len(v))
        return tuple(nullable(k)(x) for k, x in zip(keys, padded))
    return key


class Pairs(list):
    """A map value with possibly unhashable keys, as the driver accepts (anything with items())."""

    def items(self):
        return list(self)


def dedup_pairs(pairs: list) -> Pairs:
    seen: dict = {}
    for k, v in pairs:
        seen[repr(k)] = (k, v)
    return Pairs(seen.values())


@dataclass(frozen=True)
class Case:
    name: str
    type: CqlType
    values: st.SearchStrategy
    key: Callable[[Any], Any]
    exact: bool = True  # the driver's bytes are already the canonical form
    read: Callable[[bytes], Any] | None = None  # bytes -> value; default: the driver

    def value_of(self, data: bytes) -> Any:
        return self.read(data) if self.read else driver_type(self.type).from_binary(data, PROTO)

    def __repr__(self) -> str:
        return self.name


ident = lambda v: v  # noqa: E731
signed = lambda d: int.from_bytes(d, "big", signed=True)  # noqa: E731
unsigned = lambda d: int.from_bytes(d, "big")  # noqa: E731
ints32 = st.integers(-(2**31), 2**31 - 1)
floats32_any = st.integers(0, 2**32 - 1).map(lambda u: struct.unpack(">f", u.to_bytes(4, "big"))[0])
doubles_any = st.integers(0, 2**64 - 1).map(lambda u: struct.unpack(">d", u.to_bytes(8, "big"))[0])
decimals = st.decimals(allow_nan=False, allow_infinity=False).filter(
    lambda d: abs(d.as_tuple().exponent) < 2**31 - 1 and len(d.as_tuple().digits) < 200)
sixteen = st.binary(min_size=16, max_size=16)
uuid_any = st.one_of(st.uuids(), st.uuids(version=1), sixteen.map(lambda b: uuid.UUID(bytes=b)))
timeuuids = st.one_of(st.uuids(version=1), sixteen.map(  # any bytes, version nibble 1
    lambda b: uuid.UUID(bytes=b[:6] + bytes([0x10 | (b[6] & 0x0F)]) + b[7:])))
UDT = UserType("ks", "pt", ("x", "tags"), (INT, SetType(TEXT, True)), True)
TUP = TupleType((DOUBLE, BLOB))

CASES = [
    Case("int", INT, ints32, ident),
    Case("bigint", BIGINT, st.integers(-(2**63), 2**63 - 1), ident),
    Case("smallint", SMALLINT, st.integers(-(2**15), 2**15 - 1), ident),
    Case("tinyint", TINYINT, st.integers(-128, 127), ident),
    Case("varint", VARINT, st.one_of(st.integers(-(2**70), 2**70), st.integers(-300, 300)), ident),
    Case("decimal", DECIMAL, decimals, decimal_key),
    Case("float", FLOAT, st.one_of(st.floats(width=32), floats32_any), float_key, exact=False),
    Case("double", DOUBLE, st.one_of(st.floats(), doubles_any), float_key, exact=False),
    Case("text", TEXT, st.text(), ident),
    Case("ascii", ASCII, st.text(st.characters(max_codepoint=127)), ident),
    Case("blob", BLOB, st.binary(), ident),
    Case("boolean", BOOLEAN, st.booleans(), ident),
    Case("uuid", UUID, uuid_any, uuid_key),
    Case("timeuuid", TIMEUUID, timeuuids, timeuuid_key),
    Case("timestamp", TIMESTAMP, st.integers(-(2**63), 2**63 - 1), ident, read=signed),
    Case("date", DATE, st.integers(0, 2**32 - 1), ident, read=unsigned),
    Case("time", TIME, st.integers(0, 86_399_999_999_999), ident, read=signed),
    Case("inet", INET, st.ip_addresses(), ident, read=bytes),  # ordered as raw bytes
    Case("list<int>", ListType(INT, True), st.lists(ints32, max_size=4), list_key(ident)),
    Case("set<text>", SetType(TEXT, True), st.lists(st.text(max_size=3), max_size=4),
         set_key(ident), exact=False),
    Case("map<int,text>", MapType(INT, TEXT, True),
         st.lists(st.tuples(st.integers(-3, 3), st.text(max_size=2)), max_size=4).map(dedup_pairs),
         map_key(ident, ident), exact=False),
    Case("tuple<int,text>", TupleType((INT, TEXT)),
         st.tuples(st.none() | st.integers(-3, 3), st.none() | st.text(max_size=2)),
         fields_key(ident, ident)),
    Case("tuple<int,text> written short", TupleType((INT, TEXT)),  # e.g. before ALTER TYPE ADD
         st.one_of(st.tuples(), st.tuples(st.none() | st.integers(-3, 3)),
                   st.tuples(st.none() | st.integers(-3, 3), st.none() | st.text(max_size=2))),
         fields_key(ident, ident), exact=False),
    Case("list<tuple<double,blob>>", ListType(TUP, True),
         st.lists(st.tuples(st.none() | st.floats(), st.none() | st.binary(max_size=2)),
                  max_size=3),
         list_key(fields_key(float_key, ident)), exact=False),
    Case("udt", UDT, st.tuples(st.none() | st.integers(-3, 3),
                               st.none() | st.lists(st.text(max_size=2), max_size=3)),
         fields_key(ident, set_key(ident)), exact=False),
    Case("map<list<int>,boolean>", MapType(ListType(INT, True), BOOLEAN, True),
         st.lists(st.tuples(st.lists(st.integers(-2, 2), max_size=2), st.booleans()),
                  max_size=3).map(dedup_pairs),
         map_key(list_key(ident), ident), exact=False),
]


@dataclass(frozen=True)
class Item:
    data: bytes  # serialized by the driver
    key: Any  # Cassandra's order
    exact: bool


def item(case: Case) -> st.SearchStrategy[Item]:
    def build(v: Any) -> Item:
        data = driver_type(case.type).serialize(v, PROTO)
        if not data:  # '' and b'' serialize to the empty value
            return Item(b"", (0,), True)
        back = case.value_of(data)  # e.g. float32 rounding
        exact = case.exact or (case.type in (FLOAT, DOUBLE) and not math.isnan(back))
        return Item(data, (1, case.key(back)), exact)
    return st.one_of(st.just(Item(b"", (0,), True)), case.values.map(build))


def cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


@st.composite
def pair(draw: Any) -> tuple[Case, Item, Item, bool]:
    case = draw(st.sampled_from(CASES))
    a = draw(item(case))
    b = draw(st.one_of(st.just(a), item(case)))
    return case, a, b, draw(st.booleans())


@given(pair())
@settings(max_examples=600, deadline=None)
def test_order_matches_cassandra(p):
    case, a, b, descending = p
    expected = cmp(a.key, b.key) * (-1 if descending else 1)
    ea = comparable(case.type, a.data, descending)
    eb = comparable(case.type, b.data, descending)
    assert cmp(ea, eb) == expected


@given(pair())
@settings(max_examples=300, deadline=None)
def test_decode_round_trip(p):
    case, a, _, descending = p
    encoded = comparable(case.type, a.data, descending)
    [decoded] = decode_ckey([(case.type, descending)], encoded)
    assert comparable(case.type, decoded, descending) == encoded
    if a.exact:
        assert decoded == a.data
    if decoded:
        assert (1, case.key(case.value_of(decoded))) == a.key


@st.composite
def rows(draw: Any) -> tuple[list[tuple[CqlType, bool]], list[Item], list[Item]]:
    column = st.tuples(st.sampled_from(CASES), st.booleans())
    columns = draw(st.lists(column, min_size=1, max_size=4))
    row_a = [draw(item(c)) for c, _ in columns]
    row_b = [a if draw(st.booleans()) else draw(item(c)) for (c, _), a in zip(columns, row_a)]
    return [(c.type, d) for c, d in columns], row_a, row_b


@given(rows())
@settings(max_examples=300, deadline=None)
def test_ckey_is_lexicographic_with_prefixes(r):
    types, row_a, row_b = r
    ka = encode_ckey(types, [i.data for i in row_a])
    kb = encode_ckey(types, [i.data for i in row_b])
    expected = 0
    for (_, descending), a, b in zip(types, row_a, row_b):
        expected = cmp(a.key, b.key) * (-1 if descending else 1)
        if expected:
            break
    assert cmp(ka, kb) == expected
    assert encode_ckey(types, decode_ckey(types, ka)) == ka
    for k in range(len(types) + 1):
        prefix = encode_ckey(types, [i.data for i in row_a[:k]])
        assert ka.startswith(prefix)
        assert len(decode_ckey(types, prefix)) == k
        if k < len(types):
            assert prefix + b"\x00" < ka < prefix + b"\xff"
