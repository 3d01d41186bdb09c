"""The convention every internode message follows, and the verb table's shape.

Owns: the `Message` base class. A message is a frozen dataclass with a class-level `VERB`
(a small int, unique across Agora, listed in `agora.core.verbs`), `to_wire()` returning a
list of msgpack-native values (ints, str, bytes, None, bool, float, lists, dicts) and a
`from_wire(fields)` classmethod that rebuilds it and raises `ProtocolError` on any malformed
input. The codec (`agora.core.codec`) frames `[VERB, *to_wire()]` with msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from agora.core.errors import ProtocolError
from agora.core.frozen import fast_init
from agora.core.plain import partition_from_plain


class Message:
    VERB: ClassVar[int] = -1

    def to_wire(self) -> list:
        raise NotImplementedError

    @classmethod
    def from_wire(cls, fields: list) -> "Message":
        raise NotImplementedError


def expect(cond: bool, what: str) -> None:
    """Check a property of decoded input; a failure is the peer's fault: ProtocolError."""
    if not cond:
        raise ProtocolError(f"malformed message: {what}")


# The checks below build their error text only when they fail: they run for every field of
# every message decoded.


def fields_of(fields, n: int, name: str) -> list:
    """The decoded field list of a message that takes exactly `n` fields."""
    if not (isinstance(fields, list) and len(fields) == n):
        raise ProtocolError(f"malformed message: {name} takes {n} fields")
    return fields


def int_field(v, what: str) -> int:
    if type(v) is not int:
        raise ProtocolError(f"malformed message: {what} must be an int")
    return v


def str_field(v, what: str) -> str:
    if type(v) is not str:
        raise ProtocolError(f"malformed message: {what} must be a string")
    return v


def opt_str_field(v, what: str) -> str | None:
    if v is not None and type(v) is not str:
        raise ProtocolError(f"malformed message: {what} must be a string or nil")
    return v


@fast_init
@dataclass(frozen=True, slots=True)
class Acknowledgement(Message):
    """The shape of every plain answer: the request's id, and an error text or None. Verbs
    of that shape subclass it and set only VERB."""

    req_id: int
    error: str | None = None

    def to_wire(self) -> list:
        return [self.req_id, self.error]

    @classmethod
    def from_wire(cls, fields):
        if type(fields) is list and len(fields) == 2:  # the hot path: checks inline
            req_id, error = fields
            if type(req_id) is int and (error is None or type(error) is str):
                return cls(req_id, error)
        req_id, error = fields_of(fields, 2, cls.__name__)
        return cls(int_field(req_id, "req_id"), opt_str_field(error, "error"))


def partitions_field(parts, name: str) -> tuple:
    """A non-empty list of partitions in plain form (agora.core.plain)."""
    expect(isinstance(parts, list) and parts, f"{name}.partitions must be a non-empty list")
    if len(parts) == 1:  # the usual mutation: no generator
        return (partition_from_plain(parts[0]),)
    return tuple(partition_from_plain(p) for p in parts)
