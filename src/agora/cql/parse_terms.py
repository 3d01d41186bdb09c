"""Tree-to-AST rules for names, types and terms (the grammar.lark sections of the same names).

Owns: building `ast` term nodes and `TypeRef`s from parser children, and the schema-free
checks on them (a type's shape via `parse_type` with stand-in user types, duplicate UDT
literal fields, CAST targets). Deliberately does not know statements (parse_dml.py,
parse_ddl.py) or what values a column accepts.

Rules from: Cassandra 4/5 Parser.g (`term`, `comparatorType`, `collectionLiteral`,
`usertypeLiteral`, `tupleLiteral`, `functionName`), CQL3Type.Raw (type nesting rules, which
schema.types.parse_type implements).
"""

from __future__ import annotations

from typing import Any

from agora.core.errors import InvalidRequest
from agora.core.schema.types import (
    INT, MAX_TYPE_DEPTH, NATIVE, CqlType, UserType, parse_type, quote_identifier,
)
from agora.cql.ast import (
    FunctionCall, ListLiteral, MapLiteral, SetLiteral, TupleLiteral, TypeHint, TypeRef,
    UdtLiteral,
)
from agora.cql.parse_lexer import MAX_NESTING_DEPTH

QName = tuple[str | None, str]  # (keyspace or None, name)


def _stand_in_udt(name: str) -> UserType:
    """A user type for checking a type's shape before the real one is looked up."""
    return UserType("", name.rsplit(".", 1)[-1], ("f",), (INT,))


def checked_type(ref: TypeRef) -> TypeRef:
    """Raise InvalidRequest unless the type is well formed (arity, frozen<>, nesting)."""
    parse_type(ref.text, _stand_in_udt)
    return ref


def native_type(ref: TypeRef) -> CqlType:
    """CAST targets: native types only."""
    if ref.udt_names or "<" in ref.text:
        raise InvalidRequest(f"Invalid type {ref.text}: only native types are allowed here")
    return parse_type(ref.text)


def _name_text(q: QName) -> str:
    ks, name = q
    if ks is None:
        return quote_identifier(name)
    return f"{quote_identifier(ks)}.{quote_identifier(name)}"


class TermRules:
    """Callbacks named after grammar rules (Lark calls them with the rule's children)."""

    # ---------------------------------------------------------------- names

    def ident(self, tok: Any) -> str:
        return tok.value

    def qualified_name(self, first: str, second: str | None) -> QName:
        return (None, first) if second is None else (first, second)

    def dotted(self, *names: str) -> tuple[str, ...]:
        return names

    def idents(self, *names: str) -> tuple[str, ...]:
        return names

    # ---------------------------------------------------------------- types

    def type_simple(self, q: QName) -> TypeRef:
        ks, name = q
        if ks is None and name in NATIVE:
            return TypeRef(name)
        return TypeRef(_name_text(q), (name if ks is None else f"{ks}.{name}",))

    def type_param(self, name: str, *children: Any) -> TypeRef:
        params = [c for c in children if isinstance(c, TypeRef)]
        if any(p.text.count("<") >= MAX_TYPE_DEPTH for p in params):
            raise InvalidRequest(f"Type nested deeper than {MAX_TYPE_DEPTH} levels")
        udts = tuple(u for p in params for u in p.udt_names)
        return TypeRef(f"{name}<{', '.join(p.text for p in params)}>", udts)

    # ---------------------------------------------------------------- terms

    def constant(self, tok: Any) -> Any:
        return tok.value

    def bind_marker(self, tok: Any) -> Any:
        return tok.value

    def terms(self, *items: Any) -> tuple[Any, ...]:
        return items

    def list_literal(self, items: tuple | None) -> ListLiteral:
        return ListLiteral(items or ())

    def empty_braces(self) -> SetLiteral:
        return SetLiteral(())  # as Cassandra's Parser.g: an empty set that maps accept too

    def set_literal(self, items: tuple) -> SetLiteral:
        return SetLiteral(items)

    def map_entry(self, key: Any, value: Any) -> tuple[Any, Any]:
        return (key, value)

    def map_literal(self, *entries: tuple[Any, Any]) -> MapLiteral:
        return MapLiteral(entries)

    def udt_field(self, name: str, value: Any) -> tuple[str, Any]:
        return (name, value)

    def udt_literal(self, *fields: tuple[str, Any]) -> UdtLiteral:
        seen: set[str] = set()
        for name, _ in fields:
            if name in seen:
                raise InvalidRequest(f"Invalid user type literal: duplicate field '{name}'")
            seen.add(name)
        return UdtLiteral(fields)

    def tuple_literal(self, items: tuple) -> TupleLiteral:
        return TupleLiteral(items)

    def function_call(self, q: QName, args: tuple | None) -> FunctionCall:
        return FunctionCall(q[1], args or (), q[0])

    def type_hint(self, ref: TypeRef, term: Any) -> TypeHint:
        inner, depth = term, 0
        while isinstance(inner, TypeHint):
            inner, depth = inner.term, depth + 1
            if depth >= MAX_NESTING_DEPTH:
                raise InvalidRequest(f"More than {MAX_NESTING_DEPTH} type hints on one term")
        return TypeHint(checked_type(ref), term)
