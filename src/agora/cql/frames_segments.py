"""Protocol v5 segments ("frames" in Cassandra's source): the checksummed container every
envelope travels in once a v5 connection has sent READY (or AUTHENTICATE).

Owns: the uncompressed segment layout, its CRC24 header check and CRC32 payload check,
`SegmentDecoder` (bytes in, segment payloads out) and `encode_segments` (envelopes in,
bytes out: many small envelopes packed per self-contained segment, an envelope too big for
one segment split across non-self-contained ones).

Deliberately does not know: envelopes (`agora.cql.frames_envelope`): the payloads of the
segments a client sends are concatenated and fed to an EnvelopeDecoder, which is right for
both kinds (a self-contained segment holds whole envelopes, the non-self-contained ones
hold consecutive pieces of one envelope). Compression (we advertise none).

Where the rules come from: native_protocol_v5.spec section 2 ("Framing Format Changes For
Native Protocol V5", CASSANDRA-15299), shared/cql-compat.md section 1.5, and the driver's
`cassandra/segment.py`, which this module is tested against in both directions:

    header  = 3 bytes little-endian: payload_length (17 bits) | self_contained << 17
    then      CRC24(header) as 3 bytes little-endian (init 0x875060, poly 0x1974F0B,
              over the 3 header bytes taken as a little-endian integer)
    then      payload (at most 128 KiB - 1 bytes)
    then      CRC32(payload) as 4 bytes little-endian, zlib's crc32 seeded with
              crc32(b"\\xfa\\x2d\\x55\\xca")
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from agora.cql.frames_envelope import FrameError

# Largest payload of one segment, in bytes: the header's length field is 17 bits wide.
MAX_SEGMENT_PAYLOAD_BYTES = 128 * 1024 - 1
SEGMENT_HEADER_BYTES = 3
CRC24_BYTES = 3
CRC32_BYTES = 4
SEGMENT_OVERHEAD_BYTES = SEGMENT_HEADER_BYTES + CRC24_BYTES + CRC32_BYTES
SELF_CONTAINED_BIT = 1 << 17

CRC24_INIT = 0x875060
CRC24_POLY = 0x1974F0B
CRC32_INITIAL = zlib.crc32(b"\xfa\x2d\x55\xca")


def _crc24_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= CRC24_POLY
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24_TABLE = _crc24_table()


def crc24(value: int, length: int = SEGMENT_HEADER_BYTES) -> int:
    """CRC24 of the `length` little-endian bytes of `value`, as the spec computes it."""
    crc = CRC24_INIT
    for _ in range(length):
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24_TABLE[((crc >> 16) ^ value) & 0xFF]
        value >>= 8
    return crc


# Segment headers repeat (a workload's requests and answers come in a few sizes): their CRC24s
# are kept, up to this many distinct headers (of 2^18 possible), in a dict read per segment.
HEADER_CRC_CACHE_ENTRIES = 4096
_header_crcs: dict[int, int] = {}


def _header_crc(header: int) -> int:
    crc = _header_crcs.get(header)
    if crc is None:
        crc = crc24(header)
        if len(_header_crcs) < HEADER_CRC_CACHE_ENTRIES:
            _header_crcs[header] = crc
    return crc


def crc32(payload: bytes) -> int:
    return zlib.crc32(payload, CRC32_INITIAL)


@dataclass(frozen=True, slots=True)
class Segment:
    payload: bytes
    self_contained: bool


def encode_segment(payload: bytes, self_contained: bool) -> bytes:
    size = len(payload)
    if size > MAX_SEGMENT_PAYLOAD_BYTES:
        raise ValueError(f"segment payload of {size} bytes exceeds {MAX_SEGMENT_PAYLOAD_BYTES}")
    header = size | (SELF_CONTAINED_BIT if self_contained else 0)
    return (header.to_bytes(3, "little") + _header_crc(header).to_bytes(3, "little")
            + payload + crc32(payload).to_bytes(4, "little"))


def encode_segments(envelopes: list[bytes]) -> bytes:
    """Wrap encoded envelopes in segments: consecutive envelopes share a self-contained
    segment while they fit; one bigger than a segment goes alone, split in order across
    non-self-contained segments."""
    out: list[bytes] = []
    batch: list[bytes] = []
    batch_bytes = 0
    for envelope in envelopes:
        size = len(envelope)
        if size > MAX_SEGMENT_PAYLOAD_BYTES:
            if batch:
                out.append(encode_segment(b"".join(batch), True))
                batch, batch_bytes = [], 0
            view = memoryview(envelope)
            for start in range(0, size, MAX_SEGMENT_PAYLOAD_BYTES):
                out.append(encode_segment(bytes(view[start:start + MAX_SEGMENT_PAYLOAD_BYTES]), False))
            continue
        if batch_bytes + size > MAX_SEGMENT_PAYLOAD_BYTES:
            out.append(encode_segment(b"".join(batch), True))
            batch, batch_bytes = [], 0
        batch.append(envelope)
        batch_bytes += size
    if batch:
        out.append(encode_segment(b"".join(batch), True))
    return b"".join(out)


class SegmentDecoder:
    """Splits a v5 byte stream into `Segment`s, checking both CRCs. Pure: `feed()` buffers,
    `next_segment()` returns the next complete segment or None, or raises FrameError (a
    ProtocolError with no stream to answer on: a corrupt segment may hide any envelope, so
    the connection closes). Once it has raised, it keeps raising the same error."""

    __slots__ = ("_buf", "_pos", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._error: FrameError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_segment(self) -> Segment | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except FrameError as exc:
            self._error = exc
            raise

    def _next(self) -> Segment | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < SEGMENT_HEADER_BYTES + CRC24_BYTES:
            self._compact()
            return None
        header = int.from_bytes(buf[pos:pos + 3], "little")
        expected = int.from_bytes(buf[pos + 3:pos + 6], "little")
        actual = _header_crc(header)
        if actual != expected:
            raise FrameError(f"segment header CRC24 mismatch: received {expected:06x}, "
                             f"computed {actual:06x}")
        size = header & MAX_SEGMENT_PAYLOAD_BYTES
        start = pos + SEGMENT_HEADER_BYTES + CRC24_BYTES
        end = start + size + CRC32_BYTES
        if end > len(buf):
            self._compact()
            return None
        payload = bytes(buf[start:start + size])
        expected = int.from_bytes(buf[start + size:end], "little")
        actual = crc32(payload)
        if actual != expected:
            raise FrameError(f"segment payload CRC32 mismatch: received {expected:08x}, "
                             f"computed {actual:08x}")
        self._pos = end
        return Segment(payload, bool(header & SELF_CONTAINED_BIT))

    def _compact(self) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
