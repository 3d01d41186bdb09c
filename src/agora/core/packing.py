"""msgpack packing on the hot paths (the internode codec, partition digests).

Owns: a small pool of reusable `msgpack.Packer`s. `msgpack.packb` builds a new Packer on
every call, which costs more than packing a small message. A Packer must not be used by two
threads at once, so a caller takes one from the pool (list pop and append are atomic) and
puts it back after packing; when the pool is empty (another thread holds the only one) it
makes a new one, and a Packer that raised is dropped rather than reused. The bytes are
exactly `msgpack.packb(obj, use_bin_type=True)`'s.
"""

from __future__ import annotations

import msgpack

_free: list[msgpack.Packer] = []


def pack(obj) -> bytes:
    """`msgpack.packb(obj, use_bin_type=True)`, without building a Packer per call."""
    try:
        packer = _free.pop()
    except IndexError:
        packer = msgpack.Packer(use_bin_type=True)
    data = packer.pack(obj)
    _free.append(packer)
    return data
