"""Key choosers over [0, n): uniform, and YCSB's scrambled zipfian (θ = 0.99, hot keys spread
over the key space by an FNV hash, as YCSB's ScrambledZipfianGenerator)."""

from __future__ import annotations

import random

ZIPFIAN_THETA = 0.99
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv64(v: int) -> int:
    h = FNV_OFFSET
    for _ in range(8):
        h = ((h ^ (v & 0xFF)) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
        v >>= 8
    return h


class Zipfian:
    """Gray et al., "Quickly generating billion-record synthetic databases" (as YCSB)."""

    def __init__(self, n: int, rng: random.Random, theta: float = ZIPFIAN_THETA):
        self.n, self.rng, self.theta = n, rng, theta
        self.zetan = sum(1.0 / (i ** theta) for i in range(1, n + 1))
        zeta2 = 1.0 + 1.0 / (2 ** theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.eta = (1 - (2.0 / n) ** (1 - theta)) / (1 - zeta2 / self.zetan) if n > 1 else 0.0
        self.half_pow = 1 + 0.5 ** theta

    def rank(self) -> int:
        u = self.rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half_pow:
            return 1
        return min(self.n - 1, int(self.n * ((self.eta * u - self.eta + 1) ** self.alpha)))


def key_chooser(distribution: str, n: int, rng: random.Random):
    """A no-argument function returning a key in [0, n)."""
    if distribution == "uniform":
        return lambda: rng.randrange(n)
    if distribution == "zipfian":
        z = Zipfian(n, rng)
        return lambda: fnv64(z.rank()) % n
    raise ValueError(f"unknown distribution {distribution!r}")
