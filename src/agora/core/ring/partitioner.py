"""Cassandra's Murmur3 partitioner: partition key bytes -> signed 64-bit token, plus the two
small things that sit next to it (composite partition keys, random token allocation).

Owns:
  * `token_for_key` — the hot path. It uses the driver's C extension `cassandra.cmurmur3` when
    it imports, else our own pure-Python `murmur3_token`. Both give exactly Cassandra's tokens,
    so token-aware drivers route a request straight to a replica.
  * `murmur3_hash` / `murmur3_token` — a pure-Python transcription of Cassandra's
    `org.apache.cassandra.utils.MurmurHash.hash3_x64_128` (seed 0, first 64-bit half) and of
    `Murmur3Partitioner.getToken`. Cassandra's variant differs from reference MurmurHash3 (and
    from the `mmh3` package) in one place: the tail bytes are Java `byte`s, so they are
    sign-extended before being shifted in. Body blocks are read as little-endian 64-bit words.
    `Murmur3Partitioner.normalize` then maps Long.MIN_VALUE to Long.MAX_VALUE, because
    MIN_VALUE is the partitioner's minimum token, which no key may have.
  * `compose_partition_key` — the serialized form of a multi-column partition key: Cassandra's
    CompositeType (per component: 2-byte big-endian length, the bytes, an end-of-component byte
    0x00). This is what the server hashes and what the driver builds as a routing key
    (`cassandra.query.Statement._key_parts_packed`).
  * `allocate_tokens` — random token choice for a joining node (Cassandra's random allocation,
    as used before `allocate_tokens_for_keyspace`), drawing only from an injected
    `random.Random`.

Deliberately does not know CQL types (components arrive already serialized), the ring, or which
node owns a token (see `token_ring.py`).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence, Set

from agora.core.errors import ConfigError, InvalidRequest
from agora.core.types import MAX_TOKEN, MIN_TOKEN

# --- bounds -------------------------------------------------------------------------------

MAX_PARTITION_KEY_BYTES = 0xFFFF  # bytes; Cassandra's limit (FBUtilities.MAX_UNSIGNED_SHORT):
#                                   keys are written with a 2-byte length everywhere.
MAX_NUM_TOKENS = 1536  # tokens per node; Cassandra's cap on num_tokens (DatabaseDescriptor).
MIN_ASSIGNABLE_TOKEN = MIN_TOKEN + 1  # MIN_TOKEN is the partitioner's minimum: never owned.
TOKEN_DRAWS_PER_TOKEN = 4  # draws per wanted token before giving up; a collision in a 2**64
#                            space is ~impossible, so running out means a broken rng.

# --- Murmur3 x64_128, Cassandra's variant -------------------------------------------------

_MASK64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_BLOCK_BYTES = 16
_TWO_WORDS = struct.Struct("<QQ")


def _rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK64


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    k ^= k >> 33
    return k


def _mix_k1(k1: int) -> int:
    return (_rotl64((k1 * _C1) & _MASK64, 31) * _C2) & _MASK64


def _mix_k2(k2: int) -> int:
    return (_rotl64((k2 * _C2) & _MASK64, 33) * _C1) & _MASK64


def _tail_word(tail: bytes) -> int:
    """Up to 8 tail bytes as Cassandra reads them: each a *signed* Java byte, sign-extended
    to 64 bits, shifted into place, all XORed together (masked back to 64 bits)."""
    word = 0
    for i, b in enumerate(tail):
        signed = b - 256 if b >= 0x80 else b
        word ^= (signed << (8 * i)) & _MASK64
    return word


def murmur3_hash(key: bytes) -> int:
    """Cassandra's `MurmurHash.hash3_x64_128(key, 0, len, seed=0)[0]` as a signed 64-bit int.

    This is the raw hash, before the partitioner maps MIN_TOKEN away; it equals the driver's
    `cassandra.murmur3.murmur3` and `cassandra.cmurmur3.murmur3`."""
    length = len(key)
    nblocks = length // _BLOCK_BYTES
    h1 = h2 = 0
    for i in range(nblocks):
        k1, k2 = _TWO_WORDS.unpack_from(key, i * _BLOCK_BYTES)
        h1 ^= _mix_k1(k1)
        h1 = (((_rotl64(h1, 27) + h2) & _MASK64) * 5 + 0x52DCE729) & _MASK64
        h2 ^= _mix_k2(k2)
        h2 = (((_rotl64(h2, 31) + h1) & _MASK64) * 5 + 0x38495AB5) & _MASK64
    tail = key[nblocks * _BLOCK_BYTES:]
    if len(tail) > 8:
        h2 ^= _mix_k2(_tail_word(tail[8:]))
    if tail:
        h1 ^= _mix_k1(_tail_word(tail[:8]))
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1 = (_fmix64(h1) + _fmix64(h2)) & _MASK64
    return h1 - (1 << 64) if h1 >> 63 else h1


def normalize_token(raw_hash: int) -> int:
    """`Murmur3Partitioner.normalize`: MIN_TOKEN is reserved as the ring's minimum, so a key
    hashing to it gets MAX_TOKEN instead."""
    return MAX_TOKEN if raw_hash == MIN_TOKEN else raw_hash


def murmur3_token(key: bytes) -> int:
    """The token Cassandra's Murmur3Partitioner gives `key`, in pure Python."""
    return normalize_token(murmur3_hash(key))


try:  # the driver's C extension: same answers, ~50x faster
    from cassandra.cmurmur3 import murmur3 as _raw_hash
except ImportError:  # pragma: no cover - exercised by reloading with the import blocked
    _raw_hash = murmur3_hash


def token_for_key(key: bytes) -> int:
    """The token of a serialized partition key (see `compose_partition_key` for several
    columns). Hot path: one C call and one comparison when the driver's extension is present."""
    h = _raw_hash(key)
    return MAX_TOKEN if h == MIN_TOKEN else h


# --- composite partition keys -------------------------------------------------------------

_COMPONENT_HEADER = struct.Struct(">H")
_END_OF_COMPONENT = b"\x00"


def compose_partition_key(components: Sequence[bytes]) -> bytes:
    """Serialized partition key from the serialized values of its columns, in key order.

    One component is the key as is; several are packed as Cassandra's CompositeType
    (length:u16 big-endian, bytes, 0x00 for each). Raises `InvalidRequest` with Cassandra's
    wording when the key is longer than MAX_PARTITION_KEY_BYTES."""
    if not components:
        raise ValueError("a partition key has at least one component")
    if len(components) == 1:
        key = bytes(components[0])
    else:
        parts = []
        for component in components:
            if len(component) > MAX_PARTITION_KEY_BYTES:
                _raise_key_too_long(len(component))
            parts.append(_COMPONENT_HEADER.pack(len(component)))
            parts.append(bytes(component))
            parts.append(_END_OF_COMPONENT)
        key = b"".join(parts)
    if len(key) > MAX_PARTITION_KEY_BYTES:
        _raise_key_too_long(len(key))
    return key


def _raise_key_too_long(length: int) -> None:
    raise InvalidRequest(
        f"Key length of {length} is longer than maximum of {MAX_PARTITION_KEY_BYTES}")


# --- token allocation ---------------------------------------------------------------------


def allocate_tokens(num_tokens: int, rng: random.Random, taken: Set[int]) -> list[int]:
    """`num_tokens` distinct random tokens in [MIN_TOKEN + 1, MAX_TOKEN], none of them in
    `taken` (the tokens other nodes already own), sorted ascending. `taken` is not modified.

    Raises `ConfigError` when num_tokens is outside 1..MAX_NUM_TOKENS."""
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) \
            or not 1 <= num_tokens <= MAX_NUM_TOKENS:
        raise ConfigError(
            f"num_tokens must be between 1 and {MAX_NUM_TOKENS}, got {num_tokens!r}")
    chosen: set[int] = set()
    for _ in range(num_tokens * TOKEN_DRAWS_PER_TOKEN):
        token = rng.randint(MIN_ASSIGNABLE_TOKEN, MAX_TOKEN)
        if token not in taken:
            chosen.add(token)
            if len(chosen) == num_tokens:
                return sorted(chosen)
    raise AssertionError(
        f"drew {num_tokens * TOKEN_DRAWS_PER_TOKEN} tokens without finding {num_tokens} "
        f"free ones: the random source is broken")
