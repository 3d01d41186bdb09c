"""The data model every other module speaks: nodes, tokens, consistency levels, and the
partition fragments (cells, rows, tombstones) that writes carry and reads return.

Owns: plain value types only. It deliberately knows nothing of CQL types (values are the
already-serialized CQL bytes), of storage layout or of the network; the merge rules live in
`reconcile.py`. The shape follows Cassandra's storage model (a partition holds an optional
partition deletion, range tombstones over clustering prefixes, one static row and clustering
rows; a row holds a liveness marker, an optional row deletion and cells keyed by column and,
for non-frozen collections, by element path).

Rows inside a partition are keyed by their *clustering key* (`ckey`): the order-preserving,
self-delimiting encoding of the clustering values (see `agora.core.schema.types`), so that
byte order is clustering order and a clustering prefix is a byte prefix. The raw (CQL wire)
values travel alongside in `Row.clustering`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from agora.core.frozen import fast_init

NodeId = str  # a node's internode endpoint, "ip:port", e.g. "127.0.0.2:7000"
Token = int  # signed 64-bit Murmur3 token
TimestampUs = int  # write timestamp, microseconds since the epoch

MIN_TOKEN: Token = -(2**63)
MAX_TOKEN: Token = 2**63 - 1


class ConsistencyLevel(enum.IntEnum):
    """Values are the CQL native protocol's [consistency] codes (spec section 3)."""

    ANY = 0x0000
    ONE = 0x0001
    TWO = 0x0002
    THREE = 0x0003
    QUORUM = 0x0004
    ALL = 0x0005
    LOCAL_QUORUM = 0x0006
    EACH_QUORUM = 0x0007
    SERIAL = 0x0008
    LOCAL_SERIAL = 0x0009
    LOCAL_ONE = 0x000A


@fast_init
@dataclass(frozen=True, slots=True)
class Cell:
    """One versioned value. `value is None` means a tombstone.

    ttl_s: 0 for a cell that never expires; otherwise the TTL it was written with.
    ldt_s: local deletion time in seconds: for a tombstone, when it was deleted (drives
           gc_grace purging); for an expiring cell, the second at which it expires; 0 otherwise.
    """

    ts: TimestampUs
    value: bytes | None
    ttl_s: int = 0
    ldt_s: int = 0

    @property
    def is_tombstone(self) -> bool:
        return self.value is None

    def is_live(self, now_s: int) -> bool:
        if self.value is None:
            return False
        return self.ttl_s == 0 or now_s < self.ldt_s


@fast_init
@dataclass(frozen=True, slots=True)
class Deletion:
    """A partition or row tombstone: deletes everything with timestamp <= ts."""

    ts: TimestampUs
    ldt_s: int  # local deletion time in seconds (for gc_grace purging)


@fast_init
@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a clustering range: a clustering-key prefix (encoded ckey bytes) and
    whether rows having exactly that prefix are inside the range. An empty prefix with
    inclusive=True is unbounded on that side."""

    prefix: bytes
    inclusive: bool = True


@fast_init
@dataclass(frozen=True, slots=True)
class RangeTombstone:
    """Deletes rows whose ckey lies within [start, end] (per the bounds' inclusivity) and whose
    data has timestamp <= deletion.ts."""

    start: Bound
    end: Bound
    deletion: Deletion


# A cell's address inside a row: (column name, element path). Simple columns use path b"";
# a non-frozen collection element uses the element's key bytes as its path.
CellPath = tuple[str, bytes]


@dataclass(slots=True)
class Row:
    """A clustering row (or, with empty clustering, the static row).

    marker: the row's liveness info from an INSERT (a Cell with value b""), so that a row with
            all-null columns still exists; None when the row was only UPDATEd.
    deletion: a row tombstone, or None.
    cells: (column, path) -> Cell.
    """

    clustering: tuple[bytes, ...] = ()
    marker: Cell | None = None
    deletion: Deletion | None = None
    cells: dict[CellPath, Cell] = field(default_factory=dict)


@dataclass(slots=True)
class Partition:
    """A fragment of one partition of one table: what a mutation writes or a read returns.

    rows: ckey (encoded clustering bytes) -> Row. Iterate `sorted(rows)` for clustering order.
    """

    table_id: bytes  # 16-byte table uuid
    key: bytes  # serialized partition key (the bytes whose Murmur3 is the token)
    deletion: Deletion | None = None
    range_tombstones: list[RangeTombstone] = field(default_factory=list)
    static: Row | None = None
    rows: dict[bytes, Row] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True, slots=True)
class Slice:
    """Clustering slice of a read: rows with start <= ckey <= end (per inclusivity)."""

    start: Bound = Bound(b"", True)
    end: Bound = Bound(b"", True)


@fast_init
@dataclass(frozen=True, slots=True)
class ReadCommand:
    """What to read from one partition. `slices=None` reads the whole partition.
    `columns=None` reads every column. Replicas return tombstones too (the coordinator needs
    them to merge); the coordinator filters dead data before answering a client.
    `limit_rows` (0: no limit) bounds the clustering rows a replica reads, in clustering
    order (from the end when `reversed`), tombstoned ones included: a page of a wide
    partition (Cassandra's DataLimits). A replica that stops there names the last clustering
    key it read (`ReadPage.more_after`: the smallest one when `reversed`)."""

    table_id: bytes
    key: bytes
    slices: tuple[Slice, ...] | None = None
    columns: tuple[str, ...] | None = None
    limit_rows: int = 0
    reversed: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class ReadPage:
    """A read with a row limit, as storage, a replica and the coordinator answer it:
    `partition` (None: nothing there) is complete for every clustering key up to
    `more_after` (down to it, for a reversed read); rows after (before) it may exist (None:
    the read reached its slices' end)."""

    partition: Partition | None
    more_after: bytes | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class RangeCommand:
    """Read the partitions of one table whose position lies after `start` and up to
    `end_token` (inclusive), in ring order: a token-range scan (full-table SELECT, token()
    restrictions, paging across partitions).

    start: (token, key) of the last partition already returned, exclusive; key None means
           "every partition with token > start token". `end_token` wraps like Cassandra ranges
           when it is <= the start token. `limit_rows` bounds live rows returned (0 = no limit);
           `per_partition_limit` likewise per partition. `slices`/`columns` as in ReadCommand.
    start_ckey: set (with start_key) when the scan resumes *inside* partition start_key: its
           rows after this clustering key come first (with its header: deletion, range
           tombstones, static row), then the partitions after it.
    """

    table_id: bytes
    start_token: Token
    start_key: bytes | None
    end_token: Token
    slices: tuple[Slice, ...] | None = None
    columns: tuple[str, ...] | None = None
    limit_rows: int = 0
    per_partition_limit: int = 0
    start_ckey: bytes | None = None
