"""The Murmur3 partitioner agrees with Cassandra and the python driver, bit for bit.

References: the driver's pure-Python `cassandra.murmur3._murmur3`, its C extension
`cassandra.cmurmur3.murmur3`, `cassandra.metadata.Murmur3Token.hash_fn` (which adds the
partitioner's MIN -> MAX normalization), the routing keys the driver packs for composite
partition keys, and test vectors that the DataStax drivers' suites took from Cassandra itself.
"""

from __future__ import annotations

import random
import subprocess
import sys
from types import SimpleNamespace

import pytest
from cassandra.cmurmur3 import murmur3 as driver_c_murmur3
from cassandra.cqltypes import BytesType
from cassandra.metadata import Murmur3Token
from cassandra.murmur3 import _murmur3 as driver_py_murmur3
from cassandra.query import BoundStatement, PreparedStatement, SimpleStatement
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.errors import ConfigError, InvalidRequest
from agora.core.ring import partitioner
from agora.core.ring.partitioner import (
    MAX_NUM_TOKENS,
    MAX_PARTITION_KEY_BYTES,
    allocate_tokens,
    compose_partition_key,
    murmur3_hash,
    murmur3_token,
    normalize_token,
    token_for_key,
)
from agora.core.types import MAX_TOKEN, MIN_TOKEN

# (key, token) pairs computed by Cassandra, as carried by the DataStax Ruby/Node.js/C# drivers'
# test suites. They include sign-extension cases (tail bytes >= 0x80) and one-block keys.
CASSANDRA_VECTORS = [
    (b"123", -7468325962851647638),
    (b"\x00\xff\x10\xfa\x99" * 10, 5837342703291459765),
    (b"\xfe" * 8, -8927430733708461935),
    (b"\x10" * 8, 1446172840243228796),
    (b"9223372036854775807", 7162290910810015547),
    (bytes(range(1, 17)), -5563837382979743776),
    (bytes(range(2, 18)), -1513403162740402161),
    (bytes(range(3, 19)), -495360443712684655),
    (bytes(range(4, 20)), 1734091135765407943),
    (bytes(range(5, 21)), -3199412112042527988),
    (bytes(range(6, 22)), -6316563938475080831),
    (bytes(range(7, 23)), 8228893370679682632),
    (b"\x00" * 16, 5457549051747178710),
    (b"\xff" * 16, -2824192546314762522),
    (b"\xfe" * 16, -833317529301936754),
    (b"\x00\x01\x02\x03" + b"\xff" * 12, 6463632673159404390),
    (b"\xfe" * 17, -1672437813826982685),
    (b"\xfe" * 4, 4566408979886474012),
    (b"\x00" * 4, -3485513579396041028),
    (b"\x00\x01\x7f\x7f", 6573459401642635627),
    (bytes([226, 231, 226, 231, 226, 231, 1]), 2222373981930033306),
    (b"\x00" * 7 + b"\x80", 78142285821850151),
]

KEYS_PER_LENGTH = 64  # x 65 lengths = 4160 keys in the fixed loop
MAX_FIXED_KEY_LENGTH = 64


def _agree(key: bytes) -> None:
    raw = murmur3_hash(key)
    assert raw == driver_py_murmur3(key) == driver_c_murmur3(key), key
    token = murmur3_token(key)
    assert token == Murmur3Token.hash_fn(key) == token_for_key(key) == normalize_token(raw), key
    assert MIN_TOKEN < token <= MAX_TOKEN


@pytest.mark.parametrize(("key", "expected"), CASSANDRA_VECTORS)
def test_cassandra_vectors(key: bytes, expected: int) -> None:
    assert murmur3_token(key) == expected
    assert token_for_key(key) == expected
    assert driver_c_murmur3(key) == expected


def test_empty_key_hashes_to_zero() -> None:
    assert murmur3_token(b"") == token_for_key(b"") == 0


def _fixed_keys() -> list[bytes]:
    rng = random.Random(20240601)
    keys = []
    for length in range(MAX_FIXED_KEY_LENGTH + 1):
        keys.append(b"\x80" * length)  # every byte needs sign extension
        keys.append(b"\xff" * length)
        keys.append(b"\x7f" * length)  # largest byte that must not be sign-extended
        for _ in range(KEYS_PER_LENGTH - 3):
            keys.append(rng.randbytes(length))
    return keys


def test_agrees_with_driver_on_thousands_of_keys_of_every_length() -> None:
    keys = _fixed_keys()
    assert len(keys) == (MAX_FIXED_KEY_LENGTH + 1) * KEYS_PER_LENGTH
    assert any(len(k) and min(k) >= 0x80 for k in keys)
    for key in keys:
        _agree(key)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=MAX_FIXED_KEY_LENGTH))
def test_agrees_with_driver_hypothesis(key: bytes) -> None:
    _agree(key)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=65, max_size=400))
def test_agrees_with_driver_on_many_block_keys(key: bytes) -> None:
    _agree(key)


def test_min_token_is_normalized_to_max() -> None:
    assert normalize_token(MIN_TOKEN) == MAX_TOKEN
    assert normalize_token(MIN_TOKEN + 1) == MIN_TOKEN + 1
    assert normalize_token(MAX_TOKEN) == MAX_TOKEN


def test_fast_path_normalizes_min_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # No practical key hashes to MIN_TOKEN, so stand in a hash function that does.
    monkeypatch.setattr(partitioner, "_raw_hash", lambda key: MIN_TOKEN)
    assert token_for_key(b"anything") == MAX_TOKEN


def test_fast_path_uses_the_c_extension() -> None:
    assert partitioner._raw_hash is driver_c_murmur3


def test_falls_back_to_pure_python_without_the_c_extension() -> None:
    script = (
        "import sys; sys.modules['cassandra.cmurmur3'] = None\n"
        "from agora.core.ring import partitioner as p\n"
        "assert p._raw_hash is p.murmur3_hash, p._raw_hash\n"
        "print(p.token_for_key(b'123'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert int(out.stdout) == -7468325962851647638


# --- composite partition keys -------------------------------------------------------------


def _driver_statement_key(components: list[bytes]) -> bytes:
    # Statement.__init__ stores routing_key unpacked; only the property setter packs it.
    statement = SimpleStatement("SELECT 1")
    statement.routing_key = components
    return statement.routing_key


def _driver_bound_key(components: list[bytes]) -> bytes:
    """The routing key the driver computes for a prepared statement whose partition key
    columns are bound in a different order than the key order."""
    n = len(components)
    columns = [SimpleNamespace(keyspace_name="ks", table_name="t", name=f"c{i}", type=BytesType)
               for i in range(n)]
    bind_order = list(reversed(range(n)))  # value i of the bind is key component n-1-i
    prepared = PreparedStatement(columns, b"id", bind_order, "INSERT ...", "ks", 4, None, None)
    values = [components[i] for i in bind_order]
    return BoundStatement(prepared).bind(values).routing_key


def test_composite_key_layout() -> None:
    assert compose_partition_key([b"ab", b"c"]) == b"\x00\x02ab\x00\x00\x01c\x00"
    assert compose_partition_key([b"", b""]) == b"\x00\x00\x00\x00\x00\x00"


def test_single_component_is_the_key_itself() -> None:
    assert compose_partition_key([b"\x00\x01abc"]) == b"\x00\x01abc"
    assert compose_partition_key([b""]) == b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_composite_key_matches_driver_routing_key(components: list[bytes]) -> None:
    key = compose_partition_key(components)
    assert key == _driver_statement_key(components)
    assert key == _driver_bound_key(components)
    assert token_for_key(key) == Murmur3Token.from_key(key).value


def test_composite_key_matches_driver_fixed() -> None:
    rng = random.Random(7)
    for _ in range(300):
        components = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(1, 4))]
        assert compose_partition_key(components) == _driver_bound_key(components)


def test_no_components_is_a_bug() -> None:
    with pytest.raises(ValueError):
        compose_partition_key([])


def test_oversized_keys_are_rejected_as_cassandra_does() -> None:
    assert compose_partition_key([b"x" * MAX_PARTITION_KEY_BYTES]) == b"x" * 0xFFFF
    with pytest.raises(InvalidRequest, match="Key length of 65536 is longer than maximum of 65535"):
        compose_partition_key([b"x" * (MAX_PARTITION_KEY_BYTES + 1)])
    with pytest.raises(InvalidRequest, match="Key length of 70000 is longer than maximum"):
        compose_partition_key([b"x" * 70_000, b"y"])
    with pytest.raises(InvalidRequest, match="Key length of 65537 is longer than maximum"):
        compose_partition_key([b"x" * (MAX_PARTITION_KEY_BYTES - 4), b""])


# --- token allocation ---------------------------------------------------------------------


def test_allocated_tokens_are_sorted_distinct_and_assignable() -> None:
    for num_tokens in (1, 2, 16, 256, MAX_NUM_TOKENS):
        tokens = allocate_tokens(num_tokens, random.Random(num_tokens), set())
        assert len(tokens) == num_tokens
        assert tokens == sorted(set(tokens))
        assert all(MIN_TOKEN < t <= MAX_TOKEN for t in tokens)


def test_allocation_is_deterministic_per_seed() -> None:
    first = allocate_tokens(16, random.Random(1), set())
    assert allocate_tokens(16, random.Random(1), set()) == first
    assert allocate_tokens(16, random.Random(2), set()) != first


class _ScriptedRandom(random.Random):
    """Answers randint from a script (then falls back to a seeded stream)."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(0)
        self.script = list(script)
        self.bounds: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.bounds.append((a, b))
        return self.script.pop(0) if self.script else super().randint(a, b)


def test_allocation_skips_taken_and_repeated_tokens() -> None:
    taken = {5, 7}
    rng = _ScriptedRandom([5, 9, 9, 7, 1])
    assert allocate_tokens(2, rng, taken) == [1, 9]
    assert taken == {5, 7}  # not modified
    assert set(rng.bounds) == {(MIN_TOKEN + 1, MAX_TOKEN)}


def test_allocation_with_a_broken_rng_fails_loudly() -> None:
    class Stuck(random.Random):
        def randint(self, a: int, b: int) -> int:
            return 42

    with pytest.raises(AssertionError, match="random source is broken"):
        allocate_tokens(2, Stuck(), set())


@pytest.mark.parametrize("bad", [0, -1, MAX_NUM_TOKENS + 1, True, 2.0, "4"])
def test_bad_num_tokens_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_tokens"):
        allocate_tokens(bad, random.Random(0), set())  # type: ignore[arg-type]
