"""Envelopes of the CQL native protocol (v4 "frames", v5 "envelopes"): the 9-byte header
`version flags stream opcode length` and its body, and the streaming `EnvelopeDecoder`.

Owns: protocol versions we speak (4 and 5; v3 only as the header of a version error),
opcodes, header flags, the largest body we accept (MAX_ENVELOPE_BYTES), the check that a
connection keeps one version, and `FrameError`: a `ProtocolError` that says which stream
(if any) can still be answered before the connection is closed.

Deliberately does not know: what a body means (`agora.cql.frames_requests`,
`agora.cql.frames_responses`), v5 segments (`agora.cql.frames_segments`: once a v5
connection is framed, segment payloads are fed into this same decoder), sockets.

Where the rules come from: native_protocol_v4.spec section 2 (header; the 0x80 direction
bit; stream ids; the 256 MB body ceiling, which Cassandra 4+ narrows with
native_transport_max_frame_size); native_protocol_v5.spec section 2 (envelopes keep this
header inside segments); shared/cql-compat.md section 1.2 (a first envelope in any
unsupported version, whatever its opcode, gets ERROR 0x000A "Invalid or unsupported
protocol version (N); ..." with a v3+ 9-byte header the driver can read, then a close).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from agora.core.errors import ProtocolError

SUPPORTED_VERSIONS = (4, 5)
HIGHEST_VERSION = 5
LOWEST_VERSION_WITH_9_BYTE_HEADER = 3  # v1/v2 headers are 8 bytes: a 1-byte stream id
VERSION_MASK = 0x7F
RESPONSE_BIT = 0x80  # set in the version byte of every server -> client envelope
HEADER_BYTES = 9
EVENT_STREAM = -1  # server-pushed EVENTs use stream -1 (spec section 2.3)

# Largest envelope body accepted from a client, in bytes. Cassandra 4+ defaults
# native_transport_max_frame_size to 16 MiB (3.x allowed 256 MB, the spec's ceiling); a
# request above it is either a mistake or an attack, and the connection is refused
# before any of it is buffered. Responses are not bound by it (Cassandra's are not).
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024

_HEADER = struct.Struct(">BBhBi")


class Opcode(enum.IntEnum):
    ERROR = 0x00
    STARTUP = 0x01
    READY = 0x02
    AUTHENTICATE = 0x03
    OPTIONS = 0x05
    SUPPORTED = 0x06
    QUERY = 0x07
    RESULT = 0x08
    PREPARE = 0x09
    EXECUTE = 0x0A
    REGISTER = 0x0B
    EVENT = 0x0C
    BATCH = 0x0D
    AUTH_CHALLENGE = 0x0E
    AUTH_RESPONSE = 0x0F
    AUTH_SUCCESS = 0x10


# Header flags (spec section 2.2).
FLAG_COMPRESSION = 0x01
FLAG_TRACING = 0x02
FLAG_CUSTOM_PAYLOAD = 0x04
FLAG_WARNING = 0x08
FLAG_BETA = 0x10


@dataclass(frozen=True, slots=True)
class Envelope:
    version: int  # without the direction bit
    flags: int
    stream: int
    opcode: int
    body: bytes


class FrameError(ProtocolError):
    """The byte stream itself is broken: the connection must close. `stream` is the stream
    an ERROR can still be sent on first (None: the header did not get that far)."""

    def __init__(self, message: str, stream: int | None = None) -> None:
        super().__init__(message)
        self.stream = stream


class UnsupportedVersion(FrameError):
    """The first envelope of a connection asked for a version we do not speak. The answer's
    header uses `answer_version` (v3 for lower versions, our highest for higher ones) so
    the client can read it whatever it tried."""

    def __init__(self, version: int, stream: int | None) -> None:
        super().__init__(unsupported_version_message(version), stream)
        self.version = version
        self.answer_version = (LOWEST_VERSION_WITH_9_BYTE_HEADER if version < SUPPORTED_VERSIONS[0]
                               else HIGHEST_VERSION)


def unsupported_version_message(version: int) -> str:
    """Cassandra's wording; the driver downgrades only if the text contains
    'unsupported protocol version' (cql-compat.md 1.2)."""
    supported = ", ".join(f"{v}/v{v}" for v in SUPPORTED_VERSIONS)
    return f"Invalid or unsupported protocol version ({version}); supported versions are ({supported})"


def encode_envelope(version: int, stream: int, opcode: int, body: bytes, flags: int = 0) -> bytes:
    """A server -> client envelope (the direction bit is set here)."""
    return _HEADER.pack(RESPONSE_BIT | version, flags, stream, opcode, len(body)) + body


def encode_request_envelope(version: int, stream: int, opcode: int, body: bytes,
                            flags: int = 0) -> bytes:
    """A client -> server envelope: for tests and tools that speak as a client."""
    return _HEADER.pack(version, flags, stream, opcode, len(body)) + body


class EnvelopeDecoder:
    """Splits a client's byte stream into `Envelope`s. Pure: `feed()` buffers bytes,
    `next_envelope()` returns the next complete envelope or None, or raises FrameError.

    The first envelope fixes the connection's version (`version`); it must be one of
    SUPPORTED_VERSIONS (UnsupportedVersion otherwise, raised as soon as the version byte
    and stream id are in, without waiting for the body). Every later envelope must carry
    the same version. A body longer than `max_body_bytes` is refused from its header.
    Once it has raised, the decoder keeps raising the same error."""

    __slots__ = ("version", "_max_body", "_buf", "_pos", "_error")

    def __init__(self, max_body_bytes: int = MAX_ENVELOPE_BYTES, version: int | None = None) -> None:
        self.version = version
        self._max_body = max_body_bytes
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

    def take_buffer(self) -> bytes:
        """Hand over the bytes not yet decoded (a v5 connection switching to segments)."""
        rest = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = 0
        return rest

    def next_envelope(self) -> Envelope | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except FrameError as exc:
            self._error = exc
            raise

    def _next(self) -> Envelope | None:
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if available == 0:
            self._compact()
            return None
        first = buf[pos]
        if not self._check_version(first, buf, pos, available):
            return None
        if available < HEADER_BYTES:
            self._compact()
            return None
        _, flags, stream, opcode, length = _HEADER.unpack_from(buf, pos)
        if stream < 0:
            raise FrameError(f"request with negative stream id {stream} (reserved for the server)")
        if length < 0:
            raise FrameError(f"negative body length {length}", stream)
        if length > self._max_body:
            raise FrameError(f"envelope body of {length} bytes exceeds the limit of "
                             f"{self._max_body} bytes", stream)
        end = pos + HEADER_BYTES + length
        if end > len(buf):
            self._compact()
            return None
        body = bytes(buf[pos + HEADER_BYTES:end])
        self._pos = end
        return Envelope(first & VERSION_MASK, flags, stream, opcode, body)

    def _check_version(self, first: int, buf: bytearray, pos: int, available: int) -> bool:
        """Direction and version of the envelope starting at pos; False if more bytes are
        needed to know the stream id an error would be answered on."""
        if first == self.version:
            return True  # the usual case: a request in the connection's version
        version = first & VERSION_MASK
        if available < 4:
            self._compact()
            return False  # the stream id an error would be answered on is not in yet
        if version < LOWEST_VERSION_WITH_9_BYTE_HEADER:
            stream = struct.unpack_from(">b", buf, pos + 2)[0]
        else:
            stream = struct.unpack_from(">h", buf, pos + 2)[0]
        if stream < 0:
            # Never answered: negative streams are the server's (-1 carries EVENTs), so an
            # ERROR there would reach the client as a bogus event. The connection just closes.
            stream = None
        if first & RESPONSE_BIT:
            raise FrameError("expected a request envelope, got the response direction bit", stream)
        if self.version is None:
            if version not in SUPPORTED_VERSIONS:
                raise UnsupportedVersion(version, stream)
            self.version = version
        elif version != self.version:
            raise FrameError(f"Invalid message version. Got {version} but previous messages on "
                             f"this connection had version {self.version}", stream)
        return True

    def _compact(self) -> None:
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
