"""What a hint is on disk: its key, which orders a node's hints by (target, creation time,
id), and its value, the mutation plus what replay needs to judge it (Cassandra's
hints/Hint.java and the per-host hint files of HintsStore; Dynamo paper section 4.6).

Owns: encoding and decoding of hint keys and values. The storage engines keep hints as an
ordered map of opaque bytes (`StorageEngine.put_hints` ...); only this module knows what the
bytes mean. Layout:

    key    target node id (utf-8) | NUL | creation_ms (8, big-endian) | generation (8) | seq (4)
    value  msgpack [target host id | nil, creation_ms, gc_grace_s, [partition plain, ...]]

The key starts with the target and a NUL (a node id is "ip:port" and never holds one), so
one target's hints are one contiguous, time-ordered range (`target_prefix`), and
`agora.core.effects.HintIndex` can total them per target without decoding values. The
coordinator's gossip generation and a per-incarnation sequence number make the id unique
even when two incarnations stamp the same millisecond (a restart within it, a clock that
went backwards).

`gc_grace_s` is the smallest gc_grace_seconds of the hint's tables when it was written: a
hint older than that is dropped at replay, because tombstones it might resurrect data
against may already be purged on the target (Cassandra's Hint.isLive).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack

from agora.core.plain import partition_from_plain, partition_to_plain
from agora.core.types import NodeId, Partition

KEY_SEPARATOR = b"\x00"
_ID = struct.Struct(">QQI")  # creation_ms, generation, seq
MAX_SEQ = 2**32 - 1


def target_prefix(target: NodeId) -> bytes:
    """The bytes every key of a hint for `target` starts with."""
    raw = target.encode()
    assert KEY_SEPARATOR not in raw, "a node id never holds a NUL"
    return raw + KEY_SEPARATOR


def target_of_prefix(prefix: bytes) -> NodeId:
    """The target named by a key's part before the separator."""
    return prefix.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class Hint:
    """One stored hint, as replay sees it. `size` is the stored value's length in bytes:
    what the throttle and the pending-bytes figure count."""

    key: bytes
    target: NodeId
    host_id: str | None
    creation_ms: int
    gc_grace_s: int
    partitions: tuple[Partition, ...]
    size: int

    def live_at(self, now_ms: int) -> bool:
        return now_ms < self.creation_ms + self.gc_grace_s * 1000


def encode(target: NodeId, host_id: str | None, creation_ms: int, generation: int, seq: int,
           gc_grace_s: int, partitions: tuple[Partition, ...]) -> tuple[bytes, bytes]:
    """(key, value) of a new hint."""
    assert 0 <= seq <= MAX_SEQ, "hint sequence number out of range"
    key = target_prefix(target) + _ID.pack(max(0, creation_ms), generation, seq)
    value = msgpack.packb([host_id, creation_ms, gc_grace_s,
                           [partition_to_plain(p) for p in partitions]], use_bin_type=True)
    return key, value


def decode(key: bytes, value: bytes) -> Hint:
    """A stored hint. The bytes are our own, written by `encode`; anything else is a broken
    invariant (a corrupt store), and fails loudly."""
    prefix, sep, _ = key.partition(KEY_SEPARATOR)
    assert sep, f"not a hint key: {key!r}"
    host_id, creation_ms, gc_grace_s, plains = msgpack.unpackb(value, raw=False)
    parts = tuple(partition_from_plain(p) for p in plains)
    return Hint(key, target_of_prefix(prefix), host_id, creation_ms, gc_grace_s, parts, len(value))
