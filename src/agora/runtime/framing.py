"""Internode wire format, pure: frames, the hello handshake message, node ids.

Owns: the length-prefixed frame (`encode_frame`, `FrameDecoder`), the hello payload
(`encode_hello`, `decode_hello`, `check_cluster`) and the "ip:port" node id shape
(`parse_node_id`). No sockets, no event loop, no clock: the connection machinery in
`agora.runtime.transport` and `agora.runtime.transport_client` feeds bytes in and writes
bytes out.

Deliberately does not know: what a payload means (the codec in `agora.core.codec`), how
connections are opened, queued to or re-dialled.

Where the rules come from: Cassandra's internode `HandshakeProtocol` (a hello naming the
sender, its messaging version and, for us, the cluster, comes first on every connection).

Wire format::

    frame = length (uint32, big-endian) + payload;  1 <= length <= MAX_FRAME_BYTES
    hello = msgpack ["agora-hello", PROTOCOL_VERSION, sender_id, cluster_name]

A sender id starting "client:" is a client; any other must be a node id "ip:port" (or
"[v6]:port"). Anything wrong in bytes from a peer is its fault: `ProtocolError`. An empty
or oversized payload of our own is our bug: `ValueError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack

from agora.core.errors import ProtocolError
from agora.core.limits import HELLO_FIELD_MAX_CHARS, HELLO_MAX_BYTES, MAX_FRAME_BYTES

__all__ = [
    "CLIENT_PREFIX", "HEADER_BYTES", "HELLO_TAG", "MAX_FRAME_BYTES", "PROTOCOL_VERSION",
    "FrameDecoder", "Hello", "check_cluster", "decode_hello", "encode_frame", "encode_hello",
    "parse_node_id",
]

HELLO_TAG = "agora-hello"
PROTOCOL_VERSION = 1
CLIENT_PREFIX = "client:"
HEADER_BYTES = 4
_HEADER = struct.Struct(">I")


def encode_frame(payload: bytes) -> bytes:
    """Length prefix + payload. An empty or oversized payload is our own bug: ValueError."""
    size = len(payload)
    if size == 0 or size > MAX_FRAME_BYTES:
        raise ValueError(f"frame payload must be 1..{MAX_FRAME_BYTES} bytes, got {size}")
    return _HEADER.pack(size) + payload


class FrameDecoder:
    """Splits a byte stream into frame payloads. Pure: no I/O, never raises.

    `feed()` returns every complete payload; a malformed length prefix stops decoding and
    is kept in `error` (a ProtocolError) after the good frames before it are returned.
    The first frame is held to `first_frame_max_bytes` (a hello is small).
    """

    __slots__ = ("_buf", "_limit", "error")

    def __init__(self, first_frame_max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._limit = first_frame_max_bytes
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        buffered = bool(self._buf)
        if buffered:
            self._buf += data
            data = self._buf
        frames: list[bytes] = []
        pos, size, limit, unpack = 0, len(data), self._limit, _HEADER.unpack_from
        while size - pos >= HEADER_BYTES:
            (length,) = unpack(data, pos)
            if length == 0 or length > limit:
                self.error = ProtocolError(f"bad frame length {length} (limit {limit})")
                break
            end = pos + HEADER_BYTES + length
            if end > size:
                break
            frames.append(bytes(data[pos + HEADER_BYTES:end]))
            pos, limit = end, MAX_FRAME_BYTES
        self._limit = limit
        if buffered:
            del self._buf[:pos]
        elif pos < size:
            self._buf = bytearray(data[pos:])
        return frames


@dataclass(frozen=True, slots=True)
class Hello:
    protocol_version: int
    sender_id: str
    cluster_name: str

    @property
    def is_client(self) -> bool:
        return self.sender_id.startswith(CLIENT_PREFIX)


def encode_hello(sender_id: str, cluster_name: str) -> bytes:
    """The hello payload (not yet framed)."""
    return msgpack.packb([HELLO_TAG, PROTOCOL_VERSION, sender_id, cluster_name])


def decode_hello(payload: bytes) -> Hello:
    """Parse and check a hello; anything wrong is the peer's fault: ProtocolError."""
    try:
        fields = msgpack.unpackb(payload, raw=False, max_str_len=HELLO_MAX_BYTES,
                                 max_bin_len=0, max_array_len=8, max_map_len=0)
    except Exception as exc:  # msgpack raises several types for bad input
        raise ProtocolError(f"hello is not msgpack: {exc!r}") from None
    if not (isinstance(fields, list) and len(fields) == 4 and fields[0] == HELLO_TAG):
        raise ProtocolError(f"not a hello: {fields!r:.100}")
    _, version, sender_id, cluster_name = fields
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r}")
    for name, value in (("sender id", sender_id), ("cluster name", cluster_name)):
        if not isinstance(value, str) or not 0 < len(value) <= HELLO_FIELD_MAX_CHARS:
            raise ProtocolError(f"bad {name} in hello: {value!r:.100}")
    if not sender_id.startswith(CLIENT_PREFIX):
        try:
            parse_node_id(sender_id)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
    return Hello(version, sender_id, cluster_name)


def parse_node_id(node_id: str) -> tuple[str, int]:
    """"ip:port" (or "[v6]:port") -> (host, port); ValueError if it is not one."""
    host, sep, port_text = node_id.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"node id must be 'ip:port', got {node_id!r}")
    return host, int(port_text)


def check_cluster(hello: Hello, cluster_name: str) -> None:
    """A hello from another cluster is refused: ProtocolError (closes that connection)."""
    if hello.cluster_name != cluster_name:
        raise ProtocolError(f"cluster name mismatch: {hello.sender_id} is in "
                            f"{hello.cluster_name!r}, we are in {cluster_name!r}")
