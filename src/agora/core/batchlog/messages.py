"""Internode messages of the batchlog: a LOGGED batch stored on its batchlog holders before
it is applied, their acknowledgement, and its removal once applied (Cassandra's
BATCH_STORE_REQ / BATCH_STORE_RSP / BATCH_REMOVE_REQ verbs, net/Verb.java).

Owns: the three message shapes and their strict decoding. A batch id is 16 bytes (a random
UUID's bytes, drawn from the coordinator's injected random source).
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.plain import partition_to_plain
from agora.core.types import Partition
from agora.core.wire import Acknowledgement, Message, expect, fields_of, int_field, partitions_field

BATCH_ID_BYTES = 16  # a UUID, as Cassandra's batch ids


def _batch_id(value) -> bytes:
    expect(type(value) is bytes and len(value) == BATCH_ID_BYTES, "batch_id must be 16 bytes")
    return value


@dataclass(frozen=True, slots=True)
class BatchStoreReq(Message):
    """Keep this batch in your batchlog, and replay it if it is not removed in time."""

    VERB = 60
    req_id: int
    batch_id: bytes
    partitions: tuple[Partition, ...]

    def to_wire(self) -> list:
        return [self.req_id, self.batch_id, [partition_to_plain(p) for p in self.partitions]]

    @classmethod
    def from_wire(cls, fields):
        req_id, batch_id, parts = fields_of(fields, 3, "BatchStoreReq")
        return cls(int_field(req_id, "req_id"), _batch_id(batch_id), partitions_field(parts, "BatchStoreReq"))


@dataclass(frozen=True, slots=True)
class BatchStoreRsp(Acknowledgement):
    """The batch is stored (error None), or why it was not."""

    VERB = 61


@dataclass(frozen=True, slots=True)
class BatchRemove(Message):
    """The batch is applied: forget it (one way; a lost removal costs one harmless replay)."""

    VERB = 62
    batch_id: bytes

    def to_wire(self) -> list:
        return [self.batch_id]

    @classmethod
    def from_wire(cls, fields):
        expect(isinstance(fields, list) and len(fields) == 1, "BatchRemove takes 1 field")
        return cls(_batch_id(fields[0]))
