"""CQL text -> statement AST: `parse(text)`.

Owns: the parser (grammar.lark compiled to LALR(1) tables by parse_lalr.py, fed by the
contextual lexer of parse_lexer.py, with the tree-to-AST rules of parse_terms/parse_dml/
parse_ddl applied on each reduction, so no parse tree is ever built), the cache of parsed
texts, Cassandra-style syntax error messages, the table of valid CQL that Agora refuses
(InvalidRequest instead of a syntax error), and filling each statement's `bind_markers`.
Deliberately does not know schema or how statements execute.

Errors: text that does not parse raises CqlSyntaxError ("line 1:9 mismatched input 'FORM'
expecting FROM (SELECT * [FORM]...)", columns 0-based as Cassandra's ANTLR reports them);
text that parses but breaks a rule checkable without schema raises InvalidRequest.

Thread safety: parse() keeps no state between calls besides the cache, so it may be called
from anywhere; the returned trees are immutable and shared between callers of equal texts.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

from agora.core.errors import CqlSyntaxError, InvalidRequest
from agora.cql.ast import BindMarker, Statement
from agora.cql.parse_ddl import DescribeRules, SchemaRules
from agora.cql.parse_dml import ModificationRules, SelectRules
from agora.cql.parse_lalr import END, ParseFailure, compile_grammar, private_cache_path, run
from agora.cql.parse_lexer import PUNCTUATION, position, tokens
from agora.cql.parse_terms import TermRules

PARSE_CACHE_ENTRIES = 2048  # distinct statement texts kept parsed; a client's working set of
#                             unprepared statements is small, and an entry is a few KiB
PARSE_CACHE_MAX_TEXT_CHARS = 8192  # longer texts (big batches, bulk literals) are not cached:
#                                    they rarely repeat and would crowd out the rest
MAX_EXPECTED_LISTED = 4  # name the expected tokens in an error when there are at most this many
ERROR_CONTEXT_CHARS = 40  # statement text shown before (and of) the offending token

# Valid CQL (Cassandra 4/5) that Agora refuses, by leading words: InvalidRequest, not a
# syntax error, when such a statement fails to parse.
_AUTH = "Roles, users and permissions are not supported (Agora has no authentication)"
UNSUPPORTED_STATEMENTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("create", "materialized", "view"), "Materialized views are not supported"),
    (("alter", "materialized", "view"), "Materialized views are not supported"),
    (("drop", "materialized", "view"), "Materialized views are not supported"),
    (("create", "function"), "User-defined functions are not supported"),
    (("create", "or", "replace", "function"), "User-defined functions are not supported"),
    (("drop", "function"), "User-defined functions are not supported"),
    (("create", "aggregate"), "User-defined aggregates are not supported"),
    (("create", "or", "replace", "aggregate"), "User-defined aggregates are not supported"),
    (("drop", "aggregate"), "User-defined aggregates are not supported"),
    (("create", "trigger"), "Triggers are not supported"),
    (("drop", "trigger"), "Triggers are not supported"),
    (("create", "role"), _AUTH), (("alter", "role"), _AUTH), (("drop", "role"), _AUTH),
    (("create", "user"), _AUTH), (("alter", "user"), _AUTH), (("drop", "user"), _AUTH),
    (("grant",), _AUTH), (("revoke",), _AUTH), (("list",), _AUTH),
    (("add", "identity"), _AUTH), (("drop", "identity"), _AUTH),
)

_TERMINAL_NAMES = {v: f"'{k}'" for k, v in PUNCTUATION.items()} | {
    "_COLON": "':'", "IDENT": "an identifier", "STRING": "a string", "INTEGER": "an integer",
    "FLOAT": "a float", "BOOLEAN": "a boolean", "UUID": "a uuid", "HEX": "a blob",
    "DURATION": "a duration", "NAMED_MARKER": "a bind marker", "K_NULL": "NULL",
    "$END": "<EOF>",
}


class _Rules(TermRules, SelectRules, ModificationRules, SchemaRules, DescribeRules):
    """Every grammar rule's callback, by rule (or alias) name."""

    def start(self, statement: Statement) -> Statement:
        return statement


_GRAMMAR = Path(__file__).with_name("grammar.lark").read_text()
_TABLES = compile_grammar(_GRAMMAR, "start", _Rules(), private_cache_path(_GRAMMAR, "cql"))


def parse(text: str) -> Statement:
    """Parse one CQL statement (an optional trailing ';' allowed). Raises CqlSyntaxError or
    InvalidRequest. Equal texts up to PARSE_CACHE_MAX_TEXT_CHARS share one cached tree."""
    if not isinstance(text, str):
        raise CqlSyntaxError(f"statement text must be a string, not {type(text).__name__}")
    if len(text) <= PARSE_CACHE_MAX_TEXT_CHARS:
        return _parse_cached(text)
    return _parse(text)


@functools.lru_cache(maxsize=PARSE_CACHE_ENTRIES)
def _parse_cached(text: str) -> Statement:
    return _parse(text)


def _parse(text: str) -> Statement:
    stack, markers = [_TABLES.start], []
    try:
        statement = run(_TABLES, tokens(text, _TABLES, stack, markers), stack)
    except ParseFailure as e:
        _raise_if_unsupported(text)
        raise _syntax_error(text, e) from None
    if markers:
        statement = _with_markers(statement, tuple(markers))
    return statement


# --------------------------------------------------------------------------- bind markers


def _markers(statement: Statement) -> tuple[BindMarker, ...]:
    out: list[BindMarker] = []
    _collect(statement, out)
    return tuple(sorted(out, key=lambda m: m.index))


def _collect(node: Any, out: list[BindMarker]) -> None:
    if isinstance(node, BindMarker):
        out.append(node)
    elif isinstance(node, tuple):
        for item in node:
            _collect(item, out)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.name != "bind_markers":
                _collect(getattr(node, f.name), out)


def _with_markers(statement: Statement, markers: tuple[BindMarker, ...]) -> Statement:
    """Fill in bind_markers. The statement was built by this parse and is not shared yet, so
    setting the field in place is as safe as a __post_init__ doing it."""
    for child in getattr(statement, "statements", ()):  # a BATCH: each child lists its own
        object.__setattr__(child, "bind_markers", _markers(child))
    object.__setattr__(statement, "bind_markers", markers)
    return statement


# --------------------------------------------------------------------------- errors

_LEADING_WORDS = re.compile(r"(?>\s+|--[^\n]*|//[^\n]*|/\*.*?\*/)*+([A-Za-z]+)", re.S)


def _leading_words(text: str, count: int = 4) -> tuple[str, ...]:
    words, pos = [], 0
    while len(words) < count:
        m = _LEADING_WORDS.match(text, pos)
        if m is None:
            break
        words.append(m.group(1).lower())
        pos = m.end()
    return tuple(words)


def _raise_if_unsupported(text: str) -> None:
    words = _leading_words(text)
    for prefix, message in UNSUPPORTED_STATEMENTS:
        if words[:len(prefix)] == prefix:
            raise InvalidRequest(message)


def _syntax_error(text: str, e: ParseFailure) -> CqlSyntaxError:
    token = e.token
    if token.type == END:
        pos, shown = len(text.rstrip()), "<EOF>"
    else:
        pos, shown = token.start_pos, text[token.start_pos:token.end_pos]
        if len(shown) > ERROR_CONTEXT_CHARS:
            shown = shown[:ERROR_CONTEXT_CHARS] + "..."
    expected = sorted(_display(t) for t in e.expected)
    if 0 < len(expected) <= MAX_EXPECTED_LISTED:
        what = f"mismatched input '{shown}' expecting {' or '.join(expected)}"
    else:
        what = f"no viable alternative at input '{shown}'"
    before = text[max(0, pos - ERROR_CONTEXT_CHARS):pos].replace("\n", " ").lstrip()
    return CqlSyntaxError(f"{position(text, pos)} {what} ({before}[{shown}]...)")


def _display(terminal: str) -> str:
    if terminal in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[terminal]
    bare = terminal.lstrip("_")
    return bare[2:] if bare.startswith("K_") else bare
