"""Internode codec: every message round-trips, and any bytes at all decode to a message or
raise ProtocolError — never another exception (a bad peer only loses its connection)."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core import codec
from agora.core.errors import ProtocolError
from agora.core.hints.messages import HintReq, HintRsp
from agora.core.messages import (ClientReq, ClientRsp, MutationReq, MutationRsp, ReadReq, ReadRsp,
                                 SchemaPullReq, SchemaPush, SchemaVersion)
from agora.core.types import Bound, Cell, Deletion, Partition, RangeTombstone, ReadCommand, Row, Slice

TID = bytes(range(16))


def _partition():
    p = Partition(TID, b"key", Deletion(5, 1), [RangeTombstone(Bound(b"a"), Bound(b"b", False), Deletion(7, 2))])
    p.static = Row((), None, None, {("s", b""): Cell(9, b"sv")})
    p.rows[b"\x03k"] = Row((b"k",), Cell(10, b""), None, {("v", b""): Cell(10, b"x", 60, 100), ("w", b""): Cell(11, None, 0, 3)})
    return p


MESSAGES = [
    MutationReq(1, (_partition(),)), MutationRsp(1), MutationRsp(2, "unknown table"),
    ReadReq(3, ReadCommand(TID, b"key", (Slice(Bound(b"a"), Bound(b"z", False)),), ("v",)), False),
    ReadReq(4, ReadCommand(TID, b"key"), True),
    ReadRsp(3, _partition(), None), ReadRsp(4, None, b"d" * 16), ReadRsp(5, None, None, "boom"),
    SchemaPullReq(6), SchemaPush({"any": ["plain", 1]}), SchemaVersion("3f2c"),
    ClientReq(7, "status", {"keyspace": "ks"}), ClientRsp(7, {"ok": True}), ClientRsp(8, None, ["Unavailable", "x", {}]),
    HintReq(9, (_partition(),)), HintRsp(9), HintRsp(10, "unknown table id 00"),
]


def test_every_message_round_trips():
    for msg in MESSAGES:
        assert codec.decode(codec.encode(msg)) == msg


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_garbage_bytes_only_raise_protocol_error(data):
    try:
        codec.decode(data)
    except ProtocolError:
        pass


_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.binary(max_size=20)
                       | st.text(max_size=10), lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@settings(max_examples=500)
@given(st.sampled_from([1, 2, 3, 4, 10, 11, 20, 21, 22, 30, 31, 40, 41, 60, 61, 62, 63, 64, 99]), st.lists(_values, max_size=6))
def test_wellformed_msgpack_with_wrong_fields_only_raises_protocol_error(verb, fields):
    try:
        codec.decode(msgpack.packb([verb, *fields], use_bin_type=True))
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.sampled_from(MESSAGES), st.data())
def test_mutated_messages_only_raise_protocol_error(msg, data):
    raw = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        codec.decode(bytes(raw))
    except ProtocolError:
        pass
