"""Plans of statements, kept between executions.

Owns: `PlanCache`, which keeps what a statement and a version of its table decide once —
resolved columns, checks that do not depend on bound values, the shape of a WHERE clause —
so a prepared statement (one long-lived parsed tree) does not redo that work at every
EXECUTE. An entry is found by the identities of the parsed object and of the `TableDef`: a
schema change makes a new `TableDef`, and so a new plan. A plan that fails to build raises,
and is not kept: the same error comes back at the next execution.
"""

from __future__ import annotations

from typing import Callable

PLAN_CACHE_ENTRIES = 1024  # per cache; past this the cache starts again empty


class PlanCache:
    def __init__(self, build: Callable, entries: int = PLAN_CACHE_ENTRIES):
        self._build = build
        self._entries = entries
        # (id(obj), id(table)) -> (obj, table, plan): keeping obj and table alive keeps their
        # ids from being reused. Several nodes in one process (the simulator) each have their
        # own TableDef, so each gets its own entry.
        self._plans: dict[tuple[int, int], tuple] = {}

    def get(self, obj, table):
        key = (id(obj), id(table))
        entry = self._plans.get(key)
        if entry is not None and entry[0] is obj and entry[1] is table:
            return entry[2]
        plan = self._build(obj, table)
        if len(self._plans) >= self._entries:
            self._plans.clear()
        self._plans[key] = (obj, table, plan)
        return plan

    def __len__(self) -> int:
        return len(self._plans)
