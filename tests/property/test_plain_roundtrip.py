"""agora.core.plain: every value survives a msgpack round trip, and malformed input -- random
msgpack objects, or valid encodings with one piece replaced -- only ever raises
ProtocolError (the decoder is fed bytes from peers and disks)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.core import plain
from agora.core.errors import ProtocolError
from agora.core.types import (
    Bound,
    Cell,
    Deletion,
    Partition,
    RangeTombstone,
    ReadCommand,
    Row,
    Slice,
)

int64 = st.integers(-(2**63), 2**63 - 1)
small_bytes = st.binary(max_size=8)
names = st.text(alphabet="ab\u00e9\u4e2d\U0001f600", max_size=4)
ttls = st.integers(0, plain.MAX_TTL_S)

cells = st.builds(Cell, int64, st.none() | small_bytes, ttls, int64)
deletions = st.builds(Deletion, int64, int64)
bounds = st.builds(Bound, small_bytes, st.booleans())
range_tombstones = st.builds(RangeTombstone, bounds, bounds, deletions)
paths = st.tuples(names, small_bytes)
rows = st.builds(Row, st.lists(small_bytes, max_size=3).map(tuple), st.none() | cells,
                 st.none() | deletions, st.dictionaries(paths, cells, max_size=4))
table_ids = st.binary(min_size=16, max_size=16)
partitions = st.builds(
    Partition, table_ids, st.binary(max_size=20), st.none() | deletions,
    st.lists(range_tombstones, max_size=3), st.none() | rows,
    st.dictionaries(small_bytes, rows, max_size=4),
)
read_commands = st.builds(
    ReadCommand, table_ids, st.binary(max_size=20),
    st.none() | st.lists(st.builds(Slice, bounds, bounds), max_size=3).map(tuple),
    st.none() | st.lists(names, max_size=3).map(tuple),
)

# (type, encode, decode, values)
CODECS = [
    (Cell, plain.cell_to_plain, plain.cell_from_plain, cells),
    (Deletion, plain.deletion_to_plain, plain.deletion_from_plain, deletions),
    (RangeTombstone, plain.range_tombstone_to_plain, plain.range_tombstone_from_plain,
     range_tombstones),
    (Row, plain.row_to_plain, plain.row_from_plain, rows),
    (Partition, plain.partition_to_plain, plain.partition_from_plain, partitions),
    (ReadCommand, plain.read_command_to_plain, plain.read_command_from_plain, read_commands),
]
DECODERS = [decode for _, _, decode, _ in CODECS]
codecs_and_values = st.sampled_from(CODECS).flatmap(
    lambda codec: st.tuples(st.just(codec), codec[3]))


def through_msgpack(obj):
    return msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False)


@given(codecs_and_values)
def test_round_trip(codec_and_value):
    (_, encode, decode, _), value = codec_and_value
    assert decode(through_msgpack(encode(value))) == value
    assert decode(encode(value)) == value  # in-process, without msgpack, too


msgpack_objects = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64) + 1, 2**64 - 1) | st.floats()
    | names | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=7)
    | st.dictionaries(names | st.integers(), children, max_size=3),
    max_leaves=30,
)


def decodes_or_protocol_error(decode, obj) -> None:
    try:
        obj = msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False,
                              strict_map_key=False)
    except (ValueError, OverflowError, TypeError):
        return  # not representable in msgpack: nothing a peer could send
    try:
        decode(obj)
    except ProtocolError:
        pass


@given(st.sampled_from(DECODERS), msgpack_objects)
def test_garbage_only_raises_protocol_error(decode, obj):
    decodes_or_protocol_error(decode, obj)


def _replace_somewhere(obj, path: list[int], replacement):
    """obj with the element at `path` (indices, taken modulo lengths) replaced."""
    if not path or not isinstance(obj, list) or not obj:
        return replacement
    i = path[0] % len(obj)
    return obj[:i] + [_replace_somewhere(obj[i], path[1:], replacement)] + obj[i + 1:]


@given(codecs_and_values, st.lists(st.integers(0, 50), max_size=5), msgpack_objects)
def test_corrupted_encodings_only_raise_protocol_error(codec_and_value, path, replacement):
    (_, encode, decode, _), value = codec_and_value
    obj = through_msgpack(encode(value))
    decodes_or_protocol_error(decode, _replace_somewhere(obj, path, replacement))


@pytest.mark.parametrize("obj", [
    [b"t" * 15, b"k", None, [], None, []],  # short table id
    [b"t" * 16, b"k" * 70000, None, [], None, []],  # key too long
    [b"t" * 16, b"k", None, [], None, [b"c", [[], None, None, []]] * 2],  # duplicate row
    [b"t" * 16, b"k", [True, 1], [], None, []],  # bool is not an int
    [b"t" * 16, b"k", [2**63, 1], [], None, []],  # timestamp out of range
])
def test_specific_malformed_partitions(obj):
    with pytest.raises(ProtocolError):
        plain.partition_from_plain(obj)


def test_malformed_cells():
    for bad in ([1, b"v", -1, 0], [1, "v", 0, 0], [1, b"v", 0], {"ts": 1}, b"\x00" * 4,
                [1.0, b"v", 0, 0]):
        with pytest.raises(ProtocolError):
            plain.cell_from_plain(bad)
    with pytest.raises(ProtocolError):
        plain.row_from_plain([[], None, None, ["a", b"", 1, b"v", 0, 0] * 2])  # duplicate


# ---- the size bound the write path checks against the frame limit --------------------------


@given(partitions)
def test_partition_size_bound_never_below_the_packed_size(p):
    assert plain.partition_size_bound(p) >= len(msgpack.packb(plain.partition_to_plain(p),
                                                              use_bin_type=True))


def test_partition_size_bound_holds_at_the_widest_headers_and_stays_close():
    """Values, names and keys past the 8- and 16-bit length headers, integers at 64 bits, a
    non-ASCII column name: the bound still covers the encoding, and for a big value it is
    within a few hundred bytes of it (a write near the limit is not refused for slack)."""
    big = b"v" * 70_000
    cell = Cell(2**63 - 1, big, plain.MAX_TTL_S, -(2**63))
    row = Row((b"c" * 70_000,), Cell(2**62, b"", 5, 7), Deletion(-(2**63), 2**63 - 1),
              {("\u4e2d" * 30_000, b"p" * 300): cell, ("a", b""): Cell(1, None)})
    p = Partition(b"t" * 16, b"k" * 65_535, Deletion(1, 2),
                  [RangeTombstone(Bound(b"s" * 300, True), Bound(b"e", False), Deletion(3, 4))],
                  row, {b"c" * 70_000: row})
    packed = len(msgpack.packb(plain.partition_to_plain(p), use_bin_type=True))
    assert packed <= plain.partition_size_bound(p)
    one_blob = Partition(b"t" * 16, b"k", rows={b"": Row((), None, None, {("v", b""): Cell(1, big)})})
    packed = len(msgpack.packb(plain.partition_to_plain(one_blob), use_bin_type=True))
    assert packed <= plain.partition_size_bound(one_blob) <= packed + 200
