"""Schema changes as functions: each builder checks its arguments and returns
`change(schema, ts_us) -> Schema`, which the node runs against its current schema (so the
existence checks see the latest state) and then spreads (`schema/agreement.py`).

Owns: Cassandra's DDL rules at the level of whole objects — CREATE ... [IF NOT EXISTS],
DROP ... [IF EXISTS], replication validated by the real strategy code. Arguments are
msgpack-native maps (the admin verbs send them; the CQL layer builds the same maps from
statements). A change's timestamp is never below the schema's newest one, so a node whose
clock lags cannot write a change that the merge would ignore.
"""

from __future__ import annotations

from agora.core.errors import AlreadyExists, InvalidRequest
from agora.core.ring.strategies import strategy_from_options
from agora.core.schema.model import KeyspaceDef, TableDef, identifier, replication_options
from agora.core.schema.types import parse_type


def _ts(schema, ts: int) -> int:
    return max(ts, schema.max_timestamp() + 1)


def _name(args: dict, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"missing {key}")
    return identifier(value)


def create_keyspace(args: dict):
    name = _name(args, "name")
    replication = replication_options(dict(args.get("replication") or {}))
    strategy_from_options(replication)  # same validation a request would meet later
    ksdef = KeyspaceDef(name, replication, bool(args.get("durable_writes", True)))
    if_not_exists = bool(args.get("if_not_exists"))

    def change(schema, ts):
        if schema.keyspace(name) is not None:
            if if_not_exists:
                return schema
            raise AlreadyExists(name)
        return schema.with_keyspace(ksdef, _ts(schema, ts))
    return change


def drop_keyspace(args: dict):
    name = _name(args, "name")
    if_exists = bool(args.get("if_exists"))

    def change(schema, ts):
        if schema.keyspace(name) is None:
            if if_exists:
                return schema
            raise InvalidRequest(f"Keyspace '{name}' doesn't exist")
        return schema.drop_keyspace(name, _ts(schema, ts))
    return change


def create_table(args: dict):
    """args: keyspace, name, columns [[name, type]...], partition_key [names],
    clustering [[name, 'asc'|'desc']...], static [names], options {}, if_not_exists."""
    ks, name = _name(args, "keyspace"), _name(args, "name")
    types = {identifier(c): t for c, t in (args.get("columns") or [])}
    pk = [identifier(c) for c in args.get("partition_key") or []]
    clustering = [(identifier(c), o) for c, o in (args.get("clustering") or [])]
    static = {identifier(c) for c in args.get("static") or []}
    missing = [c for c in pk + [c for c, _ in clustering] + sorted(static) if c not in types]
    if missing:
        raise InvalidRequest(f"Unknown definition {missing[0]} referenced in PRIMARY KEY")
    keyed = set(pk) | {c for c, _ in clustering}
    if_not_exists = bool(args.get("if_not_exists"))

    def change(schema, ts):
        if schema.keyspace(ks) is None:
            raise InvalidRequest(f"Keyspace '{ks}' does not exist")
        if schema.table(ks, name) is not None:
            if if_not_exists:
                return schema
            raise AlreadyExists(ks, name)
        udts = lambda n: (schema.type(ks, n).user_type() if schema.type(ks, n) else None)  # noqa: E731
        parsed = {c: parse_type(t, udts) for c, t in types.items()}
        ts = _ts(schema, ts)
        table = TableDef.build(
            ks, name, partition_key=[(c, parsed[c]) for c in pk],
            clustering=[(c, parsed[c], o) for c, o in clustering],
            static=[(c, parsed[c]) for c in sorted(static)],
            regular=[(c, parsed[c]) for c in types if c not in keyed and c not in static],
            options=dict(args.get("options") or {}), created_ts=ts)
        return schema.with_table(table, ts)
    return change


def drop_table(args: dict):
    ks, name = _name(args, "keyspace"), _name(args, "name")
    if_exists = bool(args.get("if_exists"))

    def change(schema, ts):
        if schema.table(ks, name) is None:
            if if_exists:
                return schema
            raise InvalidRequest(f"Table '{ks}.{name}' doesn't exist")
        return schema.drop_table(ks, name, _ts(schema, ts))
    return change
