"""Terms to serialized values: a literal, a bind marker, a collection literal or a function call
(now(), uuid(), toTimestamp(now()) ...) evaluated for the CQL type of the place it goes
(its *receiver*), as Cassandra's Term.Raw.prepare/bind do.

Owns: literal-to-type conversion rules (an INTEGER literal fits int, bigint, varint,
decimal, float, double, timestamp ...; a STRING literal fits text, ascii, timestamp, date,
time, inet ...), collection and UDT literals, and the handful of term functions. Bound
values arrive already serialized and are only validated. Errors are InvalidRequest with
Cassandra's wording where it has one.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import random
import re
import uuid
from dataclasses import dataclass

from agora.core.errors import InvalidRequest
from agora.core.schema import types as T
from agora.cql import ast
from agora.cql.requests import UNSET

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@dataclass
class TermContext:
    """What evaluating terms needs besides the term: bound values and the statement's clock."""

    values: list | None  # bound values by marker index (None: nothing bound)
    now_ms: int
    rng: random.Random

    def bound(self, marker: ast.BindMarker):
        if self.values is None or marker.index >= len(self.values):
            raise InvalidRequest(f"There were {0 if self.values is None else len(self.values)} markers(?) "
                                 f"in CQL but not enough values were bound")
        return self.values[marker.index]


def _native(t: T.CqlType) -> str | None:
    return t.name if isinstance(t, T.NativeType) else None


def _timestamp_from_string(text: str) -> datetime.datetime:
    s = text.strip().replace(" ", "T", 1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    for suffix_len in (5,):  # '+0000' -> '+00:00' (Cassandra's accepted format)
        if len(s) > suffix_len and s[-suffix_len] in "+-" and s[-suffix_len + 1:].isdigit():
            s = s[:-2] + ":" + s[-2:]
    try:
        value = datetime.datetime.fromisoformat(s)
    except ValueError:
        raise InvalidRequest(f"Unable to parse a date/time from '{text}'") from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


_DATE_RE = re.compile(r"([+-]?\d{1,7})-(\d{1,2})-(\d{1,2})")
_TIME_RE = re.compile(r"(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,9}))?)?")
_DATE_EPOCH_DAYS = 2**31  # the date type's uint32 puts 1970-01-01 here


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date, for every year the date type holds
    (Python's datetime.date stops at years 1..9999; Cassandra's date spans about +-5.8M years)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _date_from_string(text: str) -> int:
    """'[-]YYYY-MM-DD' as the raw uint32 of the date type (what types.serialize takes for ints)."""
    m = _DATE_RE.fullmatch(text.strip())
    bad = InvalidRequest(f"Unable to coerce '{text}' to a formatted date (long)")
    if m is None:
        raise bad
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise bad
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    month_days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    if day > month_days:
        raise bad
    raw = _days_from_civil(year, month, day) + _DATE_EPOCH_DAYS
    if not 0 <= raw < 2**32:
        raise InvalidRequest(f"Unable to coerce '{text}' to a formatted date (long): out of range")
    return raw


def _time_from_string(text: str) -> int:
    """'HH:MM[:SS[.fffffffff]]' as nanoseconds since midnight (up to 9 fraction digits kept)."""
    m = _TIME_RE.fullmatch(text.strip())
    if m is None:
        raise InvalidRequest(f"Unable to coerce '{text}' to a formatted time (long)")
    hours, minutes, seconds = int(m[1]), int(m[2]), int(m[3] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise InvalidRequest(f"Unable to coerce '{text}' to a formatted time (long): out of range")
    nanos = int((m[4] or "").ljust(9, "0"))
    return ((hours * 60 + minutes) * 60 + seconds) * 10**9 + nanos


def literal_value(lit: ast.Literal, t: T.CqlType):
    """A literal's Python value for type t (what types.serialize takes), or InvalidRequest."""
    name = _native(t)
    kind = lit.kind
    K = ast.LiteralKind
    bad = InvalidRequest(f"Invalid {kind.value} constant ({lit.text}) for \"{t.cql_name()}\" of type {t.cql_name()}")
    if kind == K.STRING:
        if name in ("text", "ascii", "varchar"):
            return lit.value
        if name == "timestamp":
            return _timestamp_from_string(lit.value)
        if name == "date":
            return _date_from_string(lit.value)
        if name == "time":
            return _time_from_string(lit.value)
        if name == "inet":
            try:
                return str(ipaddress.ip_address(lit.value))
            except ValueError:
                raise InvalidRequest(f"Unable to make inet address from '{lit.value}'") from None
        if name in ("uuid", "timeuuid"):
            try:
                return uuid.UUID(lit.value)
            except ValueError:
                raise bad from None
        if name in ("decimal", "varint", "int", "bigint", "smallint", "tinyint", "double", "float"):
            raise bad
        raise bad
    if kind == K.INTEGER:
        if name in ("int", "bigint", "smallint", "tinyint", "varint", "counter"):
            return lit.value
        if name == "decimal":
            return decimal.Decimal(lit.text)
        if name in ("double", "float"):
            return float(lit.value)
        if name == "timestamp":
            return _EPOCH + datetime.timedelta(milliseconds=lit.value)
        if name == "date":
            return lit.value
        if name == "time":
            return lit.value
        raise bad
    if kind == K.FLOAT:
        if name in ("double", "float"):
            return float(lit.value)
        if name == "decimal":
            return decimal.Decimal(lit.text)
        raise bad
    if kind == K.BOOLEAN:
        if name == "boolean":
            return lit.value
        raise bad
    if kind == K.UUID:
        if name in ("uuid", "timeuuid"):
            return lit.value
        raise bad
    if kind == K.HEX:
        if name == "blob":
            return lit.value
        raise bad
    if kind == K.DURATION:
        if name == "duration":
            return lit.value
        raise bad
    raise bad


def evaluate(term, t: T.CqlType, ctx: TermContext):
    """Serialized bytes of `term` as a value of type t; None for null; UNSET for an unset
    bound value."""
    if isinstance(term, ast.BindMarker):
        value = ctx.bound(term)
        if value is None or value is UNSET:
            return value
        T.validate(t, value)
        return value
    if isinstance(term, ast.Literal):
        if term.kind == ast.LiteralKind.NULL:
            return None
        return T.serialize(t, literal_value(term, t))
    if isinstance(term, ast.TypeHint):
        return evaluate(term.term, t, ctx)
    if isinstance(term, ast.FunctionCall):
        return _function(term, t, ctx)
    if isinstance(term, (ast.ListLiteral, ast.SetLiteral, ast.MapLiteral, ast.TupleLiteral, ast.UdtLiteral)):
        return _collection(term, t, ctx)
    raise InvalidRequest(f"Unsupported term {type(term).__name__}")


def _element_types(term, t: T.CqlType):
    """A list literal only fits a list and a set literal only a set (Cassandra's
    Lists.Literal / Sets.Literal validateAssignableTo)."""
    if isinstance(term, ast.ListLiteral) and isinstance(t, T.ListType):
        return t.element
    if isinstance(term, ast.SetLiteral) and isinstance(t, T.SetType):
        return t.element
    raise InvalidRequest(f"Invalid {type(term).__name__.removesuffix('Literal').lower()} literal for type {t.cql_name()}")


def collection_elements(term, t: T.CqlType, ctx: TermContext) -> list:
    """The elements of a collection term as split_collection would return them (set elements
    deduplicated and in comparator order, map keys likewise)."""
    if isinstance(term, ast.BindMarker):
        value = evaluate(term, t, ctx)
        return [] if value is None or value is UNSET else T.split_collection(t, value)
    if isinstance(term, ast.MapLiteral) or (isinstance(term, ast.SetLiteral) and not term.items and isinstance(t, T.MapType)):
        if not isinstance(t, T.MapType):
            raise InvalidRequest(f"Invalid map literal for type {t.cql_name()}")
        entries = {}
        for k, v in getattr(term, "entries", ()):
            kb, vb = evaluate(k, t.key, ctx), evaluate(v, t.value, ctx)
            if kb is None or vb is None:
                raise InvalidRequest("null is not supported inside collections")
            entries[T.comparable(t.key, kb)] = (kb, vb)
        return [entries[k] for k in sorted(entries)]
    if isinstance(term, ast.UdtLiteral):
        if not isinstance(t, T.UserType):
            raise InvalidRequest(f"Invalid user type literal for type {t.cql_name()}")
        fields = dict(term.fields)
        unknown = sorted(set(fields) - set(t.field_names))
        if unknown:
            raise InvalidRequest(f"Unknown field '{unknown[0]}' in value of user defined type {t.name}")
        return [None if f not in fields else evaluate(fields[f], ft, ctx)
                for f, ft in zip(t.field_names, t.field_types)]
    elem_t = _element_types(term, t)
    out = [evaluate(item, elem_t, ctx) for item in term.items]
    if any(v is None for v in out):
        raise InvalidRequest("null is not supported inside collections")
    if isinstance(t, T.SetType):
        unique = {T.comparable(elem_t, v): v for v in out}
        out = [unique[k] for k in sorted(unique)]
    return out


def _collection(term, t: T.CqlType, ctx: TermContext) -> bytes:
    if isinstance(term, ast.TupleLiteral):
        if not isinstance(t, T.TupleType):
            raise InvalidRequest(f"Invalid tuple literal for type {t.cql_name()}")
        if len(term.items) > len(t.elements):
            raise InvalidRequest(f"Invalid tuple literal: too many elements. Type {t.cql_name()} "
                                 f"expects {len(t.elements)} but got {len(term.items)}")
        fields = [evaluate(item, et, ctx) for item, et in zip(term.items, t.elements)]
        return T.serialize(t, tuple(None if f is None else T.deserialize(et, f)
                                    for f, et in zip(fields, t.elements)))
    return T.join_collection(t, collection_elements(term, t, ctx))


def _now_timeuuid(ctx: TermContext) -> uuid.UUID:
    ts_100ns = ctx.now_ms * 10_000 + 0x01B21DD213814000
    clock_seq = ctx.rng.getrandbits(14)
    node = ctx.rng.getrandbits(48) | 0x010000000000
    return uuid.UUID(fields=(ts_100ns & 0xFFFFFFFF, (ts_100ns >> 32) & 0xFFFF,
                             ((ts_100ns >> 48) & 0x0FFF) | 0x1000, (clock_seq >> 8) | 0x80,
                             clock_seq & 0xFF, node))


def _function(call: ast.FunctionCall, t: T.CqlType, ctx: TermContext) -> bytes:
    name = call.name.lower()
    now = _EPOCH + datetime.timedelta(milliseconds=ctx.now_ms)
    if name == "now" and not call.args:
        return T.serialize(t, _now_timeuuid(ctx))
    if name == "uuid" and not call.args:
        return T.serialize(t, uuid.UUID(int=ctx.rng.getrandbits(128), version=4))
    if name in ("currenttimestamp",) or (name == "totimestamp" and _is_now(call)):
        return T.serialize(t, now)
    if name in ("currentdate",) or (name == "todate" and _is_now(call)):
        return T.serialize(t, now.date())
    if name in ("currenttime",):
        return T.serialize(t, now.time())
    if name in ("currenttimeuuid",):
        return T.serialize(t, _now_timeuuid(ctx))
    if name in ("tounixtimestamp",) and _is_now(call):
        return T.serialize(t, ctx.now_ms)
    raise InvalidRequest(f"Unknown function '{call.name}' in this context")


def _is_now(call: ast.FunctionCall) -> bool:
    return len(call.args) == 1 and isinstance(call.args[0], ast.FunctionCall) and call.args[0].name == "now"


def int_value(term, ctx: TermContext, what: str) -> int | None:
    """LIMIT, TTL, TIMESTAMP and the like: an int (or bigint for timestamps) term."""
    t = T.BIGINT if what == "timestamp" else T.INT
    raw = evaluate(term, t, ctx)
    if raw is None or raw is UNSET:
        return None
    return T.deserialize(t, raw)
