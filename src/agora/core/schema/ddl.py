"""Schema changes as functions: each builder checks its arguments and returns
`change(schema, ts_us) -> Schema`, which the node runs against its current schema (so the
existence checks see the latest state) and then spreads (`schema/agreement.py`).

Owns: Cassandra's DDL rules at the level of whole objects — CREATE ... [IF NOT EXISTS],
DROP ... [IF EXISTS], replication validated by the real strategy code (a bad replication map
is a ConfigurationError, CQL 0x2300, as Cassandra's ConfigurationException). Counter columns
are refused: Agora has no counters. Arguments are
msgpack-native maps (the admin verbs send them; the CQL layer builds the same maps from
statements). A change's timestamp is never below the schema's newest one, so a node whose
clock lags cannot write a change that the merge would ignore.
"""

from __future__ import annotations

import uuid

from agora.core.errors import AlreadyExists, ConfigurationError, InvalidRequest
from agora.core.ring.strategies import strategy_from_options
from agora.core.schema.model import KeyspaceDef, TableDef, ddl_options, identifier, replication_options
from agora.core.schema.types import COUNTER, parse_type, references


def _ts(schema, ts: int) -> int:
    return max(ts, schema.max_timestamp() + 1)


def _name(args: dict, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"missing {key}")
    return identifier(value)


def _replication(raw) -> dict:
    """A validated replication map. A bad one is a configuration error (CQL 0x2300), as
    Cassandra's ConfigurationException from the strategy's validation."""
    try:
        replication = replication_options(dict(raw or {}))
        strategy_from_options(replication)  # same validation a request would meet later
    except ConfigurationError:
        raise
    except InvalidRequest as exc:
        raise ConfigurationError(str(exc)) from None
    return replication


def _refuse_counters(columns) -> None:
    for name, t in columns:
        if references(t, lambda x: x == COUNTER):
            raise InvalidRequest(f"Counter columns are not supported by Agora (column {name})")


def create_keyspace(args: dict):
    name = _name(args, "name")
    replication = _replication(args.get("replication"))
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
        ts = _ts(schema, ts)
        for table in schema.tables(name):  # their data goes with them (see drop_table)
            schema = schema.truncate_table(table.id.bytes, ts)
        return schema.drop_keyspace(name, ts)
    return change


def _table_id_option(options: dict) -> uuid.UUID | None:
    """The `ID` of `CREATE TABLE ... WITH ID = <uuid>` (taken out of the options), or None."""
    raw = options.pop("id", None)
    if raw is None or isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise InvalidRequest(f"Invalid value for property 'id': {raw!r} is not a UUID") from None


def create_table(args: dict):
    """args: keyspace, name, columns [[name, type]...], partition_key [names],
    clustering [[name, 'asc'|'desc']...], static [names], options {}, if_not_exists.

    Without an `id` option the table's id comes from its name and creation timestamp, so a
    re-created table is a new table. `WITH ID = <uuid>` (what DESCRIBE ... WITH INTERNALS
    prints) gives it that id, as Cassandra does to re-create a dropped table for its
    snapshot's data: no live table may have it. The drop truncated the old table (see
    drop_table), so the table starts empty on every node, whatever each has freed yet."""
    ks, name = _name(args, "keyspace"), _name(args, "name")
    options = ddl_options(args.get("options") or {})
    table_id = _table_id_option(options)
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
        _refuse_counters(parsed.items())
        if table_id is not None and (same := schema.table_by_id(table_id)) is not None:
            raise InvalidRequest(f"Table id {table_id} is already used by {same.keyspace}.{same.name}")
        ts = _ts(schema, ts)
        table = TableDef.build(
            ks, name, partition_key=[(c, parsed[c]) for c in pk],
            clustering=[(c, parsed[c], o) for c, o in clustering],
            static=[(c, parsed[c]) for c in sorted(static)],
            regular=[(c, parsed[c]) for c in types if c not in keyed and c not in static],
            options=options, table_id=table_id, created_ts=ts)
        return schema.with_table(table, ts)
    return change


def drop_table(args: dict):
    ks, name = _name(args, "keyspace"), _name(args, "name")
    if_exists = bool(args.get("if_exists"))

    def change(schema, ts):
        table = schema.table(ks, name)
        if table is None:
            if if_exists:
                return schema
            raise InvalidRequest(f"Table '{ks}.{name}' doesn't exist")
        ts = _ts(schema, ts)
        # A drop truncates too: every node's tombstone compaction then frees the table's
        # data, and it is gone for good, whatever the schema merge makes of an ALTER racing
        # the drop or of the table re-created WITH ID its old id.
        return schema.drop_table(ks, name, ts).truncate_table(table.id.bytes, ts)
    return change


def truncate_table(args: dict):
    """TRUNCATE: the table's data written at or before the change's timestamp is gone
    (`Schema.truncate_table`). The timestamp is the coordinator's write clock, like any
    write's, not raised above the schema's newest entry: it says which data goes."""
    ks, name = _name(args, "keyspace"), _name(args, "name")

    def change(schema, ts):
        table = schema.table(ks, name)
        if table is None:
            raise InvalidRequest(f"Table '{ks}.{name}' doesn't exist")
        return schema.truncate_table(table.id.bytes, ts)
    return change


def alter_keyspace(args: dict):
    """ALTER KEYSPACE name WITH replication = {...} [AND durable_writes = b]."""
    name = _name(args, "name")

    def change(schema, ts):
        old = schema.keyspace(name)
        if old is None:
            raise InvalidRequest(f"Keyspace '{name}' does not exist")
        replication = dict(old.replication)
        if args.get("replication"):
            replication = _replication(args["replication"])
        durable = bool(args["durable_writes"]) if "durable_writes" in args else old.durable_writes
        return schema.with_keyspace(KeyspaceDef(name, replication, durable), _ts(schema, ts))
    return change


def _table_or_fail(schema, ks: str, name: str):
    table = schema.table(ks, name)
    if table is None:
        raise InvalidRequest(f"Table '{ks}.{name}' doesn't exist")
    return table


def _replace_table(schema, old, columns, options, ts, dropped=None):
    from agora.core.schema.model import TableDef
    table = TableDef(old.keyspace, old.name, old.id, tuple(columns), options,
                     old.dropped if dropped is None else dropped)
    return schema.with_table(table, _ts(schema, ts))


def alter_table_add(args: dict):
    """ALTER TABLE t ADD col type [STATIC], ... (args: keyspace, name, columns [[n, type, static]])."""
    ks, name = _name(args, "keyspace"), _name(args, "name")

    def change(schema, ts):
        from agora.core.schema.model import ColumnDef
        old = _table_or_fail(schema, ks, name)
        columns = list(old.columns)
        udts = lambda n: (schema.type(ks, n).user_type() if schema.type(ks, n) else None)  # noqa: E731
        for col, type_text, static in args.get("columns") or []:
            col = identifier(col)
            if old.column(col) is not None:
                raise InvalidRequest(f"Column with name '{col}' already exists")
            if static and not old.clustering_columns:
                raise InvalidRequest("Static columns are not allowed in tables with no clustering columns")
            t = parse_type(type_text, udts)
            _refuse_counters([(col, t)])
            kind = "static" if static else "regular"
            _check_readd(old.dropped.get(col), col, t, kind)
            columns.append(ColumnDef(col, t, kind))
        return _replace_table(schema, old, columns, old.options, ts)
    return change


def _check_readd(dropped, col: str, t, kind: str) -> None:
    """Cassandra's rules for adding a column that was dropped before: same type, same kind.
    Its old cells stay hidden whatever is added (DroppedColumn.shadows)."""
    if dropped is None:
        return
    if dropped.type != t:
        raise InvalidRequest(f"Cannot re-add previously dropped column '{col}' of type {t.cql_name(False)}, "
                             f"incompatible with previous type {dropped.type.cql_name(False)}")
    if dropped.kind != kind:
        raise InvalidRequest(f"Cannot re-add previously dropped column '{col}' of kind {kind.upper()}, "
                             f"incompatible with previous kind {dropped.kind.upper()}")


def alter_table_drop(args: dict):
    """ALTER TABLE t DROP col, ... [USING TIMESTAMP n] (args: keyspace, name, columns,
    timestamp). Each column is recorded as dropped at n, or at the change's own timestamp:
    its cells written until then stay hidden, also from a column of that name added later."""
    ks, name = _name(args, "keyspace"), _name(args, "name")
    doomed = [identifier(c) for c in args.get("columns") or []]
    at = args.get("timestamp")
    if at is not None and (not isinstance(at, int) or isinstance(at, bool)):
        raise InvalidRequest(f"Invalid drop timestamp {at!r}")

    def change(schema, ts):
        from agora.core.schema.model import DroppedColumn
        old = _table_or_fail(schema, ks, name)
        ts = _ts(schema, ts)
        dropped = dict(old.dropped)
        for col in doomed:
            c = old.column(col)
            if c is None:
                raise InvalidRequest(f"Column {col} was not found in table {name}")
            if c.is_primary_key:
                raise InvalidRequest(f"Cannot drop PRIMARY KEY part {col}")
            dropped[col] = DroppedColumn(ts if at is None else at, c.type, c.kind)
        return _replace_table(schema, old, [c for c in old.columns if c.name not in doomed],
                              old.options, ts, dropped)
    return change


def alter_table_rename(args: dict):
    """Only primary-key columns may be renamed, as in Cassandra."""
    ks, name = _name(args, "keyspace"), _name(args, "name")
    renames = [(identifier(a), identifier(b)) for a, b in args.get("renames") or []]

    def change(schema, ts):
        from dataclasses import replace
        old = _table_or_fail(schema, ks, name)
        mapping = dict(renames)
        for a, b in renames:
            c = old.column(a)
            if c is None:
                raise InvalidRequest(f"Column {a} was not found in table {name}")
            if not c.is_primary_key:
                raise InvalidRequest(f"Cannot rename non PRIMARY KEY column {a}")
            if old.column(b) is not None and b not in mapping:
                raise InvalidRequest(f"Cannot rename column {a} to {b} in table {name}; another column with that name exists")
        columns = [replace(c, name=mapping.get(c.name, c.name)) for c in old.columns]
        return _replace_table(schema, old, columns, old.options, ts)
    return change


def alter_table_with(args: dict):
    ks, name = _name(args, "keyspace"), _name(args, "name")

    if "id" in (args.get("options") or {}):
        raise InvalidRequest("Cannot alter table id.")

    options = ddl_options(args.get("options") or {})

    def change(schema, ts):
        old = _table_or_fail(schema, ks, name)
        return _replace_table(schema, old, old.columns, {**old.options, **options}, ts)
    return change


def create_type(args: dict):
    ks, name = _name(args, "keyspace"), _name(args, "name")
    if_not_exists = bool(args.get("if_not_exists"))

    def change(schema, ts):
        from agora.core.schema.model import TypeDef
        if schema.keyspace(ks) is None:
            raise InvalidRequest(f"Keyspace '{ks}' does not exist")
        if schema.type(ks, name) is not None:
            if if_not_exists:
                return schema
            raise AlreadyExists(ks, name)  # Cassandra answers Already_exists (0x2400) for types too
        udts = lambda n: (schema.type(ks, n).user_type() if schema.type(ks, n) else None)  # noqa: E731
        fields = [(identifier(f), parse_type(t, udts)) for f, t in args.get("fields") or []]
        typedef = TypeDef(ks, name, tuple(f for f, _ in fields), tuple(t for _, t in fields))
        return schema.with_type(typedef, _ts(schema, ts))
    return change


def alter_type(args: dict):
    """ALTER TYPE: add a field ("add": [name, type]) or rename fields ("renames")."""
    ks, name = _name(args, "keyspace"), _name(args, "name")

    def change(schema, ts):
        from agora.core.schema.model import TypeDef
        old = schema.type(ks, name)
        if old is None:
            raise InvalidRequest(f"No user type named {name} exists.")
        names, types = list(old.field_names), list(old.field_types)
        if args.get("add"):
            field_name, type_text = args["add"]
            field_name = identifier(field_name)
            if field_name in names:
                raise InvalidRequest(f"Cannot add new field {field_name} to type {name}: a field of the same name already exists")
            udts = lambda n: (schema.type(ks, n).user_type() if schema.type(ks, n) else None)  # noqa: E731
            names.append(field_name)
            types.append(parse_type(type_text, udts))
        for a, b in args.get("renames") or []:
            a, b = identifier(a), identifier(b)
            if a not in names:
                raise InvalidRequest(f"Unknown field {a} in type {name}")
            names[names.index(a)] = b
        return schema.with_type(TypeDef(ks, name, tuple(names), tuple(types)), _ts(schema, ts))
    return change


def drop_type(args: dict):
    ks, name = _name(args, "keyspace"), _name(args, "name")
    if_exists = bool(args.get("if_exists"))

    def change(schema, ts):
        if schema.type(ks, name) is None:
            if if_exists:
                return schema
            raise InvalidRequest(f"No user type named {name} exists.")
        users = schema.tables_using_type(ks, name)
        if users:
            raise InvalidRequest(f"Cannot drop user type {ks}.{name} as it is still used by table {users[0].name}")
        return schema.drop_type(ks, name, _ts(schema, ts))
    return change
