"""The LALR(1) engine: Lark compiles grammar.lark into tables once; this module runs them.

Owns: turning Lark's compiled rules and parse table into plain dicts, one callback per rule
(which children a rule passes on, None for an absent `[optional]`, `?rule` inlining), and the
shift/reduce loop that feeds tokens from parse_lexer through the table into the AST rules.
Running the table here rather than through `Lark.parse` halves the cost of a parse: no
generic tree-builder wrappers, no lark.Token objects, plain-string table keys.

Deliberately does not know CQL: the grammar, the tokens and the rule callbacks come in as
arguments. Rules come from Lark 1.x itself (`parse_tree_builder.maybe_create_child_filter`
and `parsers/lalr_parser_state.feed_token`, whose behaviour this reproduces); compiling with
strict=True refuses any grammar with a shift/reduce or reduce/reduce conflict.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import lark
from lark import Lark
from lark.lexer import Lexer

END = "$END"

Action = tuple[int | None, Any]  # (next state, None) to shift, (None, reduction) to reduce


class _NoLexer(Lexer):
    """Lark wants a lexer to compile a grammar; ours runs outside Lark."""

    __future_interface__ = 2

    def __init__(self, lexer_conf: Any) -> None:
        pass

    def lex(self, lexer_state: Any, parser_state: Any) -> Any:
        raise NotImplementedError


class ParseFailure(Exception):
    """No action for `token` in the current state; `expected` names the terminals that had
    one. Callers turn it into their own error."""

    def __init__(self, token: Any, expected: list[str]) -> None:
        super().__init__(token, expected)
        self.token, self.expected = token, expected


@dataclass(frozen=True)
class Tables:
    actions: dict[int, dict[str, Action]]  # state -> terminal -> action
    gotos: dict[int, dict[str, int]]  # state -> rule name -> state
    start: int
    end: int


def private_cache_path(grammar: str, name: str) -> str | None:
    """Where to keep Lark's compiled form of `grammar`: a file in this user's own cache
    directory ($XDG_CACHE_HOME/agora, else ~/.cache/agora), named by a hash of the grammar,
    Lark's version and Python's, or None (no cache) if that directory cannot be made or is
    not this user's alone. Lark's cache is a pickle, and loading a pickle runs whatever it
    says: it must never come from a place another user can write, such as the shared
    temporary directory Lark would use by default."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "agora")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.stat(folder)
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o022 or not stat.S_ISDIR(st.st_mode):
        return None
    key = hashlib.sha256("\0".join((grammar, lark.__version__, sys.version)).encode()).hexdigest()[:32]
    return os.path.join(folder, f"{name}-grammar-{key}.lark")


def compile_grammar(grammar: str, start: str, rules: object, cache: str | None = None) -> Tables:
    """Tables for `grammar`, with callbacks bound to methods of `rules` named after each
    rule or its `-> alias`.

    With `cache` (a path, from `private_cache_path`), Lark keeps the compiled grammar in that
    file, so a process started later loads it (20 ms) instead of compiling it (130 ms). A
    file written for another grammar or version, or one it cannot read, is compiled again
    and rewritten. The loaded table numbers its states differently from a fresh compile; it
    is the same automaton (tests/unit/test_cql_parser.py)."""
    lark = Lark(grammar, parser="lalr", lexer=_NoLexer, start=start, strict=True,
                maybe_placeholders=True, cache=cache or False)
    table = lark.parser.parser.parser.parse_table
    reductions = {rule: _reduction(rule, rules) for rule in lark.rules}
    actions: dict[int, dict[str, Action]] = {}
    gotos: dict[int, dict[str, int]] = {}
    for state, row in table.states.items():
        actions[state], gotos[state] = {}, {}
        for symbol, (action, arg) in row.items():
            name = str(symbol)
            if action.name == "Shift" and not name.isupper() and name != END:
                gotos[state][name] = arg
            elif action.name == "Shift":
                actions[state][name] = (arg, None)
            else:
                actions[state][name] = (None, reductions[arg])
    return Tables(actions, gotos, table.start_states[start], table.end_states[start])


def _reduction(rule: Any, rules: object) -> tuple[int, str, Callable[[list], Any]]:
    origin = str(rule.origin.name)
    shape = _filter(rule)
    if origin.startswith("_"):  # a helper rule of `x*`, `x+` or `_rule`: spliced into its parent
        return len(rule.expansion), origin, lambda children: _Splice(shape(children))
    name = str(rule.alias or origin)
    method = getattr(rules, name, None)
    if rule.options.expand1 and not rule.alias:  # `?rule`: one child stands for the rule
        if method is None:
            method = _only_child(name)
        return len(rule.expansion), origin, _inline_single(shape, method)
    if method is None:
        raise TypeError(f"no rule callback named {name!r}")
    return len(rule.expansion), origin, lambda children: method(*shape(children))


class _Splice(list):
    """Children of a helper rule, to be spliced into the parent's children."""


def _inline_single(shape: Callable[[list], list], method: Callable[..., Any]) -> Any:
    def inline(children: list) -> Any:
        out = shape(children)
        return out[0] if len(out) == 1 else method(*out)
    return inline


def _filter(rule: Any) -> Callable[[list], list]:
    """Lark's child filter for LALR with placeholders: drop filtered terminals, splice helper
    rules, put None where an `[optional]` part is absent."""
    kept, nones, expand, trailing = _shape(rule)
    if not any(nones) and not any(expand) and not trailing:
        if len(kept) == len(rule.expansion):
            return lambda children: children
        return lambda children: [children[i] for i in kept]
    plan = list(zip(kept, nones, expand))

    def shape(children: list) -> list:
        out: list = []
        for index, add_none, flat in plan:
            if add_none:
                out += [None] * add_none
            if flat:
                out += children[index]
            else:
                out.append(children[index])
        if trailing:
            out += [None] * trailing
        return out
    return shape


def _shape(rule: Any) -> tuple[list[int], list[int], list[bool], int]:
    """(indices of kept children, Nones to insert before each, splice each?, Nones after)."""
    expansion = rule.expansion
    if rule.options.empty_indices:
        bits = "".join(str(int(b)) for b in rule.options.empty_indices)
        empty = [len(ones) for ones in bits.split("0")]
    else:
        empty = [0] * (len(expansion) + 1)
    kept, nones, expand, pending = [], [], [], 0
    for i, symbol in enumerate(expansion):
        pending += empty[i]
        if not (symbol.is_term and symbol.filter_out):
            kept.append(i)
            nones.append(pending)
            expand.append(not symbol.is_term and symbol.name.startswith("_"))
            pending = 0
    return kept, nones, expand, pending + empty[len(expansion)]


def _only_child(name: str) -> Callable[..., Any]:
    def only(*children: Any) -> Any:
        raise TypeError(f"?{name} reduced {len(children)} children; give it a callback")
    return only


def accepts(tables: Tables, stack: list[int], terminal: str) -> bool:
    """Would the parser, in the configuration `stack`, shift `terminal` (after whatever
    reductions it triggers)? The state's row alone over-approximates: LALR merges the
    lookaheads of states with equal cores, so a row may reduce on a terminal that the state
    reached after the reduction then refuses."""
    action = tables.actions[stack[-1]].get(terminal)
    if action is None:
        return False
    return action[0] is not None or shifted(tables, stack, terminal) is not None


def shifted(tables: Tables, stack: list[int], terminal: str) -> list[int] | None:
    """The state stack after the parser reads `terminal` from `stack` (a copy; `stack` is
    left alone), or None if it cannot."""
    states = stack[:]
    while True:
        action = tables.actions[states[-1]].get(terminal)
        if action is None:
            return None
        if action[0] is not None:
            states.append(action[0])
            return states
        size, origin, _ = action[1]
        if size:
            del states[-size:]
        states.append(tables.gotos[states[-1]][origin])
        if states[-1] == tables.end:  # only the end of input gets here: accepted
            return states


def run(tables: Tables, tokens: Iterable[Any], stack: list[int]) -> Any:
    """Drive the parser. `stack` must be `[tables.start]`; the token source may read
    `tables.actions[stack[-1]]` to see what the parser accepts next. Tokens have `.type`.
    The loop is Lark's `ParserState.feed_token`, inlined: this is the hot path of a parse."""
    actions, gotos, end = tables.actions, tables.gotos, tables.end
    values: list[Any] = []
    token: Any = None
    for token in itertools.chain(tokens, (None,)):
        terminal = END if token is None else token.type
        while True:
            row = actions[stack[-1]]
            try:
                shift, reduction = row[terminal]
            except KeyError:
                raise ParseFailure(token or _End(), list(row)) from None
            if shift is not None:
                stack.append(shift)
                values.append(token)
                break
            size, origin, callback = reduction
            if size:
                children = values[-size:]
                del values[-size:]
                del stack[-size:]
            else:
                children = []
            value = callback(children)
            stack.append(gotos[stack[-1]][origin])
            values.append(value)
            if stack[-1] == end:
                return value
    raise AssertionError("the parse table accepted input without reaching its end state")


class _End:
    """The end of input, as a token."""

    type = END
