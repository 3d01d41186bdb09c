"""A node runtime's close: the runtime's own periodic jobs (load refresh, periodic fsync) end
with it, so none of them touches the storage engine once it is closed (several runtimes may
share one event loop, as `benchmarks/inprocess.py` runs them, and the loop goes on)."""

from __future__ import annotations

import asyncio

from agora.core.config import NodeConfig
from agora.runtime.server import NodeRuntime


def test_close_ends_the_periodic_jobs(tmp_path):
    cfg = NodeConfig(cluster_name="close", listen_address="127.0.77.1", storage_port=17391,
                     native_transport_port=19391, seeds=["127.0.77.1"],
                     data_directory=str(tmp_path / "n"), commitlog_sync="periodic")

    async def scenario() -> None:
        runtime = NodeRuntime(cfg)
        await runtime.start()
        jobs = dict(runtime._periodic)
        assert set(jobs) == {"sync", "load"}
        assert not any(handle.cancelled() for handle in jobs.values())
        await runtime.close()
        assert all(handle.cancelled() for handle in jobs.values())
        assert all(handle.cancelled() for handle in runtime._periodic.values())
        # A job whose turn came while close ran does nothing: the engine is closed.
        runtime._refresh_load()
        runtime._periodic_sync()
        assert all(handle.cancelled() for handle in runtime._periodic.values())

    asyncio.run(scenario())
