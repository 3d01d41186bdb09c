"""Internode messages for data and schema: mutations, reads, digests, schema exchange, and
the admin/client verbs the `agora` CLI and tests use to reach a node's coordinator.

Owns: the message shapes and their strict decoding. Every request carries a `req_id` chosen
by the sender; its response echoes it, which is how a coordinator correlates replies
(Cassandra's MessagingService callbacks). Gossip messages live in `membership/messages.py`.
Partitions and read commands cross the wire in the plain form of `agora.core.plain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agora.core.frozen import fast_init
from agora.core.plain import (MAX_INT64, MIN_INT64, partition_from_plain, partition_to_plain,
                              range_command_from_plain, range_command_to_plain,
                              read_command_from_plain, read_command_to_plain)
from agora.core.types import Partition, RangeCommand, ReadCommand, Token
from agora.core.wire import (Acknowledgement, Message, expect, fields_of, int_field, opt_str_field,
                             partitions_field, str_field)


# ---- data path ----------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class PartitionsMessage(Message):
    """The shape of a request carrying partition fragments to apply: (req_id, partitions).
    Verbs of that shape subclass it and set only VERB."""

    req_id: int
    partitions: tuple[Partition, ...]

    def to_wire(self) -> list:
        return [self.req_id, [partition_to_plain(p) for p in self.partitions]]

    @classmethod
    def from_wire(cls, fields):
        req_id, parts = fields_of(fields, 2, cls.__name__)
        return cls(int_field(req_id, "req_id"), partitions_field(parts, cls.__name__))


@fast_init
@dataclass(frozen=True, slots=True)
class MutationReq(PartitionsMessage):
    """Apply these partition fragments (one batch) on the receiving replica."""

    VERB = 1


@fast_init
@dataclass(frozen=True, slots=True)
class MutationRsp(Acknowledgement):
    VERB = 2


@fast_init
@dataclass(frozen=True, slots=True)
class ReadReq(Message):
    """Read one partition slice; `digest_only` asks for its digest instead of the data."""

    VERB = 3
    req_id: int
    command: ReadCommand
    digest_only: bool

    def to_wire(self) -> list:
        return [self.req_id, read_command_to_plain(self.command), self.digest_only]

    @classmethod
    def from_wire(cls, fields):
        req_id, cmd, digest_only = fields_of(fields, 3, "ReadReq")
        expect(type(digest_only) is bool, "digest_only must be a bool")
        return cls(int_field(req_id, "req_id"), read_command_from_plain(cmd), digest_only)


@fast_init
@dataclass(frozen=True, slots=True)
class ReadRsp(Message):
    """`partition` for a data read (None when the replica holds nothing), `digest` for a
    digest read; `error` when the replica could not serve it. A data read with a row limit
    that stopped early names the last clustering key it read (`more_after`, ReadPage); a
    digest covers it too."""

    VERB = 4
    req_id: int
    partition: Partition | None
    digest: bytes | None
    error: str | None = None
    more_after: bytes | None = None

    def to_wire(self) -> list:
        plain = None if self.partition is None else partition_to_plain(self.partition)
        if self.more_after is None:
            return [self.req_id, plain, self.digest, self.error]
        return [self.req_id, plain, self.digest, self.error, self.more_after]

    @classmethod
    def from_wire(cls, fields):
        more_after = None
        if len(fields) == 5:
            more_after = fields[4]
            expect(type(more_after) is bytes, "more_after must be bytes")
            fields = fields[:4]
        req_id, plain, digest, error = fields_of(fields, 4, "ReadRsp")
        expect(digest is None or type(digest) is bytes, "digest must be bytes or nil")
        part = None if plain is None else partition_from_plain(plain)
        return cls(int_field(req_id, "req_id"), part, digest, opt_str_field(error, "error"), more_after)


@fast_init
@dataclass(frozen=True, slots=True)
class RangeReadReq(Message):
    """Read the partitions `command` names from the receiving replica's storage (one
    sub-range of a token-range scan; never a digest: range reads always move data)."""

    VERB = 5
    req_id: int
    command: RangeCommand

    def to_wire(self) -> list:
        return [self.req_id, range_command_to_plain(self.command)]

    @classmethod
    def from_wire(cls, fields):
        req_id, cmd = fields_of(fields, 2, "RangeReadReq")
        return cls(int_field(req_id, "req_id"), range_command_from_plain(cmd))


@fast_init
@dataclass(frozen=True, slots=True)
class RangeReadRsp(Message):
    """The replica's partitions of the range, in position order, sliced, with tombstones.
    `more`: the replica stopped early (a size bound or the command's row limit); its answer
    is then complete only up to and including position (last_token, last_key), and the
    coordinator asks again from there. With `last_ckey` too, it stopped *inside* that
    partition (the last one in `partitions`): its rows up to and including that clustering
    key were sent, the rest were not. `error` when the replica could not serve it."""

    VERB = 6
    req_id: int
    partitions: tuple[Partition, ...]
    more: bool = False
    last_token: Token | None = None
    last_key: bytes | None = None
    error: str | None = None
    last_ckey: bytes | None = None

    def to_wire(self) -> list:
        out = [self.req_id, [partition_to_plain(p) for p in self.partitions], self.more,
               self.last_token, self.last_key, self.error]
        if self.last_ckey is not None:
            out.append(self.last_ckey)
        return out

    @classmethod
    def from_wire(cls, fields):
        last_ckey = None
        if isinstance(fields, list) and len(fields) == 7:
            fields, last_ckey = fields[:6], fields[6]
            expect(type(last_ckey) is bytes, "last_ckey must be bytes")
        req_id, parts, more, last_token, last_key, error = fields_of(fields, 6, "RangeReadRsp")
        expect(isinstance(parts, list), "RangeReadRsp.partitions must be a list")
        expect(type(more) is bool, "more must be a bool")
        if more:
            expect(type(last_token) is int and MIN_INT64 <= last_token <= MAX_INT64,
                   "last_token must be a token")
            expect(type(last_key) is bytes, "last_key must be bytes")
        else:
            expect(last_token is None and last_key is None and last_ckey is None,
                   "no last position without more")
        return cls(int_field(req_id, "req_id"), tuple(partition_from_plain(p) for p in parts), more,
                   last_token, last_key, opt_str_field(error, "error"), last_ckey)


# ---- schema --------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class SchemaPush(Message):
    """The sender's whole schema (plain form); the receiver merges it (LWW per object)."""

    VERB = 10
    schema: Any

    def to_wire(self) -> list:
        return [self.schema]

    @classmethod
    def from_wire(cls, fields):
        (schema,) = fields_of(fields, 1, "SchemaPush")
        return cls(schema)


@fast_init
@dataclass(frozen=True, slots=True)
class SchemaPullReq(Message):
    """Ask a peer whose gossiped schema version differs from ours for its schema."""

    VERB = 11
    req_id: int

    def to_wire(self) -> list:
        return [self.req_id]

    @classmethod
    def from_wire(cls, fields):
        (req_id,) = fields_of(fields, 1, "SchemaPullReq")
        return cls(int_field(req_id, "req_id"))


@fast_init
@dataclass(frozen=True, slots=True)
class SchemaVersion(Message):
    """The receiver of a SchemaPush tells the sender the schema version it now has, so a
    DDL's coordinator sees agreement at once instead of a gossip round later."""

    VERB = 12
    version: str

    def to_wire(self) -> list:
        return [self.version]

    @classmethod
    def from_wire(cls, fields):
        (version,) = fields_of(fields, 1, "SchemaVersion")
        return cls(str_field(version, "version"))


# ---- admin / client verbs (the `agora` CLI and tests) -----------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class ClientReq(Message):
    """A request from an admin client: `op` names it, `args` is a msgpack-native map.
    ops: "status", "schema", "write", "read", "delete", "create_keyspace", "create_table",
    "drop_keyspace", "drop_table", "inspect" (read local storage only), "repair" and
    "repair_status" (anti-entropy repair, agora.core.antientropy)."""

    VERB = 30
    req_id: int
    op: str
    args: dict

    def to_wire(self) -> list:
        return [self.req_id, self.op, self.args]

    @classmethod
    def from_wire(cls, fields):
        req_id, op, args = fields_of(fields, 3, "ClientReq")
        expect(isinstance(args, dict), "ClientReq.args must be a map")
        return cls(int_field(req_id, "req_id"), str_field(op, "op"), args)


@fast_init
@dataclass(frozen=True, slots=True)
class ClientRsp(Message):
    """`error` is None on success; otherwise [error class name, message, details map]."""

    VERB = 31
    req_id: int
    result: Any
    error: list | None = None

    def to_wire(self) -> list:
        return [self.req_id, self.result, self.error]

    @classmethod
    def from_wire(cls, fields):
        req_id, result, error = fields_of(fields, 3, "ClientRsp")
        expect(error is None or isinstance(error, list), "ClientRsp.error must be a list or nil")
        return cls(int_field(req_id, "req_id"), result, error)
