"""msgpack packing on the hot paths (the internode codec, partition digests).

Owns: one reusable `msgpack.Packer` per thread. `msgpack.packb` builds a new Packer on every
call, which costs more than packing a small message; a Packer is not safe to share between
threads, so each thread gets its own. The bytes are exactly `msgpack.packb(obj,
use_bin_type=True)`'s.
"""

from __future__ import annotations

import threading

import msgpack

_local = threading.local()


def pack(obj) -> bytes:
    """`msgpack.packb(obj, use_bin_type=True)`, without building a Packer per call."""
    try:
        packer = _local.pack
    except AttributeError:
        packer = _local.pack = msgpack.Packer(use_bin_type=True).pack
    return packer(obj)
