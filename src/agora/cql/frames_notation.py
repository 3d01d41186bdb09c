"""The native protocol's notations (spec v4/v5 section 3): [int], [long], [short], [string],
[long string], [bytes], [short bytes], [value], [string list], [string map],
[string multimap], [bytes map], [inet], [consistency] — read from a body and written to one.

Owns: `Reader`, a cursor over one envelope body that raises `ProtocolError` (never
IndexError, struct.error or UnicodeDecodeError) on anything malformed, and the `pack_*`
functions that build body bytes. Everything is big-endian, as the spec says.

Deliberately does not know envelopes, opcodes or what a body means
(`agora.cql.frames_requests`, `agora.cql.frames_responses`).

Where the rules come from: native_protocol_v4.spec and native_protocol_v5.spec section 3
(a [value] of length -1 is null, -2 is "not set" since v4, below -2 is an error; a [bytes]
of negative length is null); the [consistency] codes are `agora.core.types.ConsistencyLevel`.
"""

from __future__ import annotations

import ipaddress
import struct

from agora.core.errors import ProtocolError
from agora.core.types import ConsistencyLevel
from agora.cql.requests import UNSET

_BYTE = struct.Struct(">B")
_SHORT = struct.Struct(">H")
_INT = struct.Struct(">i")
_UINT = struct.Struct(">I")
_LONG = struct.Struct(">q")

CONSISTENCY_CODES = frozenset(int(level) for level in ConsistencyLevel)

pack_byte = _BYTE.pack
pack_short = _SHORT.pack
pack_int = _INT.pack
pack_uint = _UINT.pack
pack_long = _LONG.pack

NULL_BYTES = pack_int(-1)  # a [bytes] / [value] that is null
UNSET_VALUE = pack_int(-2)  # a [value] that is "not set"


class Reader:
    """Reads notations from `buf[pos:end]` in order. Every read checks it has the bytes it
    needs first, so a short or lying body gives ProtocolError naming what was cut off."""

    __slots__ = ("_buf", "_pos", "_end")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self._buf = buf
        self._pos = pos
        self._end = len(buf) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _need(self, n: int, what: str) -> int:
        pos = self._pos
        if n > self._end - pos:
            raise ProtocolError(f"truncated {what}: needs {n} bytes, "
                                f"{self._end - pos} left in the body")
        self._pos = pos + n
        return pos

    def raw(self, n: int, what: str = "bytes") -> bytes:
        pos = self._need(n, what)
        return bytes(self._buf[pos:pos + n])

    def read_byte(self, what: str = "[byte]") -> int:
        return _BYTE.unpack_from(self._buf, self._need(1, what))[0]

    def read_short(self, what: str = "[short]") -> int:
        return _SHORT.unpack_from(self._buf, self._need(2, what))[0]

    def read_int(self, what: str = "[int]") -> int:
        return _INT.unpack_from(self._buf, self._need(4, what))[0]

    def read_uint(self, what: str = "[int]") -> int:
        return _UINT.unpack_from(self._buf, self._need(4, what))[0]

    def read_long(self, what: str = "[long]") -> int:
        return _LONG.unpack_from(self._buf, self._need(8, what))[0]

    def read_string(self, what: str = "[string]") -> str:
        return _utf8(self.raw(self.read_short(what), what), what)

    def read_long_string(self, what: str = "[long string]") -> str:
        n = self.read_int(what)
        if n < 0:
            raise ProtocolError(f"negative length {n} for {what}")
        return _utf8(self.raw(n, what), what)

    def read_bytes(self, what: str = "[bytes]") -> bytes | None:
        n = self.read_int(what)
        return None if n < 0 else self.raw(n, what)

    def read_short_bytes(self, what: str = "[short bytes]") -> bytes:
        return self.raw(self.read_short(what), what)

    def read_value(self, what: str = "[value]"):
        """bytes, None (length -1) or `agora.cql.requests.UNSET` (length -2)."""
        n = self.read_int(what)
        if n >= 0:
            return self.raw(n, what)
        if n == -1:
            return None
        if n == -2:
            return UNSET
        raise ProtocolError(f"invalid length {n} for {what} (below -2)")

    def read_values(self, count: int, what: str = "[value]") -> list:
        """`count` [value]s in a row (a request's bound values): `read_value` in one loop."""
        buf, pos, end = self._buf, self._pos, self._end
        unpack_int = _INT.unpack_from
        out = []
        for _ in range(count):
            if end - pos < 4:
                self._pos = pos
                self._need(4, what)  # raises, naming what was cut off
            n = unpack_int(buf, pos)[0]
            pos += 4
            if n >= 0:
                if n > end - pos:
                    self._pos = pos
                    self._need(n, what)
                out.append(bytes(buf[pos:pos + n]))
                pos += n
            elif n == -1:
                out.append(None)
            elif n == -2:
                out.append(UNSET)
            else:
                self._pos = pos
                raise ProtocolError(f"invalid length {n} for {what} (below -2)")
        self._pos = pos
        return out

    def read_string_list(self, what: str = "[string list]") -> list[str]:
        return [self.read_string(what) for _ in range(self.read_short(what))]

    def read_string_map(self, what: str = "[string map]") -> dict[str, str]:
        out = {}
        for _ in range(self.read_short(what)):
            key = self.read_string(what)
            out[key] = self.read_string(what)
        return out

    def read_string_multimap(self, what: str = "[string multimap]") -> dict[str, list[str]]:
        out = {}
        for _ in range(self.read_short(what)):
            key = self.read_string(what)
            out[key] = self.read_string_list(what)
        return out

    def read_bytes_map(self, what: str = "[bytes map]") -> dict[str, bytes | None]:
        out = {}
        for _ in range(self.read_short(what)):
            key = self.read_string(what)
            out[key] = self.read_bytes(what)
        return out

    def read_inet(self, what: str = "[inet]") -> tuple[str, int]:
        size = self.read_byte(what)
        if size not in (4, 16):
            raise ProtocolError(f"bad address size {size} in {what} (must be 4 or 16)")
        address = str(ipaddress.ip_address(self.raw(size, what)))
        return address, self.read_int(what)

    def read_consistency(self, what: str = "[consistency]") -> int:
        code = self.read_short(what)
        if code not in CONSISTENCY_CODES:
            raise ProtocolError(f"unknown consistency level code {code:#06x} in {what}")
        return code


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}") from None


# --------------------------------------------------------------------------- writing


def pack_string(s: str) -> bytes:
    data = s.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError(f"[string] of {len(data)} bytes does not fit a [short] length")
    return _SHORT.pack(len(data)) + data


def pack_long_string(s: str) -> bytes:
    data = s.encode("utf-8")
    return _INT.pack(len(data)) + data


def pack_bytes(data: bytes | None) -> bytes:
    return NULL_BYTES if data is None else _INT.pack(len(data)) + data


def pack_short_bytes(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"[short bytes] of {len(data)} bytes does not fit a [short] length")
    return _SHORT.pack(len(data)) + data


def pack_value(value) -> bytes:
    """bytes, None (null) or UNSET (not set)."""
    if value is UNSET:
        return UNSET_VALUE
    return pack_bytes(value)


def pack_string_list(items) -> bytes:
    items = list(items)
    return _SHORT.pack(len(items)) + b"".join(pack_string(s) for s in items)


def pack_string_map(mapping: dict[str, str]) -> bytes:
    return _SHORT.pack(len(mapping)) + b"".join(
        pack_string(k) + pack_string(v) for k, v in mapping.items())


def pack_string_multimap(mapping: dict[str, list[str]]) -> bytes:
    return _SHORT.pack(len(mapping)) + b"".join(
        pack_string(k) + pack_string_list(v) for k, v in mapping.items())


def pack_bytes_map(mapping: dict[str, bytes | None]) -> bytes:
    return _SHORT.pack(len(mapping)) + b"".join(
        pack_string(k) + pack_bytes(v) for k, v in mapping.items())


def pack_inet(address: str, port: int) -> bytes:
    packed = ipaddress.ip_address(address).packed
    return _BYTE.pack(len(packed)) + packed + _INT.pack(port)


def pack_consistency(code: int) -> bytes:
    code = int(code)
    if code not in CONSISTENCY_CODES:
        raise ValueError(f"unknown consistency level code {code}")
    return _SHORT.pack(code)
