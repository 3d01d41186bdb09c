"""The CQL codec never lets bad client bytes out as anything but ProtocolError: random bytes
and mutated valid envelopes and segments, fed in random chunks, into EnvelopeDecoder,
SegmentDecoder and decode_request. Plus the segment codec's round trip."""

from __future__ import annotations

from cassandra import ConsistencyLevel as DCL
from cassandra import protocol as dp
from cassandra.protocol import ProtocolHandler
from cassandra.query import UNSET_VALUE, BatchType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.core.errors import ProtocolError
from agora.cql import frames as F

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _driver_requests() -> list[bytes]:
    messages = [
        dp.OptionsMessage(),
        dp.StartupMessage("3.4.7", {"DRIVER_NAME": "fuzz"}),
        dp.RegisterMessage(["STATUS_CHANGE", "SCHEMA_CHANGE"]),
        dp.QueryMessage("SELECT * FROM ks.t WHERE k = 1", DCL.QUORUM, DCL.SERIAL, 100, b"ps", 12345),
        dp.PrepareMessage("INSERT INTO ks.t (k, v) VALUES (?, ?)"),
        dp.ExecuteMessage(b"\x01" * 16, [b"\x00\x00\x00\x01", None, UNSET_VALUE], DCL.ONE,
                          fetch_size=10, timestamp=7, result_metadata_id=b"\x02" * 16),
        dp.BatchMessage(BatchType.LOGGED, [(False, "INSERT INTO t (k) VALUES (1)", []),
                                          (True, b"\x03" * 16, [b"a", None])], DCL.TWO,
                        timestamp=9),
        dp.AuthResponseMessage(b"\x00u\x00p"),
    ]
    frames = []
    for version in (4, 5):
        for i, msg in enumerate(messages):
            frames.append(ProtocolHandler.encode_message(msg, i, version, None, False))
    return frames


VALID_REQUESTS = _driver_requests()


def drain_envelopes(decoder: F.EnvelopeDecoder, chunks: list[bytes]) -> None:
    """Feed chunks and decode everything; only ProtocolError may escape."""
    for chunk in chunks:
        decoder.feed(chunk)
        while (envelope := decoder.next_envelope()) is not None:
            try:
                F.decode_request(envelope)
            except ProtocolError:
                pass


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


def only_protocol_errors(fn) -> None:
    try:
        fn()
    except ProtocolError:
        pass


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=6))
def test_random_bytes_into_the_envelope_decoder(data, cuts):
    only_protocol_errors(lambda: drain_envelopes(F.EnvelopeDecoder(max_body_bytes=4096),
                                                 split(data, cuts)))


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 10_000), max_size=6))
def test_random_bytes_into_the_segment_decoder(data, cuts):
    decoder = F.SegmentDecoder()

    def run():
        for chunk in split(data, cuts):
            decoder.feed(chunk)
            while decoder.next_segment() is not None:
                pass

    only_protocol_errors(run)


@st.composite
def mutated(draw, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0xFE]))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(st.data(), st.lists(st.integers(0, 10_000), max_size=4))
def test_mutated_driver_requests_into_the_envelope_decoder(data, cuts):
    prefix = data.draw(st.sampled_from(VALID_REQUESTS))
    target = data.draw(mutated(data.draw(st.sampled_from(VALID_REQUESTS))))
    stream = prefix + target if data.draw(st.booleans()) else target
    only_protocol_errors(lambda: drain_envelopes(F.EnvelopeDecoder(), split(stream, cuts)))


@FUZZ
@given(st.sampled_from((3, 4, 5, 6)), st.integers(0, 0xFF), st.integers(0, 0x20),
       st.binary(max_size=300))
def test_any_envelope_fields_and_body_into_decode_request(version, flags, opcode, body):
    only_protocol_errors(lambda: F.decode_request(F.Envelope(version, flags, 1, opcode, body)))


@FUZZ
@given(st.data())
def test_mutated_bodies_of_valid_requests(data):
    frame = data.draw(st.sampled_from(VALID_REQUESTS))
    envelope = F.EnvelopeDecoder()
    envelope.feed(frame)
    valid = envelope.next_envelope()
    body = data.draw(mutated(valid.body)) if valid.body else data.draw(st.binary(max_size=20))
    only_protocol_errors(lambda: F.decode_request(
        F.Envelope(valid.version, valid.flags, valid.stream, valid.opcode, body)))


@FUZZ
@given(st.data(), st.lists(st.integers(0, 10_000), max_size=4))
def test_mutated_segments_then_envelopes(data, cuts):
    requests = data.draw(st.lists(st.sampled_from(VALID_REQUESTS[len(VALID_REQUESTS) // 2:]),
                                  min_size=1, max_size=4))
    stream = data.draw(mutated(F.encode_segments(requests)))
    segments, envelopes = F.SegmentDecoder(), F.EnvelopeDecoder()

    def run():
        for chunk in split(stream, cuts):
            segments.feed(chunk)
            while (segment := segments.next_segment()) is not None:
                drain_envelopes(envelopes, [segment.payload])

    only_protocol_errors(run)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300_000), min_size=1, max_size=6),
       st.lists(st.integers(0, 2_000_000), max_size=5))
def test_segments_round_trip(sizes, cuts):
    envelopes = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    envelopes = [e for e in envelopes if e]
    encoded = F.encode_segments(envelopes)
    decoder, payloads = F.SegmentDecoder(), []
    for chunk in split(encoded, cuts):
        decoder.feed(chunk)
        while (segment := decoder.next_segment()) is not None:
            assert len(segment.payload) <= F.MAX_SEGMENT_PAYLOAD_BYTES
            # a non-self-contained segment carries part of exactly one big envelope
            assert segment.self_contained or len(set(segment.payload)) <= 1
            payloads.append(segment.payload)
    assert b"".join(payloads) == b"".join(envelopes)
