"""The CQL native protocol server: the asyncio edge between client sockets and the
statement processor, speaking protocol v4 and v5 so the real cassandra-driver and cqlsh work.

Owns: listening, one `CqlConnection` per client with its `Session`, the connection's life
(version negotiation on the first envelope, OPTIONS -> SUPPORTED at any time,
STARTUP -> READY and, on v5, the switch to segments in both directions right after READY,
REGISTER -> READY), running each QUERY/PREPARE/EXECUTE/BATCH as its own task so answers
leave in completion order with their stream ids (pipelining), coalescing the envelopes
finished in one event-loop iteration into one write (one run of segments on v5),
back-pressure, and pushing EVENTs to connections that registered for them.

Deliberately does not know: bytes (`agora.cql.frames`), what a statement means (the
processor), how events arise (the node's gossip and schema machines, through
`NodeRuntime.event_listeners`).

Where the rules come from: native_protocol_v4.spec / v5.spec sections 2 and 4;
shared/cql-compat.md sections 1 (handshake, negotiation exactly as the driver needs it,
events) and 6 (errors); Cassandra's transport (`PreV5Handlers`, `InitialConnectionHandler`,
`Dispatcher`) for what is a protocol error and when a connection is closed.

The processor interface (all may be coroutines; they return `agora.cql.results` values or
raise `AgoraError` subclasses, which become ERROR envelopes via `agora.cql.error_codes`):

    await processor.query(text, params, session)
    await processor.prepare(text, keyspace, session)        # keyspace: v5 PREPARE's, or None
    await processor.execute(statement_id, result_metadata_id, params, session)
    await processor.batch(batch_request, session)
    processor.schema_events(old_schema, new_schema) -> list[SchemaChange]   # optional

Any other exception is answered as Server_error with its text and logged with its
traceback; a result of SetKeyspace also sets `session.keyspace`.

Client errors: an envelope that was read whole but is wrong (bad body, unknown opcode, a
request before STARTUP) is answered ERROR 0x000A on its stream and the connection stays; a
broken byte stream (bad header, oversized or negative length, bad segment CRC, another
protocol version mid-connection) is answered on its stream when the header got that far,
then the connection is closed. Nothing a client sends can stop the server.

Back-pressure: at most `max_in_flight` requests run per connection; at that many, the
connection stops decoding envelopes and reading its socket until they drop to
`resume_in_flight`. While the socket's write buffer is above its high-water mark, the
connection stops reading too, so a client that does not read its answers stops being served.
Logs go to the "agora.cql" logger.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging

from agora.core.errors import AgoraError, ProtocolError
from agora.cql.frames import (HIGHEST_VERSION, AuthResponse, Envelope, EnvelopeDecoder, Execute,
                              FrameError, Opcode, Options, Prepare, Query, Register,
                              SegmentDecoder, StatusChange, Startup, TopologyChange,
                              UnsupportedVersion, decode_request, encode_error, encode_event,
                              encode_ready, encode_result, encode_segments, encode_supported,
                              event_type)
from agora.cql.requests import BatchRequest, Session
from agora.cql.results import Rows, SetKeyspace

log = logging.getLogger("agora.cql")

CQL_VERSION = "3.4.7"  # what cqlsh 6.2.2 and Cassandra 4/5 report; cqlsh parses it as x.y.z
SUPPORTED_OPTIONS = {
    "CQL_VERSION": [CQL_VERSION],
    "COMPRESSION": [],  # none: the driver then never compresses (cql-compat.md 1.3)
    "PROTOCOL_VERSIONS": ["4/v4", "5/v5"],
}

# Requests processed at once on one connection. The driver allows 32768 streams per
# connection but keeps far fewer in flight; past this many the connection stops reading
# (its requests wait in the kernel and the client), which is the back-pressure...
MAX_IN_FLIGHT_PER_CONNECTION = 1024
# ... until this few remain: a gap, so reading does not flap on and off per request.
RESUME_IN_FLIGHT_PER_CONNECTION = 512

# Socket write buffer marks per connection, in bytes: above HIGH the connection stops
# reading new requests until the kernel has taken the buffer down to LOW. One large result
# page (up to a few MiB) fits; a client that stops reading does not grow our memory.
WRITE_HIGH_WATER_BYTES = 4 * 1024 * 1024
WRITE_LOW_WATER_BYTES = 1024 * 1024


class CqlServer:
    """Serves CQL on host:port (port 0 picks a free one; `port` then holds it). `runtime`
    (a NodeRuntime, or None in tests) supplies events and node addresses."""

    def __init__(self, processor, runtime, host: str, port: int, *,
                 max_in_flight: int = MAX_IN_FLIGHT_PER_CONNECTION,
                 resume_in_flight: int = RESUME_IN_FLIGHT_PER_CONNECTION) -> None:
        assert 0 <= resume_in_flight < max_in_flight, (resume_in_flight, max_in_flight)
        self.processor = processor
        self.runtime = runtime
        self.host = host
        self.port = port
        self.max_in_flight = max_in_flight
        self.resume_in_flight = resume_in_flight
        self.connections: set[CqlConnection] = set()
        self.protocol_errors = 0  # connections closed or requests refused for bad bytes
        self._server: asyncio.AbstractServer | None = None
        self._schema = None  # the schema the last SCHEMA_CHANGE events were computed against
        self._listener = self.on_node_event

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: CqlConnection(self), self.host,
                                                self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.runtime is not None:
            self._schema = self._current_schema()
            self.runtime.event_listeners.append(self._listener)
        log.info("CQL server listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening, close every connection (after flushing what is queued) and cancel
        the requests still running."""
        if self.runtime is not None and self._listener in self.runtime.event_listeners:
            self.runtime.event_listeners.remove(self._listener)
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
            conn.cancel_requests()
        if self._server is not None:
            await self._server.wait_closed()

    # ---- events ----------------------------------------------------------------------

    def on_node_event(self, event) -> None:
        """A core `Event` from the runtime: push the CQL events it means. Called from the
        runtime's effect loop, so it never raises."""
        try:
            for cql_event in self._translate(event):
                self.push_event(cql_event)
        except Exception:
            log.exception("could not turn node event %r into CQL events", event)

    def push_event(self, event) -> None:
        """Send a StatusChange / TopologyChange / SchemaChange to every connection that
        registered for its type."""
        kind = event_type(event)
        encoded: dict[int, bytes] = {}
        for conn in list(self.connections):
            if kind in conn.registered and conn.version is not None:
                frame = encoded.get(conn.version)
                if frame is None:
                    frame = encoded[conn.version] = encode_event(conn.version, event)
                conn.send(frame)

    def _translate(self, event) -> list:
        kind, detail = event.kind, event.detail
        if kind == "status_change":
            node_id, status = detail
            endpoint = self._native_endpoint(node_id)
            if endpoint is None or status not in ("UP", "DOWN"):
                return []
            return [StatusChange(status, *endpoint)]
        if kind == "topology_change":
            change, node_id = detail
            endpoint = self._native_endpoint(node_id)
            return [] if endpoint is None else [TopologyChange(change, *endpoint)]
        if kind == "schema_change":
            return self._schema_events()
        return []

    def _native_endpoint(self, node_id: str) -> tuple[str, int] | None:
        """(ip, port) of a node's CQL endpoint, from its gossiped NATIVE_ADDRESS_AND_PORT."""
        native = self.runtime.node.gossiper.app_state(node_id, "NATIVE_ADDRESS_AND_PORT")
        if not native:
            return None
        address, _, port = native.rpartition(":")
        try:
            return address.strip("[]"), int(port)
        except ValueError:
            log.debug("unusable native address %r for %s", native, node_id)
            return None

    def _current_schema(self):
        node = getattr(self.runtime, "node", None)
        keeper = getattr(node, "schema", None)
        return getattr(keeper, "schema", None)

    def _schema_events(self) -> list:
        new = self._current_schema()
        old, self._schema = self._schema, new
        compute = getattr(self.processor, "schema_events", None)
        if compute is None or old is None or new is None:
            return []
        return list(compute(old, new))


class CqlConnection(asyncio.Protocol):
    """One client connection: decode, dispatch, answer. See the module docstring."""

    def __init__(self, server: CqlServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session = Session()
        self.started = False  # STARTUP answered
        self.framed = False  # v5 segments in both directions
        self.closed = False
        self.registered: set[str] = set()
        self.running: set = set()  # coroutines of the requests in flight
        self._envelopes = EnvelopeDecoder()
        self._segments: SegmentDecoder | None = None
        self._outbox: list[bytes] = []
        self._flush_pending = False
        self._busy = False  # too many requests in flight
        self._write_paused = False
        self._reading_paused = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def version(self) -> int | None:
        return self._envelopes.version

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES, low=WRITE_LOW_WATER_BYTES)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._segments is not None:
            self._segments.feed(data)
        else:
            self._envelopes.feed(data)
        self._pump()

    def eof_received(self) -> bool:
        """The client will send no more: answer what is already queued, then close."""
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # Requests still running finish (as Cassandra's do); their answers are dropped.
        self.closed = True
        self._outbox.clear()
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        self._pump()

    # ---- input -------------------------------------------------------------------------

    def _pump(self) -> None:
        """Decode and dispatch buffered envelopes while the connection may take more.
        The only place client bytes are interpreted, so the only place that catches."""
        try:
            while not (self.closed or self._busy or self._write_paused):
                envelope = self._envelopes.next_envelope()
                if envelope is None:  # v5: the next segments' envelopes, if any came
                    if self._segments is None or not self._drain_segments():
                        return
                    continue
                self._on_envelope(envelope)
        except FrameError as exc:
            self._fail(exc)
        except Exception:
            log.exception("CQL connection %s: internal error; closing it", self.describe())
            self.abort()

    def _drain_segments(self) -> bool:
        """Feed the complete segments' payloads to the envelope decoder; whether any came."""
        fed = False
        while (segment := self._segments.next_segment()) is not None:
            self._envelopes.feed(segment.payload)
            fed = True
        return fed

    def _on_envelope(self, envelope: Envelope) -> None:
        opcode, stream, version = envelope.opcode, envelope.stream, envelope.version
        if not self.started and opcode not in (Opcode.STARTUP, Opcode.OPTIONS):
            self._refuse(stream, f"Unexpected message {_opcode_name(opcode)}, "
                                 f"expecting STARTUP or OPTIONS")
            return
        try:
            request = decode_request(envelope)
        except ProtocolError as exc:
            self._refuse(stream, str(exc))
            return
        if isinstance(request, Options):
            self.send(encode_supported(version, stream, SUPPORTED_OPTIONS))
        elif isinstance(request, Startup):
            self._on_startup(version, stream)
        elif isinstance(request, Register):
            self.registered.update(request.events)
            self.send(encode_ready(version, stream))
        elif isinstance(request, AuthResponse):
            self._refuse(stream, "Unexpected message AUTH_RESPONSE: authentication is not enabled")
        else:
            self._dispatch(stream, request)

    def _on_startup(self, version: int, stream: int) -> None:
        if self.started:
            self._refuse(stream, "Unexpected message STARTUP: the connection is already started")
            return
        self.started = True
        self.session.protocol_version = version
        self.send(encode_ready(version, stream))
        if version >= 5:
            # READY goes out unframed; everything after it, both ways, is in segments.
            self._flush()
            self.framed = True
            self._segments = SegmentDecoder()
            self._segments.feed(self._envelopes.take_buffer())

    def _refuse(self, stream: int, message: str) -> None:
        self.server.protocol_errors += 1
        log.debug("CQL connection %s: protocol error on stream %d: %s",
                  self.describe(), stream, message)
        self.send(encode_error(self.version, stream, ProtocolError(message)))

    def _fail(self, exc: FrameError) -> None:
        """The byte stream is broken: answer if we can, then close."""
        self.server.protocol_errors += 1
        if isinstance(exc, UnsupportedVersion):
            log.debug("CQL connection %s: %s", self.describe(), exc)
            version = exc.answer_version
        else:
            log.warning("closing CQL connection %s: %s", self.describe(), exc)
            version = self.version or HIGHEST_VERSION
        if exc.stream is not None:
            self.send(encode_error(version, exc.stream, exc))
        self.close()

    # ---- requests ----------------------------------------------------------------------

    def _dispatch(self, stream: int, request) -> None:
        processor, session = self.server.processor, self.session
        no_metadata = False
        if isinstance(request, Query):
            call = lambda: processor.query(request.text, request.params, session)  # noqa: E731
            no_metadata = request.params.skip_metadata
        elif isinstance(request, Prepare):
            call = lambda: processor.prepare(request.text, request.keyspace, session)  # noqa: E731
        elif isinstance(request, Execute):
            call = lambda: processor.execute(request.statement_id,  # noqa: E731
                                             request.result_metadata_id, request.params, session)
            no_metadata = request.params.skip_metadata
        elif isinstance(request, BatchRequest):
            call = lambda: processor.batch(request, session)  # noqa: E731
        else:
            raise AssertionError(f"undispatched request {request!r}")
        self._start(self._answer(self.version, stream, call, no_metadata))

    # Each request's coroutine is driven here rather than by an asyncio Task: a request
    # runs synchronously up to its first wait (the coordinator's future), is resumed by
    # that future's done-callback, and its answer is queued the moment it finishes. A Task
    # per request would add an object registered in asyncio's task set, a loop pass before
    # its first step and another for its done-callbacks, on every request.

    def _start(self, coro) -> None:
        self.running.add(coro)
        if len(self.running) >= self.server.max_in_flight:
            self._busy = True
            self._update_reading()
        self._step(coro)

    def _step(self, coro, _fut=None) -> None:
        if coro not in self.running:  # closed by cancel_requests while it waited
            return
        try:
            awaited = coro.send(None)
        except StopIteration:
            self._request_done(coro)
            return
        except BaseException as exc:  # _answer answers every Exception; this is a cancellation
            log.debug("CQL request %s ended by %r", self.describe(), exc)
            self._request_done(coro)
            return
        if awaited is None:  # a bare yield (asyncio.sleep(0)): resume on the next pass
            self._loop.call_soon(self._step, coro)
        else:  # an asyncio future: resume when it is done, as a Task would
            awaited._asyncio_future_blocking = False
            awaited.add_done_callback(functools.partial(self._step, coro))

    async def _answer(self, version: int, stream: int, call, no_metadata: bool) -> None:
        try:
            result = call()
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, SetKeyspace):
                self.session.keyspace = result.keyspace
            frame = encode_result(version, stream, result,
                                  no_metadata=no_metadata and isinstance(result, Rows))
        except AgoraError as exc:
            frame = encode_error(version, stream, exc)
        except Exception as exc:  # our bug, not the client's: answer it, log it, carry on
            log.exception("CQL request on stream %d of %s failed", stream, self.describe())
            frame = encode_error(version, stream, Exception(f"{type(exc).__name__}: {exc}"))
        self.send(frame)

    def _request_done(self, coro) -> None:
        self.running.discard(coro)
        if self._busy and len(self.running) <= self.server.resume_in_flight:
            self._busy = False
            self._update_reading()
            if not self.closed:
                self._loop.call_soon(self._pump)

    def cancel_requests(self) -> None:
        """End the requests still running (their coroutines are closed; nothing is answered)."""
        for coro in list(self.running):
            coro.close()
        self.running.clear()

    # ---- output ------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue one envelope; envelopes queued in one loop iteration leave in one write."""
        if self.closed:
            return
        self._outbox.append(frame)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self.closed or not self._outbox:
            return
        frames, self._outbox = self._outbox, []
        self.transport.write(encode_segments(frames) if self.framed else b"".join(frames))

    def _update_reading(self) -> None:
        if self.closed:
            return
        paused = self._busy or self._write_paused
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        """Flush what is queued, then close."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def describe(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"from {peer[0]}:{peer[1]}" if peer and len(peer) >= 2 else "from an unknown peer"


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode:#04x}"
