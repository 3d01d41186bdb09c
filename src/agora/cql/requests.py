"""Decoded CQL requests as the statement layer sees them (native protocol spec v5 sections
4.1.4 QUERY, 4.1.5 PREPARE, 4.1.6 EXECUTE, 4.1.7 BATCH), and the per-connection session.

Owns: plain values only; the frame codec builds them, the statement layer reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNSET = object()  # a bound value of length -2: leave the column as it is (protocol v4+)


@dataclass(slots=True)
class QueryParams:
    consistency: int = 0x0001  # ONE
    values: list = field(default_factory=list)  # bytes | None | UNSET, in bind-marker order
    names: list[str] | None = None  # value names when the client sent them (flag 0x40)
    skip_metadata: bool = False
    page_size: int | None = None  # None or <= 0: no paging
    paging_state: bytes | None = None
    serial_consistency: int | None = None
    timestamp: int | None = None  # microseconds, the client's write timestamp
    keyspace: str | None = None  # v5 per-query keyspace
    now_in_seconds: int | None = None  # v5


@dataclass(slots=True)
class BatchChild:
    query: str | None  # kind 0: the CQL text
    statement_id: bytes | None  # kind 1: a prepared statement id
    values: list


@dataclass(slots=True)
class BatchRequest:
    batch_type: int  # 0 LOGGED, 1 UNLOGGED, 2 COUNTER
    children: list[BatchChild]
    params: QueryParams  # consistency, serial consistency, timestamp, keyspace


@dataclass(slots=True)
class Session:
    """What one client connection remembers between requests."""

    keyspace: str | None = None
    protocol_version: int = 4
