"""Which tables tombstone compaction may skip: the engines' record of tables that a whole walk
found with nothing for compaction to do, and that no write has given anything since.

Owns: the rule, shared by both engines so they cannot differ. Compaction
(`agora.core.tombstones.compaction`) begins the walk of a table never truncated with
`begin_walk`. That skips the table if it is recorded *clean*; otherwise it starts watching
the table's writes for this walk. If the walk finds only partitions of live, non-expiring
data (`compaction.nothing_to_do`), it ends with `end_walk`, and the table is recorded clean
unless a write during the walk had something for compaction. A write with something for
compaction (a tombstone, a TTL, a partition header) ends a table's clean record, in the same
atomic batch as the write where the engine is durable (`written`), and stops watching a walk
of it (that walk can no longer end clean). Live data merged into live data stays live, so a
clean table's stored data is live and non-expiring for as long as the record stands.

What a wrong record would cost is disk space, never data: compaction only frees space, and
readers drop what is expired, shadowed or truncated whatever is stored. The engine still
errs on the safe side: a dropped table, a walk cut short and an unknown table count as
not clean. A record of a table truncated later is never consulted: compaction walks
truncated tables every time, without asking.
"""

from __future__ import annotations

from collections.abc import Iterable

from agora.core.tombstones.compaction import nothing_to_do
from agora.core.types import Partition


class CleanTables:
    """`clean`: the ids of the tables recorded clean. The engine persists them and hands back
    what it stored when it reopens."""

    def __init__(self, clean: Iterable[bytes] = ()) -> None:
        self.clean: set[bytes] = set(clean)
        self._walks: set[bytes] = set()  # tables whose walk may still end clean

    def watching(self) -> bool:
        """Whether a write can change anything here (else `written` need not be called)."""
        return bool(self.clean) or bool(self._walks)

    def written(self, partitions: Iterable[Partition]) -> list[bytes]:
        """Note the partitions of a batch being applied. Returns the tables whose clean record
        the batch ends: the engine forgets them durably with the batch."""
        ended = []
        clean, walks = self.clean, self._walks
        for p in partitions:
            table = p.table_id
            if (table in clean or table in walks) and not nothing_to_do(p):
                if table in clean:
                    clean.discard(table)
                    ended.append(table)
                walks.discard(table)
        return ended

    def begin_walk(self, table_id: bytes) -> bool:
        """True: the table is clean, and the walk may be skipped. False: walk it; its writes
        are watched from now on."""
        if table_id in self.clean:
            return True
        self._walks.add(table_id)
        return False

    def end_walk(self, table_id: bytes) -> bool:
        """A walk begun with `begin_walk` found nothing for compaction. Returns whether the
        table is now recorded clean (the engine then persists the record)."""
        if table_id in self._walks:
            self._walks.discard(table_id)
            self.clean.add(table_id)
            return True
        return False

    def dropped(self, table_id: bytes) -> bool:
        """The table's local data was dropped: it is not clean, and a walk under way cannot
        vouch for it. Returns whether a clean record was forgotten."""
        self._walks.discard(table_id)
        if table_id in self.clean:
            self.clean.discard(table_id)
            return True
        return False
