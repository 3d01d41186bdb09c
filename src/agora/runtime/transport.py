"""The internode messaging edge: length-prefixed frames over TCP, bytes only.

Owns: connections and their hello handshake, one outbound connection per peer node (dialled
lazily, re-dialled with jittered exponential back-off), bounded per-peer send queues whose
frames expire, coalescing of the frames sent to one peer in one event-loop iteration into
one socket write, write-side back-pressure, routing of replies to clients over the
connection they came in on, and the per-peer counters. The bytes themselves (frames, hello)
are `agora.runtime.framing`; `TransportClient` (`agora.runtime.transport_client`, re-exported
here) is the same edge seen from a client (admin CLI, tests).

Deliberately does not know: what a payload means (the codec in `agora.core.codec` turns
messages into payload bytes and back), request timeouts or retries of lost messages (the
protocol machines own those; this layer may drop), or which peers exist (it dials whatever
"ip:port" it is asked to send to).

Where the rules come from: Cassandra's internode messaging (`net/OutboundConnection`,
`InboundConnection`, `HandshakeProtocol`): each node sends on a connection it opened itself
and receives on connections it accepted, and a handshake naming the sender comes first.
Dynamo (section 4) assumes messages can be lost, so a full queue drops rather than blocks.

The connecting side's first frame is its hello; the accepting side checks it (protocol
version, cluster name, sender id shape) and answers with its own hello, or closes. A
connection is usable once the connector has the answer, so nothing queued for a peer is
written to a connection that will refuse it. A sender id starting "client:" is a client:
frames addressed to it go back on the connection it opened. Node ids are "ip:port".

Expiry: a frame that had to wait in a peer node's queue (not connected yet, or writes
paused) and is older than `queue_max_age_s` (QUEUED_FRAME_MAX_AGE_MS) when it would be
written is dropped and counted as `expired`, as Cassandra's outbound queue drops messages
past their expiry: its request has timed out at the sender, and delivering it late would
act like an unrecorded hint. Replies queued for a client connection do not expire (a slow
client gets back-pressure, not loss).

Errors: a zero-length, oversized or unparsable frame, a bad hello, or `ProtocolError` raised
by `on_frame` (the codec blaming the peer) closes that one connection with a warning on the
"agora.transport" logger; any other exception from `on_frame` is logged with its traceback
and also closes only that connection. The node keeps running.

Back-pressure: inbound frames are handed synchronously to `on_frame` from `data_received`,
so `on_frame` must be quick (decode, queue, return). A driver whose own inbox fills calls
`pause_receiving()` (pause_reading on every connection) and `resume_receiving()` later.
Outbound, each connection's write buffer has a high-water mark: above it the protocol's
`pause_writing()` stops draining that peer's queue until `resume_writing()`; meanwhile
frames wait in the bounded queue and, past its bound, `send()` drops them and returns False.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from agora.core.errors import ProtocolError
from agora.core.limits import (
    COALESCE_FLUSH_BYTES,
    COALESCE_FLUSH_FRAMES,
    CONNECT_TIMEOUT_S,
    HANDSHAKE_TIMEOUT_S,
    HELLO_MAX_BYTES,
    MAX_FRAME_BYTES,
    PEER_QUEUE_MAX_BYTES,
    PEER_QUEUE_MAX_FRAMES,
    QUEUED_FRAME_MAX_AGE_MS,
    RECONNECT_BACKOFF_MAX_MS,
    RECONNECT_BACKOFF_MIN_MS,
    WRITE_CHUNK_MAX_BYTES,
    WRITE_HIGH_WATER_BYTES,
    WRITE_LOW_WATER_BYTES,
)
from agora.runtime.framing import (
    CLIENT_PREFIX,
    HEADER_BYTES,
    HELLO_TAG,
    PROTOCOL_VERSION,
    FrameDecoder,
    Hello,
    check_cluster,
    decode_hello,
    encode_frame,
    encode_hello,
    parse_node_id,
)

if TYPE_CHECKING:
    from agora.runtime.transport_client import TransportClient

__all__ = [
    "CLIENT_PREFIX", "HELLO_TAG", "MAX_FRAME_BYTES", "PROTOCOL_VERSION",
    "FrameDecoder", "Hello", "Transport", "TransportClient",
    "backoff_delay_s", "decode_hello", "encode_frame", "encode_hello", "parse_node_id",
]

log = logging.getLogger("agora.transport")

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def __getattr__(name: str):
    """`TransportClient` is re-exported lazily: it is built on `Connection` and `Outbox`
    below, so importing it eagerly here would make the two modules import each other."""
    if name == "TransportClient":
        from agora.runtime.transport_client import TransportClient
        return TransportClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- re-dial back-off ---------------------------------------------------------------------


def backoff_delay_s(failures: int, rng: random.Random) -> float:
    """Delay before re-dialling after `failures` consecutive failures (>= 1), jittered."""
    exponent = min(max(failures - 1, 0), 16)
    ceiling_ms = min(RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS * 2**exponent)
    return ceiling_ms * (0.5 + 0.5 * rng.random()) / 1000.0


# --- counters and the per-connection send queue ----------------------------------------


class Counters:
    """What crossed the wire with one peer. Bytes count the 4-byte length prefixes too.
    `dropped`: refused by a full queue; `expired`: queued past the queue's max age."""

    __slots__ = ("frames_sent", "bytes_sent", "writes", "frames_received", "bytes_received",
                 "dropped", "expired", "connects", "reconnects")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Outbox:
    """Frames waiting for one connection: bounded, coalesced into few writes, expiring.

    Frames queue while detached (not connected) or while the connection's writes are
    paused; when attached and writable, frames pushed within one loop iteration are joined
    into one write on the next `call_soon`, or at once past COALESCE_FLUSH_BYTES or
    COALESCE_FLUSH_FRAMES.

    With a `max_age_s`, frames older than that are dropped (counted `expired`) instead of
    written. Ages cost a clock read only for frames that have to wait: a frame pushed to a
    writable connection carries no stamp. A stamp `(seq, t)` says "the frames up to number
    `seq` were queued at or before `t`" (frames are numbered in push order, the head is
    number `_head_seq`), so one stamp also covers the unstamped frames before it, and the
    expired frames are always a prefix of the queue. When frames are left waiting without a
    stamp (the connection paused or went away with a flush pending), the tail is stamped.
    """

    __slots__ = ("_loop", "_counters", "_frames", "queued_bytes", "_conn", "_flush_pending",
                 "_max_frames", "_max_bytes", "_max_age_s", "_stamps", "_head_seq",
                 "_resume_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, counters: Counters,
                 max_frames: int, max_bytes: int, max_age_s: float | None = None) -> None:
        self._loop, self._counters = loop, counters
        self._frames: deque[bytes] = deque()
        self.queued_bytes = 0
        self._conn: Connection | None = None
        self._flush_pending = False
        self._max_frames, self._max_bytes, self._max_age_s = max_frames, max_bytes, max_age_s
        self._stamps: deque[tuple[int, float]] = deque()  # (frame number, time.monotonic())
        self._head_seq = 0
        self._resume_waiters: list[asyncio.Future] = []

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def writable(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.write_paused and not conn.closed

    def push(self, frame: bytes) -> bool:
        size = len(frame)
        frames = self._frames
        if len(frames) >= self._max_frames or self.queued_bytes + size > self._max_bytes:
            self.expire()  # stale frames must not crowd out fresh ones
            if self._is_full(size):
                self._counters.dropped += 1
                return False
        frames.append(frame)
        self.queued_bytes += size
        conn = self._conn
        if self._max_age_s is not None and (conn is None or conn.write_paused or conn.closed):
            self._stamp_tail()  # not writable now: the frame's age starts counting
        if conn is not None:
            if (self.queued_bytes >= COALESCE_FLUSH_BYTES
                    or len(frames) >= COALESCE_FLUSH_FRAMES):
                self.flush()
            elif not self._flush_pending:
                self._flush_pending = True
                self._loop.call_soon(self._scheduled_flush)
        return True

    def expire(self) -> int:
        """Drop the frames queued longer than max_age_s; returns how many."""
        stamps = self._stamps
        if not stamps:
            return 0
        cutoff = time.monotonic() - self._max_age_s
        last = -1
        while stamps and stamps[0][1] <= cutoff:
            last = stamps.popleft()[0]
        count = last - self._head_seq + 1
        if count <= 0:
            return 0
        frames = self._frames
        for _ in range(count):
            self.queued_bytes -= len(frames.popleft())
        self._head_seq += count
        self._counters.expired += count
        return count

    def attach(self, conn: Connection) -> None:
        self._conn = conn
        self.flush()

    def detach(self) -> None:
        self._conn = None
        if self._frames and self._max_age_s is not None:
            self._stamp_tail()
        self._wake_resume_waiters()

    def on_resume(self) -> None:
        self.flush()
        self._wake_resume_waiters()

    async def wait_writable(self) -> None:
        """Until writes are not paused (or the connection is gone)."""
        while self._conn is not None and self._conn.write_paused and not self._conn.closed:
            waiter = self._loop.create_future()
            self._resume_waiters.append(waiter)
            await waiter

    def _is_full(self, extra_bytes: int) -> bool:
        return (len(self._frames) >= self._max_frames
                or self.queued_bytes + extra_bytes > self._max_bytes)

    def _stamp_tail(self) -> None:
        tail = self._head_seq + len(self._frames) - 1
        if not self._stamps or self._stamps[-1][0] != tail:
            self._stamps.append((tail, time.monotonic()))

    def _wake_resume_waiters(self) -> None:
        waiters, self._resume_waiters = self._resume_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _scheduled_flush(self) -> None:
        self._flush_pending = False
        self.flush()

    def flush(self) -> None:
        """Drop expired frames, then write queued frames in chunks while the connection
        takes them."""
        frames, counters, stamps = self._frames, self._counters, self._stamps
        if stamps and self.writable:
            self.expire()
        while frames and self.writable:
            if self.queued_bytes <= WRITE_CHUNK_MAX_BYTES:
                count, size = len(frames), self.queued_bytes
                data = b"".join(frames)
                frames.clear()
            else:
                chunk = [frames.popleft()]
                size = len(chunk[0])
                while frames and size + len(frames[0]) <= WRITE_CHUNK_MAX_BYTES:
                    chunk.append(frames.popleft())
                    size += len(chunk[-1])
                count, data = len(chunk), b"".join(chunk)
            self.queued_bytes -= size
            self._head_seq += count
            counters.frames_sent += count
            counters.bytes_sent += size
            counters.writes += 1
            self._conn.transport.write(data)  # may call pause_writing() synchronously
        while stamps and stamps[0][0] < self._head_seq:  # those frames are written
            stamps.popleft()
        if frames and self._max_age_s is not None and not self.writable:
            self._stamp_tail()


# --- one TCP connection -----------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One TCP connection, either direction: decodes frames, hello first, then hands
    payloads to its owner in batches. The owner (`_Acceptor`, `_PeerLink`,
    `TransportClient`) decides what a hello means and where frames go."""

    def __init__(self, owner, hello_frame: bytes | None, handshake_timeout_s: float) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.peer_id: str | None = None      # set by the owner once the hello is accepted
        self.counters: Counters | None = None
        self.outbox: Outbox | None = None
        self.closed = False
        self.write_paused = False
        self.close_reason: str | None = None
        self.reading_paused = False
        self._decoder = FrameDecoder(first_frame_max_bytes=HELLO_MAX_BYTES)
        self._hello_frame = hello_frame
        self._handshake_timeout_s = handshake_timeout_s
        self._handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES, low=WRITE_LOW_WATER_BYTES)
        if self._hello_frame is not None:
            transport.write(self._hello_frame)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(self._handshake_timeout_s, self._handshake_expired)
        self.owner.on_open(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        frames = self._decoder.feed(data)
        try:
            if frames and self.peer_id is None:
                self.owner.on_hello(self, decode_hello(frames[0]))
                self._cancel_handshake_timer()
                del frames[0]
            if frames and not self.closed:
                self.owner.on_frames(self, frames)
        except ProtocolError as exc:
            self.fail(str(exc))
            return
        except Exception:
            log.exception("closing connection with %s: error while handling its frames",
                          self.describe())
            self.fail("internal error (logged above)", warn=False)
            return
        if self._decoder.error is not None and not self.closed:
            self.fail(str(self._decoder.error))

    def eof_received(self) -> bool:
        return False  # close our side too

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.outbox is not None:
            self.outbox.on_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_handshake_timer()
        self.owner.on_lost(self, exc)

    def set_reading(self, reading: bool) -> None:
        if not self.closed and self.reading_paused == reading:
            self.reading_paused = not reading
            if reading:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def fail(self, reason: str, *, warn: bool = True) -> None:
        """Close this connection because of what the peer sent (or our handler broke)."""
        if self.closed:
            return
        if warn:
            log.warning("closing connection with %s: %s", self.describe(), reason)
        self.owner.protocol_errors += 1
        self.close_reason = reason
        self.closed = True
        self.transport.abort()

    def close(self) -> None:
        """Graceful close: what is queued and buffered still goes out first."""
        if self.outbox is not None and not self.closed:
            self.outbox.flush()
        if self.transport is not None:
            self.transport.close()

    def describe(self) -> str:
        peername = self.transport.get_extra_info("peername") if self.transport else None
        return f"{self.peer_id or 'unidentified peer'} at {peername}"

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.peer_id is None:
            self.fail(f"no hello within {self._handshake_timeout_s} s")

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None


def _deliver(conn: Connection, frames: list[bytes],
             on_frame: Callable[[str, bytes], None]) -> None:
    counters = conn.counters
    counters.frames_received += len(frames)
    counters.bytes_received += HEADER_BYTES * len(frames) + sum(map(len, frames))
    peer_id = conn.peer_id
    for payload in frames:
        if conn.closed:
            return
        on_frame(peer_id, payload)


# --- the node side: accepted connections and outbound peer links ------------------------


class _Acceptor:
    """Connections other nodes and clients opened to us: check their hello, answer it,
    deliver their frames; remember client connections so replies can go back on them."""

    def __init__(self, node: Transport) -> None:
        self.node = node
        self.clients: dict[str, Connection] = {}
        self.protocol_errors = 0

    def new_connection(self) -> Connection:
        return Connection(self, None, HANDSHAKE_TIMEOUT_S)

    def on_open(self, conn: Connection) -> None:
        self.node._opened(conn)

    def on_hello(self, conn: Connection, hello: Hello) -> None:
        node = self.node
        check_cluster(hello, node.cluster_name)
        conn.peer_id = hello.sender_id
        conn.counters = node._counters_for(hello.sender_id)
        conn.transport.write(node._hello_frame)
        node._handshaken(conn)
        if hello.is_client:
            conn.outbox = Outbox(node._loop, conn.counters, node._queue_max_frames,
                                 node._queue_max_bytes)  # replies to a client never expire
            conn.outbox.attach(conn)
            self.clients[hello.sender_id] = conn  # a reconnecting client replaces its old one
            log.debug("client %s connected", conn.describe())

    def on_frames(self, conn: Connection, frames: list[bytes]) -> None:
        _deliver(conn, frames, self.node._on_frame)

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        self.node._closed_connection(conn)
        peer_id = conn.peer_id
        if peer_id is not None and self.clients.get(peer_id) is conn:
            del self.clients[peer_id]
            self.node._counters.pop(peer_id, None)  # clients come and go; keep memory bounded


class _PeerLink:
    """Our one outbound connection to a peer node: dialled lazily on the first send,
    usable once the peer answers our hello, re-dialled with back-off after a failure or a
    close while frames are waiting. Its queue outlives connections."""

    def __init__(self, node: Transport, peer_id: str) -> None:
        self.node = node
        self.peer_id = peer_id
        self.host, self.port = parse_node_id(peer_id)
        self.counters = node._counters_for(peer_id)
        self.outbox = Outbox(node._loop, self.counters, node._queue_max_frames,
                             node._queue_max_bytes, node._queue_max_age_s)
        self.conn: Connection | None = None
        self.ready = False
        self.protocol_errors = 0
        self._dial_task: asyncio.Task | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0
        self._closed = False

    def send(self, frame: bytes) -> bool:
        queued = self.outbox.push(frame)
        if not self.ready:
            self._ensure_dialling()
        return queued

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._dial_task is not None:
            self._dial_task.cancel()
        if self.conn is not None:
            self.conn.close()

    def _ensure_dialling(self) -> None:
        if (self.conn is None and self._dial_task is None and self._retry is None
                and not self._closed):
            self._dial_task = self.node._loop.create_task(self._dial())

    async def _dial(self) -> None:
        node = self.node
        local_addr = None if node.bind_host in _WILDCARD_HOSTS else (node.bind_host, 0)
        try:
            await asyncio.wait_for(node._loop.create_connection(
                lambda: Connection(self, node._hello_frame, node._connect_timeout_s),
                self.host, self.port, local_addr=local_addr), node._connect_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("cannot connect to %s: %r", self.peer_id, exc)
            if self.conn is None:
                self._schedule_retry()
        finally:
            self._dial_task = None

    def _schedule_retry(self) -> None:
        if self._closed or self._retry is not None:
            return
        self._failures += 1
        delay_s = backoff_delay_s(self._failures, self.node._rng)
        self._retry = self.node._loop.call_later(delay_s, self._on_retry)

    def _on_retry(self) -> None:
        self._retry = None
        self.outbox.expire()
        if len(self.outbox):  # otherwise stay idle: the next send() dials
            self.counters.reconnects += 1
            self._ensure_dialling()

    def on_open(self, conn: Connection) -> None:
        self.conn = conn
        self.node._opened(conn)

    def on_hello(self, conn: Connection, hello: Hello) -> None:
        check_cluster(hello, self.node.cluster_name)
        if hello.sender_id != self.peer_id:
            raise ProtocolError(f"dialled {self.peer_id} but it says it is {hello.sender_id}")
        conn.peer_id, conn.counters, conn.outbox = self.peer_id, self.counters, self.outbox
        self.ready = True
        self._failures = 0
        self.counters.connects += 1
        log.info("connected to %s", self.peer_id)
        self.node._handshaken(conn)
        self.outbox.attach(conn)

    def on_frames(self, conn: Connection, frames: list[bytes]) -> None:
        _deliver(conn, frames, self.node._on_frame)  # peers should not, but may, answer here

    def on_lost(self, conn: Connection, exc: Exception | None) -> None:
        self.node._closed_connection(conn)
        if conn is not self.conn:
            return
        if self.ready and not self._closed:
            log.info("lost connection to %s: %r", self.peer_id, exc)
        self.conn, self.ready = None, False
        self.outbox.detach()
        self._schedule_retry()


class Transport:
    """A node's internode endpoint: listens on bind_host:port, sends to peers by node id
    ("ip:port") over its own outbound connections and to clients ("client:...") over the
    connection they opened, and hands every inbound payload to `on_frame(sender_id, payload)`.
    All methods run on the event loop thread; `send()` never blocks. A frame that waits in
    a peer node's queue longer than `queue_max_age_s` is dropped, not written."""

    def __init__(self, local_id: str, bind_host: str, port: int, cluster_name: str,
                 on_frame: Callable[[str, bytes], None], *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 queue_max_frames: int = PEER_QUEUE_MAX_FRAMES,
                 queue_max_bytes: int = PEER_QUEUE_MAX_BYTES,
                 queue_max_age_s: float = QUEUED_FRAME_MAX_AGE_MS / 1000,
                 rng: random.Random | None = None) -> None:
        self.local_id = local_id
        self.bind_host = bind_host
        self.port = port
        self.cluster_name = cluster_name
        self._on_frame = on_frame
        self._connect_timeout_s = connect_timeout_s
        self._queue_max_frames = queue_max_frames
        self._queue_max_bytes = queue_max_bytes
        self._queue_max_age_s = queue_max_age_s
        self._rng = rng if rng is not None else random.Random()
        self._hello_frame = encode_frame(encode_hello(local_id, cluster_name))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._acceptor = _Acceptor(self)
        self._links: dict[str, _PeerLink] = {}
        self._counters: dict[str, Counters] = {}
        self._connections: set[Connection] = set()
        self._receiving_paused = False
        self._closed = False
        self._unroutable = 0

    async def start(self) -> None:
        """Listen on bind_host:port (port 0 picks one; `self.port` then holds it)."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            self._acceptor.new_connection, self.bind_host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s listening on %s:%d", self.local_id, self.bind_host, self.port)

    async def close(self) -> None:
        """Stop listening, flush and close every connection, stop re-dialling."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        dials = [link._dial_task for link in self._links.values() if link._dial_task]
        for link in self._links.values():
            link.close()
        for conn in list(self._connections):
            conn.close()
        await asyncio.gather(*dials, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def send(self, target: str, payload: bytes) -> bool:
        """Queue `payload` for `target` (a node id or a connected client id). Returns False
        if it was dropped: queue full, client gone, or transport closed. Raises ValueError
        for an empty or oversized payload or a malformed target (our bug, not the peer's)."""
        frame = encode_frame(payload)
        if self._closed:
            return False
        link = self._links.get(target)
        if link is not None:
            return link.send(frame)
        if target.startswith(CLIENT_PREFIX):
            conn = self._acceptor.clients.get(target)
            if conn is None or conn.closed:
                self._unroutable += 1
                return False
            return conn.outbox.push(frame)
        if self._loop is None:
            raise RuntimeError("Transport.send() before start()")
        link = self._links[target] = _PeerLink(self, target)
        return link.send(frame)

    def is_connected(self, peer: str) -> bool:
        """True if frames to `peer` would be written now (handshake done, not closed)."""
        link = self._links.get(peer)
        if link is not None:
            return link.ready
        conn = self._acceptor.clients.get(peer)
        return conn is not None and not conn.closed

    def pause_receiving(self) -> None:
        """Stop reading from every connection (the driver's inbox is full). Handshakes still
        complete; frames already read in the current chunk are still delivered."""
        self._receiving_paused = True
        for conn in self._connections:
            if conn.peer_id is not None:
                conn.set_reading(False)

    def resume_receiving(self) -> None:
        self._receiving_paused = False
        for conn in self._connections:
            conn.set_reading(True)

    def stats(self) -> dict:
        """{"peers": {peer_id: counters}, "total": summed counters + transport-wide ones}.
        Per peer: frames_sent, bytes_sent, writes, frames_received, bytes_received, dropped,
        expired, connects, reconnects, queued_frames, queued_bytes, connected, write_paused.
        Queued frames may include expired ones not yet dropped (that happens on draining,
        re-dialling, or when the queue is full)."""
        peers: dict[str, dict[str, int]] = {}
        for peer_id, counters in self._counters.items():
            entry = counters.as_dict()
            link = self._links.get(peer_id)
            conn = link.conn if link is not None else self._acceptor.clients.get(peer_id)
            outbox = link.outbox if link is not None else (conn.outbox if conn else None)
            entry["queued_frames"] = len(outbox) if outbox is not None else 0
            entry["queued_bytes"] = outbox.queued_bytes if outbox is not None else 0
            entry["connected"] = int(self.is_connected(peer_id))
            entry["write_paused"] = int(conn is not None and conn.write_paused)
            peers[peer_id] = entry
        total = {name: sum(entry[name] for entry in peers.values())
                 for name in Counters.__slots__}
        total["unroutable"] = self._unroutable
        total["protocol_errors"] = self._acceptor.protocol_errors + sum(
            link.protocol_errors for link in self._links.values())
        total["connections"] = len(self._connections)
        return {"peers": peers, "total": total}

    def _counters_for(self, peer_id: str) -> Counters:
        counters = self._counters.get(peer_id)
        if counters is None:
            counters = self._counters[peer_id] = Counters()
        return counters

    def _opened(self, conn: Connection) -> None:
        self._connections.add(conn)

    def _handshaken(self, conn: Connection) -> None:
        if self._receiving_paused:
            conn.set_reading(False)

    def _closed_connection(self, conn: Connection) -> None:
        self._connections.discard(conn)
