"""Fixtures shared by the unit tests: `engine`, each test run once on the in-memory engine
and once on RocksDB in a temporary directory, closed afterwards."""

from __future__ import annotations

import pytest

from agora.storage.memory import MemoryEngine
from agora.storage.rocks import RocksEngine


@pytest.fixture(params=["memory", "rocks"])
def engine(request, tmp_path):
    e = MemoryEngine() if request.param == "memory" else RocksEngine(str(tmp_path / "db"))
    yield e
    e.close()
