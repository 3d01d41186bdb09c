"""Response bodies of the native protocol, encoded: ERROR, READY, AUTHENTICATE, SUPPORTED,
RESULT (Void, Rows, Set_keyspace, Prepared, Schema_change), EVENT and AUTH_SUCCESS, each as
a whole envelope ready to write (or to wrap in v5 segments).

Owns: result metadata (the global table spec when every column shares one table, the
paging state, v5's new_metadata_id, No_metadata), the [option] encoding of every CQL type,
the ERROR body from `agora.cql.error_codes`, and the server-pushed event values
`StatusChange` / `TopologyChange` (SCHEMA_CHANGE events reuse `results.SchemaChange`).

Deliberately does not know: how results are computed (`agora.cql.results` are plain values
with cells already serialized), sockets, connection state.

Where the rules come from: native_protocol_v4.spec / v5.spec sections 4.2 (responses),
4.2.5.2 (Rows metadata: flags 0x0001 global spec, 0x0002 more pages, 0x0004 no metadata,
v5 0x0008 metadata changed; order flags, count, paging state, new_metadata_id, specs),
4.2.5.4 (Prepared: id, v5 result_metadata_id, bind metadata with pk indexes since v4, then
result metadata), 4.2.6 (EVENT), 9 (ERROR); shared/cql-compat.md sections 4, 5 and 8
(option ids: text goes out as 0x000D varchar, as Cassandra sends it; frozen<> never
appears on the wire).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass

from agora.core.schema.types import CqlType, ListType, MapType, NativeType, SetType, TupleType, UserType
from agora.cql.error_codes import SERVER_ERROR_RULE, WRITE_TYPES, rule_for
from agora.cql.frames_envelope import EVENT_STREAM, Opcode, encode_envelope
from agora.cql.frames_notation import (pack_byte, pack_bytes, pack_consistency, pack_inet, pack_int,
                                       pack_short, pack_short_bytes, pack_string, pack_string_list,
                                       pack_string_multimap)
from agora.cql.results import ColumnSpec, Prepared, Result, Rows, SchemaChange, SetKeyspace, Void

RESULT_VOID = 0x0001
RESULT_ROWS = 0x0002
RESULT_SET_KEYSPACE = 0x0003
RESULT_PREPARED = 0x0004
RESULT_SCHEMA_CHANGE = 0x0005

ROWS_GLOBAL_TABLES_SPEC = 0x0001
ROWS_HAS_MORE_PAGES = 0x0002
ROWS_NO_METADATA = 0x0004
ROWS_METADATA_CHANGED = 0x0008  # v5

# Longest error message sent, in characters: a [string] holds at most 65535 UTF-8 bytes
# and an exception's text can quote a whole statement; 8192 characters always fit.
ERROR_MESSAGE_MAX_CHARS = 8192

OPTION_CUSTOM = 0x0000
OPTION_LIST = 0x0020
OPTION_MAP = 0x0021
OPTION_SET = 0x0022
OPTION_UDT = 0x0030
OPTION_TUPLE = 0x0031
NATIVE_TYPE_OPTIONS = {
    "ascii": 0x0001, "bigint": 0x0002, "blob": 0x0003, "boolean": 0x0004, "counter": 0x0005,
    "decimal": 0x0006, "double": 0x0007, "float": 0x0008, "int": 0x0009,
    "timestamp": 0x000B, "uuid": 0x000C, "text": 0x000D, "varint": 0x000E, "timeuuid": 0x000F,
    "inet": 0x0010, "date": 0x0011, "time": 0x0012, "smallint": 0x0013, "tinyint": 0x0014,
    "duration": 0x0015,
}


@dataclass(frozen=True, slots=True)
class StatusChange:
    change: str  # UP | DOWN
    address: str  # the node's native (CQL) address ...
    port: int  # ... and port: the driver matches both against its hosts


@dataclass(frozen=True, slots=True)
class TopologyChange:
    change: str  # NEW_NODE | REMOVED_NODE | MOVED_NODE
    address: str
    port: int


Event = StatusChange | TopologyChange | SchemaChange

# --------------------------------------------------------------------------- types


@functools.lru_cache(maxsize=1024)
def encode_type_option(t: CqlType) -> bytes:
    """The [option] describing type t in result and bind metadata."""
    if isinstance(t, NativeType):
        return pack_short(NATIVE_TYPE_OPTIONS[t.name])
    if isinstance(t, ListType):
        return pack_short(OPTION_LIST) + encode_type_option(t.element)
    if isinstance(t, SetType):
        return pack_short(OPTION_SET) + encode_type_option(t.element)
    if isinstance(t, MapType):
        return pack_short(OPTION_MAP) + encode_type_option(t.key) + encode_type_option(t.value)
    if isinstance(t, TupleType):
        return (pack_short(OPTION_TUPLE) + pack_short(len(t.elements))
                + b"".join(encode_type_option(e) for e in t.elements))
    if isinstance(t, UserType):
        fields = b"".join(pack_string(name) + encode_type_option(ftype)
                          for name, ftype in zip(t.field_names, t.field_types))
        return (pack_short(OPTION_UDT) + pack_string(t.keyspace) + pack_string(t.name)
                + pack_short(len(t.field_names)) + fields)
    raise TypeError(f"no [option] for type {t!r}")


# --------------------------------------------------------------------------- metadata


@functools.lru_cache(maxsize=1024)
def _column_specs(columns: tuple[ColumnSpec, ...]) -> tuple[int, bytes]:
    """(flags, bytes) of the column specs: one global table spec when every column
    belongs to the same table, as Cassandra does; otherwise ks and table per column."""
    if not columns:
        return 0, b""
    first = columns[0]
    if all(c.keyspace == first.keyspace and c.table == first.table for c in columns):
        parts = [pack_string(first.keyspace), pack_string(first.table)]
        parts += [pack_string(c.name) + encode_type_option(c.type) for c in columns]
        return ROWS_GLOBAL_TABLES_SPEC, b"".join(parts)
    return 0, b"".join(pack_string(c.keyspace) + pack_string(c.table) + pack_string(c.name)
                       + encode_type_option(c.type) for c in columns)


def encode_rows_metadata(columns: list[ColumnSpec], paging_state: bytes | None = None,
                         no_metadata: bool = False, new_metadata_id: bytes | None = None) -> bytes:
    flags = 0
    extra = b""
    if paging_state is not None:
        flags |= ROWS_HAS_MORE_PAGES
        extra = pack_bytes(paging_state)
    if no_metadata:
        return pack_int(flags | ROWS_NO_METADATA) + pack_int(len(columns)) + extra
    if new_metadata_id is not None:
        flags |= ROWS_METADATA_CHANGED
        extra += pack_short_bytes(new_metadata_id)
    spec_flags, specs = _column_specs(tuple(columns))
    return pack_int(flags | spec_flags) + pack_int(len(columns)) + extra + specs


def _prepared_metadata(prepared: Prepared) -> bytes:
    spec_flags, specs = _column_specs(tuple(prepared.bind_columns))
    pk = prepared.pk_indexes
    bind = (pack_int(spec_flags) + pack_int(len(prepared.bind_columns)) + pack_int(len(pk))
            + b"".join(pack_short(i) for i in pk) + specs)
    if prepared.result_columns:
        return bind + encode_rows_metadata(prepared.result_columns)
    return bind + pack_int(ROWS_NO_METADATA) + pack_int(0)


# --------------------------------------------------------------------------- results


def encode_result_body(version: int, result: Result, *, no_metadata: bool = False,
                       new_metadata_id: bytes | None = None) -> bytes:
    """The RESULT body. `no_metadata`: the client asked to skip metadata (flag 0x02) and
    has it from PREPARE; `new_metadata_id` (v5): the result metadata changed since the
    client's prepare, which Rows then announce with flag 0x0008."""
    if isinstance(result, Rows):
        return _rows_body(result, no_metadata, new_metadata_id if version >= 5 else None)
    if isinstance(result, Void):
        return pack_int(RESULT_VOID)
    if isinstance(result, SetKeyspace):
        return pack_int(RESULT_SET_KEYSPACE) + pack_string(result.keyspace)
    if isinstance(result, Prepared):
        metadata_id = pack_short_bytes(result.result_metadata_id) if version >= 5 else b""
        return (pack_int(RESULT_PREPARED) + pack_short_bytes(result.statement_id) + metadata_id
                + _prepared_metadata(result))
    if isinstance(result, SchemaChange):
        return pack_int(RESULT_SCHEMA_CHANGE) + _schema_change_body(result)
    raise TypeError(f"not a CQL result: {result!r}")


def _rows_body(rows: Rows, no_metadata: bool, new_metadata_id: bytes | None) -> bytes:
    columns = rows.columns
    width = len(columns)
    parts = [pack_int(RESULT_ROWS),
             encode_rows_metadata(columns, rows.paging_state, no_metadata, new_metadata_id),
             pack_int(len(rows.rows))]
    append = parts.append
    null = pack_int(-1)
    for row in rows.rows:
        if len(row) != width:
            raise ValueError(f"row of {len(row)} cells for {width} columns")
        for cell in row:
            if cell is None:
                append(null)
            else:
                append(pack_int(len(cell)))
                append(cell)
    return b"".join(parts)


def _schema_change_body(change: SchemaChange) -> bytes:
    body = pack_string(change.change) + pack_string(change.target) + pack_string(change.keyspace)
    if change.target == "KEYSPACE":
        return body
    body += pack_string(change.name)
    if change.target in ("FUNCTION", "AGGREGATE"):
        body += pack_string_list(change.arg_types)
    return body


def encode_result(version: int, stream: int, result: Result, *, no_metadata: bool = False,
                  new_metadata_id: bytes | None = None) -> bytes:
    body = encode_result_body(version, result, no_metadata=no_metadata,
                              new_metadata_id=new_metadata_id)
    return encode_envelope(version, stream, Opcode.RESULT, body)


# --------------------------------------------------------------------------- errors


def encode_error_body(exc: BaseException, version: int = 4) -> bytes:
    """`[int] code [string] message` and the code's extra fields (error_codes.ERROR_CODES).
    An exception whose fields cannot be written (our bug) goes out as Server_error."""
    rule = rule_for(exc)
    message = _error_message(exc)
    try:
        fields = b"".join(_error_field(kind, getattr(exc, attr), version) for kind, attr in rule.fields)
    except (AttributeError, TypeError, ValueError, OverflowError, struct.error) as bad:
        message = _truncate(f"{message} (its {rule.name} fields could not be encoded: {bad})")
        rule, fields = SERVER_ERROR_RULE, b""
    return pack_int(rule.code) + pack_string(message) + fields


def _error_message(exc: BaseException) -> str:
    return _truncate(str(exc) or type(exc).__name__)


def _truncate(text: str) -> str:
    if len(text) <= ERROR_MESSAGE_MAX_CHARS:
        return text
    return text[:ERROR_MESSAGE_MAX_CHARS - 3] + "..."


def _error_field(kind: str, value, version: int) -> bytes:
    if kind == "failures":  # v5 names each failed replica (a reason map), v4 counts them
        if version < 5:
            return pack_int(len(value))
        return pack_int(len(value)) + b"".join(
            pack_byte(len(raw)) + raw + pack_short(code)
            for raw, code in ((_address_of(node).packed, code) for node, code in value.items()))
    if kind == "consistency":
        return pack_consistency(value)
    if kind == "int":
        return pack_int(int(value))
    if kind == "byte":
        return pack_byte(1 if value else 0)
    if kind == "string":
        return pack_string(str(value))
    if kind == "write_type":
        if value not in WRITE_TYPES:
            raise ValueError(f"write type {value!r} is not one the driver knows")
        return pack_string(value)
    if kind == "short_bytes":
        return pack_short_bytes(bytes(value))
    raise ValueError(f"unknown error field kind {kind!r}")


def _address_of(node: str):
    """The IP address of a node id ("ip:port", "[v6]:port") or of a bare address."""
    try:
        return ipaddress.ip_address(node)
    except ValueError:
        return ipaddress.ip_address(node.rpartition(":")[0].strip("[]"))


def encode_error(version: int, stream: int, exc: BaseException) -> bytes:
    return encode_envelope(version, stream, Opcode.ERROR, encode_error_body(exc, version))


# --------------------------------------------------------------------------- others


def encode_ready(version: int, stream: int) -> bytes:
    return encode_envelope(version, stream, Opcode.READY, b"")


def encode_authenticate(version: int, stream: int, authenticator: str) -> bytes:
    return encode_envelope(version, stream, Opcode.AUTHENTICATE, pack_string(authenticator))


def encode_auth_success(version: int, stream: int, token: bytes | None = None) -> bytes:
    return encode_envelope(version, stream, Opcode.AUTH_SUCCESS, pack_bytes(token))


def encode_supported(version: int, stream: int, options: dict[str, list[str]]) -> bytes:
    return encode_envelope(version, stream, Opcode.SUPPORTED, pack_string_multimap(options))


def encode_event_body(event: Event) -> bytes:
    if isinstance(event, StatusChange):
        return (pack_string("STATUS_CHANGE") + pack_string(event.change)
                + pack_inet(event.address, event.port))
    if isinstance(event, TopologyChange):
        return (pack_string("TOPOLOGY_CHANGE") + pack_string(event.change)
                + pack_inet(event.address, event.port))
    if isinstance(event, SchemaChange):
        return pack_string("SCHEMA_CHANGE") + _schema_change_body(event)
    raise TypeError(f"not a CQL event: {event!r}")


def event_type(event: Event) -> str:
    """The REGISTER name of the event's type."""
    if isinstance(event, StatusChange):
        return "STATUS_CHANGE"
    if isinstance(event, TopologyChange):
        return "TOPOLOGY_CHANGE"
    return "SCHEMA_CHANGE"


def encode_event(version: int, event: Event) -> bytes:
    return encode_envelope(version, EVENT_STREAM, Opcode.EVENT, encode_event_body(event))
