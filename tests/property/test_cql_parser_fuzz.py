"""The CQL parser under random input: garbage and mutated statements only ever raise
CqlSyntaxError or InvalidRequest; literals and identifiers written by a client come back as
the values they denote; bind markers are numbered in order of appearance."""

from __future__ import annotations

import math
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.core.errors import CqlSyntaxError, InvalidRequest
from agora.cql.ast import BindMarker, ColumnRef, Literal, LiteralKind
from agora.cql.parser import _parse, parse

SEEDS = [
    "SELECT * FROM system.local WHERE key='local'",
    "SELECT host_id, peer, schema_version FROM system.peers_v2",
    "SELECT * FROM system_schema.functions WHERE keyspace_name='ks' AND argument_types=['int']",
    "SELECT JSON DISTINCT k, count(*), writetime(v) AS w, CAST(v AS text) FROM ks.t "
    "WHERE k IN (1, 2) AND (c1, c2) > (?, :x) AND token(k) > -5 AND m CONTAINS KEY 'a' "
    "GROUP BY k ORDER BY c DESC PER PARTITION LIMIT 2 LIMIT ? ALLOW FILTERING",
    "INSERT INTO t (a, b, c, d) VALUES (0xcafe, {'k': [1.5e3, NaN]}, (1, 'x'), {f: now()}) "
    "IF NOT EXISTS USING TTL 5 AND TIMESTAMP ?",
    "INSERT INTO t JSON '{\"a\": 1}' DEFAULT UNSET",
    "UPDATE t USING TTL ? SET l = l + [1], l = [0] + l, m['k'] = 'v', u.f = 1h30m, c = c -5 "
    "WHERE k = 550e8400-e29b-41d4-a716-446655440000 IF v = null AND m['x'] IN ?",
    "DELETE a, m['k'], u.f FROM ks.t USING TIMESTAMP 1 WHERE k = (int) ? IF EXISTS",
    "BEGIN UNLOGGED BATCH USING TIMESTAMP 5 INSERT INTO t (k) VALUES (?); "
    "DELETE FROM t WHERE k = 1; APPLY BATCH;",
    "CREATE TABLE IF NOT EXISTS ks.t (k int, c text, v frozen<map<text, list<int>>>, s int "
    "STATIC, PRIMARY KEY ((k), c)) WITH CLUSTERING ORDER BY (c DESC) AND comment = 'x' "
    "AND compaction = {'class': 'X', 'n': 4}",
    "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', "
    "'replication_factor': 1} AND durable_writes = true",
    "ALTER TABLE t ADD (x int, y set<text>)",
    "ALTER TYPE ks.addr RENAME a TO b AND c TO d",
    "CREATE CUSTOM INDEX i ON t (keys(m)) USING 'c' WITH OPTIONS = {'a': 'b'}",
    "DESCRIBE FULL SCHEMA",
    "DESC TABLE ks.t WITH INTERNALS",
    "-- comment\nSELECT /* c */ \"Q\"\"x\" FROM t // end",
    "INSERT INTO t (a) VALUES ($$dollar ' string$$)",
]

ALPHABET = st.sampled_from(list("abcxyzSELCTFROMWHR_019hmsdP \n\t'\"$-/*();:,.?=<>!{}[]+@#é\x00")
                           + ["µ", "μ", "Μ", "ſ", "K", "İ", "٣", "\u00a0", "\u2028"])
EXPECTED = (CqlSyntaxError, InvalidRequest)
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _parses_or_refuses(text: str) -> None:
    try:
        _parse(text)
    except EXPECTED:
        pass


@FAST
@given(st.text(ALPHABET, max_size=80))
def test_garbage_only_raises_cql_errors(text):
    _parses_or_refuses(text)


@FAST
@given(st.text(max_size=60))
def test_any_unicode_only_raises_cql_errors(text):
    _parses_or_refuses(text)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "duplicate", "swap", "truncate"]))
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.text(ALPHABET, max_size=6)) + text[i:]
        elif kind == "duplicate":
            text = text[:i] + text[i:j] + text[i:]
        elif kind == "swap":
            text = text[:i] + text[j:] + text[i:j]
        else:
            text = text[:i]
    return text


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_statements_only_raise_cql_errors(text):
    _parses_or_refuses(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3), st.data())
def test_token_shuffles_only_raise_cql_errors(seeds, data):
    words = " ".join(seeds).split()
    shuffled = data.draw(st.permutations(words))
    _parses_or_refuses(" ".join(shuffled[:data.draw(st.integers(0, len(words)))]))


def test_seeds_parse():
    for text in SEEDS:
        parse(text)


# --------------------------------------------------------------------------- values


def _literal(text: str) -> Literal:
    term = parse(f"INSERT INTO t (a) VALUES ({text})").values[0]
    assert isinstance(term, Literal)
    return term


@FAST
@given(st.integers(-2**200, 2**200))
def test_integer_literals(n):
    assert _literal(str(n)) == Literal(LiteralKind.INTEGER, n, str(n))


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_literals(x):
    text = repr(x)
    if "e" not in text and "." not in text:
        text += ".0"
    literal = _literal(text)
    assert literal.kind is LiteralKind.FLOAT and literal.value == x and literal.text == text


@FAST
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_string_literals(s):
    assert _literal("'" + s.replace("'", "''") + "'").value == s
    if "$$" not in s and not s.endswith("$"):
        assert _literal("$$" + s + "$$").value == s


@FAST
@given(st.binary(max_size=40))
def test_blob_literals(b):
    assert _literal("0x" + b.hex()).value == b
    assert _literal("0X" + b.hex().upper()).value == b


@FAST
@given(st.uuids())
def test_uuid_literals(u):
    assert _literal(str(u)).value == u
    assert _literal(str(u).upper()).value == u
    assert isinstance(_literal(str(u)).value, uuid.UUID)


@FAST
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.booleans())
def test_duration_literals(h, m, ns, negative):
    sign = -1 if negative else 1
    literal = _literal(("-" if negative else "") + f"{h}h{m}m{ns}ns")
    assert literal.value == (0, 0, sign * ((h * 3600 + m * 60) * 10**9 + ns))


def test_special_floats():
    assert math.isnan(_literal("NaN").value)
    assert _literal("-Infinity").value == -math.inf


# --------------------------------------------------------------------------- identifiers


@FAST
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))
def test_quoted_identifiers_keep_their_text(name):
    quoted = '"' + name.replace('"', '""') + '"'
    s = parse(f"SELECT {quoted} FROM t")
    assert s.selectors[0].expr == ColumnRef(name)


@FAST
@given(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True))
def test_unquoted_identifiers_are_lowercased(name):
    s = parse(f"SELECT a FROM ks.{name} WHERE {name} = 1")
    assert s.table == name.lower()
    assert s.where[0].column == name.lower()


# --------------------------------------------------------------------------- bind markers


@FAST
@given(st.lists(st.one_of(st.just("?"), st.from_regex(r":[a-z][a-z0-9]{0,5}", fullmatch=True),
                          st.integers(0, 9).map(str)), min_size=1, max_size=30))
def test_markers_numbered_in_order_of_appearance(terms):
    s = parse("INSERT INTO t (" + ", ".join(f"c{i}" for i in range(len(terms)))
              + ") VALUES (" + ", ".join(terms) + ")")
    markers = [t for t in terms if not t.isdigit()]
    assert [m.index for m in s.bind_markers] == list(range(len(markers)))
    assert [m.name for m in s.bind_markers] == [None if m == "?" else m[1:] for m in markers]
    in_values = [v for v in s.values if isinstance(v, BindMarker)]
    assert tuple(in_values) == s.bind_markers
