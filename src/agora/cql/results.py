"""What a CQL request produces, before it is put on the wire: the RESULT kinds of the native
protocol (spec v5 section 4.2.5) as plain values.

Owns: the vocabulary between the statement layer (which computes results) and the frame
codec (which encodes them). Values in rows are already serialized cell bytes (None = null),
so the codec never needs to know Python types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agora.core.schema.types import CqlType


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    keyspace: str
    table: str
    name: str
    type: CqlType


@dataclass(frozen=True, slots=True)
class Void:
    """Result kind 0x0001: INSERT/UPDATE/DELETE/BATCH/TRUNCATE."""


@dataclass(slots=True)
class Rows:
    """Result kind 0x0002. `paging_state` set when more rows remain."""

    columns: list[ColumnSpec]
    rows: list[list[bytes | None]] = field(default_factory=list)
    paging_state: bytes | None = None


@dataclass(frozen=True, slots=True)
class SetKeyspace:
    """Result kind 0x0003: USE ks."""

    keyspace: str


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """Result kind 0x0005 (and the SCHEMA_CHANGE event body).
    change: CREATED | UPDATED | DROPPED; target: KEYSPACE | TABLE | TYPE | FUNCTION | AGGREGATE."""

    change: str
    target: str
    keyspace: str
    name: str = ""
    arg_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Prepared:
    """Result kind 0x0004. `bind_columns` are the bind markers' specs in order;
    `pk_indexes` the positions of the bind markers that give the partition key columns, in
    partition-key order (what token-aware drivers route by). `result_columns` describe the
    rows an EXECUTE returns (empty for statements that return none)."""

    statement_id: bytes
    result_metadata_id: bytes
    bind_columns: list[ColumnSpec]
    pk_indexes: list[int]
    result_columns: list[ColumnSpec]


Result = Void | Rows | SetKeyspace | SchemaChange | Prepared
