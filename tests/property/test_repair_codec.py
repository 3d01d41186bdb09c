"""Repair messages (verbs 50-55) through the internode codec: each round-trips, and any
malformed payload for those verbs raises ProtocolError and nothing else."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core import codec
from agora.core.antientropy.messages import (RepairStreamAck, RepairStreamData, RepairSyncReq,
                                             RepairSyncRsp, RepairTreeReq, RepairTreeRsp)
from agora.core.errors import ProtocolError
from agora.core.types import MAX_TOKEN, MIN_TOKEN, Cell, Deletion, Partition, Row

TID = bytes(range(16))


def _partition(key: bytes) -> Partition:
    return Partition(TID, key, Deletion(3, 1), [], None,
                     {b"": Row((), Cell(5, b""), None, {("v", b""): Cell(5, b"x", 0, 0)})})


MESSAGES = [
    RepairTreeReq(1, TID, MIN_TOKEN, MAX_TOKEN, 15), RepairTreeReq(2, TID, -5, 7, 0),
    RepairTreeRsp(1, (0, 3, 32767), b"a" * 16 + b"b" * 16 + b"c" * 16, 42),
    RepairTreeRsp(2, (), b"", 0, "busy"),
    RepairSyncReq(3, TID, "127.0.0.2:7000", ((-10, -5), (-5, 8), (100, MAX_TOKEN))),
    RepairSyncRsp(3, 10, 12, 4096), RepairSyncRsp(4, 0, 0, 0, "peer down"),
    RepairStreamData(5, TID, (_partition(b"a"), _partition(b"b"))),
    RepairStreamAck(5), RepairStreamAck(6, "storage error"),
]


def test_every_repair_message_round_trips():
    for msg in MESSAGES:
        assert codec.decode(codec.encode(msg)) == msg


def test_shapes_a_peer_must_not_send_are_refused():
    bad = [
        [50, 1, TID, 5, 5, 10],  # an empty (or wrapping) range
        [50, 1, TID, 0, 5, 16],  # deeper than MAX_TREE_DEPTH
        [50, 1, b"short", 0, 5, 10],
        [51, 1, [3, 2], b"x" * 32, 0, None],  # indices not ascending
        [51, 1, [1], b"x" * 15, 0, None],  # a hash of the wrong size
        [52, 1, TID, "n", [[5, 9], [0, 3]]],  # ranges not ascending
        [52, 1, TID, "n", []],
        [53, 1, -1, 0, 0, None],
        [54, 1, TID, []],
        [54, 1, bytes(16), [[TID, b"k", None, [], None, []]]],  # a partition of another table
    ]
    for fields in bad:
        try:
            codec.decode(msgpack.packb(fields, use_bin_type=True))
        except ProtocolError:
            continue
        raise AssertionError(f"accepted {fields!r}")


_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.binary(max_size=20)
                       | st.text(max_size=10), lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@settings(max_examples=500)
@given(st.integers(50, 55), st.lists(_values, max_size=6))
def test_wellformed_msgpack_with_wrong_fields_only_raises_protocol_error(verb, fields):
    try:
        codec.decode(msgpack.packb([verb, *fields], use_bin_type=True))
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.sampled_from(MESSAGES), st.data())
def test_mutated_repair_messages_only_raise_protocol_error(msg, data):
    raw = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        codec.decode(bytes(raw))
    except ProtocolError:
        pass
