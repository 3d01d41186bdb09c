"""The native protocol codec against cassandra-driver 3.30.1's own codec, both ways, v4 and v5:
what the driver encodes we decode to the right request values; what we encode the driver
decodes to the right results, errors and events; segments against cassandra.segment."""

from __future__ import annotations

import datetime
import io
import struct
import uuid
import zlib
from decimal import Decimal

import cassandra
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cassandra import ConsistencyLevel as DCL
from cassandra import WriteType
from cassandra import protocol as dp
from cassandra.protocol import ProtocolHandler
from cassandra.query import UNSET_VALUE, BatchType
from cassandra.segment import CRC32_INITIAL, SegmentCodec
from cassandra.util import Duration

from agora.core import errors as E
from agora.core.schema.types import (ASCII, BIGINT, BLOB, BOOLEAN, COUNTER, DATE, DECIMAL, DOUBLE,
                                     DURATION, FLOAT, INET, INT, NATIVE_NAMES, NativeType, SMALLINT,
                                     TEXT, TIME, TIMESTAMP, TIMEUUID, TINYINT, UUID, VARINT, ListType,
                                     MapType, SetType, TupleType, UserType, deserialize, serialize)
from agora.cql import error_codes
from agora.cql import frames as F
from agora.cql.frames_responses import ERROR_MESSAGE_MAX_CHARS
from agora.cql.requests import UNSET, BatchRequest
from agora.cql.results import ColumnSpec, Prepared, Rows, SchemaChange, SetKeyspace, Void

VERSIONS = (4, 5)


# ------------------------------------------------------------------------------ helpers


def driver_encode(msg, version: int, stream: int = 7) -> bytes:
    return ProtocolHandler.encode_message(msg, stream, version, compressor=None,
                                          allow_beta_protocol_version=False)


def decode_one(data: bytes) -> F.Envelope:
    decoder = F.EnvelopeDecoder()
    decoder.feed(data)
    envelope = decoder.next_envelope()
    assert envelope is not None
    assert decoder.next_envelope() is None and decoder.buffered_bytes == 0
    return envelope


def our_request(msg, version: int):
    envelope = decode_one(driver_encode(msg, version))
    assert envelope.version == version and envelope.stream == 7
    return F.decode_request(envelope)


def driver_decode(frame: bytes, result_metadata=None):
    """Decode one of our envelopes with the driver (as its connection does)."""
    version_byte, flags, stream, opcode, length = struct.unpack_from(">BBhBi", frame)
    assert version_byte & 0x80, "responses carry the direction bit"
    body = frame[9:]
    assert len(body) == length
    msg = ProtocolHandler.decode_message(version_byte & 0x7F, {}, stream, flags, opcode, body,
                                         None, result_metadata)
    return msg


# ------------------------------------------------------------------------------ requests


@pytest.mark.parametrize("version", VERSIONS)
def test_startup_and_options(version):
    req = our_request(dp.StartupMessage("3.4.7", {"DRIVER_NAME": "x", "NO_COMPACT": "true"}), version)
    assert req == F.Startup({"DRIVER_NAME": "x", "NO_COMPACT": "true", "CQL_VERSION": "3.4.7"})
    assert our_request(dp.OptionsMessage(), version) == F.Options()


def test_startup_without_cql_version_or_with_compression_is_refused():
    body = F.pack_string_map({"DRIVER_NAME": "x"})
    with pytest.raises(E.ProtocolError, match="CQL_VERSION"):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.STARTUP, body))
    body = F.pack_string_map({"CQL_VERSION": "3.0.0", "COMPRESSION": "lz4"})
    with pytest.raises(E.ProtocolError, match="compression"):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.STARTUP, body))


@pytest.mark.parametrize("version", VERSIONS)
def test_query_with_every_option(version):
    keyspace = "ks1" if version >= 5 else None
    msg = dp.QueryMessage("SELECT * FROM t WHERE k = 'é'", DCL.LOCAL_QUORUM,
                          serial_consistency_level=DCL.LOCAL_SERIAL, fetch_size=100,
                          paging_state=b"\x00page", timestamp=1_700_000_000_123_456,
                          keyspace=keyspace)
    req = our_request(msg, version)
    assert isinstance(req, F.Query)
    assert req.text == "SELECT * FROM t WHERE k = 'é'"
    p = req.params
    assert (p.consistency, p.serial_consistency, p.page_size, p.paging_state, p.timestamp,
            p.keyspace) == (DCL.LOCAL_QUORUM, DCL.LOCAL_SERIAL, 100, b"\x00page",
                            1_700_000_000_123_456, keyspace)
    assert p.values == [] and p.names is None and not p.skip_metadata


@pytest.mark.parametrize("version", VERSIONS)
def test_query_minimal(version):
    req = our_request(dp.QueryMessage("SELECT * FROM system.local", DCL.ONE), version)
    p = req.params
    assert (p.consistency, p.page_size, p.paging_state, p.serial_consistency, p.timestamp,
            p.keyspace, p.now_in_seconds) == (DCL.ONE, None, None, None, None, None, None)


@pytest.mark.parametrize("version", VERSIONS)
def test_execute_values_null_and_unset(version):
    metadata_id = b"\x01\x02" if version >= 5 else None
    msg = dp.ExecuteMessage(b"\xaa" * 16, [b"\x00\x00\x00\x01", None, UNSET_VALUE, b""],
                            DCL.QUORUM, timestamp=5, skip_meta=True,
                            result_metadata_id=metadata_id)
    req = our_request(msg, version)
    assert isinstance(req, F.Execute)
    assert req.statement_id == b"\xaa" * 16
    assert req.result_metadata_id == metadata_id
    assert req.params.values == [b"\x00\x00\x00\x01", None, UNSET, b""]
    assert req.params.values[2] is UNSET
    assert req.params.timestamp == 5
    assert not req.params.skip_metadata  # the driver never sets 0x02 (cql-compat.md 5.2) ...
    body = F.pack_short_bytes(b"id") + F.pack_short(1) + bytes([0x02])  # ... other drivers do
    assert F.decode_request(F.Envelope(4, 0, 1, F.Opcode.EXECUTE, body)).params.skip_metadata


@pytest.mark.parametrize("version", VERSIONS)
def test_prepare(version):
    assert our_request(dp.PrepareMessage("SELECT ?"), version) == F.Prepare("SELECT ?", None)
    if version >= 5:
        assert our_request(dp.PrepareMessage("SELECT ?", keyspace="ks"), version) == \
            F.Prepare("SELECT ?", "ks")


@pytest.mark.parametrize("version", VERSIONS)
def test_batch(version):
    keyspace = "ks" if version >= 5 else None
    msg = dp.BatchMessage(BatchType.UNLOGGED,
                          [(False, "INSERT INTO t (k) VALUES (1)", []),
                           (True, b"\x10" * 16, [b"a", None, UNSET_VALUE])],
                          DCL.TWO, serial_consistency_level=DCL.SERIAL, timestamp=42,
                          keyspace=keyspace)
    req = our_request(msg, version)
    assert isinstance(req, BatchRequest)
    assert req.batch_type == 1
    assert [(c.query, c.statement_id) for c in req.children] == \
        [("INSERT INTO t (k) VALUES (1)", None), (None, b"\x10" * 16)]
    assert req.children[0].values == [] and req.children[1].values == [b"a", None, UNSET]
    assert (req.params.consistency, req.params.serial_consistency, req.params.timestamp,
            req.params.keyspace) == (DCL.TWO, DCL.SERIAL, 42, keyspace)


@pytest.mark.parametrize("version", VERSIONS)
def test_register_and_auth_response(version):
    events = ["TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE"]
    assert our_request(dp.RegisterMessage(events), version) == F.Register(events)
    assert our_request(dp.AuthResponseMessage(b"\x00user\x00pw"), version) == \
        F.AuthResponse(b"\x00user\x00pw")


@pytest.mark.parametrize("version", VERSIONS)
def test_custom_payload_and_tracing_flag_are_tolerated(version):
    msg = dp.QueryMessage("SELECT 1", DCL.ONE)
    msg.custom_payload = {"key": b"value", "other": b""}
    msg.tracing = True
    req = our_request(msg, version)
    assert req.text == "SELECT 1" and req.params.consistency == DCL.ONE


def test_names_for_values_flag():
    body = (F.pack_long_string("SELECT :a") + F.pack_short(1) + bytes([0x41]) + F.pack_short(2)
            + F.pack_string("a") + F.pack_value(b"x") + F.pack_string("b") + F.pack_value(None))
    req = F.decode_request(F.Envelope(4, 0, 1, F.Opcode.QUERY, body))
    assert req.params.names == ["a", "b"] and req.params.values == [b"x", None]


def test_v5_now_in_seconds_flag():
    body = F.pack_long_string("SELECT 1") + F.pack_short(1) + F.pack_uint(0x100) + F.pack_int(99)
    req = F.decode_request(F.Envelope(5, 0, 1, F.Opcode.QUERY, body))
    assert req.params.now_in_seconds == 99


@pytest.mark.parametrize("body, match", [
    (F.pack_long_string("q") + F.pack_short(1) + bytes([0x80]), "unknown query flags"),  # v5 flag in v4
    (F.pack_long_string("q") + F.pack_short(77) + bytes([0]), "consistency"),
    (F.pack_long_string("q") + F.pack_short(1) + bytes([1]) + F.pack_short(1) + F.pack_int(-3),
     "below -2"),
    (F.pack_long_string("q") + F.pack_short(1) + bytes([0x20]) + struct.pack(">q", -2**63),
     "timestamp"),
    (F.pack_int(-1), "negative length"),
    (F.pack_int(3) + b"\xff\xfe\xfd" + F.pack_short(1) + bytes([0]), "UTF-8"),
    (F.pack_long_string("q") + F.pack_short(1), "truncated"),
])
def test_bad_query_bodies_are_protocol_errors(body, match):
    with pytest.raises(E.ProtocolError, match=match):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.QUERY, body))


@pytest.mark.parametrize("opcode", [F.Opcode.RESULT, F.Opcode.READY, 0x04, 0x11, 0xFF])
def test_non_request_opcodes_are_protocol_errors(opcode):
    with pytest.raises(E.ProtocolError, match="opcode"):
        F.decode_request(F.Envelope(4, 0, 1, opcode, b""))


def test_compressed_envelopes_are_refused():
    with pytest.raises(E.ProtocolError, match="compress"):
        F.decode_request(F.Envelope(4, F.FLAG_COMPRESSION, 1, F.Opcode.OPTIONS, b""))


def test_bad_batches_are_protocol_errors():
    tail = F.pack_short(1) + bytes([0])
    with pytest.raises(E.ProtocolError, match="batch type"):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.BATCH, bytes([3]) + F.pack_short(0) + tail))
    with pytest.raises(E.ProtocolError, match="kind"):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.BATCH, bytes([0]) + F.pack_short(1) + bytes([2])))
    with pytest.raises(E.ProtocolError, match="names"):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.BATCH,
                                    bytes([0]) + F.pack_short(0) + F.pack_short(1) + bytes([0x40])))


def test_register_unknown_event_is_protocol_error():
    with pytest.raises(E.ProtocolError, match="event type"):
        F.decode_request(F.Envelope(4, 0, 1, F.Opcode.REGISTER, F.pack_string_list(["NOPE"])))


# ------------------------------------------------------------------------------ envelopes


def test_envelope_decoder_streams_byte_by_byte():
    frames = b"".join(driver_encode(dp.QueryMessage(f"SELECT {i}", DCL.ONE), 4, stream=i)
                      for i in range(5))
    decoder = F.EnvelopeDecoder()
    got = []
    for i in range(len(frames)):
        decoder.feed(frames[i:i + 1])
        while (envelope := decoder.next_envelope()) is not None:
            got.append(envelope)
    assert [e.stream for e in got] == list(range(5))
    assert [F.decode_request(e).text for e in got] == [f"SELECT {i}" for i in range(5)]


@pytest.mark.parametrize("version", [0x42, 0x41, 6, 3])
def test_unsupported_versions_answer_on_the_stream(version):
    decoder = F.EnvelopeDecoder()
    decoder.feed(struct.pack(">BBh", version, 0, 33))  # the stream is known after 4 bytes
    with pytest.raises(F.UnsupportedVersion) as info:
        decoder.next_envelope()
    assert info.value.stream == 33
    assert "unsupported protocol version" in str(info.value)
    assert f"({version})" in str(info.value)
    assert info.value.answer_version == (3 if version == 3 else 5)
    with pytest.raises(F.UnsupportedVersion):  # it stays broken
        decoder.next_envelope()


@pytest.mark.parametrize("version", [1, 2])
def test_old_versions_with_8_byte_headers(version):
    decoder = F.EnvelopeDecoder()
    decoder.feed(bytes([version, 0, 9, F.Opcode.OPTIONS, 0, 0, 0, 0]))
    with pytest.raises(F.UnsupportedVersion) as info:
        decoder.next_envelope()
    assert info.value.stream == 9 and info.value.answer_version == 3


def test_unsupported_version_answer_is_what_the_driver_downgrades_on():
    exc = F.UnsupportedVersion(0x42, 0)
    msg = driver_decode(F.encode_error(exc.answer_version, exc.stream, exc))
    assert isinstance(msg, dp.ProtocolException)
    assert "unsupported protocol version" in msg.message


def test_envelope_decoder_refusals():
    def fails(data, match, stream):
        decoder = F.EnvelopeDecoder(max_body_bytes=1000)
        decoder.feed(data)
        with pytest.raises(F.FrameError, match=match) as info:
            decoder.next_envelope()
        assert info.value.stream == stream

    fails(struct.pack(">BBhBi", 4, 0, 5, 7, 1001), "exceeds", 5)
    fails(struct.pack(">BBhBi", 4, 0, 5, 7, -1), "negative body length", 5)
    fails(struct.pack(">BBhBi", 0x84, 0, 5, 7, 0), "direction", 5)
    fails(struct.pack(">BBhBi", 4, 0, -3, 7, 0), "negative stream", None)
    decoder = F.EnvelopeDecoder()
    decoder.feed(struct.pack(">BBhBi", 4, 0, 1, F.Opcode.OPTIONS, 0)
                 + struct.pack(">BBhBi", 5, 0, 2, F.Opcode.OPTIONS, 0))
    assert decoder.next_envelope().stream == 1
    with pytest.raises(F.FrameError, match="version") as info:
        decoder.next_envelope()
    assert info.value.stream == 2


@pytest.mark.parametrize("data, match", [
    (struct.pack(">BBhBi", 0x84, 0, -1, 7, 0), "direction"),
    (struct.pack(">BBhBi", 0x85, 0, -300, 7, 0), "direction"),
    (struct.pack(">BBhBi", 0x42, 0, -1, 5, 0), "unsupported protocol version"),
    (bytes([2, 0, 0xFF, 5, 0, 0, 0, 0]), "unsupported protocol version"),
])
def test_broken_headers_with_a_negative_stream_are_never_answered(data, match):
    """Found by fuzzing a real node: bytes with the response bit and stream -1 were answered
    with an ERROR on stream -1, which a driver reads as an EVENT. Stream ids < 0 belong to
    the server; such a stream is refused without an answer (stream None: just close)."""
    decoder = F.EnvelopeDecoder()
    decoder.feed(data)
    with pytest.raises(F.FrameError, match=match) as info:
        decoder.next_envelope()
    assert info.value.stream is None
    decoder = F.EnvelopeDecoder()  # mid-connection, after a good envelope, the same
    decoder.feed(struct.pack(">BBhBi", 4, 0, 1, F.Opcode.OPTIONS, 0)
                 + struct.pack(">BBhBi", 5, 0, -1, F.Opcode.OPTIONS, 0))
    assert decoder.next_envelope().stream == 1
    with pytest.raises(F.FrameError, match="version") as info:
        decoder.next_envelope()
    assert info.value.stream is None


def test_take_buffer_hands_over_undecoded_bytes():
    decoder = F.EnvelopeDecoder()
    decoder.feed(driver_encode(dp.StartupMessage("3.4.7", {}), 5) + b"\x01\x02\x03")
    assert isinstance(F.decode_request(decoder.next_envelope()), F.Startup)
    assert decoder.take_buffer() == b"\x01\x02\x03"
    assert decoder.buffered_bytes == 0 and decoder.version == 5


# ------------------------------------------------------------------------------ segments


def test_crc_parameters_match_the_driver():
    from cassandra.segment import compute_crc24
    for value in (0, 1, 0x123456, 0xFFFFFF, 0x020010):
        assert F.crc24(value) == compute_crc24(value, 3)
    assert F.crc32(b"payload") == zlib.crc32(b"payload", CRC32_INITIAL)


def test_kept_header_crcs_are_the_computed_ones_and_bounded():
    from cassandra.segment import compute_crc24

    from agora.cql import frames_segments as S
    S._header_crcs.clear()
    headers = list(range(2 * S.HEADER_CRC_CACHE_ENTRIES)) + [S.SELF_CONTAINED_BIT | 5000]
    for _ in range(2):  # the first pass fills the dict, the second reads it
        for header in headers:
            assert S._header_crc(header) == compute_crc24(header, 3)
    assert len(S._header_crcs) == S.HEADER_CRC_CACHE_ENTRIES
    segment = S.encode_segment(b"x" * 5000, True)
    assert segment[3:6] == compute_crc24(S.SELF_CONTAINED_BIT | 5000, 3).to_bytes(3, "little")


def driver_segments(data: bytes):
    codec, buf, out = SegmentCodec(), io.BytesIO(data), []
    while buf.tell() < len(data):
        header = codec.decode_header(buf)
        out.append(codec.decode(buf, header))
    return out


def test_small_envelopes_share_one_self_contained_segment():
    envelopes = [F.encode_ready(5, i) for i in range(100)]
    segments = driver_segments(F.encode_segments(envelopes))
    assert len(segments) == 1 and segments[0].is_self_contained
    assert segments[0].payload == b"".join(envelopes)


def test_many_envelopes_fill_several_segments():
    envelopes = [F.encode_result(5, i, Rows([ColumnSpec("k", "t", "v", BLOB)], [[bytes(1000)]]))
                 for i in range(300)]
    segments = driver_segments(F.encode_segments(envelopes))
    assert len(segments) > 1 and all(s.is_self_contained for s in segments)
    assert all(len(s.payload) <= F.MAX_SEGMENT_PAYLOAD_BYTES for s in segments)
    assert b"".join(s.payload for s in segments) == b"".join(envelopes)


def test_large_envelope_splits_across_non_self_contained_segments():
    small = F.encode_ready(5, 1)
    big = F.encode_result(5, 2, Rows([ColumnSpec("k", "t", "v", BLOB)], [[bytes(400_000)]]))
    segments = driver_segments(F.encode_segments([small, big, small]))
    assert [s.is_self_contained for s in segments] == [True, False, False, False, False, True]
    assert b"".join(s.payload for s in segments[1:5]) == big
    # and the driver's reassembled envelope decodes
    msg = driver_decode(big)
    assert msg.parsed_rows == [(bytes(400_000),)]


def test_our_segment_decoder_reads_the_drivers_segments():
    codec = SegmentCodec()
    buf = io.BytesIO()
    small = driver_encode(dp.QueryMessage("SELECT 1", DCL.ONE), 5)
    large = driver_encode(dp.QueryMessage("SELECT '" + "x" * 300_000 + "'", DCL.ONE), 5)
    codec.encode(buf, small)
    codec.encode(buf, large)
    data = buf.getvalue()
    decoder, envelopes = F.SegmentDecoder(), F.EnvelopeDecoder()
    kinds = []
    for i in range(0, len(data), 4093):  # odd-sized chunks
        decoder.feed(data[i:i + 4093])
        while (segment := decoder.next_segment()) is not None:
            kinds.append(segment.self_contained)
            envelopes.feed(segment.payload)
    assert kinds == [True, False, False, False]
    texts = []
    while (envelope := envelopes.next_envelope()) is not None:
        texts.append(F.decode_request(envelope).text)
    assert texts == ["SELECT 1", "SELECT '" + "x" * 300_000 + "'"]


def test_segment_crc_mismatches_are_frame_errors():
    data = bytearray(F.encode_segment(b"hello", True))
    bad_header = bytearray(data)
    bad_header[0] ^= 0x01
    bad_payload = bytearray(data)
    bad_payload[7] ^= 0x01
    for bad, match in ((bad_header, "CRC24"), (bad_payload, "CRC32")):
        decoder = F.SegmentDecoder()
        decoder.feed(bytes(bad))
        with pytest.raises(F.FrameError, match=match) as info:
            decoder.next_segment()
        assert info.value.stream is None


# ------------------------------------------------------------------------------ types


ADDRESS = UserType("ks", "address", ("street", "zip"), (TEXT, INT))
ALL_TYPES = [NativeType(n) for n in NATIVE_NAMES] + [
    ListType(INT), SetType(TEXT, frozen=True), MapType(TEXT, ListType(BIGINT, True)),
    TupleType((INT, TEXT, MapType(INT, BLOB, True))), ADDRESS, ListType(ADDRESS.freeze(), True),
]


@pytest.mark.parametrize("t", ALL_TYPES, ids=str)
def test_type_options_decode_to_the_same_type_in_the_driver(t):
    driver_type = dp.ResultMessage.read_type(io.BytesIO(F.encode_type_option(t)), {})
    expected = t.cql_name(force_frozen=False).replace("text", "varchar")
    if isinstance(t, UserType):
        assert (driver_type.keyspace, driver_type.typename, driver_type.fieldnames) == \
            ("ks", "address", ("street", "zip"))
    else:
        assert driver_type.cql_parameterized_type().replace("frozen<", "").replace(">", "") == \
            expected.replace("frozen<", "").replace(">", "")


def test_text_is_varchar_on_the_wire():
    assert F.encode_type_option(TEXT) == b"\x00\x0d"


# ------------------------------------------------------------------------------ results


SAMPLE_VALUES = [
    (ASCII, "abc"), (BIGINT, -2**40), (BLOB, b"\x00\xff"), (BOOLEAN, True), (COUNTER, 7),
    (DECIMAL, Decimal("1.25")), (DOUBLE, 2.5), (FLOAT, 0.5), (INET, "10.0.0.1"), (INT, -3),
    (SMALLINT, 300), (TEXT, "héllo"), (TINYINT, -1), (UUID, uuid.UUID(int=5)),
    (TIMEUUID, uuid.UUID("d2177dd0-eaa2-11de-a572-001b779c76e3")), (VARINT, 2**70),
    (ListType(INT), [1, 2]), (SetType(TEXT), ["a", "b"]), (MapType(TEXT, INT), {"x": 1}),
    (TupleType((INT, TEXT)), (1, "z")), (TIMESTAMP, datetime.datetime(2024, 1, 2, 3, 4, 5)),
    (DATE, datetime.date(2024, 1, 2)), (TIME, 3_600_000_000_123), (DURATION, Duration(1, 2, 3)),
    (ADDRESS, {"street": "Main", "zip": 12345}),
]


@pytest.mark.parametrize("version", VERSIONS)
def test_rows_round_trip_through_the_driver(version):
    columns = [ColumnSpec("ks", "t", f"c{i}", t) for i, (t, _) in enumerate(SAMPLE_VALUES)]
    row = [serialize(t, v) for t, v in SAMPLE_VALUES]
    nulls = [None] * len(columns)
    msg = driver_decode(F.encode_result(version, 3, Rows(columns, [row, nulls])))
    assert msg.kind == dp.RESULT_KIND_ROWS and msg.stream_id == 3
    assert msg.column_names == [c.name for c in columns]
    assert [c[:2] for c in msg.column_metadata] == [("ks", "t")] * len(columns)
    got = msg.parsed_rows[0]
    for (t, value), decoded in zip(SAMPLE_VALUES, got):
        expected = deserialize(t, serialize(t, value))  # the driver's Python conventions
        if isinstance(t, MapType):
            assert dict(decoded) == dict(expected) == value
        elif isinstance(t, UserType):
            assert (decoded.street, decoded.zip) == ("Main", 12345)
        else:
            assert decoded == expected, t
    assert msg.parsed_rows[1] == tuple(nulls)
    assert msg.paging_state is None


@pytest.mark.parametrize("version", VERSIONS)
def test_rows_with_paging_state_and_mixed_tables(version):
    columns = [ColumnSpec("ks", "a", "x", INT), ColumnSpec("other", "b", "y", TEXT)]
    rows = Rows(columns, [[serialize(INT, 1), serialize(TEXT, "t")]], paging_state=b"\x01state")
    msg = driver_decode(F.encode_result(version, 1, rows))
    assert msg.paging_state == b"\x01state"
    assert [tuple(c[:3]) for c in msg.column_metadata] == [("ks", "a", "x"), ("other", "b", "y")]
    assert msg.parsed_rows == [(1, "t")]


@pytest.mark.parametrize("version", VERSIONS)
def test_rows_without_metadata_use_the_prepared_metadata(version):
    columns = [ColumnSpec("ks", "t", "x", INT)]
    frame = F.encode_result(version, 1, Rows(columns, [[serialize(INT, 9)]]), no_metadata=True)
    prepared_md = [("ks", "t", "x", dp.Int32Type)]
    msg = driver_decode(frame, result_metadata=prepared_md)
    assert msg.parsed_rows == [(9,)]


def test_v5_new_metadata_id():
    columns = [ColumnSpec("ks", "t", "x", INT)]
    frame = F.encode_result(5, 1, Rows(columns, []), new_metadata_id=b"\x09\x08")
    msg = driver_decode(frame)
    assert msg.result_metadata_id == b"\x09\x08" and msg.column_names == ["x"]
    # v4 has no such field: the id is left out
    msg4 = driver_decode(F.encode_result(4, 1, Rows(columns, []), new_metadata_id=b"\x09"))
    assert msg4.column_names == ["x"] and msg4.parsed_rows == []


def test_rows_with_wrong_width_are_our_bug():
    with pytest.raises(ValueError):
        F.encode_result(4, 1, Rows([ColumnSpec("k", "t", "x", INT)], [[b"", b""]]))


@pytest.mark.parametrize("version", VERSIONS)
def test_void_set_keyspace(version):
    assert driver_decode(F.encode_result(version, 1, Void())).kind == dp.RESULT_KIND_VOID
    msg = driver_decode(F.encode_result(version, 1, SetKeyspace("ks")))
    assert msg.new_keyspace == "ks"


@pytest.mark.parametrize("version", VERSIONS)
def test_prepared(version):
    bind = [ColumnSpec("ks", "t", "k", TEXT), ColumnSpec("ks", "t", "c", INT)]
    result = [ColumnSpec("ks", "t", "v", MapType(TEXT, INT))]
    prepared = Prepared(b"\x11" * 16, b"\x22" * 16, bind, [0], result)
    msg = driver_decode(F.encode_result(version, 1, prepared))
    assert msg.query_id == b"\x11" * 16
    assert msg.result_metadata_id == (b"\x22" * 16 if version >= 5 else None)
    assert [(c.keyspace_name, c.table_name, c.name) for c in msg.bind_metadata] == \
        [("ks", "t", "k"), ("ks", "t", "c")]
    assert [c.type.typename for c in msg.bind_metadata] == ["varchar", "int"]
    assert msg.pk_indexes == [0]
    assert [c[2] for c in msg.column_metadata] == ["v"]


@pytest.mark.parametrize("version", VERSIONS)
def test_prepared_without_result_columns_or_binds(version):
    msg = driver_decode(F.encode_result(version, 1, Prepared(b"id", b"md", [], [], [])))
    assert msg.bind_metadata == [] and msg.pk_indexes == [] and msg.column_metadata is None


@pytest.mark.parametrize("change, expected", [
    (SchemaChange("CREATED", "KEYSPACE", "ks"),
     {"change_type": "CREATED", "target_type": "KEYSPACE", "keyspace": "ks"}),
    (SchemaChange("UPDATED", "TABLE", "ks", "t"),
     {"change_type": "UPDATED", "target_type": "TABLE", "keyspace": "ks", "table": "t"}),
    (SchemaChange("DROPPED", "TYPE", "ks", "u"),
     {"change_type": "DROPPED", "target_type": "TYPE", "keyspace": "ks", "type": "u"}),
    (SchemaChange("CREATED", "FUNCTION", "ks", "f", ("int", "text")),
     {"change_type": "CREATED", "target_type": "FUNCTION", "keyspace": "ks",
      "function": cassandra.UserFunctionDescriptor("f", ["int", "text"])}),
    (SchemaChange("CREATED", "AGGREGATE", "ks", "a", ("int",)),
     {"change_type": "CREATED", "target_type": "AGGREGATE", "keyspace": "ks",
      "aggregate": cassandra.UserAggregateDescriptor("a", ["int"])}),
])
@pytest.mark.parametrize("version", VERSIONS)
def test_schema_change_result_and_event(version, change, expected):
    msg = driver_decode(F.encode_result(version, 1, change))
    got = msg.schema_change_event
    for key in ("function", "aggregate"):
        if key in got:
            got[key] = (got[key].name, got[key].argument_types)
            expected = {**expected, key: (expected[key].name, expected[key].argument_types)}
    assert got == expected
    event = driver_decode(F.encode_event(version, change))
    assert event.event_type == "SCHEMA_CHANGE" and event.stream_id == -1


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("version", VERSIONS)
def test_every_error_reaches_the_driver_with_its_fields(version):
    cases = [
        (E.Unavailable(4, 3, 1), cassandra.Unavailable,
         dict(consistency=4, required_replicas=3, alive_replicas=1)),
        (E.WriteTimeout(6, 1, 2, "BATCH_LOG"), cassandra.WriteTimeout,
         dict(consistency=6, received_responses=1, required_responses=2,
              write_type=WriteType.BATCH_LOG)),
        (E.ReadTimeout(1, 0, 1, True), cassandra.ReadTimeout,
         dict(consistency=1, received_responses=0, required_responses=1, data_retrieved=True)),
        (E.ReadFailure(4, 1, 2, {"127.0.0.2": 0, "::1": 1}, True), cassandra.ReadFailure,
         dict(consistency=4, received_responses=1, required_responses=2, failures=2,
              data_retrieved=True)),
        (E.WriteFailure(6, 1, 3, {"127.0.0.2:7000": 0, "127.0.0.3:7000": 0}, "UNLOGGED_BATCH"),
         cassandra.WriteFailure,
         dict(consistency=6, received_responses=1, required_responses=3, failures=2,
              write_type=WriteType.UNLOGGED_BATCH)),
        (E.AlreadyExists("ks", "t"), cassandra.AlreadyExists, dict(keyspace="ks", table="t")),
        (E.AlreadyExists("ks"), cassandra.AlreadyExists, dict(keyspace="ks", table="")),
        (E.InvalidRequest("bad"), cassandra.InvalidRequest, {}),
        (E.SchemaError("exists"), cassandra.InvalidRequest, {}),
    ]
    for exc, driver_class, fields in cases:
        msg = driver_decode(F.encode_error(version, 9, exc))
        assert msg.stream_id == 9
        assert msg.code == error_codes.rule_for(exc).code
        driver_exc = msg.to_exception()
        assert isinstance(driver_exc, driver_class), (exc, driver_exc)
        for name, value in fields.items():
            assert getattr(driver_exc, name) == value, (exc, name)
    plain = [
        (E.CqlSyntaxError("line 1"), dp.SyntaxException, 0x2000),
        (E.ConfigurationError("rf"), dp.ConfigurationException, 0x2300),
        (E.Overloaded("busy"), dp.OverloadedErrorMessage, 0x1001),
        (E.ProtocolError("bad bytes"), dp.ProtocolException, 0x000A),
        (ValueError("boom"), dp.ServerError, 0x0000),
        (E.ConfigError("option"), dp.ServerError, 0x0000),
    ]
    for exc, message_class, code in plain:
        msg = driver_decode(F.encode_error(version, 9, exc))
        assert type(msg) is message_class and msg.code == code and msg.message == str(exc)
    failure = driver_decode(F.encode_error(version, 9, E.ReadFailure(1, 0, 1, {"127.0.0.3": 5}, False)))
    if version >= 5:  # v5 names the replica and its code; v4 counts
        assert failure.info["error_code_map"] == {"127.0.0.3": 5}
    by_id = driver_decode(F.encode_error(version, 9, E.ReadFailure(1, 0, 1, {"127.0.0.4:7000": 0}, False)))
    if version >= 5:  # a node id ("ip:port") goes as its address
        assert by_id.info["error_code_map"] == {"127.0.0.4": 0}
    written = driver_decode(F.encode_error(version, 9, E.WriteFailure(1, 0, 1, {"127.0.0.5:7000": 0})))
    if version >= 5:
        assert written.info["error_code_map"] == {"127.0.0.5": 0}
    assert written.info["write_type"] == WriteType.SIMPLE and written.code == 0x1500
    msg = driver_decode(F.encode_error(version, 9, E.Unprepared(b"\x01\x02id")))
    assert isinstance(msg, dp.PreparedQueryNotFound) and msg.info == b"\x01\x02id"


def test_error_table_is_one_rule_per_class_and_picks_the_most_specific():
    assert error_codes.rule_for(E.AlreadyExists("ks")).code == 0x2400
    assert error_codes.rule_for(E.SchemaError("x")).code == 0x2200
    assert error_codes.rule_for(E.ConfigurationError("x")).code == 0x2300
    assert error_codes.rule_for(KeyError("x")).code == error_codes.SERVER_ERROR
    codes = [rule.code for rule in error_codes.ERROR_CODES]
    assert len(codes) == len(set(codes))
    known = set(dp.error_classes)
    assert set(codes) <= known


def test_unknown_write_type_becomes_a_server_error_not_a_broken_driver():
    msg = driver_decode(F.encode_error(4, 1, E.WriteTimeout(1, 0, 1, "WEIRD")))
    assert isinstance(msg, dp.ServerError) and "WEIRD" in msg.message


def test_huge_error_messages_are_truncated():
    msg = driver_decode(F.encode_error(4, 1, E.InvalidRequest("x" * 100_000)))
    assert len(msg.message) == ERROR_MESSAGE_MAX_CHARS and msg.message.endswith("...")


# ------------------------------------------------------------------------------ others


@pytest.mark.parametrize("version", VERSIONS)
def test_ready_supported_authenticate_auth_success(version):
    assert isinstance(driver_decode(F.encode_ready(version, 1)), dp.ReadyMessage)
    options = {"CQL_VERSION": ["3.4.7"], "COMPRESSION": [], "PROTOCOL_VERSIONS": ["4/v4", "5/v5"]}
    msg = driver_decode(F.encode_supported(version, 1, options))
    assert msg.cql_versions == ["3.4.7"]
    assert msg.options == {"COMPRESSION": [], "PROTOCOL_VERSIONS": ["4/v4", "5/v5"]}
    msg = driver_decode(F.encode_authenticate(version, 1, "org.apache.cassandra.auth.PasswordAuthenticator"))
    assert msg.authenticator == "org.apache.cassandra.auth.PasswordAuthenticator"
    assert isinstance(driver_decode(F.encode_auth_success(version, 1, b"tok")), dp.AuthSuccessMessage)


@pytest.mark.parametrize("version", VERSIONS)
def test_status_and_topology_events(version):
    msg = driver_decode(F.encode_event(version, F.StatusChange("DOWN", "127.0.0.2", 9043)))
    assert (msg.event_type, msg.event_args) == \
        ("STATUS_CHANGE", {"change_type": "DOWN", "address": ("127.0.0.2", 9043)})
    msg = driver_decode(F.encode_event(version, F.TopologyChange("NEW_NODE", "::1", 9042)))
    assert (msg.event_type, msg.event_args) == \
        ("TOPOLOGY_CHANGE", {"change_type": "NEW_NODE", "address": ("::1", 9042)})
    assert F.event_type(F.StatusChange("UP", "1.2.3.4", 1)) == "STATUS_CHANGE"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.just(UNSET), st.binary(max_size=40)), max_size=6),
       st.integers(min_value=0, max_value=40), st.binary(max_size=8))
def test_read_values_reads_what_read_value_reads(values, cut, garbage):
    """`read_values` (one loop for a request's bound values) gives what `read_value` in a loop
    gives: the same values and position, or the same ProtocolError for a cut or bad body."""
    body = b"".join(F.pack_value(v) for v in values)
    for data in (body, body[:max(0, len(body) - cut)], body + garbage, F.pack_int(-3) + body):
        count = len(values) + (1 if garbage else 0)
        one, many = F.Reader(data), F.Reader(data)
        try:
            expected = [one.read_value("bound value") for _ in range(count)]
        except E.ProtocolError as exc:
            with pytest.raises(E.ProtocolError) as got:
                many.read_values(count, "bound value")
            assert str(got.value) == str(exc)
            continue
        assert many.read_values(count, "bound value") == expected and many.remaining == one.remaining


def test_notation_round_trips():
    data = (F.pack_string("é") + F.pack_long_string("long") + F.pack_bytes(None) + F.pack_bytes(b"b")
            + F.pack_short_bytes(b"sb") + F.pack_value(UNSET) + F.pack_string_list(["a", "b"])
            + F.pack_string_map({"k": "v"}) + F.pack_string_multimap({"k": ["x", "y"]})
            + F.pack_bytes_map({"k": b"v"}) + F.pack_inet("::1", 9042) + F.pack_consistency(10)
            + F.pack_long(-1))
    r = F.Reader(data)
    assert r.read_string() == "é" and r.read_long_string() == "long"
    assert r.read_bytes() is None and r.read_bytes() == b"b" and r.read_short_bytes() == b"sb"
    assert r.read_value() is UNSET and r.read_string_list() == ["a", "b"]
    assert r.read_string_map() == {"k": "v"} and r.read_string_multimap() == {"k": ["x", "y"]}
    assert r.read_bytes_map() == {"k": b"v"} and r.read_inet() == ("::1", 9042)
    assert r.read_consistency() == 10 and r.read_long() == -1 and r.remaining == 0
    with pytest.raises(E.ProtocolError, match="address size"):
        F.Reader(b"\x05" + bytes(9)).read_inet()
