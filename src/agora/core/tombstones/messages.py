"""Internode messages of the downtime check (agora.core.tombstones.downtime): a node back
from a long downtime asks each peer to stop purging tombstones newer than its last-alive
time, and to say what the newest tombstone it has ever purged was.

Owns: the two message shapes and their strict decoding. Times are whole seconds of the
wall clock, like tombstones' local deletion times.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.wire import Message, expect


@dataclass(frozen=True, slots=True)
class PurgeHorizonReq(Message):
    """From a node whose incarnation `generation` was down since `since_s`: from now on do
    not purge any tombstone whose deletion time is >= since_s (minus the clock margin) while
    my gossip says I need repair; and answer your purge horizon."""

    VERB = 63
    req_id: int
    since_s: int
    generation: int

    def to_wire(self) -> list:
        return [self.req_id, self.since_s, self.generation]

    @classmethod
    def from_wire(cls, fields):
        expect(isinstance(fields, list) and len(fields) == 3, "PurgeHorizonReq takes 3 fields")
        req_id, since_s, generation = fields
        expect(all(type(v) is int for v in fields), "PurgeHorizonReq fields must be ints")
        expect(since_s >= 0 and generation >= 0, "since_s and generation must not be negative")
        return cls(req_id, since_s, generation)


@dataclass(frozen=True, slots=True)
class PurgeHorizonRsp(Message):
    """The guard is in place; `horizon_s` is the largest local deletion time of any tombstone
    (or expired cell) the answering node has ever purged, 0 if none."""

    VERB = 64
    req_id: int
    horizon_s: int

    def to_wire(self) -> list:
        return [self.req_id, self.horizon_s]

    @classmethod
    def from_wire(cls, fields):
        expect(isinstance(fields, list) and len(fields) == 2, "PurgeHorizonRsp takes 2 fields")
        req_id, horizon_s = fields
        expect(type(req_id) is int and type(horizon_s) is int, "PurgeHorizonRsp fields must be ints")
        return cls(req_id, horizon_s)
