"""Internode messages of anti-entropy repair (verbs 50-55): tree requests, sync requests and
the partition streams they cause (Cassandra's ValidationRequest/ValidationResponse,
SyncRequest/SyncResponse and its streaming session, much simplified).

Owns: the message shapes and their strict decoding; a malformed message raises
ProtocolError and nothing else. `req_id` is chosen by the sender of a request and echoed
by its response, as for the data-path messages.

    RepairTreeReq     coordinator -> replica: build the tree of (start, end] of a table
    RepairTreeRsp     replica -> coordinator: its non-empty leaves, or an error
    RepairSyncReq     coordinator -> replica: push your partitions of `ranges` to `peer`
    RepairSyncRsp     replica -> coordinator: done; what was pushed, or an error
    RepairStreamData  replica -> peer: a chunk of whole partitions to merge
    RepairStreamAck   peer -> replica: that chunk is applied (or an error)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agora.core.antientropy.merkle import HASH_BYTES, MAX_TREE_DEPTH
from agora.core.plain import (MAX_INT64, MIN_INT64, TABLE_ID_BYTES, partition_from_plain,
                              partition_to_plain)
from agora.core.types import Partition, Token
from agora.core.wire import Acknowledgement, Message, expect

# Token ranges one sync request may name: a tree of 2**MAX_TREE_DEPTH leaves differs in at
# most 2**(MAX_TREE_DEPTH - 1) separate runs of leaves, so this never cuts a real request.
MAX_SYNC_RANGES = 1 << MAX_TREE_DEPTH


def _fields(fields: Any, n: int, name: str) -> list:
    expect(isinstance(fields, list) and len(fields) == n, f"{name} takes {n} fields")
    return fields


def _int(v: Any, what: str) -> int:
    expect(type(v) is int, f"{what} must be an int")
    return v


def _count(v: Any, what: str) -> int:
    expect(type(v) is int and 0 <= v <= MAX_INT64, f"{what} must be a non-negative int")
    return v


def _token(v: Any, what: str) -> Token:
    expect(type(v) is int and MIN_INT64 <= v <= MAX_INT64, f"{what} must be a token")
    return v


def _table_id(v: Any) -> bytes:
    expect(type(v) is bytes and len(v) == TABLE_ID_BYTES, "table_id must be 16 bytes")
    return v


def _opt_str(v: Any, what: str) -> str | None:
    expect(v is None or type(v) is str, f"{what} must be a string or nil")
    return v


def _range(v: Any) -> tuple[Token, Token]:
    expect(isinstance(v, list) and len(v) == 2, "a range is [start, end]")
    start, end = _token(v[0], "range start"), _token(v[1], "range end")
    expect(start < end, "a repair range never wraps: start < end")
    return start, end


@dataclass(frozen=True, slots=True)
class RepairTreeReq(Message):
    """Build the Merkle tree of `depth` over (start_token, end_token] of `table_id`."""

    VERB = 50
    req_id: int
    table_id: bytes
    start_token: Token
    end_token: Token
    depth: int

    def to_wire(self) -> list:
        return [self.req_id, self.table_id, self.start_token, self.end_token, self.depth]

    @classmethod
    def from_wire(cls, fields):
        req_id, table_id, start, end, depth = _fields(fields, 5, "RepairTreeReq")
        start, end = _range([start, end])
        expect(type(depth) is int and 0 <= depth <= MAX_TREE_DEPTH, "depth out of range")
        return cls(_int(req_id, "req_id"), _table_id(table_id), start, end, depth)


@dataclass(frozen=True, slots=True)
class RepairTreeRsp(Message):
    """The tree's non-empty leaves: `indices` ascending, `hashes` their HASH_BYTES hashes
    concatenated in the same order; `partitions` hashed in all. `error` when the replica
    could not build it (then the leaves are empty)."""

    VERB = 51
    req_id: int
    indices: tuple[int, ...]
    hashes: bytes
    partitions: int = 0
    error: str | None = None

    def leaves(self) -> dict[int, bytes]:
        h = self.hashes
        return {i: h[n * HASH_BYTES:(n + 1) * HASH_BYTES] for n, i in enumerate(self.indices)}

    def to_wire(self) -> list:
        return [self.req_id, list(self.indices), self.hashes, self.partitions, self.error]

    @classmethod
    def from_wire(cls, fields):
        req_id, indices, hashes, partitions, error = _fields(fields, 5, "RepairTreeRsp")
        expect(isinstance(indices, list) and len(indices) <= 1 << MAX_TREE_DEPTH,
               "indices must be a list of at most 2**MAX_TREE_DEPTH leaves")
        expect(all(type(i) is int for i in indices), "leaf indices must be ints")
        expect(all(0 <= a < b for a, b in zip(indices, indices[1:])) and (not indices or indices[0] >= 0)
               and (not indices or indices[-1] < 1 << MAX_TREE_DEPTH),
               "leaf indices must be ascending and in range")
        expect(type(hashes) is bytes and len(hashes) == HASH_BYTES * len(indices),
               "one hash per leaf")
        return cls(_int(req_id, "req_id"), tuple(indices), hashes,
                   _count(partitions, "partitions"), _opt_str(error, "error"))


@dataclass(frozen=True, slots=True)
class RepairSyncReq(Message):
    """Send your partitions of `table_id` in `ranges` (each (start, end], never wrapping,
    ascending) to `peer`, then answer with a RepairSyncRsp."""

    VERB = 52
    req_id: int
    table_id: bytes
    peer: str
    ranges: tuple[tuple[Token, Token], ...]

    def to_wire(self) -> list:
        return [self.req_id, self.table_id, self.peer, [list(r) for r in self.ranges]]

    @classmethod
    def from_wire(cls, fields):
        req_id, table_id, peer, ranges = _fields(fields, 4, "RepairSyncReq")
        expect(type(peer) is str and 0 < len(peer) <= 256, "peer must be a node id")
        expect(isinstance(ranges, list) and 0 < len(ranges) <= MAX_SYNC_RANGES,
               "ranges must be a non-empty list")
        parsed = tuple(_range(r) for r in ranges)
        expect(all(a[1] <= b[0] for a, b in zip(parsed, parsed[1:])), "ranges must be ascending")
        return cls(_int(req_id, "req_id"), _table_id(table_id), peer, parsed)


@dataclass(frozen=True, slots=True)
class RepairSyncRsp(Message):
    """The push a RepairSyncReq asked for is over: what it carried, or why it failed."""

    VERB = 53
    req_id: int
    partitions: int
    rows: int
    bytes: int
    error: str | None = None

    def to_wire(self) -> list:
        return [self.req_id, self.partitions, self.rows, self.bytes, self.error]

    @classmethod
    def from_wire(cls, fields):
        req_id, partitions, rows, nbytes, error = _fields(fields, 5, "RepairSyncRsp")
        return cls(_int(req_id, "req_id"), _count(partitions, "partitions"), _count(rows, "rows"),
                   _count(nbytes, "bytes"), _opt_str(error, "error"))


@dataclass(frozen=True, slots=True)
class RepairStreamData(Message):
    """Whole partitions of one table for the receiver to merge; answered by an ack."""

    VERB = 54
    req_id: int
    table_id: bytes
    partitions: tuple[Partition, ...]

    def to_wire(self) -> list:
        return [self.req_id, self.table_id, [partition_to_plain(p) for p in self.partitions]]

    @classmethod
    def from_wire(cls, fields):
        req_id, table_id, parts = _fields(fields, 3, "RepairStreamData")
        table_id = _table_id(table_id)
        expect(isinstance(parts, list) and parts, "partitions must be a non-empty list")
        decoded = tuple(partition_from_plain(p) for p in parts)
        expect(all(p.table_id == table_id for p in decoded), "every partition must be of table_id")
        return cls(_int(req_id, "req_id"), table_id, decoded)


@dataclass(frozen=True, slots=True)
class RepairStreamAck(Acknowledgement):
    VERB = 55


REPAIR_MESSAGES = (RepairTreeReq, RepairTreeRsp, RepairSyncReq, RepairSyncRsp,
                   RepairStreamData, RepairStreamAck)
