"""A node runtime's own behaviour around its effects: at close, its periodic jobs (load
refresh, periodic fsync) end with it, so none of them touches the storage engine once it is
closed (several runtimes may share one event loop, as `benchmarks/inprocess.py` runs them, and
the loop goes on); and a message too big for an internode frame never reaches the transport
(which would refuse it, and the connection it was answering on would close)."""

from __future__ import annotations

import asyncio

from agora.core import codec
from agora.core.config import NodeConfig
from agora.core.effects import Send
from agora.core.limits import MAX_FRAME_BYTES
from agora.core.messages import MutationReq, RangeReadRsp, ReadRsp
from agora.core.types import Cell, Partition, Row
from agora.runtime.server import NodeRuntime


def _config(tmp_path, name: str, n: int, **options) -> NodeConfig:
    """A one-node config on 127.0.77.n with ports of its own, its data under tmp_path."""
    return NodeConfig(cluster_name=name, listen_address=f"127.0.77.{n}", storage_port=17390 + n,
                      native_transport_port=19390 + n, seeds=[f"127.0.77.{n}"],
                      data_directory=str(tmp_path / "n"), **options)


def test_close_ends_the_periodic_jobs(tmp_path):
    cfg = _config(tmp_path, "close", 1, commitlog_sync="periodic")

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


def test_answers_too_big_for_a_frame_go_as_errors(tmp_path):
    cfg = _config(tmp_path, "big", 2)
    value = b"x" * (1 << 20)
    huge = Partition(b"t" * 16, b"k", rows={b"%02d" % i: Row((b"%02d" % i,), None, None,
                                                             {("v", b""): Cell(1, value)})
                                            for i in range(17)})

    async def scenario() -> None:
        runtime = NodeRuntime(cfg)
        await runtime.start()
        sent = []
        runtime.transport.send = lambda target, payload: sent.append((target, codec.decode(payload)))
        try:
            runtime._send(Send("127.0.77.9:7000", ReadRsp(5, huge, None)))
            runtime._send(Send("127.0.77.9:7000", RangeReadRsp(6, (huge,))))
            runtime._send(Send("127.0.77.9:7000", MutationReq(7, (huge,))))
            small = ReadRsp(8, Partition(b"t" * 16, b"k"), None)
            runtime._send(Send("127.0.77.9:7000", small))
        finally:
            del runtime.transport.send
            await runtime.close()
        assert len(codec.encode(ReadRsp(5, huge, None))) > MAX_FRAME_BYTES
        [(_, read), (_, scan), (_, ok)] = sent  # the mutation was dropped
        assert (read.req_id, read.partition, read.digest) == (5, None, None)
        assert "bytes exceed the 16777216-byte internode frame limit" in read.error
        assert (scan.req_id, scan.partitions) == (6, ()) and "frame limit" in scan.error
        assert ok == small
        assert runtime.oversized == 3

    asyncio.run(scenario())


def test_deadlines_run_on_the_monotonic_clock(tmp_path, monkeypatch):
    """The runtime gives its node the monotonic clock for request deadlines: a step of the
    wall clock (time.time_ns) does not move it."""
    import time

    from agora.runtime import server

    cfg = _config(tmp_path, "mono", 3)
    runtime = NodeRuntime(cfg)
    try:
        before = runtime.node.elapsed_ms(server.now_ms())
        monkeypatch.setattr(time, "time_ns", lambda: 0)  # the wall clock stepped to 1970
        after = runtime.node.elapsed_ms(server.now_ms())
        assert 0 <= after - before < 1_000
    finally:
        runtime.engine.close()


def test_an_effect_that_raises_does_not_drop_the_others(tmp_path, caplog):
    """One pass's effects belong to many requests: a send that raises is logged, and the sends
    after it still go (before, the rest of the batch was lost, and the connection whose
    frames fed it was closed)."""
    cfg = _config(tmp_path, "raise", 3)

    async def scenario() -> None:
        runtime = NodeRuntime(cfg)
        await runtime.start()
        sent = []

        def send(target, payload):
            if target == "127.0.77.8:7000":
                raise RuntimeError("a link in a bad state")
            sent.append((target, codec.decode(payload)))
        runtime.transport.send = send
        try:
            part = (Partition(b"t" * 16, b"k"),)
            first, second = MutationReq(1, part), MutationReq(2, part)
            runtime._run([Send("127.0.77.8:7000", first), Send("127.0.77.9:7000", first),
                          Send("127.0.77.8:7000", second), Send("127.0.77.9:7000", second)])
            assert sent == [("127.0.77.9:7000", first), ("127.0.77.9:7000", second)]
            assert not runtime._draining  # the next pass runs its effects
        finally:
            await runtime.close()

    asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == \
        ["Send failed; the other effects go on"] * 2


def test_a_message_the_node_fails_on_is_dropped_alone_and_its_connection_stays(tmp_path, caplog):
    """A bug the node hits on one peer message (not the peer's fault: the bytes decoded) drops
    that message, logged with its traceback; the connection it came on stays open, and the
    frames behind it are handled (before, the connection closed and took them with it). The
    traceback is logged once a second at most."""
    from agora.core import codec as core_codec
    from agora.runtime.transport import TransportClient

    cfg = _config(tmp_path, "bug", 4)

    async def scenario() -> None:
        runtime = NodeRuntime(cfg)
        await runtime.start()
        seen = []
        real = runtime.node.on_message

        def on_message(source, msg, now_ms):
            seen.append(msg.req_id)
            if msg.req_id in (1, 3):
                raise KeyError("a bug in a handler")
            return real(source, msg, now_ms)
        runtime.node.on_message = on_message
        try:
            async with TransportClient("127.0.77.4", 17394, "bug") as client:
                part = (Partition(b"t" * 16, b"k"),)  # a table the node does not know
                for req_id in (1, 3, 2):
                    await client.send(core_codec.encode(MutationReq(req_id, part)))
                answer = core_codec.decode(await client.recv(timeout_s=5.0))
                assert (answer.req_id, answer.error) == (2, "unknown table id " + (b"t" * 16).hex())
            assert seen == [1, 3, 2]
            assert runtime.failed_messages == 2  # both counted, one traceback logged (below)
        finally:
            await runtime.close()

    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    [error] = errors
    text = error.getMessage()
    assert text.startswith("dropped MutationReq from client:")
    assert text.endswith(": the node failed on it (1 such messages so far)")
    assert error.exc_info[0] is KeyError
