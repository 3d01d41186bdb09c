"""The on-disk key layout of the data keyspace, so that one table's token range is one
contiguous scan (DESIGN.md section 4, "Storage").

Owns: encoding and parsing of data keys. Every key of a partition starts with its
*partition prefix*; the rest says whether the value is the partition header or a row:

    table_id (16) | token + 2**63 (8, big-endian) | len(pk) (2, big-endian) | pk
        | kind (1): KIND_HEADER -> value = partition deletion, range tombstones, static row
                    KIND_ROW    -> followed by the row's ckey; value = the row

Byte order of keys is therefore (table, token, pk length, pk, header before rows, clustering
order). The memory engine sorts partitions by the same prefix so both engines scan in one
order. Values are msgpack of `agora.core.plain` shapes (see `header_*`/`row_*` in rocks.py).
Node metadata does not live here: the RocksDB engine keeps it in a separate column family,
so no table id can ever clash with it.
"""

from __future__ import annotations

import struct

from agora.core.plain import MAX_PARTITION_KEY_BYTES, TABLE_ID_BYTES

TOKEN_OFFSET = 2**63  # maps signed 64-bit tokens onto unsigned so big-endian bytes sort right
TOKEN_BYTES = 8
KEY_LENGTH_BYTES = 2  # partition keys are at most MAX_PARTITION_KEY_BYTES (an unsigned short)
KIND_HEADER = b"\x00"
KIND_ROW = b"\x01"

_TOKEN_AND_LENGTH = struct.Struct(">QH")
_TOKEN = struct.Struct(">Q")
_PK_START = TABLE_ID_BYTES + TOKEN_BYTES + KEY_LENGTH_BYTES


def partition_prefix(table_id: bytes, token: int, key: bytes) -> bytes:
    """The bytes every key of partition (table_id, key) starts with."""
    assert len(table_id) == TABLE_ID_BYTES, "table ids are 16 bytes"
    assert len(key) <= MAX_PARTITION_KEY_BYTES, "partition key too long"
    return table_id + _TOKEN_AND_LENGTH.pack(token + TOKEN_OFFSET, len(key)) + key


def token_position(table_id: bytes, token: int) -> bytes:
    """The smallest key of `table_id` whose token is >= `token`."""
    return table_id + _TOKEN.pack(token + TOKEN_OFFSET)


def table_end(table_id: bytes) -> bytes | None:
    """The smallest key greater than every key of `table_id` (None if the id is all 0xFF,
    so no such key exists)."""
    stripped = table_id.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def parse_partition(key: bytes) -> tuple[int, bytes, int]:
    """(token, partition key, length of the partition prefix) of a data key."""
    token_u, length = _TOKEN_AND_LENGTH.unpack_from(key, TABLE_ID_BYTES)
    end = _PK_START + length
    return token_u - TOKEN_OFFSET, key[_PK_START:end], end
