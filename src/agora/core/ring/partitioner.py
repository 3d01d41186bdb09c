"""Cassandra's Murmur3 partitioner: partition key bytes -> signed 64-bit token.

(Placeholder fast path; the full module with the pure-Python reference lands next.)
"""

from cassandra.cmurmur3 import murmur3 as _c_murmur3


def token_for_key(key: bytes) -> int:
    return _c_murmur3(key)
