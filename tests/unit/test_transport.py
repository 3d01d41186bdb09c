"""The internode transport over real TCP on 127.0.0.x: framing, handshake, queues and
reconnects, coalescing, back-pressure, expiry of queued frames, and that bad bytes close only
their own connection.

Every network test runs on the stock asyncio loop and on uvloop. Nothing sleeps to wait for
a condition: `wait_until` polls it against a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from types import SimpleNamespace

import msgpack
import pytest

from agora.core.errors import ProtocolError
from agora.core.limits import HELLO_MAX_BYTES, MAX_FRAME_BYTES, QUEUED_FRAME_MAX_AGE_MS
from agora.runtime import transport as transport_module
from agora.runtime.transport import (
    Counters,
    FrameDecoder,
    Outbox,
    Transport,
    TransportClient,
    backoff_delay_s,
    decode_hello,
    encode_frame,
    encode_hello,
    parse_node_id,
)

CLUSTER = "test-cluster"
WAIT_S = 5.0  # generous deadline for any one condition; the happy path takes milliseconds

try:
    import uvloop
    LOOP_FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
except ImportError:  # pragma: no cover
    LOOP_FACTORIES = {"asyncio": asyncio.new_event_loop}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def run(request):
    """run(coroutine) on a fresh loop of the parametrized kind."""
    def runner(coro):
        with asyncio.Runner(loop_factory=LOOP_FACTORIES[request.param]) as r:
            return r.run(asyncio.wait_for(coro, 12.0))
    return runner


def free_port(host: str) -> int:
    """A currently free TCP port >= 20000 on `host`, found by binding port 0."""
    while True:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if port >= 20000:
            return port


async def wait_until(condition, what: str, timeout_s: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.002)


class Node:
    """A Transport on 127.0.0.<n> that records what it receives."""

    def __init__(self, n: int, *, cluster: str = CLUSTER, port: int | None = None,
                 on_frame=None, **options) -> None:
        self.host = f"127.0.0.{n}"
        self.port = port or free_port(self.host)
        self.id = f"{self.host}:{self.port}"
        self.received: list[tuple[str, bytes]] = []
        self.transport = Transport(self.id, self.host, self.port, cluster,
                                   on_frame or self.record, rng=random.Random(n), **options)

    def record(self, sender: str, payload: bytes) -> None:
        self.received.append((sender, payload))

    def payloads_from(self, sender: str) -> list[bytes]:
        return [payload for source, payload in self.received if source == sender]

    def peer_stats(self, peer: str) -> dict[str, int]:
        return self.transport.stats()["peers"][peer]

    async def __aenter__(self) -> Node:
        await self.transport.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.transport.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read until the server closes; True once it has (EOF or reset)."""
    try:
        while await asyncio.wait_for(reader.read(65536), WAIT_S):
            pass
    except ConnectionResetError:
        pass
    return True


# --- pure pieces ------------------------------------------------------------------------


def test_decoder_reassembles_frames_split_anywhere():
    payloads = [b"a", b"bc" * 100, bytes(range(256)) * 300, b"z"]
    stream = b"".join(encode_frame(p) for p in payloads)
    for chunk_size in (1, 3, 4, 5, 1000, len(stream)):
        decoder, out = FrameDecoder(), []
        for i in range(0, len(stream), chunk_size):
            out += decoder.feed(stream[i:i + chunk_size])
        assert out == payloads and decoder.error is None


@pytest.mark.parametrize("header", [bytes(4), (MAX_FRAME_BYTES + 1).to_bytes(4, "big")])
def test_decoder_refuses_zero_and_oversized_lengths_after_good_frames(header):
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"ok") + header + b"rest") == [b"ok"]
    assert isinstance(decoder.error, ProtocolError)
    assert decoder.feed(encode_frame(b"more")) == []


def test_decoder_holds_the_first_frame_to_the_hello_limit():
    decoder = FrameDecoder(first_frame_max_bytes=HELLO_MAX_BYTES)
    assert decoder.feed((HELLO_MAX_BYTES + 1).to_bytes(4, "big")) == []
    assert decoder.error is not None
    decoder = FrameDecoder(first_frame_max_bytes=HELLO_MAX_BYTES)
    big = b"x" * (HELLO_MAX_BYTES * 4)
    assert decoder.feed(encode_frame(b"hello") + encode_frame(big)) == [b"hello", big]


def test_encode_frame_refuses_empty_and_oversized_payloads():
    with pytest.raises(ValueError):
        encode_frame(b"")
    with pytest.raises(ValueError):
        encode_frame(bytes(MAX_FRAME_BYTES + 1))


def test_hello_round_trip_and_rejections():
    hello = decode_hello(encode_hello("127.0.0.2:7000", CLUSTER))
    assert (hello.sender_id, hello.cluster_name) == ("127.0.0.2:7000", CLUSTER)
    assert not hello.is_client
    assert decode_hello(encode_hello("client:ab12", CLUSTER)).is_client
    bad = [{"a": 1}, ["agora-hello", 2, "127.0.0.2:1", "c"],
           ["agora-hello", True, "127.0.0.2:1", "c"], ["agora-hello", 1, "not-a-node-id", "c"],
           ["agora-hello", 1, "127.0.0.2:1", ""],
           ["other", 1, "a:1", "c"], ["agora-hello", 1, "127.0.0.2:1"]]
    for payload in [b"\xc1garbage"] + [msgpack.packb(fields) for fields in bad]:
        with pytest.raises(ProtocolError):
            decode_hello(payload)


def test_parse_node_id():
    assert parse_node_id("127.0.0.3:7000") == ("127.0.0.3", 7000)
    assert parse_node_id("[::1]:7000") == ("::1", 7000)
    for bad in ("127.0.0.3", "127.0.0.3:0", ":7000", "127.0.0.3:x", "h:70000"):
        with pytest.raises(ValueError):
            parse_node_id(bad)


def test_backoff_doubles_from_100ms_to_5s_with_jitter():
    rng = random.Random(7)
    for failures, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (7, 5.0), (100, 5.0)):
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay_s(failures, rng) <= ceiling


class FakeClock:
    """Stands in for the `time` module inside agora.runtime.transport."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeConnection:
    def __init__(self) -> None:
        self.write_paused = self.closed = False
        self.written: list[bytes] = []
        self.transport = SimpleNamespace(write=self.written.append)


def test_outbox_expires_frames_that_waited_past_the_max_age(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(transport_module, "time", clock)
    loop = asyncio.new_event_loop()  # only for call_soon; never run, so flushes are manual
    try:
        counters = Counters()
        outbox = Outbox(loop, counters, max_frames=3, max_bytes=1000, max_age_s=2.0)
        frame = {name: encode_frame(name.encode()) for name in
                 ("old-1", "old-2", "young", "new", "pending", "paused", "later")}
        assert outbox.push(frame["old-1"]) and outbox.push(frame["old-2"])
        clock.now += 1.5
        assert outbox.push(frame["young"])
        clock.now += 1.0  # old-* waited 2.5 s, young 1.0 s
        assert outbox.push(frame["new"])  # the queue is full: stale frames make room
        assert (counters.expired, counters.dropped, len(outbox)) == (2, 0, 2)
        conn = FakeConnection()
        outbox.attach(conn)
        assert conn.written == [frame["young"] + frame["new"]]

        assert outbox.push(frame["pending"])  # writable: no stamp, flush left pending...
        outbox.detach()  # ... when the connection goes: the waiting tail gets a stamp
        clock.now += 2.5
        conn = FakeConnection()
        outbox.attach(conn)
        assert conn.written == [] and counters.expired == 3 and len(outbox) == 0

        conn.write_paused = True
        assert outbox.push(frame["paused"])
        clock.now += 1.0
        conn.write_paused = False
        outbox.on_resume()
        assert outbox.push(frame["later"])
        outbox.flush()
        assert conn.written == [frame["paused"], frame["later"]] and counters.expired == 3
    finally:
        loop.close()


def test_outboxes_without_a_max_age_never_expire(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(transport_module, "time", clock)
    loop = asyncio.new_event_loop()
    try:
        counters = Counters()
        outbox = Outbox(loop, counters, max_frames=10, max_bytes=1000)
        assert outbox.push(encode_frame(b"patient"))
        clock.now += 3600.0
        conn = FakeConnection()
        outbox.attach(conn)
        assert conn.written == [encode_frame(b"patient")] and counters.expired == 0
    finally:
        loop.close()


# --- over TCP -----------------------------------------------------------------------------


def test_three_nodes_exchange_frames_both_ways(run):
    async def scenario():
        async with Node(2) as a, Node(3) as b, Node(4) as c:
            nodes = (a, b, c)
            for source in nodes:
                for target in nodes:
                    if source is not target:
                        payload = f"{source.id}>{target.id}".encode()
                        assert source.transport.send(target.id, payload)
            await wait_until(lambda: all(len(n.received) == 2 for n in nodes), "all frames")
            for target in nodes:
                for sender, payload in target.received:
                    assert payload == f"{sender}>{target.id}".encode()
            assert a.transport.is_connected(b.id) and b.transport.is_connected(a.id)
            assert a.peer_stats(b.id)["frames_sent"] == 1
            assert a.peer_stats(b.id)["frames_received"] == 1
    run(scenario())


def test_order_is_preserved_per_peer_across_sizes_and_iterations(run):
    async def scenario():
        async with Node(2) as a, Node(3) as b, Node(4) as c:
            expected = []
            for i in range(3000):
                size = 300_000 if i % 500 == 7 else 1 + i % 200
                payload = i.to_bytes(4, "big") + bytes(size)
                expected.append(payload)
                assert a.transport.send(b.id, payload)
                assert c.transport.send(b.id, payload)
                if i % 100 == 0:
                    await asyncio.sleep(0)  # let some go out in separate iterations
            await wait_until(lambda: len(b.received) == 6000, "6000 frames")
            assert b.payloads_from(a.id) == expected
            assert b.payloads_from(c.id) == expected
    run(scenario())


def test_frames_sent_in_one_iteration_coalesce_into_one_write(run):
    async def scenario():
        async with Node(2) as a, Node(3) as b:
            a.transport.send(b.id, b"warm-up")
            await wait_until(lambda: len(b.received) == 1, "warm-up frame")
            writes_before = a.peer_stats(b.id)["writes"]
            for i in range(1000):
                assert a.transport.send(b.id, i.to_bytes(4, "big") + bytes(96))
            await wait_until(lambda: len(b.received) == 1001, "1000 frames")
            stats = a.peer_stats(b.id)
            assert stats["writes"] - writes_before == 1  # 100 KB: under the flush threshold
            assert stats["frames_sent"] == 1001 and stats["bytes_sent"] == 1001 * 4 + 7 + 100_000
    run(scenario())


def test_frames_queued_for_a_down_peer_arrive_when_it_comes_up(run):
    async def scenario():
        async with Node(2) as a:
            b = Node(3)
            for i in range(10):
                assert a.transport.send(b.id, b"early-%d" % i)
            assert not a.transport.is_connected(b.id)
            await wait_until(lambda: a.peer_stats(b.id)["reconnects"] >= 2, "two re-dials")
            async with b:
                await wait_until(lambda: len(b.received) == 10, "queued frames")
                assert b.payloads_from(a.id) == [b"early-%d" % i for i in range(10)]
                assert a.transport.is_connected(b.id)
    run(scenario())


def test_reconnects_after_peer_restarts_and_delivers_what_queued_meanwhile(run):
    async def scenario():
        async with Node(2) as a:
            b = Node(3)
            async with b:
                a.transport.send(b.id, b"before")
                await wait_until(lambda: len(b.received) == 1, "first frame")
            await wait_until(lambda: not a.transport.is_connected(b.id), "a to notice b is gone")
            for i in range(5):
                assert a.transport.send(b.id, b"during-%d" % i)
            b2 = Node(3, port=b.port)
            async with b2:
                await wait_until(lambda: len(b2.received) == 5, "frames queued while down")
                assert b2.payloads_from(a.id) == [b"during-%d" % i for i in range(5)]
            assert a.peer_stats(b.id)["connects"] == 2
    run(scenario())


def test_a_full_queue_drops_and_counts(run):
    async def scenario():
        async with Node(2, queue_max_frames=5) as a:
            down = f"127.0.0.3:{free_port('127.0.0.3')}"
            assert all(a.transport.send(down, b"x") for _ in range(5))
            assert not a.transport.send(down, b"x")
            assert a.peer_stats(down)["dropped"] == 1 and a.peer_stats(down)["queued_frames"] == 5
            assert not a.transport.send("client:nobody", b"x")
            assert a.transport.stats()["total"]["unroutable"] == 1
    run(scenario())


def test_write_pressure_pauses_draining_until_the_peer_reads_again(run):
    async def scenario():
        async with Node(2) as a, Node(3) as b:
            a.transport.send(b.id, b"handshake first")
            await wait_until(lambda: len(b.received) == 1, "first frame")
            b.transport.pause_receiving()
            blobs = [i.to_bytes(4, "big") + bytes(1024 * 1024) for i in range(40)]
            for blob in blobs:
                assert a.transport.send(b.id, blob)
            await wait_until(lambda: a.peer_stats(b.id)["write_paused"] == 1, "writes to pause")
            assert a.peer_stats(b.id)["queued_frames"] > 0
            b.transport.resume_receiving()
            await wait_until(lambda: len(b.received) == 41, "all blobs")
            assert b.payloads_from(a.id)[1:] == blobs
            assert a.peer_stats(b.id)["write_paused"] == 0
    run(scenario())


def test_frames_queued_past_the_max_age_expire_and_later_ones_arrive(run):
    async def scenario():
        assert Node(9).transport._queue_max_age_s == QUEUED_FRAME_MAX_AGE_MS / 1000
        async with Node(2, queue_max_age_s=0.2) as a:
            b = Node(3)
            for i in range(10):
                assert a.transport.send(b.id, b"stale-%d" % i)
            # a keeps re-dialling the down peer; the first re-dial after 0.2 s drops them
            await wait_until(lambda: a.peer_stats(b.id)["expired"] == 10, "frames to expire")
            assert a.peer_stats(b.id)["queued_frames"] == 0
            async with b:
                for i in range(3):
                    assert a.transport.send(b.id, b"fresh-%d" % i)
                await wait_until(lambda: len(b.received) == 3, "fresh frames")
                assert b.payloads_from(a.id) == [b"fresh-%d" % i for i in range(3)]
            stats = a.transport.stats()
            assert stats["peers"][b.id]["dropped"] == 0
            assert stats["total"]["expired"] == 10 and stats["peers"][b.id]["frames_sent"] == 3
    run(scenario())


def test_frames_waiting_behind_paused_writes_expire(run):
    async def scenario():
        async with Node(2, queue_max_age_s=0.2) as a, Node(3) as b:
            a.transport.send(b.id, b"handshake first")
            await wait_until(lambda: len(b.received) == 1, "first frame")
            b.transport.pause_receiving()
            blobs = [i.to_bytes(4, "big") + bytes(1024 * 1024) for i in range(40)]
            for blob in blobs:
                assert a.transport.send(b.id, blob)
            await wait_until(lambda: a.peer_stats(b.id)["write_paused"] == 1, "writes to pause")
            assert a.peer_stats(b.id)["queued_frames"] > 0
            await asyncio.sleep(0.3)  # wait out the max age
            b.transport.resume_receiving()
            await wait_until(lambda: a.peer_stats(b.id)["queued_frames"] == 0, "queue drained")
            assert a.transport.send(b.id, b"fresh")
            await wait_until(lambda: b.received[-1:] == [(a.id, b"fresh")], "the fresh frame")
            stats = a.peer_stats(b.id)
            expired = stats["expired"]
            assert expired > 0 and stats["frames_sent"] + expired == 42
            written = blobs[:len(blobs) - expired]
            assert b.payloads_from(a.id) == [b"handshake first", *written, b"fresh"]
    run(scenario())


def test_bad_bytes_close_only_their_connection(run, caplog):
    hello = encode_frame(encode_hello("client:raw", CLUSTER))
    attacks = {
        "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "oversized frame": hello + (MAX_FRAME_BYTES + 1).to_bytes(4, "big"),
        "zero-length frame": hello + b"\x00\x00\x00\x00",
        "bad hello": encode_frame(b"\xc1\xc1 not msgpack"),
        "frame before hello": encode_frame(msgpack.packb(["mutation", 1, 2])),
    }

    async def scenario():
        async with Node(2) as a, Node(3) as b:
            a.transport.send(b.id, b"before")
            await wait_until(lambda: len(b.received) == 1, "first frame")
            for name, attack in attacks.items():
                reader, writer = await asyncio.open_connection(b.host, b.port)
                writer.write(attack)
                assert await closed_by_server(reader), name
                writer.close()
            a.transport.send(b.id, b"after")
            async with TransportClient(b.host, b.port, CLUSTER) as client:
                await client.send(b"client still served")
                await wait_until(lambda: len(b.received) == 3, "frames after the attacks")
            assert [p for _, p in b.received] == [b"before", b"after", b"client still served"]
            assert b.transport.stats()["total"]["protocol_errors"] == len(attacks)
            assert a.transport.is_connected(b.id)

    with caplog.at_level(logging.WARNING, logger="agora.transport"):
        run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(attacks)
    assert all("closing connection" in r.getMessage() for r in warnings)


def test_a_protocol_error_from_on_frame_closes_that_connection(run, caplog):
    async def scenario():
        def on_frame(sender, payload):
            if payload == b"poison":
                raise ProtocolError("undecodable message")
            b.record(sender, payload)

        b = Node(3, on_frame=on_frame)
        async with Node(2) as a, b:
            a.transport.send(b.id, b"poison")
            await wait_until(lambda: b.transport.stats()["total"]["protocol_errors"] == 1, "close")
            await wait_until(lambda: not a.transport.is_connected(b.id), "a to notice the close")
            a.transport.send(b.id, b"fine")  # a re-dials; b serves it again
            await wait_until(lambda: b.received == [(a.id, b"fine")], "frame after re-dial")

    with caplog.at_level(logging.WARNING, logger="agora.transport"):
        run(scenario())
    assert any("undecodable message" in r.getMessage() for r in caplog.records)


def test_client_gets_replies_on_its_own_connection(run):
    async def scenario():
        def echo(sender, payload):
            b.record(sender, payload)
            b.transport.send(sender, b"echo:" + payload)

        b = Node(3, on_frame=echo)
        async with b, TransportClient(b.host, b.port, CLUSTER) as client:
            assert client.node_id == b.id and client.client_id.startswith("client:")
            for i in range(3):
                await client.send(b"q%d" % i)
            replies = [await client.recv(timeout_s=WAIT_S) for _ in range(3)]
            assert replies == [b"echo:q0", b"echo:q1", b"echo:q2"]
            assert b.transport.is_connected(client.client_id)
            assert b.peer_stats(client.client_id)["frames_sent"] == 3
            await client.close()
            await wait_until(lambda: not b.transport.is_connected(client.client_id), "client gone")
            assert not b.transport.send(client.client_id, b"too late")
            assert client.client_id not in b.transport.stats()["peers"]
            with pytest.raises(ConnectionError):
                await client.recv()
    run(scenario())


def test_cluster_name_mismatch_is_refused(run, caplog):
    async def scenario():
        async with Node(2, cluster="other") as a, Node(3) as b:
            with pytest.raises(ConnectionError):
                async with TransportClient(b.host, b.port, "other"):
                    pass
            a.transport.send(b.id, b"from the wrong cluster")
            await wait_until(lambda: b.transport.stats()["total"]["protocol_errors"] >= 2,
                             "both refusals")
            assert b.received == [] and not a.transport.is_connected(b.id)

    with caplog.at_level(logging.WARNING, logger="agora.transport"):
        run(scenario())
    assert any("cluster name mismatch" in r.getMessage() for r in caplog.records)


def test_paused_receiving_still_completes_handshakes_and_resumes(run):
    async def scenario():
        async with Node(2) as a, Node(3) as b:
            b.transport.pause_receiving()
            for i in range(100):
                a.transport.send(b.id, b"%d" % i)
            await wait_until(lambda: a.transport.is_connected(b.id), "handshake while paused")
            await wait_until(lambda: a.peer_stats(b.id)["frames_sent"] == 100, "frames written")
            b.transport.resume_receiving()
            await wait_until(lambda: len(b.received) == 100, "frames after resume")
            assert b.payloads_from(a.id) == [b"%d" % i for i in range(100)]
    run(scenario())


def test_client_inbox_bounds_unread_replies_by_pausing_its_socket(run):
    count = 25_000  # more than CLIENT_INBOX_MAX_FRAMES

    async def scenario():
        async with Node(3) as b, TransportClient(b.host, b.port, CLUSTER) as client:
            await client.send(b"hi")
            await wait_until(lambda: b.transport.is_connected(client.client_id), "client known")
            for i in range(count):
                assert b.transport.send(client.client_id, i.to_bytes(4, "big"))
            await wait_until(lambda: client._conn.reading_paused, "client to stop reading")
            got = [int.from_bytes(await client.recv(timeout_s=WAIT_S), "big") for _ in range(count)]
            assert got == list(range(count))
            assert not client._conn.reading_paused
    run(scenario())
