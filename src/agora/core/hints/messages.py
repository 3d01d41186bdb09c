"""Internode messages of hinted handoff: a stored hint travelling to its target, and the
target's acknowledgement (Cassandra's HINT_REQ / HINT_RSP verbs, net/Verb.java).

Owns: the two message shapes and their strict decoding. A `HintReq` carries exactly what a
`MutationReq` does and the target applies it the same way (`agora.core.replica`); it has its
own verb so that replay is visible as such in traces and never mixes with the write path's
acknowledgements. The coordinator deletes a hint only on a `HintRsp` without error.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.plain import partition_from_plain, partition_to_plain
from agora.core.types import Partition
from agora.core.wire import Message, expect, fields_of, int_field, opt_str_field


@dataclass(frozen=True, slots=True)
class HintReq(Message):
    """Apply these partition fragments (one stored hint) on the receiving node."""

    VERB = 40
    req_id: int
    partitions: tuple[Partition, ...]

    def to_wire(self) -> list:
        return [self.req_id, [partition_to_plain(p) for p in self.partitions]]

    @classmethod
    def from_wire(cls, fields):
        req_id, parts = fields_of(fields, 2, "HintReq")
        expect(isinstance(parts, list) and parts, "HintReq.partitions must be a non-empty list")
        return cls(int_field(req_id, "req_id"), tuple(partition_from_plain(p) for p in parts))


@dataclass(frozen=True, slots=True)
class HintRsp(Message):
    """The hint is applied (error None), or why it was not."""

    VERB = 41
    req_id: int
    error: str | None = None

    def to_wire(self) -> list:
        return [self.req_id, self.error]

    @classmethod
    def from_wire(cls, fields):
        req_id, error = fields_of(fields, 2, "HintRsp")
        return cls(int_field(req_id, "req_id"), opt_str_field(error, "error"))
