"""The internode transport seen from a client (admin CLI, tests): one connection to one node.

Owns: `TransportClient` — dialling a node, the client side of the hello handshake (as
"client:<random hex>"), sending payloads with write-side back-pressure, and a bounded inbox
of replies that pauses reading the socket when full.

Deliberately does not know: what a payload means (the codec), request timeouts or retries,
other nodes. The node sends its replies back on the connection the client opened, so a
client never listens.

Where the rules come from: the same framing and hello as node-to-node traffic
(`agora.runtime.framing`) over the same connection machinery (`agora.runtime.transport`),
so a client exercises exactly the code a peer does.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque

from agora.core.errors import ProtocolError
from agora.core.limits import (
    CLIENT_INBOX_MAX_FRAMES,
    CLIENT_INBOX_RESUME_FRAMES,
    CONNECT_TIMEOUT_S,
    PEER_QUEUE_MAX_BYTES,
    PEER_QUEUE_MAX_FRAMES,
)
from agora.runtime.framing import (
    CLIENT_PREFIX,
    HEADER_BYTES,
    Hello,
    check_cluster,
    encode_frame,
    encode_hello,
)
from agora.runtime.transport import Connection, Counters, Outbox

__all__ = ["TransportClient"]


class TransportClient:
    """A client's connection to one node (admin CLI, tests), as "client:<random hex>".

        async with TransportClient("127.0.0.2", 7000, "test-cluster") as client:
            await client.send(payload)
            reply = await client.recv(timeout_s=2.0)

    `connect()` (or entering the context) completes the handshake or raises: ProtocolError
    if the node's answer is bad, ConnectionError if it closed on us (as it does on a cluster
    name mismatch) or cannot be reached. Replies queue in a bounded inbox; when it is full
    the socket is not read until `recv()` drains it. `async for payload in client` also works.
    """

    def __init__(self, host: str, port: int, cluster_name: str, *, client_id: str | None = None,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.host, self.port, self.cluster_name = host, port, cluster_name
        self.client_id = client_id or CLIENT_PREFIX + secrets.token_hex(8)
        if not self.client_id.startswith(CLIENT_PREFIX):
            raise ValueError(f"client id must start with {CLIENT_PREFIX!r}")
        self.node_id: str | None = None  # the node's id, from its hello
        self.protocol_errors = 0
        self._connect_timeout_s = connect_timeout_s
        self._counters = Counters()
        self._conn: Connection | None = None
        self._outbox: Outbox | None = None
        self._inbox: deque[bytes] = deque()
        self._hello_waiter: asyncio.Future | None = None
        self._recv_waiter: asyncio.Future | None = None
        self._closed_waiter: asyncio.Future | None = None
        self._lost: Exception | None = None

    async def __aenter__(self) -> TransportClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._hello_waiter = loop.create_future()
        self._outbox = Outbox(loop, self._counters, PEER_QUEUE_MAX_FRAMES, PEER_QUEUE_MAX_BYTES)
        hello = encode_frame(encode_hello(self.client_id, self.cluster_name))

        async def handshake() -> None:
            await loop.create_connection(
                lambda: Connection(self, hello, self._connect_timeout_s), self.host, self.port)
            await self._hello_waiter

        try:
            await asyncio.wait_for(handshake(), self._connect_timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise ConnectionError(f"no answer from {self.host}:{self.port} "
                                  f"within {self._connect_timeout_s} s") from None
        except BaseException:
            await self.close()
            raise

    async def send(self, payload: bytes) -> None:
        """Queue one payload; waits while the socket's write buffer is over its mark."""
        frame = encode_frame(payload)
        if self._outbox is None or self.node_id is None:
            raise ConnectionError("not connected")
        await self._outbox.wait_writable()
        if self._lost is not None:
            raise self._lost
        if not self._outbox.push(frame):
            raise ConnectionError("send queue full")

    async def recv(self, timeout_s: float | None = None) -> bytes:
        """The next payload from the node; ConnectionError once closed and drained,
        TimeoutError after `timeout_s`."""
        while not self._inbox:
            if self._lost is not None:
                raise self._lost
            self._recv_waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self._recv_waiter, timeout_s)
        payload = self._inbox.popleft()
        if self._conn.reading_paused and len(self._inbox) <= CLIENT_INBOX_RESUME_FRAMES:
            self._conn.set_reading(True)
        return payload

    def __aiter__(self) -> TransportClient:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionError:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Flush what is queued and close; abort if the node does not take it in time."""
        conn = self._conn
        if conn is None or conn.closed:
            return
        self._closed_waiter = asyncio.get_running_loop().create_future()
        conn.close()
        try:
            await asyncio.wait_for(self._closed_waiter, self._connect_timeout_s)
        except asyncio.TimeoutError:
            conn.transport.abort()

    def stats(self) -> dict[str, int]:
        return self._counters.as_dict()

    # connection owner callbacks

    def on_open(self, conn: Connection) -> None:
        self._conn = conn

    def on_hello(self, conn: Connection, hello: Hello) -> None:
        check_cluster(hello, self.cluster_name)
        if hello.is_client:
            raise ProtocolError(f"expected a node, {hello.sender_id} answered")
        conn.peer_id, conn.counters, conn.outbox = hello.sender_id, self._counters, self._outbox
        self.node_id = hello.sender_id
        self._outbox.attach(conn)
        if not self._hello_waiter.done():
            self._hello_waiter.set_result(None)

    def on_frames(self, conn: Connection, frames: list[bytes]) -> None:
        self._counters.frames_received += len(frames)
        self._counters.bytes_received += HEADER_BYTES * len(frames) + sum(map(len, frames))
        self._inbox.extend(frames)
        if len(self._inbox) >= CLIENT_INBOX_MAX_FRAMES:
            conn.set_reading(False)
        self._wake(self._recv_waiter, None)

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        if conn.close_reason is not None:
            self._lost = ProtocolError(conn.close_reason)
        elif self.node_id is None:
            self._lost = ConnectionError(f"{self.host}:{self.port} closed the connection during "
                                         "the handshake (cluster name mismatch?)")
        else:
            self._lost = ConnectionError(f"connection to {self.node_id} closed: {exc!r}")
        self._outbox.detach()
        self._wake(self._hello_waiter, self._lost)
        self._wake(self._recv_waiter, None)
        self._wake(self._closed_waiter, None)

    @staticmethod
    def _wake(waiter: asyncio.Future | None, error: Exception | None) -> None:
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
