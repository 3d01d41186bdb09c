"""Partition fragments from CQL writes: what INSERT, UPDATE and DELETE put into a partition,
cell by cell, with Cassandra's semantics (the CQL reference's "Data Manipulation" chapter
and Cassandra's Operation/UpdateParameters classes).

Owns: turning already-serialized values into cells — the row marker of an INSERT, simple and
frozen cells, one cell per element of a non-frozen collection or field of a non-frozen UDT,
collection-wide tombstones when a collection is overwritten or deleted, row, range and
partition tombstones, TTL and timestamps. It does not parse statements or evaluate terms
(the processor does) and does no I/O: list operations that need the current list (l[i] = x,
l = l - [x]) receive it from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agora.core.errors import InvalidRequest
from agora.core.schema import types as T
from agora.core.types import Bound, Cell, Deletion, Partition, RangeTombstone, Row

LIST_SLOTS_PER_MICROSECOND = 1000  # list elements one statement may add per timestamp tick
LIST_PATH_BYTES = 16  # 8 bytes of order (time) + 8 bytes that keep concurrent writers apart


@dataclass
class WriteClock:
    """Timestamp, TTL and 'now' of one statement, and a source of list-element paths.

    uniq: 4 bytes that differ between coordinators (from the host id), so two nodes appending
    to one list at the same microsecond write distinct elements, as Cassandra's timeuuids do.
    """

    ts: int
    ttl_s: int
    now_s: int
    uniq: bytes = b"\x00\x00\x00\x00"
    _seq: int = 0

    def cell(self, value: bytes) -> Cell:
        if self.ttl_s:
            return Cell(self.ts, value, self.ttl_s, self.now_s + self.ttl_s)
        return Cell(self.ts, value)

    def tombstone(self, ts: int | None = None) -> Cell:
        return Cell(self.ts if ts is None else ts, None, 0, self.now_s)

    def list_path(self, order: int) -> bytes:
        self._seq += 1
        return ((order + 2**63).to_bytes(8, "big") + self.uniq[:4]
                + (self._seq & 0xFFFFFFFF).to_bytes(4, "big"))

    def append_paths(self, n: int) -> list[bytes]:
        if n > LIST_SLOTS_PER_MICROSECOND:
            raise InvalidRequest(f"at most {LIST_SLOTS_PER_MICROSECOND} list elements per statement")
        return [self.list_path(self.ts * LIST_SLOTS_PER_MICROSECOND + i) for i in range(n)]

    def prepend_paths(self, n: int) -> list[bytes]:
        """Paths that sort before every appended element and before earlier prepends."""
        if n > LIST_SLOTS_PER_MICROSECOND:
            raise InvalidRequest(f"at most {LIST_SLOTS_PER_MICROSECOND} list elements per statement")
        return [self.list_path(-self.ts * LIST_SLOTS_PER_MICROSECOND - n + i) for i in range(n)]


@dataclass
class PartitionWrite:
    """Accumulates one partition's fragment for one statement (or one batch)."""

    table: object  # TableDef
    key: bytes
    clock: WriteClock
    part: Partition = field(init=False)

    def __post_init__(self):
        self.part = Partition(self.table.id.bytes, self.key)

    # ---- rows ------------------------------------------------------------------------

    def row(self, clustering: tuple[bytes, ...]) -> Row:
        if not clustering:
            if self.table.clustering_columns:
                raise InvalidRequest("Missing mandatory PRIMARY KEY part "
                                     f"{self.table.clustering_columns[0].name}")
            ckey = b""
        else:
            ckey = T.encode_ckey(self.table.ckey_types(), list(clustering))
        row = self.part.rows.get(ckey)
        if row is None:
            row = self.part.rows[ckey] = Row(clustering)
        return row

    def static_row(self) -> Row:
        if self.part.static is None:
            self.part.static = Row(())
        return self.part.static

    def target(self, column, clustering: tuple[bytes, ...]) -> Row:
        return self.static_row() if column.kind == "static" else self.row(clustering)

    def marker(self, clustering: tuple[bytes, ...]) -> None:
        """INSERT's row liveness: the row exists even if every column is null."""
        self.row(clustering).marker = self.clock.cell(b"")

    # ---- column writes ---------------------------------------------------------------

    def set(self, row: Row, column, value: bytes | None) -> None:
        """col = value (None: null). A non-frozen collection or UDT is replaced whole."""
        t = column.type
        if not T.is_multicell(t):
            if value is not None:
                T.validate(t, value)
            row.cells[(column.name, b"")] = self.clock.tombstone() if value is None else self.clock.cell(value)
            return
        # overwrite: delete what was there just before this write, then add the new elements
        row.cells[(column.name, b"")] = self.clock.tombstone(self.clock.ts - 1)
        if value is not None:
            self.add(row, column, T.split_collection(t, value))

    def add(self, row: Row, column, elements: list) -> None:
        """Set add / map put (elements as split_collection gives them) / list append / UDT
        fields (a list of field values, None for fields not set)."""
        t = column.type
        name = column.name
        if isinstance(t, T.SetType):
            for e in elements:
                row.cells[(name, T.set_element_path(t.element, e))] = self.clock.cell(b"")
        elif isinstance(t, T.MapType):
            for k, v in elements:
                row.cells[(name, T.map_entry_path(t.key, k))] = self.clock.cell(v)
        elif isinstance(t, T.ListType):
            for path, e in zip(self.clock.append_paths(len(elements)), elements):
                row.cells[(name, path)] = self.clock.cell(e)
        elif isinstance(t, T.UserType):
            for i, v in enumerate(elements):
                if v is not None:
                    row.cells[(name, T.udt_field_path(i))] = self.clock.cell(v)
        else:
            raise InvalidRequest(f"Invalid operation for non-collection column {name}")

    def prepend(self, row: Row, column, elements: list[bytes]) -> None:
        if not isinstance(column.type, T.ListType) or not T.is_multicell(column.type):
            raise InvalidRequest(f"Invalid operation (prepend) for non-list column {column.name}")
        for path, e in zip(self.clock.prepend_paths(len(elements)), elements):
            row.cells[(column.name, path)] = self.clock.cell(e)

    def remove(self, row: Row, column, keys: list[bytes]) -> None:
        """Set remove (elements) / map remove (keys) / DELETE m[k]: element tombstones."""
        t = column.type
        for k in keys:
            if isinstance(t, T.SetType):
                path = T.set_element_path(t.element, k)
            elif isinstance(t, T.MapType):
                path = T.map_entry_path(t.key, k)
            else:
                raise InvalidRequest(f"Invalid operation for column {column.name} of type {t.cql_name()}")
            row.cells[(column.name, path)] = self.clock.tombstone()

    def put_entry(self, row: Row, column, key: bytes, value: bytes | None) -> None:
        """m[k] = v (None: delete the entry); u.f = v for a non-frozen UDT (key = field path)."""
        t = column.type
        if isinstance(t, T.MapType) and T.is_multicell(t):
            path = T.map_entry_path(t.key, key)
        elif isinstance(t, T.UserType) and T.is_multicell(t):
            path = key
        else:
            raise InvalidRequest(f"Invalid operation for column {column.name} of type {t.cql_name()}")
        row.cells[(column.name, path)] = self.clock.tombstone() if value is None else self.clock.cell(value)

    def set_list_path(self, row: Row, column, path: bytes, value: bytes | None) -> None:
        """l[i] = v / DELETE l[i], with the element's path found by reading the list."""
        row.cells[(column.name, path)] = self.clock.tombstone() if value is None else self.clock.cell(value)

    def delete_column(self, row: Row, column) -> None:
        """DELETE col: a cell tombstone, which for a non-frozen collection or UDT is the
        collection-wide tombstone covering every element written before it."""
        row.cells[(column.name, b"")] = self.clock.tombstone()

    # ---- deletions of rows and ranges ------------------------------------------------

    def delete_row(self, clustering: tuple[bytes, ...]) -> None:
        self.row(clustering).deletion = Deletion(self.clock.ts, self.clock.now_s)

    def delete_partition(self) -> None:
        self.part.deletion = Deletion(self.clock.ts, self.clock.now_s)

    def delete_range(self, start: Bound, end: Bound) -> None:
        self.part.range_tombstones.append(RangeTombstone(start, end, Deletion(self.clock.ts, self.clock.now_s)))

    def build(self) -> Partition:
        return self.part
