"""Request bodies of the native protocol, decoded: STARTUP, OPTIONS, QUERY, PREPARE,
EXECUTE, BATCH, REGISTER and AUTH_RESPONSE, in v4 and v5.

Owns: the request value types the server dispatches on (`Startup`, `Options`, `Query`,
`Prepare`, `Execute`, `Register`, `AuthResponse`; BATCH decodes to
`agora.cql.requests.BatchRequest`) and `decode_request(envelope)`, which raises
`ProtocolError` for any body that is not a well-formed request of its opcode.

Deliberately does not know: what a query means (the statement layer), connection state
(which requests are allowed when is the server's business), envelopes beyond their fields.

Where the rules come from: native_protocol_v4.spec and native_protocol_v5.spec section 4.1
and section 10 ("Changes from v4": query/batch flags widen from [byte] to [int]; PREPARE
gains [int] flags and a keyspace; EXECUTE gains result_metadata_id; flags 0x80 keyspace and
0x100 now_in_seconds); section 2.2 (a custom payload, a [bytes map], comes first in the
body when flag 0x04 is set: we skip it). Cassandra's `QueryOptions.Codec` for the checks
(unknown consistency codes and Long.MIN_VALUE timestamps are protocol errors). Bits we do
not know in the flags are refused rather than ignored: the fields they announce would
otherwise be misread as the next ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.errors import ProtocolError
from agora.cql.frames_envelope import FLAG_COMPRESSION, FLAG_CUSTOM_PAYLOAD, Envelope, Opcode
from agora.cql.frames_notation import Reader
from agora.cql.requests import BatchChild, BatchRequest, QueryParams

# Query parameter flags (QUERY and EXECUTE): a [byte] in v4, an [int] in v5.
Q_VALUES = 0x01
Q_SKIP_METADATA = 0x02
Q_PAGE_SIZE = 0x04
Q_PAGING_STATE = 0x08
Q_SERIAL_CONSISTENCY = 0x10
Q_TIMESTAMP = 0x20
Q_NAMES_FOR_VALUES = 0x40
Q_KEYSPACE = 0x80  # v5
Q_NOW_IN_SECONDS = 0x100  # v5
QUERY_FLAGS_KNOWN = {4: 0x7F, 5: 0x1FF}
BATCH_FLAGS_KNOWN = {4: 0x70, 5: 0x1F0}  # the 4 low bits make no sense for a batch
PREPARE_WITH_KEYSPACE = 0x01  # v5 PREPARE flags

BATCH_TYPES = (0, 1, 2)  # LOGGED, UNLOGGED, COUNTER
EVENT_TYPES = frozenset({"TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE"})
LONG_MIN = -2**63


@dataclass(frozen=True, slots=True)
class Startup:
    options: dict[str, str]  # CQL_VERSION, DRIVER_NAME, DRIVER_VERSION, ...


@dataclass(frozen=True, slots=True)
class Options:
    pass


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    params: QueryParams


@dataclass(frozen=True, slots=True)
class Prepare:
    text: str
    keyspace: str | None  # v5 only


@dataclass(frozen=True, slots=True)
class Execute:
    statement_id: bytes
    result_metadata_id: bytes | None  # v5 only
    params: QueryParams


@dataclass(frozen=True, slots=True)
class Register:
    events: list[str]


@dataclass(frozen=True, slots=True)
class AuthResponse:
    token: bytes | None


Request = Startup | Options | Query | Prepare | Execute | BatchRequest | Register | AuthResponse


def decode_request(envelope: Envelope) -> Request:
    """The request an envelope carries. ProtocolError if the opcode is not a request's or
    the body is malformed. Bytes after a complete body are ignored, as Cassandra does."""
    decode = _DECODERS.get(envelope.opcode)
    if decode is None:
        raise ProtocolError(f"unexpected opcode {envelope.opcode:#04x} for a request")
    if envelope.flags & FLAG_COMPRESSION:
        raise ProtocolError("compressed envelope, but no compression was negotiated")
    reader = Reader(envelope.body)
    if envelope.flags & FLAG_CUSTOM_PAYLOAD:
        reader.read_bytes_map("custom payload")
    return decode(reader, envelope.version)


def _startup(r: Reader, version: int) -> Startup:
    options = r.read_string_map("STARTUP options")
    if "CQL_VERSION" not in options:
        raise ProtocolError("Missing value CQL_VERSION in STARTUP message")
    compression = options.get("COMPRESSION")
    if compression:
        raise ProtocolError(f"Unknown compression algorithm: {compression}")
    return Startup(options)


def _options(r: Reader, version: int) -> Options:
    return Options()


def _query(r: Reader, version: int) -> Query:
    text = r.read_long_string("query string")
    return Query(text, decode_query_params(r, version))


def _prepare(r: Reader, version: int) -> Prepare:
    text = r.read_long_string("query string")
    keyspace = None
    if version >= 5:
        flags = r.read_uint("PREPARE flags")
        if flags & ~PREPARE_WITH_KEYSPACE:
            raise ProtocolError(f"unknown PREPARE flags {flags & ~PREPARE_WITH_KEYSPACE:#x}")
        if flags & PREPARE_WITH_KEYSPACE:
            keyspace = r.read_string("PREPARE keyspace")
    return Prepare(text, keyspace)


def _execute(r: Reader, version: int) -> Execute:
    statement_id = r.read_short_bytes("prepared statement id")
    result_metadata_id = r.read_short_bytes("result metadata id") if version >= 5 else None
    return Execute(statement_id, result_metadata_id, decode_query_params(r, version))


def _register(r: Reader, version: int) -> Register:
    events = r.read_string_list("REGISTER event types")
    unknown = sorted(set(events) - EVENT_TYPES)
    if unknown:
        raise ProtocolError(f"unknown event type(s) {', '.join(unknown)} in REGISTER")
    return Register(events)


def _auth_response(r: Reader, version: int) -> AuthResponse:
    return AuthResponse(r.read_bytes("authentication token"))


def _read_flags(r: Reader, version: int, known: dict[int, int], what: str) -> int:
    flags = r.read_uint(what) if version >= 5 else r.read_byte(what)
    unknown = flags & ~known[version]
    if unknown:
        raise ProtocolError(f"unknown {what} {unknown:#x} for protocol v{version}")
    return flags


def _read_timestamp(r: Reader) -> int:
    timestamp = r.read_long("default timestamp")
    if timestamp == LONG_MIN:
        raise ProtocolError(f"Out of bound timestamp {timestamp}")
    return timestamp


def decode_query_params(r: Reader, version: int) -> QueryParams:
    """<consistency><flags>[values][page size][paging state][serial cl][timestamp]
    [keyspace (v5)][now in seconds (v5)] (spec section 4.1.4)."""
    params = QueryParams(consistency=r.read_consistency("consistency"))
    flags = _read_flags(r, version, QUERY_FLAGS_KNOWN, "query flags")
    if flags & Q_VALUES:
        count = r.read_short("value count")
        if flags & Q_NAMES_FOR_VALUES:
            names, values = [], []
            for _ in range(count):
                names.append(r.read_string("value name"))
                values.append(r.read_value("bound value"))
            params.names, params.values = names, values
        else:
            params.values = r.read_values(count, "bound value")
    params.skip_metadata = bool(flags & Q_SKIP_METADATA)
    if flags & Q_PAGE_SIZE:
        params.page_size = r.read_int("page size")
    if flags & Q_PAGING_STATE:
        params.paging_state = r.read_bytes("paging state")
    if flags & Q_SERIAL_CONSISTENCY:
        params.serial_consistency = r.read_consistency("serial consistency")
    if flags & Q_TIMESTAMP:
        params.timestamp = _read_timestamp(r)
    if flags & Q_KEYSPACE:
        params.keyspace = r.read_string("keyspace")
    if flags & Q_NOW_IN_SECONDS:
        params.now_in_seconds = r.read_int("now in seconds")
    return params


def _batch(r: Reader, version: int) -> BatchRequest:
    batch_type = r.read_byte("batch type")
    if batch_type not in BATCH_TYPES:
        raise ProtocolError(f"unknown batch type {batch_type}")
    children = [_batch_child(r) for _ in range(r.read_short("batch statement count"))]
    params = QueryParams(consistency=r.read_consistency("consistency"))
    flags = _read_flags(r, version, BATCH_FLAGS_KNOWN, "batch flags")
    if flags & Q_NAMES_FOR_VALUES:
        raise ProtocolError("names for values are not supported in BATCH (CASSANDRA-10246)")
    if flags & Q_SERIAL_CONSISTENCY:
        params.serial_consistency = r.read_consistency("serial consistency")
    if flags & Q_TIMESTAMP:
        params.timestamp = _read_timestamp(r)
    if flags & Q_KEYSPACE:
        params.keyspace = r.read_string("keyspace")
    if flags & Q_NOW_IN_SECONDS:
        params.now_in_seconds = r.read_int("now in seconds")
    return BatchRequest(batch_type, children, params)


def _batch_child(r: Reader) -> BatchChild:
    kind = r.read_byte("batch statement kind")
    if kind == 0:
        query, statement_id = r.read_long_string("batch query string"), None
    elif kind == 1:
        query, statement_id = None, r.read_short_bytes("batch statement id")
    else:
        raise ProtocolError(f"unknown batch statement kind {kind} (must be 0 or 1)")
    values = r.read_values(r.read_short("value count"), "bound value")
    return BatchChild(query, statement_id, values)


_DECODERS = {
    Opcode.STARTUP: _startup,
    Opcode.OPTIONS: _options,
    Opcode.QUERY: _query,
    Opcode.PREPARE: _prepare,
    Opcode.EXECUTE: _execute,
    Opcode.BATCH: _batch,
    Opcode.REGISTER: _register,
    Opcode.AUTH_RESPONSE: _auth_response,
}
