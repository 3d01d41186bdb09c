"""Which tables tombstone compaction may skip: the engines' record of tables that a whole walk
found with nothing for compaction to do, and that no write has given anything since.

Owns: the rule, shared by both engines so they cannot differ. Compaction
(`agora.core.tombstones.compaction`) begins a table's walk with `begin_walk`. That skips
the table if it is recorded *clean* under the same truncation; otherwise it starts watching
the table's writes. If the walk finds only partitions of live, non-expiring data
(`compaction.nothing_to_do`) and nothing a truncation covers, it ends with `end_walk`. The
table is then recorded clean, unless a write the walk may have missed had something for
compaction. A write with something for compaction (a tombstone, a TTL, a partition header)
ends a table's clean record, in the same atomic batch as the write where the engine is
durable (`written`). Live data merged into live data stays live, so a clean table's stored
data is live and non-expiring for as long as the record stands.

What a wrong record would cost is disk space, never data: compaction only frees space, and
readers drop what is expired, shadowed or truncated whatever is stored. The engine still
errs on the safe side: a dropped table, a walk cut short and an unknown table count as
not clean.
"""

from __future__ import annotations

from collections.abc import Iterable

from agora.core.tombstones.compaction import nothing_to_do
from agora.core.types import Partition

_NOT_CLEAN = object()


class CleanTables:
    """`clean`: table id -> the truncation (Schema.truncated_at, or None) its clean walk ran
    under. The engine persists it and hands back what it stored when it reopens."""

    def __init__(self, clean: dict[bytes, int | None] | None = None) -> None:
        self.clean: dict[bytes, int | None] = dict(clean or {})
        self._walks: dict[bytes, bool] = {}  # table -> no write for compaction since its walk began

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
                if clean.pop(table, _NOT_CLEAN) is not _NOT_CLEAN:
                    ended.append(table)
                if table in walks:
                    walks[table] = False
        return ended

    def begin_walk(self, table_id: bytes, truncated_at: int | None) -> bool:
        """True: the table is clean under this truncation, and the walk may be skipped.
        False: walk it; its writes are watched from now on."""
        if self.clean.get(table_id, _NOT_CLEAN) == truncated_at:
            return True
        self._walks[table_id] = True
        return False

    def end_walk(self, table_id: bytes, truncated_at: int | None) -> bool:
        """A walk begun with `begin_walk` found nothing for compaction. Returns whether the
        table is now recorded clean (the engine then persists the record)."""
        if self._walks.pop(table_id, False):
            self.clean[table_id] = truncated_at
            return True
        return False

    def dropped(self, table_id: bytes) -> bool:
        """The table's local data was dropped: it is not clean, and a walk under way cannot
        vouch for it. Returns whether a clean record was forgotten."""
        self._walks.pop(table_id, None)
        return self.clean.pop(table_id, _NOT_CLEAN) is not _NOT_CLEAN
