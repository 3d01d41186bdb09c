"""What changed between two schemas, as the native protocol's SCHEMA_CHANGE vocabulary:
CREATED / UPDATED / DROPPED of a KEYSPACE, TABLE or TYPE (spec v5 sections 4.2.5.5 and 4.2.6).

Owns: the diff and its order. Used both to push SCHEMA_CHANGE events to registered clients
when a schema arrives (by DDL or by gossip) and to answer a DDL statement with its
Schema_change result.

Order (deterministic, so every node pushes the same sequence):
  1. keyspaces: created, updated and dropped, by name;
  2. tables then types dropped (a table goes before the types it may use);
  3. types then tables created (a type comes before the tables that may use it);
  4. types then tables updated.
Within each group objects sort by (keyspace, name). Objects inside a dropped keyspace get no
events of their own: the driver forgets a dropped keyspace with everything in it. Objects
inside a created keyspace do get CREATED events (the driver refreshes each one). A table
re-created under the same name (new id) is a DROPPED then a CREATED, as in Cassandra.

Rules from: Cassandra 5.0 `schema/SchemaChangeNotifier` (drops before creates before alters;
keyspace events first) and `transport/Event.SchemaChange`.
"""

from __future__ import annotations

from collections.abc import Callable

from agora.cql.results import SchemaChange
from agora.core.schema.model import Schema

CREATED, UPDATED, DROPPED = "CREATED", "UPDATED", "DROPPED"

Key = tuple[str, str]


def _diff(old: dict, new: dict, same: Callable[[object, object], bool],
          ) -> tuple[list, list, list]:
    """(created, updated, dropped) keys, each sorted."""
    created = sorted(k for k in new if k not in old)
    dropped = sorted(k for k in old if k not in new)
    updated = sorted(k for k in new if k in old and not same(old[k], new[k]))
    return created, updated, dropped


def _replaced(old: dict, new: dict) -> list:
    """Tables present in both under one name but with different ids (dropped, re-created)."""
    return sorted(k for k in new if k in old and old[k].id != new[k].id)


def schema_events(old: Schema, new: Schema) -> list[SchemaChange]:
    """Every change from `old` to `new`, in the order of the module docstring."""
    old_ks = {k.name: k for k in old.keyspaces()}
    new_ks = {k.name: k for k in new.keyspaces()}
    ks_created, ks_updated, ks_dropped = _diff(old_ks, new_ks, lambda a, b: a == b)
    events = [SchemaChange(change, "KEYSPACE", name)
              for name, change in sorted([(n, CREATED) for n in ks_created]
                                         + [(n, UPDATED) for n in ks_updated]
                                         + [(n, DROPPED) for n in ks_dropped])]

    gone = set(ks_dropped)
    old_tables = {(t.keyspace, t.name): t for t in old.tables() if t.keyspace not in gone}
    new_tables = {(t.keyspace, t.name): t for t in new.tables()}
    old_types = {(u.keyspace, u.name): u for u in old.types() if u.keyspace not in gone}
    new_types = {(u.keyspace, u.name): u for u in new.types()}

    replaced = _replaced(old_tables, new_tables)
    t_created, t_updated, t_dropped = _diff(old_tables, new_tables,
                                            lambda a, b: a.to_plain() == b.to_plain())
    t_updated = [k for k in t_updated if k not in replaced]
    t_created = sorted(t_created + replaced)
    t_dropped = sorted(t_dropped + replaced)
    u_created, u_updated, u_dropped = _diff(old_types, new_types, lambda a, b: a == b)

    def emit(change: str, target: str, keys: list[Key]) -> None:
        events.extend(SchemaChange(change, target, ks, name) for ks, name in keys)

    emit(DROPPED, "TABLE", t_dropped)
    emit(DROPPED, "TYPE", u_dropped)
    emit(CREATED, "TYPE", u_created)
    emit(CREATED, "TABLE", t_created)
    emit(UPDATED, "TYPE", u_updated)
    emit(UPDATED, "TABLE", t_updated)
    return events
