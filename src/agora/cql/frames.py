"""The CQL native protocol codec, v4 and v5: bytes from a client in, request values out;
result values in, bytes to a client out. Pure: no sockets, no clock, no event loop.

This module is the codec's one public face; the work is split by layer of the protocol:

  * `frames_notation`  — spec section 3: [int], [string], [value], [inet] ... (`Reader`,
    `pack_*`);
  * `frames_envelope`  — spec section 2: the 9-byte header, versions, opcodes,
    `EnvelopeDecoder`, `FrameError`/`UnsupportedVersion`, MAX_ENVELOPE_BYTES (16 MiB, as
    Cassandra 4+'s native_transport_max_frame_size);
  * `frames_segments`  — v5 segments: CRC24 header, CRC32 payload, `SegmentDecoder`,
    `encode_segments` (128 KiB - 1 per segment payload);
  * `frames_requests`  — spec section 4.1: `decode_request(envelope)`;
  * `frames_responses` — spec section 4.2: `encode_result`, `encode_error`, `encode_event`,
    `encode_type_option` ...; the error table itself is `agora.cql.error_codes`.

How a server uses it: feed socket bytes to an `EnvelopeDecoder` (on a v5 connection, once
READY has gone out, first through a `SegmentDecoder`, feeding each segment's payload to the
envelope decoder); `decode_request()` each envelope; encode each answer as an envelope with
the request's version and stream (`encode_result` / `encode_error` / ...), and on a framed
v5 connection wrap the envelopes of one write in `encode_segments()`.

Errors: anything a client can send that is wrong raises `agora.core.errors.ProtocolError`.
A `FrameError` (a ProtocolError) means the byte stream itself is broken: answer on its
`stream` if it has one, then close. Any other ProtocolError concerns one request whose
envelope was read whole: answer ERROR 0x000A on its stream and carry on.

Where the rules come from: native_protocol_v4.spec and native_protocol_v5.spec (apache/
cassandra doc/), shared/cql-compat.md (what cassandra-driver 3.30.1 and cqlsh 6.2.2 need),
the driver's `cassandra/protocol.py` and `cassandra/segment.py` (tests round-trip against
both).
"""

from __future__ import annotations

from agora.cql.frames_envelope import (EVENT_STREAM, FLAG_BETA, FLAG_COMPRESSION,
                                       FLAG_CUSTOM_PAYLOAD, FLAG_TRACING, FLAG_WARNING,
                                       HEADER_BYTES, HIGHEST_VERSION, MAX_ENVELOPE_BYTES,
                                       SUPPORTED_VERSIONS, Envelope, EnvelopeDecoder, FrameError,
                                       Opcode, UnsupportedVersion, encode_envelope,
                                       encode_request_envelope, unsupported_version_message)
from agora.cql.frames_notation import (Reader, pack_bytes, pack_bytes_map, pack_consistency,
                                       pack_inet, pack_int, pack_long, pack_long_string,
                                       pack_short, pack_short_bytes, pack_string, pack_string_list,
                                       pack_string_map, pack_string_multimap, pack_uint,
                                       pack_value)
from agora.cql.frames_requests import (AuthResponse, Execute, Options, Prepare, Query, Register,
                                       Request, Startup, decode_query_params, decode_request)
from agora.cql.frames_responses import (Event, StatusChange, TopologyChange, encode_auth_success,
                                        encode_authenticate, encode_error, encode_error_body,
                                        encode_event, encode_event_body, encode_ready,
                                        encode_result, encode_result_body, encode_rows_metadata,
                                        encode_supported, encode_type_option, event_type)
from agora.cql.frames_segments import (MAX_SEGMENT_PAYLOAD_BYTES, Segment, SegmentDecoder, crc24,
                                       crc32, encode_segment, encode_segments)

__all__ = [
    # envelopes
    "EVENT_STREAM", "FLAG_BETA", "FLAG_COMPRESSION", "FLAG_CUSTOM_PAYLOAD", "FLAG_TRACING",
    "FLAG_WARNING", "HEADER_BYTES", "HIGHEST_VERSION", "MAX_ENVELOPE_BYTES", "SUPPORTED_VERSIONS",
    "Envelope", "EnvelopeDecoder", "FrameError", "Opcode", "UnsupportedVersion",
    "encode_envelope", "encode_request_envelope", "unsupported_version_message",
    # notations
    "Reader", "pack_bytes", "pack_bytes_map", "pack_consistency", "pack_inet", "pack_int",
    "pack_long", "pack_long_string", "pack_short", "pack_short_bytes", "pack_string",
    "pack_string_list", "pack_string_map", "pack_string_multimap", "pack_uint", "pack_value",
    # requests
    "AuthResponse", "Execute", "Options", "Prepare", "Query", "Register", "Request", "Startup",
    "decode_query_params", "decode_request",
    # responses
    "Event", "StatusChange", "TopologyChange", "encode_auth_success", "encode_authenticate",
    "encode_error", "encode_error_body", "encode_event", "encode_event_body", "encode_ready",
    "encode_result", "encode_result_body", "encode_rows_metadata", "encode_supported",
    "encode_type_option", "event_type",
    # segments
    "MAX_SEGMENT_PAYLOAD_BYTES", "Segment", "SegmentDecoder", "crc24", "crc32",
    "encode_segment", "encode_segments",
]
