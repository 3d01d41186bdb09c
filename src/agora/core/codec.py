"""Bytes <-> internode messages, used by the real runtime and the simulator alike.

Owns: the payload encoding `msgpack([VERB, *fields])`. Framing (length prefix) belongs to
the transport. Any malformed payload — bad msgpack, unknown verb, wrong field shapes —
raises ProtocolError and nothing else, so a bad peer can only lose its own connection.
"""

from __future__ import annotations

import msgpack

from agora.core.errors import ProtocolError
from agora.core.packing import pack
from agora.core.verbs import BY_NUMBER
from agora.core.wire import Message

_unpack = msgpack.unpackb
# verb number -> (message class, its from_wire): one lookup per decoded message
_DECODERS = {number: (verb.message, verb.message.from_wire) for number, verb in BY_NUMBER.items()}


def encode(message: Message) -> bytes:
    return pack([message.VERB, *message.to_wire()])


def decode(payload: bytes) -> Message:
    try:
        obj = _unpack(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolError(f"undecodable payload: {exc.__class__.__name__}") from None
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int:
        raise ProtocolError("payload is not [verb, ...]")
    decoder = _DECODERS.get(obj[0])
    if decoder is None:
        raise ProtocolError(f"unknown verb {obj[0]}")
    try:
        return decoder[1](obj[1:])
    except ProtocolError:
        raise
    except Exception as exc:  # a decoder bug must still only cost the connection
        raise ProtocolError(f"bad {decoder[0].__name__}: {exc.__class__.__name__}: {exc}") from None
