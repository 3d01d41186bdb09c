"""CQL tokens: the lexer the LALR parser (grammar.lark) reads from.

Owns: splitting statement text into tokens and turning literal tokens into `ast.Literal`
values and bind markers into numbered `ast.BindMarker`s; keyword recognition; the nesting and
bind-marker limits. Deliberately does not know statement shapes (grammar.lark) or how trees
become AST nodes (parse_*.py rules).

Keywords are contextual: a word becomes the keyword terminal `_K_<WORD>` only where the
parser can take that keyword next, and an identifier everywhere else. So `SELECT key, type,
ttl FROM t WHERE token(k) > 0` works although those are CQL keywords, as Cassandra's
unreserved keywords do. Where a keyword and a name both fit (after SELECT, CONTAINS,
DESCRIBE, IF ...) the keyword wins unless only a name can be followed by the next token
(`SELECT json FROM t`). Words that are literals (true, false, null, NaN, Infinity, ISO
durations such as P1DT2H) become literals only where a literal can stand, and a ':' is a
named bind marker `:name` exactly where a term can start.

Where the rules come from: Cassandra 4/5 `Lexer.g` (identifiers, string and $$ literals,
comments, numbers, uuid, blob, duration tokens), `Duration.java` (duration units and their
order), `Constants.java` (literal kinds). Columns in positions are 0-based, as ANTLR reports
them in Cassandra's syntax errors.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

from agora.core.errors import CqlSyntaxError, InvalidRequest
from agora.cql.ast import BindMarker, Duration, Literal, LiteralKind
from agora.cql.parse_lalr import END, Tables, accepts, shifted

MAX_NESTING_DEPTH = 64  # open ( [ { at once; real statements nest 3 or 4, deeper is an attack
MAX_BIND_MARKERS = 65535  # values travel with a [short] count in QUERY/EXECUTE (spec 4.1.4)
MAX_LITERAL_DIGITS = 4300  # Python's int<->str conversion limit (sys.int_info)

_WORD_END = r"(?![0-9A-Za-z_])"
_TOKEN = re.compile(r"""\s*(?:
  (?P<comment>--[^\n]*|//[^\n]*|/\*.*?\*/)
| (?P<string>'(?:[^']|'')*')
| (?P<dollar>\$\$.*?\$\$)
| (?P<quoted>"(?:[^"]|"")+")
| (?P<uuid>[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}""" + _WORD_END + r""")
| (?P<hex>0[xX][0-9A-Fa-f]*""" + _WORD_END + r""")
| (?P<isoduration>(?:-?[Pp][0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}
    |-[Pp](?=[0-9]|[Tt][0-9])(?:[0-9]+[Yy])?(?:[0-9]+[Mm])?(?:[0-9]+[DdWw])?
     (?:[Tt](?:[0-9]+[Hh])?(?:[0-9]+[Mm])?(?:[0-9]+[Ss])?)?)""" + _WORD_END + r""")
| (?P<duration>-?(?:[0-9]+(?:(?i:mo|ms|us|ns|y|w|d|h|m|s)|µs|µS))+""" + _WORD_END + r""")
| (?P<float>-?[0-9]+(?:\.[0-9]*(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))
| (?P<integer>-?[0-9]+)
| (?P<negword>-(?i:nan|infinity)""" + _WORD_END + r""")
| (?P<word>[A-Za-z][A-Za-z0-9_]*)
| (?P<colon>:)
| (?P<punct><=|>=|!=|[()\[\]{},;.*=<>+\-?])
| (?P<end>\Z))""", re.S | re.X | re.A)
_SPACE = re.compile(r"\s*", re.A)
_NAME_AFTER_COLON = re.compile(r'\s*(?:([A-Za-z][A-Za-z0-9_]*)|"((?:[^"]|"")+)")')

PUNCTUATION = {
    "(": "_LPAR", ")": "_RPAR", "[": "_LSQB", "]": "_RSQB", "{": "_LBRACE", "}": "_RBRACE",
    ",": "_COMMA", ";": "_SEMI", ".": "_DOT", "*": "STAR", "=": "EQ", "!=": "NEQ", "<": "LT",
    "<=": "LTE", ">": "GT", ">=": "GTE", "+": "PLUS", "-": "MINUS", "?": "QMARK",
}
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")

# Words that are literals where a literal can stand: word -> (terminal, Literal).
_NULL = Literal(LiteralKind.NULL, None, "null")
WORD_LITERALS: dict[str, tuple[str, Literal]] = {
    "true": ("BOOLEAN", Literal(LiteralKind.BOOLEAN, True, "true")),
    "false": ("BOOLEAN", Literal(LiteralKind.BOOLEAN, False, "false")),
    "null": ("K_NULL", _NULL),
    "nan": ("FLOAT", Literal(LiteralKind.FLOAT, float("nan"), "NaN")),
    "infinity": ("FLOAT", Literal(LiteralKind.FLOAT, float("inf"), "Infinity")),
}

# Duration units in the order Cassandra requires them, with their size.
_MONTH, _DAY, _NANO = 0, 1, 2
DURATION_UNITS: dict[str, tuple[int, tuple[int, int]]] = {  # unit -> (order, (field, size))
    "y": (0, (_MONTH, 12)), "mo": (1, (_MONTH, 1)), "w": (2, (_DAY, 7)), "d": (3, (_DAY, 1)),
    "h": (4, (_NANO, 3600 * 10**9)), "m": (5, (_NANO, 60 * 10**9)),
    "s": (6, (_NANO, 10**9)), "ms": (7, (_NANO, 10**6)), "us": (8, (_NANO, 10**3)),
    "µs": (8, (_NANO, 10**3)), "µS": (8, (_NANO, 10**3)), "ns": (9, (_NANO, 1)),
}
_DURATION_PART = re.compile(r"([0-9]+)((?i:mo|ms|us|ns|y|w|d|h|m|s)|µs|µS)", re.A)
_ISO_DURATION = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.I | re.A)
_ISO_WEEKS = re.compile(r"P(\d+)W", re.I | re.A)
_ISO_ALTERNATIVE = re.compile(r"P(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", re.I | re.A)


class Tok:
    """A token: its terminal name (`type`), its `value` (the name for IDENT, the AST node
    for literals and markers, else the text as written) and where it is in the text."""

    __slots__ = ("type", "value", "start_pos", "end_pos")

    def __init__(self, type_: str, value: Any, start_pos: int, end_pos: int) -> None:
        self.type, self.value, self.start_pos, self.end_pos = type_, value, start_pos, end_pos

    def __repr__(self) -> str:
        return f"Tok({self.type!r}, {self.value!r})"


def position(text: str, pos: int) -> str:
    """`line L:C` of a character offset (line 1-based, column 0-based)."""
    line = text.count("\n", 0, pos) + 1
    return f"line {line}:{pos - (text.rfind(chr(10), 0, pos) + 1)}"


def syntax_error(text: str, pos: int, what: str) -> CqlSyntaxError:
    return CqlSyntaxError(f"{position(text, pos)} {what}")


# --------------------------------------------------------------------------- literal values


def string_literal(raw: str) -> Literal:
    value = raw[2:-2] if raw.startswith("$$") else raw[1:-1].replace("''", "'")
    return Literal(LiteralKind.STRING, value, value)


def integer_literal(raw: str) -> Literal:
    if len(raw) > MAX_LITERAL_DIGITS:
        raise InvalidRequest(f"Integer literal longer than {MAX_LITERAL_DIGITS} digits")
    return Literal(LiteralKind.INTEGER, int(raw), raw)


def float_literal(raw: str) -> Literal:
    if len(raw) > MAX_LITERAL_DIGITS:
        raise InvalidRequest(f"Float literal longer than {MAX_LITERAL_DIGITS} characters")
    return Literal(LiteralKind.FLOAT, float(raw), raw)


def hex_literal(raw: str) -> Literal:
    digits = raw[2:]
    if len(digits) % 2:
        raise InvalidRequest(f"Invalid HEX constant ({raw}): an odd number of hex digits")
    return Literal(LiteralKind.HEX, bytes.fromhex(digits), raw)


def duration_literal(raw: str) -> Literal:
    """Cassandra's Duration.from: `1y2mo3w4d5h6m7s8ms9us10ns` (units once each, in this
    order) or ISO 8601 `P1Y2M3DT4H5M6S` / `P3W` / `P0001-02-03T04:05:06` (the alternative
    format); a leading '-' negates."""
    negative = raw.startswith("-")
    body = raw[1:] if negative else raw
    parts = [0, 0, 0]
    if body[:1] in ("P", "p"):
        parts = _iso_duration(raw, body)
    else:
        last = -1
        for number, unit in _DURATION_PART.findall(body):
            order, (index, size) = DURATION_UNITS[unit if unit[0] == "µ" else unit.lower()]
            if order <= last:
                raise InvalidRequest(f"Invalid duration {raw}: unit '{unit}' is repeated "
                                     "or out of order (y, mo, w, d, h, m, s, ms, us, ns)")
            last = order
            parts[index] += int(number) * size
    months, days, nanos = (-p if negative else p for p in parts)
    if not (-2**31 <= months < 2**31 and -2**31 <= days < 2**31 and -2**63 <= nanos < 2**63):
        raise InvalidRequest(f"Invalid duration {raw}: out of range")
    return Literal(LiteralKind.DURATION, Duration(months, days, nanos), raw)


def _iso_duration(raw: str, body: str) -> list[int]:
    weeks = _ISO_WEEKS.fullmatch(body)
    if weeks:
        return [0, int(weeks.group(1)) * 7, 0]
    alternative = _ISO_ALTERNATIVE.fullmatch(body)  # P0001-02-03T04:05:06
    if alternative:
        y, mo, d, h, mi, s = (int(g) for g in alternative.groups())
        return [y * 12 + mo, d, (h * 3600 + mi * 60 + s) * 10**9]
    m = _ISO_DURATION.fullmatch(body)
    if m is None or body.upper() in ("P", "PT") or body.upper().endswith("T"):
        raise InvalidRequest(f"Invalid duration {raw}: not an ISO 8601 duration")
    y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return [y * 12 + mo, d, (h * 3600 + mi * 60 + s) * 10**9]


def is_iso_duration(word: str) -> bool:
    return word[0] in "Pp" and len(word) > 1 and (
        _ISO_WEEKS.fullmatch(word) is not None or _ISO_DURATION.fullmatch(word) is not None)


_LITERAL_TOKENS = {  # regex group -> (terminal, builder)
    "string": ("STRING", string_literal), "dollar": ("STRING", string_literal),
    "uuid": ("UUID", lambda raw: Literal(LiteralKind.UUID, uuid.UUID(raw), raw)),
    "hex": ("HEX", hex_literal), "duration": ("DURATION", duration_literal),
    "isoduration": ("DURATION", duration_literal),  # -P1DT2H, -P2W, [-]P0001-02-03T04:05:06
    "float": ("FLOAT", float_literal), "integer": ("INTEGER", integer_literal),
    "negword": ("FLOAT", lambda raw: Literal(LiteralKind.FLOAT, -float(raw[1:]), raw)),
}


# --------------------------------------------------------------------------- the lexer


def _unlexable(text: str, pos: int) -> CqlSyntaxError:
    rest = text[pos:]
    for start, what in (("'", "unterminated string literal"), ("$$", "unterminated $$ string"),
                        ('""', "empty quoted identifier"),
                        ('"', "unterminated quoted identifier"),
                        ("/*", "unterminated comment")):
        if rest.startswith(start):
            return syntax_error(text, pos, what)
    return syntax_error(text, pos, f"no viable alternative at character '{rest[0]}'")


def tokens(text: str, tables: Tables, stack: list[int],
           markers: list[BindMarker]) -> Iterator[Tok]:
    """The tokens of text. `stack` is the parser's state stack, which tells what it accepts
    next (that decides keywords, word literals and ':' markers). Appends every bind marker
    made to `markers`."""
    match, pos, depth = _TOKEN.match, 0, 0
    while True:
        m = match(text, pos)
        if m is None:
            raise _unlexable(text, _SPACE.match(text, pos).end())
        kind = m.lastgroup
        if kind == "end":
            return
        raw, start, pos = m.group(kind), m.start(kind), m.end()
        if kind == "word":
            yield _word(raw, tables, stack, start, pos, text)
        elif kind == "punct":
            if raw == "?":
                yield Tok("QMARK", _new_marker(markers, None), start, pos)
                continue
            depth += (raw in _OPENERS) - (raw in _CLOSERS)
            if depth > MAX_NESTING_DEPTH:
                raise InvalidRequest(f"Statement nests brackets deeper than {MAX_NESTING_DEPTH}")
            yield Tok(PUNCTUATION[raw], raw, start, pos)
        elif kind in _LITERAL_TOKENS:
            terminal, build = _LITERAL_TOKENS[kind]
            yield Tok(terminal, build(raw), start, pos)
        elif kind == "quoted":
            yield Tok("IDENT", raw[1:-1].replace('""', '"'), start, pos)
        elif kind == "comment":
            continue
        elif kind == "colon":
            if not accepts(tables, stack, "QMARK"):
                yield Tok("_COLON", raw, start, pos)
                continue
            name_match = _NAME_AFTER_COLON.match(text, pos)
            if name_match is None:
                raise syntax_error(text, pos, "a bind marker name must follow ':'")
            word, quoted = name_match.groups()
            name = word.lower() if word is not None else quoted.replace('""', '"')
            pos = name_match.end()
            yield Tok("NAMED_MARKER", _new_marker(markers, name), start, pos)


def _new_marker(markers: list[BindMarker], name: str | None) -> BindMarker:
    if len(markers) >= MAX_BIND_MARKERS:
        raise InvalidRequest(f"Too many bind markers: at most {MAX_BIND_MARKERS}")
    marker = BindMarker(len(markers), name)
    markers.append(marker)
    return marker


def _word(raw: str, tables: Tables, stack: list[int], start: int, end: int, text: str) -> Tok:
    """A keyword `_K_<WORD>` if the parser takes it here, else a literal word, else IDENT.
    Where both the keyword and a name fit, the next token decides: the keyword unless only
    a name can be followed by it (so `SELECT json FROM t` selects a column named json)."""
    keyword = "_K_" + raw.upper()
    row = tables.actions[stack[-1]]
    if keyword in row:
        if "IDENT" not in row:  # nothing else can stand here: no need to look closer
            return Tok(keyword, raw, start, end)
        if accepts(tables, stack, keyword) and not _only_a_name_fits(tables, stack, keyword,
                                                                       text, end):
            return Tok(keyword, raw, start, end)
    lower = raw.lower()
    literal = WORD_LITERALS.get(lower)
    if literal is not None and accepts(tables, stack, literal[0]):
        return Tok(literal[0], literal[1], start, end)
    if raw[0] in "Pp" and accepts(tables, stack, "DURATION") and is_iso_duration(raw):
        return Tok("DURATION", duration_literal(raw), start, end)
    return Tok("IDENT", lower, start, end)


def _only_a_name_fits(tables: Tables, stack: list[int], keyword: str, text: str,
                      pos: int) -> bool:
    """True when an identifier fits here and can be followed by the next token, but the
    keyword cannot (one token of lookahead, only where keyword and name compete)."""
    as_name = shifted(tables, stack, "IDENT")
    if as_name is None:
        return False
    following = _next_terminals(text, pos)
    as_keyword = shifted(tables, stack, keyword)
    assert as_keyword is not None
    return (not any(accepts(tables, as_keyword, t) for t in following)
            and any(accepts(tables, as_name, t) for t in following))


def _next_terminals(text: str, pos: int) -> tuple[str, ...]:
    """The terminals the token at pos could become (without side effects)."""
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            return ()
        kind = m.lastgroup
        if kind != "comment":
            break
        pos = m.end()
    raw = m.group(kind)
    if kind == "end":
        return (END,)
    if kind == "word":
        literal = WORD_LITERALS.get(raw.lower())
        return ("_K_" + raw.upper(), "IDENT", "DURATION") + ((literal[0],) if literal else ())
    if kind == "punct":
        return (PUNCTUATION[raw],)
    if kind == "colon":
        return ("_COLON", "NAMED_MARKER")
    if kind == "quoted":
        return ("IDENT",)
    return (_LITERAL_TOKENS[kind][0],)
