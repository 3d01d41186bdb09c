"""CQL data types: what they are called, how their values look in bytes, and how they sort.

Owns:
  * the type representation (frozen dataclasses): `NativeType`, `ListType`, `SetType`,
    `MapType`, `TupleType`, `UserType`; `parse_type` and `CqlType.cql_name()`;
  * value formats of the native protocol v4 (spec section 6): `serialize`, `deserialize`,
    `validate` (bad input raises `InvalidRequest`);
  * the order-preserving, self-delimiting encoding of clustering values: `comparable`,
    `encode_ckey`, `decode_ckey`, `compare`, `canonical`;
  * the cell-path convention for non-frozen collections and UDTs (see "Cell paths" below).

Deliberately does not know tables, keyspaces or how schema is stored (`schema/model.py`),
CQL literals or the frame format of result metadata (`agora.cql`).

Where the rules come from:
  * byte formats: native_protocol_v4.spec section 6; Python value conventions: cassandra-driver
    3.30.1 `cassandra/cqltypes.py` (tests check byte equality with it);
  * canonical type text: Cassandra 4 `CQL3Type.toSchemaString()` (what system_schema.columns.type
    holds: every frozen complex type spelled `frozen<...>`, tuples included);
  * nesting rules: Cassandra 4 `CQL3Type.Raw` (frozen<> freezes what it contains; non-frozen
    collections and UDTs may not nest inside collections; no counters inside collections);
  * sort orders: Cassandra 4 `db/marshal/*Type.compareCustom`: empty value first; numbers by
    value (float/double as Java's Float.compare: -0.0 < 0.0, NaN last); text/ascii/blob/inet/
    duration unsigned bytes; boolean false < true; date as uint32; timestamp/time signed;
    UUIDType by version, then (v1) timestamp or (others) msb unsigned, then lsb unsigned;
    TimeUUIDType by timestamp then lsb as *signed* bytes; frozen list/set/map element-wise then
    shorter first; tuple/UDT field-wise with null < any value and missing trailing fields = null.

Comparable encoding (ckey). Each value becomes a *field*:
    0x01 null (only inside tuples/UDTs) | 0x02 empty value | 0x03 + body
Bodies are self-delimiting: fixed width for fixed-size types; bytes-like types escape 0x00 as
0x00 0xFF and end with 0x00 0x01; varint is sign, length, magnitude; decimal is sign, exponent,
digits, then the scale; collections/tuples/UDTs are a run of fields ended by 0x00. A descending
component is the same bytes complemented. So a ckey (the concatenated components) sorts
bytewise in clustering order, a prefix of components is a byte prefix, and the first byte of
every component is 0x02/0x03 (asc) or 0xFD/0xFC (desc): `prefix + b"\\x00"` sorts before and
`prefix + b"\\xff"` after every ckey that extends `prefix`.
Canonicalisation, where Cassandra's comparator calls two encodings equal: booleans become
0/1, varints minimal, NaNs one NaN, frozen sets sorted and deduplicated, frozen maps sorted by
key (last duplicate wins), tuple/UDT trailing nulls padded. One deliberate difference: decimals
equal in value but not in scale (1.5, 1.50) get distinct encodings (value order first, then
scale), so `decode_ckey` gives back the exact bytes; Cassandra would call them the same row.

Cell paths (non-frozen collections and UDTs, `agora.core.types.CellPath`):
  * set<T>:   path = `set_element_path(T, element)` = comparable(T, element); cell value b"";
  * map<K,V>: path = `map_entry_path(K, key)` = comparable(K, key); cell value = value bytes;
    so cells sorted by path come out in Cassandra's element order; `path_element` inverts;
  * UDT:      path = `udt_field_path(i)` = field index as 2 bytes big-endian;
  * list<T>:  path = 16 bytes whose bytewise order is the list order: 8 bytes big-endian of
    (time_us + 2**63) then 8 bytes that make it unique (node + counter). Appends use the write
    time; prepends use times mirrored below a fixed reference, as Cassandra's PrecisionTime
    does. (Owned by the CQL layer; recorded here so every reader agrees.)
"""

from __future__ import annotations

import calendar
import datetime
import functools
import ipaddress
import re
import struct
import uuid
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from cassandra import util as driver_util

from agora.core.errors import InvalidRequest, ProtocolError

MAX_TYPE_DEPTH = 32  # nesting levels in one type; real schemas use 3 or 4, deeper is an attack
MAX_TYPE_TEXT_CHARS = 8192  # length of a type string handed to parse_type
MAX_DECIMAL_DIGITS = 4300  # Python's default int<->str conversion limit (sys.int_info)
INT32_MAX = 2**31 - 1

# --------------------------------------------------------------------------- representation


class CqlType:
    """Base of every CQL type. Instances are immutable and compare by value."""

    __slots__ = ()

    def cql_name(self, force_frozen: bool = True) -> str:
        """Cassandra's text for this type. With force_frozen (the default, as stored in
        system_schema) every frozen complex type is spelled `frozen<...>`, even inside another
        frozen type and for tuples; without it, as Cassandra's `toString()` (DESCRIBE)."""
        return self._text(False, force_frozen)

    def _text(self, already_frozen: bool, force: bool) -> str:
        raise NotImplementedError

    def freeze(self) -> CqlType:
        return self

    @property
    def is_frozen(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.cql_name()


@dataclass(frozen=True, slots=True)
class NativeType(CqlType):
    name: str  # canonical CQL name: "text" for varchar

    def _text(self, already_frozen: bool, force: bool) -> str:
        return self.name


def _frozen_text(inner: str, frozen: bool, already_frozen: bool, force: bool) -> str:
    return f"frozen<{inner}>" if frozen and (force or not already_frozen) else inner


@dataclass(frozen=True, slots=True)
class ListType(CqlType):
    element: CqlType
    frozen: bool = False

    def _text(self, already_frozen: bool, force: bool) -> str:
        inner = f"list<{self.element._text(self.frozen or already_frozen, force)}>"
        return _frozen_text(inner, self.frozen, already_frozen, force)

    def freeze(self) -> CqlType:
        return ListType(self.element.freeze(), True)

    @property
    def is_frozen(self) -> bool:
        return self.frozen


@dataclass(frozen=True, slots=True)
class SetType(CqlType):
    element: CqlType
    frozen: bool = False

    def _text(self, already_frozen: bool, force: bool) -> str:
        inner = f"set<{self.element._text(self.frozen or already_frozen, force)}>"
        return _frozen_text(inner, self.frozen, already_frozen, force)

    def freeze(self) -> CqlType:
        return SetType(self.element.freeze(), True)

    @property
    def is_frozen(self) -> bool:
        return self.frozen


@dataclass(frozen=True, slots=True)
class MapType(CqlType):
    key: CqlType
    value: CqlType
    frozen: bool = False

    def _text(self, already_frozen: bool, force: bool) -> str:
        inside = self.frozen or already_frozen
        inner = f"map<{self.key._text(inside, force)}, {self.value._text(inside, force)}>"
        return _frozen_text(inner, self.frozen, already_frozen, force)

    def freeze(self) -> CqlType:
        return MapType(self.key.freeze(), self.value.freeze(), True)

    @property
    def is_frozen(self) -> bool:
        return self.frozen


@dataclass(frozen=True, slots=True)
class TupleType(CqlType):
    """Always frozen, as in Cassandra; its elements are frozen too."""

    elements: tuple[CqlType, ...]

    def _text(self, already_frozen: bool, force: bool) -> str:
        inner = "tuple<" + ", ".join(e._text(True, force) for e in self.elements) + ">"
        return f"frozen<{inner}>" if force else inner

    def freeze(self) -> CqlType:
        return TupleType(tuple(e.freeze() for e in self.elements))

    @property
    def is_frozen(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class UserType(CqlType):
    """A user-defined type as a column sees it: its definition is carried along, so values can
    be handled without a schema lookup. Non-frozen means stored field by field."""

    keyspace: str
    name: str
    field_names: tuple[str, ...]
    field_types: tuple[CqlType, ...]
    frozen: bool = False

    def _text(self, already_frozen: bool, force: bool) -> str:
        return _frozen_text(quote_identifier(self.name), self.frozen, already_frozen, force)

    def freeze(self) -> CqlType:
        return self if self.frozen else replace(self, frozen=True)

    @property
    def is_frozen(self) -> bool:
        return self.frozen


NATIVE_NAMES = ("ascii", "bigint", "blob", "boolean", "counter", "date", "decimal", "double",
                "duration", "float", "inet", "int", "smallint", "text", "time", "timestamp",
                "timeuuid", "tinyint", "uuid", "varint")
NATIVE: dict[str, NativeType] = {n: NativeType(n) for n in NATIVE_NAMES}
NATIVE["varchar"] = NATIVE["text"]
ASCII, BIGINT, BLOB, BOOLEAN, COUNTER, DATE, DECIMAL, DOUBLE, DURATION, FLOAT, INET, INT, \
    SMALLINT, TEXT, TIME, TIMESTAMP, TIMEUUID, TINYINT, UUID, VARINT = \
    (NATIVE[n] for n in NATIVE_NAMES)
# Words that can never name a user-defined type (Cassandra reserves the type names).
RESERVED_TYPE_NAMES = frozenset(NATIVE) | {"list", "set", "map", "tuple", "frozen", "byte",
                                           "complex", "enum", "date", "interval", "macaddr",
                                           "bitstring", "vector"}


def is_collection(t: CqlType) -> bool:
    return isinstance(t, (ListType, SetType, MapType))


def is_multicell(t: CqlType) -> bool:
    """Stored as one cell per element/field: non-frozen collections and non-frozen UDTs."""
    return isinstance(t, (ListType, SetType, MapType, UserType)) and not t.frozen


def is_counter(t: CqlType) -> bool:
    return t == COUNTER


def subtypes(t: CqlType) -> tuple[CqlType, ...]:
    if isinstance(t, (ListType, SetType)):
        return (t.element,)
    if isinstance(t, MapType):
        return (t.key, t.value)
    if isinstance(t, TupleType):
        return t.elements
    if isinstance(t, UserType):
        return t.field_types
    return ()


def references(t: CqlType, pred: Callable[[CqlType], bool]) -> bool:
    """True if t or any type nested in it satisfies pred (e.g. `lambda x: x == DURATION`)."""
    return pred(t) or any(references(s, pred) for s in subtypes(t))


_PLAIN_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")


def quote_identifier(name: str) -> str:
    """Cassandra's ColumnIdentifier.maybeQuote (without its keyword list)."""
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r'\s*(?:([A-Za-z0-9_]+)|"((?:[^"]|"")*)"|([<>,.]))')


def _tokenize(text: str) -> list[tuple[str, str]]:
    """('w', lowercased word) | ('q', quoted name) | ('p', punctuation)."""
    out, pos, end = [], 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m:
            raise InvalidRequest(f"Invalid type {text!r}: unexpected {text[pos:].strip()[:20]!r}")
        word, quoted, punct = m.groups()
        if word is not None:
            out.append(("w", word.lower()))
        elif quoted is not None:
            out.append(("q", quoted.replace('""', '"')))
        else:
            out.append(("p", punct))
        pos = m.end()
    return out


class _TypeParser:
    def __init__(self, text: str, udts: Callable[[str], UserType | None] | None) -> None:
        self.text, self.udts = text, udts
        self.tokens, self.i = _tokenize(text), 0

    def fail(self, what: str) -> InvalidRequest:
        return InvalidRequest(f"Invalid type {self.text!r}: {what}")

    def next(self) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise self.fail("unexpected end")
        self.i += 1
        return self.tokens[self.i - 1]

    def expect(self, punct: str) -> None:
        if self.next() != ("p", punct):
            raise self.fail(f"expected {punct!r}")

    def peek(self, punct: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i] == ("p", punct)

    def args(self, depth: int) -> list[CqlType]:
        self.expect("<")
        out = [self.type(depth)]
        while self.peek(","):
            self.i += 1
            out.append(self.type(depth))
        self.expect(">")
        return out

    def type(self, depth: int) -> CqlType:
        if depth > MAX_TYPE_DEPTH:
            raise self.fail(f"nested deeper than {MAX_TYPE_DEPTH}")
        kind, word = self.next()
        if kind == "p":
            raise self.fail(f"unexpected {word!r}")
        if kind == "w" and word in ("frozen", "list", "set", "map", "tuple"):
            return self.complex(word, self.args(depth + 1))
        if kind == "w" and word in NATIVE:
            return NATIVE[word]
        return self.user_type(word)

    def complex(self, word: str, args: list[CqlType]) -> CqlType:
        want = {"frozen": 1, "list": 1, "set": 1, "map": 2}.get(word)
        if want is not None and len(args) != want:
            raise self.fail(f"{word} takes {want} type argument(s), got {len(args)}")
        if word == "frozen":
            if not isinstance(args[0], (ListType, SetType, MapType, TupleType, UserType)):
                raise self.fail("frozen<> is only allowed on collections, tuples, and "
                                f"user-defined types (got {args[0].cql_name()})")
            return args[0].freeze()
        if word == "list":
            return ListType(args[0])
        if word == "set":
            return SetType(args[0])
        if word == "map":
            return MapType(args[0], args[1])
        return TupleType(tuple(a.freeze() for a in args))

    def user_type(self, name: str) -> CqlType:
        if self.peek("."):
            self.i += 1
            kind, second = self.next()
            if kind == "p":
                raise self.fail("expected a type name after '.'")
            name = f"{name}.{second}"
        found = self.udts(name) if self.udts is not None else None
        if found is None:
            raise InvalidRequest(f"Unknown type {name}")
        return replace(found, frozen=False)


def _check_nesting(t: CqlType, text: str) -> None:
    """Cassandra's rules for what may live inside a collection or tuple."""
    if isinstance(t, (ListType, SetType, MapType)):
        for sub in subtypes(t):
            if is_collection(sub) and not sub.frozen:
                raise InvalidRequest("Non-frozen collections are not allowed inside collections: "
                                     + text)
            if isinstance(sub, UserType) and not sub.frozen:
                raise InvalidRequest(f"Non-frozen UDTs are not allowed inside collections: {text}")
            if sub == COUNTER:
                raise InvalidRequest(f"Counters are not allowed inside collections: {text}")
        if isinstance(t, SetType) and t.element == DURATION:
            raise InvalidRequest(f"Durations are not allowed inside sets: {text}")
        if isinstance(t, MapType) and t.key == DURATION:
            raise InvalidRequest(f"Durations are not allowed as map keys: {text}")
    if isinstance(t, TupleType) and COUNTER in t.elements:
        raise InvalidRequest(f"Counters are not allowed inside tuples: {text}")
    if not isinstance(t, UserType):  # a UDT's fields were checked when it was defined
        for sub in subtypes(t):
            _check_nesting(sub, text)


def parse_type(text: str, udts: Callable[[str], UserType | None] | None = None) -> CqlType:
    """Parse CQL type text (`int`, `frozen<map<text, list<int>>>`, `"MyType"`, `ks.addr`).

    Case-insensitive outside double quotes; spaces tolerated. A name that is not a native type
    is a user-defined type looked up with `udts(name)` (name lowercased unless quoted, and
    "ks.name" when qualified); a bare UDT is non-frozen. Raises InvalidRequest."""
    if len(text) > MAX_TYPE_TEXT_CHARS:
        raise InvalidRequest(f"Type text longer than {MAX_TYPE_TEXT_CHARS} characters")
    parser = _TypeParser(text, udts)
    t = parser.type(0)
    if parser.i != len(parser.tokens):
        raise parser.fail("unexpected text after the type")
    _check_nesting(t, text)
    return t


def type_to_plain(t: CqlType) -> list:
    """msgpack-friendly form of a type (UDT definitions included)."""
    if isinstance(t, NativeType):
        return ["native", t.name]
    if isinstance(t, (ListType, SetType)):
        return ["list" if isinstance(t, ListType) else "set", t.frozen, type_to_plain(t.element)]
    if isinstance(t, MapType):
        return ["map", t.frozen, type_to_plain(t.key), type_to_plain(t.value)]
    if isinstance(t, TupleType):
        return ["tuple", [type_to_plain(e) for e in t.elements]]
    assert isinstance(t, UserType), t
    return ["udt", t.keyspace, t.name, t.frozen, list(t.field_names),
            [type_to_plain(f) for f in t.field_types]]


def type_from_plain(p: Any, depth: int = 0) -> CqlType:
    """Inverse of type_to_plain; raises ProtocolError on anything malformed."""
    try:
        if depth > MAX_TYPE_DEPTH:
            raise ValueError("too deep")
        kind, args = p[0], p[1:]
        if kind == "native" and len(args) == 1 and args[0] in NATIVE_NAMES:
            return NATIVE[args[0]]
        if kind in ("list", "set") and len(args) == 2 and isinstance(args[0], bool):
            cls = ListType if kind == "list" else SetType
            return cls(type_from_plain(args[1], depth + 1), args[0])
        if kind == "map" and len(args) == 3 and isinstance(args[0], bool):
            return MapType(type_from_plain(args[1], depth + 1),
                           type_from_plain(args[2], depth + 1), args[0])
        if kind == "tuple" and len(args) == 1:
            return TupleType(tuple(type_from_plain(e, depth + 1) for e in args[0]))
        if kind == "udt" and len(args) == 5:
            ks, name, frozen, names, types = args
            if not (isinstance(ks, str) and isinstance(name, str) and isinstance(frozen, bool)
                    and all(isinstance(n, str) for n in names) and len(names) == len(types)):
                raise ValueError("bad udt")
            return UserType(ks, name, tuple(names),
                            tuple(type_from_plain(f, depth + 1) for f in types), frozen)
    except (TypeError, ValueError, IndexError, KeyError) as e:
        raise ProtocolError(f"malformed type {p!r}: {e}") from None
    raise ProtocolError(f"malformed type {p!r}")


# --------------------------------------------------------------------------- byte helpers

_INVERT = bytes(255 - i for i in range(256))
_INT32 = struct.Struct(">i")
_NULL_SIZE = _INT32.pack(-1)


def _bad(t: CqlType, what: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid {t.cql_name()} value: {what}")


def _read_size(data: bytes, pos: int, t: CqlType) -> tuple[int, int]:
    if pos + 4 > len(data):
        raise _bad(t, "truncated")
    return _INT32.unpack_from(data, pos)[0], pos + 4


def _read_collection(t: CqlType, data: bytes, per_item: int) -> list[bytes]:
    """The [bytes] items of a list/set (per_item 1) or map (2) value: k1, v1, k2, v2 ..."""
    n, pos = _read_size(data, 0, t)
    if n < 0 or n * per_item * 4 > len(data) - 4:
        raise _bad(t, f"impossible element count {n}")
    out = []
    for _ in range(n * per_item):
        size, pos = _read_size(data, pos, t)
        if size < 0:
            raise _bad(t, "null is not supported inside collections")
        if pos + size > len(data):
            raise _bad(t, "truncated element")
        out.append(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise _bad(t, f"{len(data) - pos} unexpected bytes after the last element")
    return out


def _read_fields(t: CqlType, data: bytes, count: int) -> list[bytes | None]:
    """Fields of a tuple/UDT value; fewer than `count` is allowed, more is not."""
    out: list[bytes | None] = []
    pos = 0
    while pos < len(data):
        if len(out) == count:
            raise _bad(t, f"more than {count} fields")
        size, pos = _read_size(data, pos, t)
        if size < 0:
            out.append(None)
            continue
        if pos + size > len(data):
            raise _bad(t, "truncated field")
        out.append(data[pos:pos + size])
        pos += size
    return out


def _write_items(items: list[bytes], count: int | None = None) -> bytes:
    parts = [] if count is None else [_INT32.pack(count)]
    for item in items:
        if len(item) > INT32_MAX:
            raise InvalidRequest("collection element larger than 2 GiB")
        parts.append(_INT32.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def _write_fields(fields: list[bytes | None]) -> bytes:
    return b"".join(_NULL_SIZE if f is None else _INT32.pack(len(f)) + f for f in fields)


def _varint_bytes(n: int) -> bytes:
    """Minimal two's complement, as Cassandra and the driver write varints."""
    return n.to_bytes((n + (n < 0)).bit_length() // 8 + 1, "big", signed=True)


def _vint(value: int) -> bytes:
    """Cassandra's VIntCoding of a signed 64-bit value (zigzag, then unsigned vint)."""
    v = (value << 1) if value >= 0 else ((-value) << 1) - 1
    if v < 0x80:
        return bytes([v])
    extra = min(8, (v.bit_length() - 1) // 7)
    first = ((0xFF << (8 - extra)) & 0xFF) | (v >> (8 * extra))
    return bytes([first]) + (v & ((1 << (8 * extra)) - 1)).to_bytes(extra, "big")


def _read_vint(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    extra = 8 - (~first & 0xFF).bit_length()
    if pos + 1 + extra > len(data):
        raise ValueError("truncated vint")
    v = first & (0xFF >> extra)
    for b in data[pos + 1:pos + 1 + extra]:
        v = (v << 8) | b
    return (v >> 1) ^ -(v & 1), pos + 1 + extra


# --------------------------------------------------------------------------- order helpers


def _order_len(n: int) -> bytes:
    return bytes([n]) if n < 0xFF else b"\xff" + n.to_bytes(8, "big")


def _order_int(n: int) -> bytes:
    """Any integer -> bytes in numeric order, self-delimiting: sign, length, magnitude."""
    if n >= 0:
        mag = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return b"\x01" + _order_len(len(mag)) + mag
    m = -n - 1
    mag = m.to_bytes((m.bit_length() + 7) // 8, "big")
    return b"\x00" + (_order_len(len(mag)) + mag).translate(_INVERT)


def _unorder_int(buf: bytes, pos: int) -> tuple[int, int]:
    negative = buf[pos] == 0
    flip = 0xFF if negative else 0
    length, pos = buf[pos + 1] ^ flip, pos + 2
    if length == 0xFF:
        length = int.from_bytes(bytes(b ^ flip for b in buf[pos:pos + 8]), "big")
        pos += 8
    if pos + length > len(buf):
        raise IndexError("truncated integer")
    mag = buf[pos:pos + length]
    if negative:
        return -int.from_bytes(mag.translate(_INVERT), "big") - 1, pos + length
    return int.from_bytes(mag, "big"), pos + length


def _order_escaped(data: bytes) -> bytes:
    return data.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def _unorder_escaped(buf: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while True:
        zero = buf.index(b"\x00", pos)
        parts.append(buf[pos:zero])
        marker = buf[zero + 1]
        if marker == 0x01:
            return b"".join(parts), zero + 2
        if marker != 0xFF:
            raise ValueError("bad escape in comparable bytes")
        parts.append(b"\x00")
        pos = zero + 2


def _flip_sign(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x80]) + data[1:]


def _unorder_fixed(width: int) -> Callable[[bytes, int], tuple[bytes, int]]:
    def unorder(buf: bytes, pos: int) -> tuple[bytes, int]:
        if pos + width > len(buf):
            raise IndexError("truncated")
        return _flip_sign(buf[pos:pos + width]), pos + width
    return unorder


_FLOAT_LAYOUT = {4: (0x7F800000, 0x007FFFFF, 0x7FC00000),  # exponent, mantissa, Java's NaN
                 8: (0x7FF0000000000000, 0x000FFFFFFFFFFFFF, 0x7FF8000000000000)}


def _order_float(width: int) -> Callable[[bytes], bytes]:
    sign, full = 1 << (8 * width - 1), (1 << (8 * width)) - 1
    exp_mask, mantissa_mask, nan = _FLOAT_LAYOUT[width]

    def order(data: bytes) -> bytes:
        u = int.from_bytes(data, "big")
        if u & exp_mask == exp_mask and u & mantissa_mask:
            u = nan  # every NaN is one NaN, sorted last (Java's Float.compare)
        u = u ^ full if u & sign else u | sign
        return u.to_bytes(width, "big")
    return order


def _unorder_float(width: int) -> Callable[[bytes, int], tuple[bytes, int]]:
    bits = 8 * width
    sign, full = 1 << (bits - 1), (1 << bits) - 1

    def unorder(buf: bytes, pos: int) -> tuple[bytes, int]:
        if pos + width > len(buf):
            raise IndexError("truncated")
        u = int.from_bytes(buf[pos:pos + width], "big")
        u = u ^ sign if u & sign else u ^ full
        return u.to_bytes(width, "big"), pos + width
    return unorder


def _reorder_timestamp(msb: int) -> int:
    """Cassandra's TimeUUIDType.reorderTimestampBytes: time_hi, time_mid, time_low."""
    return ((msb << 48) & 0xFFFFFFFFFFFFFFFF) | ((msb << 16) & 0xFFFF00000000) | (msb >> 32)


def _restore_timestamp(r: int) -> int:
    return ((r & 0xFFFFFFFF) << 32) | (((r >> 32) & 0xFFFF) << 16) | (r >> 48)


def _order_uuid(data: bytes) -> bytes:
    version = data[6] >> 4
    msb = int.from_bytes(data[:8], "big")
    if version == 1:
        msb = _reorder_timestamp(msb)
    return bytes([version]) + msb.to_bytes(8, "big") + data[8:]


def _unorder_uuid(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 17 > len(buf):
        raise IndexError("truncated")
    msb = int.from_bytes(buf[pos + 1:pos + 9], "big")
    if buf[pos] == 1:
        msb = _restore_timestamp(msb)
    return msb.to_bytes(8, "big") + buf[pos + 9:pos + 17], pos + 17


_FLIP_EACH = bytes(i ^ 0x80 for i in range(256))  # signed byte order -> unsigned byte order


def _order_timeuuid(data: bytes) -> bytes:
    msb = _reorder_timestamp(int.from_bytes(data[:8], "big"))
    return msb.to_bytes(8, "big") + data[8:].translate(_FLIP_EACH)


def _unorder_timeuuid(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 16 > len(buf):
        raise IndexError("truncated")
    msb = _restore_timestamp(int.from_bytes(buf[pos:pos + 8], "big"))
    return msb.to_bytes(8, "big") + buf[pos + 8:pos + 16].translate(_FLIP_EACH), pos + 16


def _order_varint(data: bytes) -> bytes:
    return _order_int(int.from_bytes(data, "big", signed=True))


def _unorder_varint(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _unorder_int(buf, pos)
    return _varint_bytes(n), pos


def _order_decimal(data: bytes) -> bytes:
    """Sign (0x01 < 0x02 zero < 0x03), then exponent and significant digits (complemented
    when negative), then the scale as a tie-break between equal values."""
    scale = _INT32.unpack_from(data)[0]
    unscaled = int.from_bytes(data[4:], "big", signed=True)
    tail = (scale + 2**31).to_bytes(4, "big")
    if unscaled == 0:
        return b"\x02" + tail
    try:
        digits = str(abs(unscaled))
    except ValueError:
        raise InvalidRequest(f"decimal with more than {MAX_DECIMAL_DIGITS} digits") from None
    mantissa = _order_int(len(digits) - scale) + digits.rstrip("0").encode() + b"\x00"
    if unscaled < 0:
        return b"\x01" + mantissa.translate(_INVERT) + tail
    return b"\x03" + mantissa + tail


def _unorder_decimal(buf: bytes, pos: int) -> tuple[bytes, int]:
    sign = buf[pos]
    if sign == 0x02:
        return _decimal_bytes(buf, pos + 1, 0, 0, "")
    if sign not in (0x01, 0x03):
        raise ValueError("bad decimal sign")
    body = buf[pos + 1:]
    if sign == 0x01:
        body = body.translate(_INVERT)
    exponent, p = _unorder_int(body, 0)
    end = body.index(b"\x00", p)
    digits = body[p:end].decode("ascii")
    if not digits.isdigit() or len(digits) > MAX_DECIMAL_DIGITS:
        raise ValueError("bad decimal digits")
    return _decimal_bytes(buf, pos + 1 + end + 1, -1 if sign == 0x01 else 1, exponent, digits)


def _decimal_bytes(buf: bytes, pos: int, sign: int, exponent: int,
                   digits: str) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise IndexError("truncated")
    scale = int.from_bytes(buf[pos:pos + 4], "big") - 2**31
    zeros = exponent - len(digits) + scale
    if sign and not 0 <= zeros <= MAX_DECIMAL_DIGITS:
        raise ValueError("bad decimal exponent")
    unscaled = sign * int(digits) * 10**zeros if sign else 0
    return _INT32.pack(scale) + _varint_bytes(unscaled), pos + 4


# --------------------------------------------------------------------------- native codecs


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one native type is written, read, checked and ordered (non-empty values only)."""

    to_bytes: Callable[[Any], bytes]
    from_bytes: Callable[[bytes], Any]
    check: Callable[[bytes], None]  # raises InvalidRequest
    order: Callable[[bytes], bytes]  # comparable body of checked bytes
    unorder: Callable[[bytes, int], tuple[bytes, int]]  # body at pos -> (bytes, next pos)


def _wrong(name: str, value: Any, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid {name} value {value!r}: expected {expected}")


def _check_size(name: str, *sizes: int) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        if len(data) not in sizes:
            want = " or ".join(map(str, sizes))
            raise InvalidRequest(f"Invalid {name} value: expected {want} bytes, got {len(data)}")
    return check


def _int_codec(name: str, width: int) -> _Codec:
    lo, hi = -(1 << (8 * width - 1)), (1 << (8 * width - 1)) - 1

    def to_bytes(v: Any) -> bytes:
        if not isinstance(v, int):
            raise _wrong(name, v, "an int")
        if not lo <= v <= hi:
            raise InvalidRequest(f"Invalid {name} value {v}: out of range [{lo}, {hi}]")
        return v.to_bytes(width, "big", signed=True)
    return _Codec(to_bytes, lambda d: int.from_bytes(d, "big", signed=True),
                  _check_size(name, width), _flip_sign, _unorder_fixed(width))


def _float_codec(name: str, width: int) -> _Codec:
    fmt = struct.Struct(">f" if width == 4 else ">d")

    def to_bytes(v: Any) -> bytes:
        if not isinstance(v, (int, float)):
            raise _wrong(name, v, "a float")
        try:
            return fmt.pack(v)
        except (OverflowError, struct.error):
            raise InvalidRequest(f"Invalid {name} value {v!r}: out of range") from None
    return _Codec(to_bytes, lambda d: fmt.unpack(d)[0], _check_size(name, width),
                  _order_float(width), _unorder_float(width))


def _bytes_codec(to_bytes: Callable[[Any], bytes], from_bytes: Callable[[bytes], Any],
                 check: Callable[[bytes], None]) -> _Codec:
    """Types ordered as unsigned bytes (text, ascii, blob, inet, duration)."""
    return _Codec(to_bytes, from_bytes, check, _order_escaped, _unorder_escaped)


def _text_to_bytes(v: Any) -> bytes:
    if not isinstance(v, str):
        raise _wrong("text", v, "a str")
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRequest(f"Invalid text value: {e}") from None


def _check_utf8(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRequest(f"Invalid UTF-8 bytes for text: {e}") from None


def _ascii_to_bytes(v: Any) -> bytes:
    if not isinstance(v, str) or not v.isascii():
        raise _wrong("ascii", v, "a str of ASCII characters")
    return v.encode("ascii")


def _check_ascii(data: bytes) -> None:
    if not data.isascii():
        raise InvalidRequest("Invalid byte for ascii: non-ASCII byte in value")


def _blob_to_bytes(v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise _wrong("blob", v, "bytes")
    return bytes(v)


def _boolean_codec() -> _Codec:
    def to_bytes(v: Any) -> bytes:
        if not isinstance(v, int):
            raise _wrong("boolean", v, "a bool")
        return b"\x01" if v else b"\x00"
    return _Codec(to_bytes, lambda d: d[0] != 0, _check_size("boolean", 1),
                  lambda d: b"\x01" if d[0] else b"\x00", _unorder_bytes(1))


def _unorder_bytes(width: int) -> Callable[[bytes, int], tuple[bytes, int]]:
    def unorder(buf: bytes, pos: int) -> tuple[bytes, int]:
        if pos + width > len(buf):
            raise IndexError("truncated")
        return buf[pos:pos + width], pos + width
    return unorder


def _decimal_to_bytes(v: Any) -> bytes:
    try:
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            v = Decimal(v)
        if not isinstance(v, Decimal) or not v.is_finite():
            raise _wrong("decimal", v, "a finite Decimal")
        sign, digits, exponent = v.as_tuple()
        unscaled = int("".join(map(str, digits)))
    except (ArithmeticError, ValueError):
        raise _wrong("decimal", v,
                     f"a finite Decimal of at most {MAX_DECIMAL_DIGITS} digits") from None
    if not -INT32_MAX - 1 <= -exponent <= INT32_MAX:
        raise InvalidRequest(f"Invalid decimal value {v}: scale out of int32 range")
    return _INT32.pack(-exponent) + _varint_bytes(-unscaled if sign else unscaled)


def _decimal_from_bytes(data: bytes) -> Decimal:
    scale = _INT32.unpack_from(data)[0]
    try:
        return Decimal("%de%d" % (int.from_bytes(data[4:], "big", signed=True), -scale))
    except ValueError:
        raise InvalidRequest(f"decimal with more than {MAX_DECIMAL_DIGITS} digits") from None


def _check_decimal(data: bytes) -> None:
    if len(data) < 5:
        raise InvalidRequest(f"Invalid decimal value: expected at least 5 bytes, got {len(data)}")


def _varint_to_bytes(v: Any) -> bytes:
    if not isinstance(v, int):
        raise _wrong("varint", v, "an int")
    return _varint_bytes(v)


def _uuid_to_bytes(name: str, version: int | None) -> Callable[[Any], bytes]:
    def to_bytes(v: Any) -> bytes:
        if not isinstance(v, uuid.UUID):
            raise _wrong(name, v, "a uuid.UUID")
        if version is not None and v.bytes[6] >> 4 != version:  # the nibble, as Cassandra checks
            raise InvalidRequest(f"Invalid {name} value {v}: not a time-based (version 1) UUID")
        return v.bytes
    return to_bytes


def _check_timeuuid(data: bytes) -> None:
    _check_size("timeuuid", 16)(data)
    if data[6] >> 4 != 1:
        raise InvalidRequest("Invalid version for TimeUUID type.")


_EPOCH = datetime.datetime(1970, 1, 1)


def _timestamp_to_bytes(v: Any) -> bytes:
    """As the driver's DateType.serialize (same float arithmetic, so the same bytes)."""
    if isinstance(v, datetime.datetime):
        ms = int(calendar.timegm(v.utctimetuple()) * 1e3 + v.microsecond / 1e3)
    elif isinstance(v, datetime.date):
        ms = int(calendar.timegm(v.timetuple()) * 1e3)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        ms = int(v)
    else:
        raise _wrong("timestamp", v, "a datetime, date or int milliseconds")
    if not -2**63 <= ms < 2**63:
        raise InvalidRequest(f"Invalid timestamp value {v!r}: out of range")
    return ms.to_bytes(8, "big", signed=True)


def _timestamp_from_bytes(data: bytes) -> datetime.datetime | int:
    """A naive UTC datetime, as the driver; the int milliseconds when datetime cannot hold it."""
    ms = int.from_bytes(data, "big", signed=True)
    try:
        return _EPOCH + datetime.timedelta(milliseconds=ms)
    except OverflowError:
        return ms


_DATE_EPOCH_DAYS = 2**31  # date is uint32 days with 1970-01-01 at 2**31


def _date_to_bytes(v: Any) -> bytes:
    """As the driver: a bare int is the raw uint32 (already offset); else days from epoch."""
    try:
        if isinstance(v, int) and not isinstance(v, bool):
            raw = v
        else:
            date = v if isinstance(v, driver_util.Date) else driver_util.Date(v)
            days = date.days_from_epoch
            raw = days + _DATE_EPOCH_DAYS
    except (TypeError, ValueError, IndexError):
        raise _wrong("date", v, "a date, cassandra.util.Date, 'YYYY-MM-DD' or raw uint32") from None
    if not 0 <= raw < 2**32:
        raise InvalidRequest(f"Invalid date value {v!r}: out of range")
    return raw.to_bytes(4, "big")


def _date_from_bytes(data: bytes) -> driver_util.Date:
    return driver_util.Date(int.from_bytes(data, "big") - _DATE_EPOCH_DAYS)


_NANOS_PER_DAY = 86_400 * 10**9


def _time_from_bytes(data: bytes) -> driver_util.Time:
    return driver_util.Time(int.from_bytes(data, "big", signed=True))


def _time_to_bytes(v: Any) -> bytes:
    try:
        ns = (v if isinstance(v, driver_util.Time) else driver_util.Time(v)).nanosecond_time
    except (TypeError, ValueError):
        raise _wrong("time", v,
                     "a time, cassandra.util.Time, 'HH:MM:SS[.fffffffff]' or int ns") from None
    if not 0 <= ns < _NANOS_PER_DAY:
        raise InvalidRequest(f"Invalid time value {v!r}: out of range")
    return ns.to_bytes(8, "big", signed=True)


def _check_time(data: bytes) -> None:
    _check_size("time", 8)(data)
    if not 0 <= int.from_bytes(data, "big", signed=True) < _NANOS_PER_DAY:
        raise InvalidRequest("Invalid time value: nanoseconds out of [0, 86400e9)")


def _inet_to_bytes(v: Any) -> bytes:
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return v.packed
    if isinstance(v, str):
        try:
            return ipaddress.ip_address(v).packed
        except ValueError:
            pass
    raise _wrong("inet", v, "an IPv4 or IPv6 address")


def _inet_from_bytes(data: bytes) -> str:
    return str(ipaddress.ip_address(data))


def _duration_to_bytes(v: Any) -> bytes:
    months, days, nanos = (getattr(v, f, None) for f in ("months", "days", "nanoseconds"))
    if not all(isinstance(x, int) for x in (months, days, nanos)):
        raise _wrong("duration", v, "a cassandra.util.Duration")
    _check_duration_parts(months, days, nanos)
    return _vint(months) + _vint(days) + _vint(nanos)


def _check_duration_parts(months: int, days: int, nanos: int) -> None:
    if not (-2**31 <= months < 2**31 and -2**31 <= days < 2**31 and -2**63 <= nanos < 2**63):
        raise InvalidRequest("Invalid duration: months and days must fit int32, nanoseconds int64")
    if not (min(months, days, nanos) >= 0 or max(months, days, nanos) <= 0):
        raise InvalidRequest("Invalid duration: months, days and nanoseconds "
                             "must all have the same sign")


def _duration_from_bytes(data: bytes) -> driver_util.Duration:
    return driver_util.Duration(*_read_duration(data))


def _read_duration(data: bytes) -> tuple[int, int, int]:
    try:
        months, pos = _read_vint(data, 0)
        days, pos = _read_vint(data, pos)
        nanos, pos = _read_vint(data, pos)
    except (IndexError, ValueError):
        raise InvalidRequest("Invalid duration value: truncated") from None
    if pos != len(data):
        raise InvalidRequest("Invalid duration value: unexpected bytes after 3 vints")
    _check_duration_parts(months, days, nanos)
    return months, days, nanos


def _build_codecs() -> dict[str, _Codec]:
    timestamp = _Codec(_timestamp_to_bytes, _timestamp_from_bytes, _check_size("timestamp", 8),
                       _flip_sign, _unorder_fixed(8))
    return {
        "ascii": _bytes_codec(_ascii_to_bytes, lambda d: d.decode("ascii"), _check_ascii),
        "bigint": _int_codec("bigint", 8),
        "blob": _bytes_codec(_blob_to_bytes, bytes, lambda d: None),
        "boolean": _boolean_codec(),
        "counter": _int_codec("counter", 8),
        "date": _Codec(_date_to_bytes, _date_from_bytes, _check_size("date", 4),
                       bytes, _unorder_bytes(4)),
        "decimal": _Codec(_decimal_to_bytes, _decimal_from_bytes, _check_decimal,
                          _order_decimal, _unorder_decimal),
        "double": _float_codec("double", 8),
        "duration": _bytes_codec(_duration_to_bytes, _duration_from_bytes, _read_duration),
        "float": _float_codec("float", 4),
        "inet": _bytes_codec(_inet_to_bytes, _inet_from_bytes, _check_size("inet", 4, 16)),
        "int": _int_codec("int", 4),
        "smallint": _int_codec("smallint", 2),
        "text": _bytes_codec(_text_to_bytes, lambda d: d.decode("utf-8"), _check_utf8),
        "time": _Codec(_time_to_bytes, _time_from_bytes, _check_time, _flip_sign,
                       _unorder_fixed(8)),
        "timestamp": timestamp,
        "timeuuid": _Codec(_uuid_to_bytes("timeuuid", 1), lambda d: uuid.UUID(bytes=d),
                           _check_timeuuid, _order_timeuuid, _unorder_timeuuid),
        "tinyint": _int_codec("tinyint", 1),
        "uuid": _Codec(_uuid_to_bytes("uuid", None), lambda d: uuid.UUID(bytes=d),
                       _check_size("uuid", 16), _order_uuid, _unorder_uuid),
        "varint": _Codec(_varint_to_bytes, lambda d: int.from_bytes(d, "big", signed=True),
                         lambda d: None, _order_varint, _unorder_varint),
    }


_CODECS = _build_codecs()
assert set(_CODECS) == set(NATIVE_NAMES)
_EMPTY_AS_EMPTY = {"ascii": "", "text": "", "blob": b""}  # the driver reads other empties as None


# --------------------------------------------------------------------------- values


def serialize(t: CqlType, value: Any) -> bytes:
    """A Python value (driver conventions) -> its native protocol v4 bytes. Nulls are not
    values: a caller writes them as length -1. Inside tuples and UDTs, None is a null field."""
    if value is None:
        raise InvalidRequest(f"Invalid null value for {t.cql_name()}")
    if isinstance(t, NativeType):
        return _CODECS[t.name].to_bytes(value)
    if isinstance(t, (ListType, SetType)):
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise _wrong(t.cql_name(), value, "a list or set")
        items = [_element_bytes(t, t.element, v) for v in value]
        return _write_items(items, len(items))
    if isinstance(t, MapType):
        if not isinstance(value, Mapping) and not hasattr(value, "items"):
            raise _wrong(t.cql_name(), value, "a mapping")
        pairs = list(value.items())
        items = [b for k, v in pairs
                 for b in (_element_bytes(t, t.key, k), _element_bytes(t, t.value, v))]
        return _write_items(items, len(pairs))
    if isinstance(t, TupleType):
        if not isinstance(value, (tuple, list)) or len(value) > len(t.elements):
            raise _wrong(t.cql_name(), value, f"a tuple of at most {len(t.elements)} items")
        return _write_fields([None if v is None else serialize(s, v)
                              for s, v in zip(t.elements, value)])
    assert isinstance(t, UserType), t
    fields = _udt_field_values(t, value)
    return _write_fields([None if v is None else serialize(s, v)
                          for s, v in zip(t.field_types, fields)])


def _element_bytes(t: CqlType, element_type: CqlType, v: Any) -> bytes:
    if v is None:
        raise InvalidRequest(f"null is not supported inside collections ({t.cql_name()})")
    return serialize(element_type, v)


def _udt_field_values(t: UserType, value: Any) -> list:
    """A UDT value may be a mapping by field name, a tuple/list by position, or an object
    with the fields as attributes (a namedtuple, the driver's mapped classes)."""
    n = len(t.field_names)
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in t.field_names)
        if unknown:
            raise InvalidRequest(f"Unknown field(s) {', '.join(unknown)} in value of type {t.name}")
        return [value.get(f) for f in t.field_names]
    if isinstance(value, (tuple, list)):
        if len(value) > n:
            raise _wrong(t.name, value, f"at most {n} fields")
        return list(value) + [None] * (n - len(value))
    return [getattr(value, f, None) for f in t.field_names]


def deserialize(t: CqlType, data: bytes) -> Any:
    """Bytes -> Python value, as the driver would return it: empty bytes are '' / b'' for
    text, ascii and blob and None otherwise; sets are `cassandra.util.SortedSet`, maps
    `MapValue` (a cassandra.util.OrderedMap), UDTs namedtuples. Raises InvalidRequest on
    malformed bytes."""
    if not data:
        return _EMPTY_AS_EMPTY.get(t.name) if isinstance(t, NativeType) else None
    if isinstance(t, NativeType):
        codec = _CODECS[t.name]
        codec.check(data)
        return codec.from_bytes(data)
    if isinstance(t, ListType):
        return [deserialize(t.element, e) for e in _read_collection(t, data, 1)]
    if isinstance(t, SetType):
        return driver_util.SortedSet(deserialize(t.element, e)
                                     for e in _read_collection(t, data, 1))
    if isinstance(t, MapType):
        items = _read_collection(t, data, 2)
        return MapValue(t.key, [(deserialize(t.key, k), deserialize(t.value, v))
                                for k, v in zip(items[::2], items[1::2])])
    types = subtypes(t)
    fields = _read_fields(t, data, len(types))
    values = [None if f is None else deserialize(s, f) for s, f in zip(types, fields)]
    values += [None] * (len(types) - len(values))
    if isinstance(t, UserType):
        cls = _udt_class(t.name, t.field_names)
        return cls(*values) if cls is not None else tuple(values)
    return tuple(values)


class MapValue(driver_util.OrderedMap):
    """A deserialized map: the driver's OrderedMap (keeps wire order, allows unhashable keys),
    indexed by our serialization of the key instead of pickle (UDT namedtuples don't pickle)."""

    def __init__(self, key_type: CqlType, items: list[tuple[Any, Any]]) -> None:
        self._key_type = key_type
        super().__init__(items)

    def _serialize_key(self, key: Any) -> bytes:
        return serialize(self._key_type, key)


@functools.lru_cache(maxsize=256)
def _udt_class(name: str, field_names: tuple[str, ...]) -> type | None:
    typename = name if name.isidentifier() else "udt"
    try:
        return namedtuple(typename, field_names, rename=True)
    except ValueError:
        return None


def validate(t: CqlType, data: bytes) -> None:
    """Check bytes from a client are a well-formed value of t; raise InvalidRequest if not.
    Empty bytes (the 'empty value') are accepted for every type, as Cassandra mostly does."""
    if not data:
        return
    if isinstance(t, NativeType):
        _CODECS[t.name].check(data)
    elif isinstance(t, (ListType, SetType)):
        for e in _read_collection(t, data, 1):
            validate(t.element, e)
    elif isinstance(t, MapType):
        items = _read_collection(t, data, 2)
        for k, v in zip(items[::2], items[1::2]):
            validate(t.key, k)
            validate(t.value, v)
    else:
        types = subtypes(t)
        for s, f in zip(types, _read_fields(t, data, len(types))):
            if f is not None:
                validate(s, f)


# --------------------------------------------------------------------------- comparable


def comparable(t: CqlType, data: bytes, descending: bool = False) -> bytes:
    """Serialized bytes -> order-preserving, self-delimiting bytes (see the module doc).
    Validates on the way: malformed data raises InvalidRequest."""
    encoded = _field(t, data)
    return encoded.translate(_INVERT) if descending else encoded


def _field(t: CqlType, data: bytes | None) -> bytes:
    if data is None:
        return b"\x01"
    if not data:
        return b"\x02"
    return b"\x03" + _body(t, data)


def _body(t: CqlType, data: bytes) -> bytes:
    if isinstance(t, NativeType):
        codec = _CODECS[t.name]
        codec.check(data)
        return codec.order(data)
    if isinstance(t, ListType):
        return b"".join(_field(t.element, e) for e in _read_collection(t, data, 1)) + b"\x00"
    if isinstance(t, SetType):
        elements = {_field(t.element, e) for e in _read_collection(t, data, 1)}
        return b"".join(sorted(elements)) + b"\x00"
    if isinstance(t, MapType):
        items = _read_collection(t, data, 2)
        entries = {_field(t.key, k): _field(t.value, v) for k, v in zip(items[::2], items[1::2])}
        return b"".join(k + entries[k] for k in sorted(entries)) + b"\x00"
    types = subtypes(t)
    fields = _read_fields(t, data, len(types))
    while fields and fields[-1] is None:
        fields.pop()
    return b"".join(_field(s, f) for s, f in zip(types, fields)) + b"\x00"


def _unfield(t: CqlType, buf: bytes, pos: int) -> tuple[bytes | None, int]:
    header = buf[pos]
    if header == 0x01:
        return None, pos + 1
    if header == 0x02:
        return b"", pos + 1
    if header != 0x03:
        raise ValueError(f"bad field header {header:#x}")
    return _unbody(t, buf, pos + 1)


def _unbody(t: CqlType, buf: bytes, pos: int) -> tuple[bytes, int]:
    if isinstance(t, NativeType):
        return _CODECS[t.name].unorder(buf, pos)
    items: list[bytes | None] = []
    if isinstance(t, (ListType, SetType, MapType)):
        per_item = subtypes(t) if isinstance(t, MapType) else (t.element,)
        while buf[pos] != 0:
            for s in per_item:
                item, pos = _unfield(s, buf, pos)
                if item is None:
                    raise ValueError("null inside a collection")
                items.append(item)
        return _write_items(items, len(items) // len(per_item)), pos + 1  # type: ignore[arg-type]
    types = subtypes(t)
    while buf[pos] != 0:
        if len(items) == len(types):
            raise ValueError("too many tuple fields")
        item, pos = _unfield(types[len(items)], buf, pos)
        items.append(item)
    return _write_fields(items + [None] * (len(types) - len(items))), pos + 1


def encode_ckey(types: list[tuple[CqlType, bool]], values: list[bytes]) -> bytes:
    """Clustering key from serialized values: `types` is [(type, descending)] for every
    clustering column (TableDef.ckey_types()); `values` may be a prefix of them."""
    if len(values) > len(types):
        raise InvalidRequest(f"Expected at most {len(types)} clustering values, got {len(values)}")
    parts = []
    for (t, descending), value in zip(types, values):
        if value is None:
            raise InvalidRequest("Invalid null value for clustering column")
        parts.append(comparable(t, value, descending))
    return b"".join(parts)


def decode_ckey(types: list[tuple[CqlType, bool]], ckey: bytes) -> list[bytes]:
    """Serialized values back from a ckey (or a ckey prefix). Values come back canonical (see
    the module doc). Raises ProtocolError when ckey is not such an encoding."""
    out, pos = [], 0
    try:
        for t, descending in types:
            if pos == len(ckey):
                break
            if descending:
                value, used = _unfield(t, ckey[pos:].translate(_INVERT), 0)
                pos += used
            else:
                value, pos = _unfield(t, ckey, pos)
            if value is None:
                raise ValueError("null clustering value")
            out.append(value)
    except (IndexError, ValueError, InvalidRequest) as e:
        raise ProtocolError(f"malformed clustering key {ckey.hex()}: {e}") from None
    if pos != len(ckey):
        raise ProtocolError(f"malformed clustering key {ckey.hex()}: "
                            f"{len(ckey) - pos} bytes left over")
    return out


def compare(t: CqlType, a: bytes, b: bytes) -> int:
    """Cassandra's comparison of two serialized values of t: -1, 0 or 1."""
    ca, cb = comparable(t, a), comparable(t, b)
    return (ca > cb) - (ca < cb)


def canonical(t: CqlType, data: bytes) -> bytes:
    """The one serialized form of a value among those Cassandra's comparator calls equal
    (frozen sets sorted and deduplicated, maps sorted by key, booleans 0/1 ...)."""
    return decode_ckey([(t, False)], comparable(t, data))[0]


# --------------------------------------------------------------------------- cell paths


def set_element_path(element_type: CqlType, element: bytes) -> bytes:
    return comparable(element_type, element)


def map_entry_path(key_type: CqlType, key: bytes) -> bytes:
    return comparable(key_type, key)


def path_element(element_type: CqlType, path: bytes) -> bytes:
    """The serialized set element or map key a path stands for (ProtocolError if malformed)."""
    return decode_ckey([(element_type, False)], path)[0]


def udt_field_path(index: int) -> bytes:
    return index.to_bytes(2, "big")


def udt_field_index(path: bytes) -> int:
    if len(path) != 2:
        raise ProtocolError(f"malformed UDT field path {path.hex()}")
    return int.from_bytes(path, "big")


# ---- multi-cell values: whole serialized values <-> their elements ------------------------


def split_collection(t: CqlType, data: bytes) -> list:
    """A serialized list/set value -> its element bytes; a map -> [(key, value)]; a UDT ->
    its field bytes (None for null fields), padded to the type's field count."""
    if isinstance(t, MapType):
        items = _read_collection(t, data, 2)
        return list(zip(items[0::2], items[1::2]))
    if isinstance(t, (ListType, SetType)):
        return _read_collection(t, data, 1)
    if isinstance(t, UserType):
        fields = _read_fields(t, data, len(t.field_types))
        return fields + [None] * (len(t.field_types) - len(fields))
    raise InvalidRequest(f"{t.cql_name()} is not a collection")


def join_collection(t: CqlType, elements: list) -> bytes:
    """The inverse of split_collection: elements (as it returns them) -> a serialized value."""
    if isinstance(t, MapType):
        return _write_items([b for kv in elements for b in kv], len(elements))
    if isinstance(t, (ListType, SetType)):
        return _write_items(list(elements), len(elements))
    if isinstance(t, UserType):
        fields = list(elements)
        while fields and fields[-1] is None:
            fields.pop()
        return _write_fields(fields)
    raise InvalidRequest(f"{t.cql_name()} is not a collection")
