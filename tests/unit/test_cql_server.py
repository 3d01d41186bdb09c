"""The CQL server driven by the real cassandra-driver 3.30.1 (and by raw sockets for what no
driver would send): negotiation, queries, prepared statements, batches, pipelining with
out-of-order answers, errors, events, back-pressure, and bad bytes that only ever give
protocol errors or a closed connection while other connections keep working.

The server's event loop runs in a background thread; the driver is synchronous. A tiny fake
processor answers the driver's control-connection queries (cql-compat.md section 2)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import random
import socket
import struct
import threading
import time
import uuid
from types import SimpleNamespace

import cassandra
import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import FallthroughRetryPolicy, RoundRobinPolicy
from cassandra.query import BatchStatement

from agora.core import errors as E
from agora.core.effects import Event
from agora.core.schema.types import INET, INT, TEXT, UUID, SetType, serialize
from agora.cql import frames as F
from agora.cql.results import ColumnSpec, Prepared, Rows, SchemaChange, SetKeyspace, Void
from agora.runtime.cql_server import CqlServer

DEADLINE_S = 10.0


def wait_until(condition, timeout_s: float = DEADLINE_S, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# ------------------------------------------------------------------------------ the fake


LOCAL_COLUMNS = [
    ("key", TEXT, "local"), ("bootstrapped", TEXT, "COMPLETED"),
    ("broadcast_address", INET, "127.0.0.1"), ("cluster_name", TEXT, "Test Cluster"),
    ("cql_version", TEXT, "3.4.7"), ("data_center", TEXT, "datacenter1"),
    ("host_id", UUID, uuid.UUID(int=1)), ("native_protocol_version", TEXT, "5"),
    ("partitioner", TEXT, "org.apache.cassandra.dht.Murmur3Partitioner"),
    ("rack", TEXT, "rack1"), ("release_version", TEXT, "5.0.0"),
    ("rpc_address", INET, "127.0.0.1"), ("schema_version", UUID, uuid.UUID(int=2)),
    ("tokens", SetType(TEXT), ["0"]),
]
LOCAL = Rows([ColumnSpec("system", "local", name, t) for name, t, _ in LOCAL_COLUMNS],
             [[serialize(t, v) for _, t, v in LOCAL_COLUMNS]])
ERRORS = {
    "unavailable": E.Unavailable(4, 3, 1),
    "write_timeout": E.WriteTimeout(4, 1, 2, "SIMPLE"),
    "read_timeout": E.ReadTimeout(1, 0, 1, True),
    "syntax": E.CqlSyntaxError("line 1:0 no viable alternative"),
    "invalid": E.InvalidRequest("unknown table"),
    "config": E.ConfigurationError("bad replication"),
    "exists": E.AlreadyExists("ks", "t"),
    "overloaded": E.Overloaded("too busy"),
    "bug": RuntimeError("the processor tripped"),
}
KV_COLUMNS = [ColumnSpec("ks", "t", "k", TEXT), ColumnSpec("ks", "t", "v", INT)]


class FakeProcessor:
    """Answers what the driver's control connection asks, plus a few test statements."""

    def __init__(self) -> None:
        self.prepared: dict[bytes, str] = {}
        self.data: dict[str, int] = {}
        self.seen_texts: list[str] = []
        self.pipe_started = 0
        self.pipe_gate: asyncio.Event | None = None
        self.blocked = 0
        self.block_gate: asyncio.Event | None = None
        self.batches = []

    async def query(self, text, params, session):
        q = " ".join(text.lower().split()).rstrip(";")
        self.seen_texts.append(q)
        if "from system.local" in q:
            return LOCAL
        if "from system.peers" in q:
            return Rows([ColumnSpec("system", "peers_v2", "peer", INET)], [])
        if "from system_schema." in q:
            table = q.split("from system_schema.")[1].split()[0]
            return Rows([ColumnSpec("system_schema", table, "keyspace_name", TEXT)], [])
        if "from system_virtual_schema." in q:
            raise E.InvalidRequest("no virtual tables here")
        if q.startswith("use "):
            return SetKeyspace(q[4:].strip('"'))
        if q.startswith("select error "):
            raise ERRORS[q.split()[2]]
        if q.startswith("select pipe "):
            return await self._pipe(int(q.split()[2]))
        if q == "select block":
            self.blocked += 1
            if self.block_gate is None:
                self.block_gate = asyncio.Event()
            await self.block_gate.wait()
            return Void()
        if q == "select session":
            return Rows([ColumnSpec("s", "s", "ks", TEXT)], [[serialize(TEXT, session.keyspace or "")]])
        if q == "select big":
            return Rows([ColumnSpec("ks", "t", "v", TEXT)], [[serialize(TEXT, "x" * 1000)]] * 1500)
        return Rows([ColumnSpec("ks", "t", "v", INT)], [[serialize(INT, 42)]])

    async def _pipe(self, i: int):
        """Request 0 answers only once all 200 are in: proves they are in flight together
        and that answers leave out of order."""
        if self.pipe_gate is None:
            self.pipe_gate = asyncio.Event()
        self.pipe_started += 1
        if self.pipe_started == 200:
            self.pipe_gate.set()
        if i == 0:
            await self.pipe_gate.wait()
        return Rows([ColumnSpec("ks", "t", "i", INT)], [[serialize(INT, i)]])

    async def prepare(self, text, keyspace, session):
        statement_id = hashlib.md5(text.encode()).digest()
        self.prepared[statement_id] = text
        if text.startswith("INSERT"):
            return Prepared(statement_id, b"\x00" * 16, KV_COLUMNS, [0], [])
        return Prepared(statement_id, hashlib.md5(b"v").digest(), KV_COLUMNS[:1], [0], KV_COLUMNS[1:])

    async def execute(self, statement_id, result_metadata_id, params, session):
        text = self.prepared.get(statement_id)
        if text is None:
            raise E.Unprepared(statement_id)
        key = params.values[0].decode()
        if text.startswith("INSERT"):
            self.data[key] = struct.unpack(">i", params.values[1])[0]
            return Void()
        value = self.data.get(key)
        return Rows(KV_COLUMNS[1:], [] if value is None else [[serialize(INT, value)]])

    async def batch(self, batch_request, session):
        self.batches.append(batch_request)
        for child in batch_request.children:
            self.data[child.values[0].decode()] = struct.unpack(">i", child.values[1])[0]
        return Void()

    def schema_events(self, old, new):
        return [SchemaChange("CREATED", "KEYSPACE", new)] if old != new else []


class FakeRuntime:
    """What the server reads from a NodeRuntime: event_listeners, gossip, the schema."""

    def __init__(self) -> None:
        self.event_listeners: list = []
        self.native = {"127.0.0.2:7000": "127.0.0.2:9042", "127.0.0.3:7000": "[::1]:9044"}
        self.node = SimpleNamespace(
            gossiper=SimpleNamespace(app_state=lambda node, key: self.native.get(node)),
            schema=SimpleNamespace(schema="schema-1"))

    def emit(self, event: Event) -> None:
        for listener in self.event_listeners:
            listener(event)


class ServerThread:
    """A CqlServer on 127.0.0.1, on a free port, in its own event loop thread."""

    def __init__(self, processor=None, runtime=None, **options) -> None:
        self.processor = processor or FakeProcessor()
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = CqlServer(self.processor, runtime, "127.0.0.1", 0, **options)
        self.call(self.server.start())
        self.port = self.server.port

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE_S)

    def on_loop(self, fn, *args):
        done = concurrent.futures.Future()

        def run():
            try:
                done.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(DEADLINE_S)

    def close(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE_S)
        self.loop.close()


def make_cluster(port: int, **kwargs) -> Cluster:
    profile = ExecutionProfile(retry_policy=FallthroughRetryPolicy(),
                               load_balancing_policy=RoundRobinPolicy())
    return Cluster(["127.0.0.1"], port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                   connect_timeout=5, control_connection_timeout=5, **kwargs)


@pytest.fixture(scope="module")
def served():
    runtime = FakeRuntime()
    st = ServerThread(runtime=runtime)
    yield st
    st.close()


@pytest.fixture(scope="module", params=[None, 4], ids=["negotiated-v5", "pinned-v4"])
def driver(request, served):
    kwargs = {} if request.param is None else {"protocol_version": request.param}
    cluster = make_cluster(served.port, **kwargs)
    session = cluster.connect()
    yield SimpleNamespace(cluster=cluster, session=session, served=served,
                          version=request.param or 5)
    cluster.shutdown()


# ------------------------------------------------------------------------------ driver tests


def test_negotiation_lands_on_the_expected_version(driver):
    assert driver.cluster.protocol_version == driver.version
    assert [h.endpoint.port for h in driver.cluster.metadata.all_hosts()] == [driver.served.port]


def test_query_round_trip(driver):
    assert list(driver.session.execute("SELECT v FROM t")) == [(42,)]
    row = driver.session.execute("SELECT * FROM system.local WHERE key='local'").one()
    assert row.cluster_name == "Test Cluster" and row.tokens == {"0"}


def test_large_result_crosses_several_segments(driver):
    rows = list(driver.session.execute("SELECT big"))
    assert len(rows) == 1500 and rows[0].v == "x" * 1000


def test_use_sets_the_session_keyspace(driver):
    session = driver.cluster.connect()
    try:
        session.execute("USE ks1")
        assert session.keyspace == "ks1"
        assert session.execute("SELECT session").one().ks == "ks1"
    finally:
        session.shutdown()


def test_prepared_statements_batches_and_reprepare(driver):
    session, processor = driver.session, driver.served.processor
    insert = session.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)")
    select = session.prepare("SELECT v FROM ks.t WHERE k = ?")
    assert insert.routing_key_indexes == [0]
    session.execute(insert, ("a", 1))
    assert session.execute(select, ("a",)).one().v == 1
    batch = BatchStatement()
    batch.add(insert, ("b", 2))
    batch.add(insert, ("c", 3))
    session.execute(batch)
    assert (processor.data["b"], processor.data["c"]) == (2, 3)
    assert processor.batches[-1].batch_type == 0 and len(processor.batches[-1].children) == 2
    driver.served.on_loop(processor.prepared.clear)  # as after a restart: unknown ids
    assert session.execute(select, ("c",)).one().v == 3  # Unprepared -> re-prepare -> retry


def test_pipelined_requests_answer_out_of_order(driver):
    processor = driver.served.processor

    def reset():
        processor.pipe_started, processor.pipe_gate = 0, None

    driver.served.on_loop(reset)
    futures = [driver.session.execute_async(f"SELECT pipe {i}") for i in range(200)]
    results = [f.result().one().i for f in futures]  # each bounded by the 10 s request timeout
    assert results == list(range(200))


@pytest.mark.parametrize("name, driver_class, fields", [
    ("unavailable", cassandra.Unavailable,
     {"consistency": 4, "required_replicas": 3, "alive_replicas": 1}),
    ("write_timeout", cassandra.WriteTimeout,
     {"consistency": 4, "received_responses": 1, "required_responses": 2,
      "write_type": cassandra.WriteType.SIMPLE}),
    ("read_timeout", cassandra.ReadTimeout,
     {"consistency": 1, "received_responses": 0, "required_responses": 1, "data_retrieved": True}),
    ("syntax", cassandra.protocol.SyntaxException, {}),
    ("invalid", cassandra.InvalidRequest, {}),
    ("config", cassandra.protocol.ConfigurationException, {}),
    ("exists", cassandra.AlreadyExists, {"keyspace": "ks", "table": "t"}),
])
def test_errors_reach_the_driver_as_its_exceptions(driver, name, driver_class, fields):
    with pytest.raises(driver_class) as info:
        driver.session.execute(f"SELECT error {name}")
    for field, value in fields.items():
        assert getattr(info.value, field) == value


@pytest.mark.parametrize("name, message_class, text", [
    ("overloaded", cassandra.protocol.OverloadedErrorMessage, "too busy"),
    ("bug", cassandra.protocol.ServerError, "RuntimeError: the processor tripped"),
])
def test_errors_a_driver_would_retry_elsewhere(driver, name, message_class, text, caplog):
    with caplog.at_level(logging.ERROR, logger="agora.cql"):
        with pytest.raises((NoHostAvailable, message_class)) as info:
            driver.session.execute(f"SELECT error {name}")
    # the default retry policy would try the next host; our fall-through one re-raises
    error = info.value
    if isinstance(error, NoHostAvailable):
        (error,) = error.errors.values()
    assert isinstance(error, message_class) and error.message == text
    if name == "bug":
        assert "the processor tripped" in caplog.text  # logged with its traceback


def test_events_reach_a_registered_driver_connection(driver):
    served = driver.served
    conn = driver.cluster.connection_factory(driver.cluster.metadata.all_hosts()[0].endpoint)
    received = []
    try:
        conn.register_watchers({kind: (lambda args, kind=kind: received.append((kind, args)))
                                for kind in ("STATUS_CHANGE", "TOPOLOGY_CHANGE", "SCHEMA_CHANGE")},
                               register_timeout=DEADLINE_S)
        runtime = served.runtime
        served.on_loop(runtime.emit, Event("status_change", ("127.0.0.2:7000", "DOWN")))
        served.on_loop(runtime.emit, Event("topology_change", ("NEW_NODE", "127.0.0.3:7000")))
        served.on_loop(runtime.emit, Event("status_change", ("unknown:7000", "UP")))  # no address

        new_schema = f"schema-v{driver.version}"

        def change_schema():
            runtime.node.schema.schema = new_schema
            runtime.emit(Event("schema_change", new_schema))

        served.on_loop(change_schema)
        wait_until(lambda: len(received) >= 3, what="three events")
        assert received[:3] == [
            ("STATUS_CHANGE", {"change_type": "DOWN", "address": ("127.0.0.2", 9042)}),
            ("TOPOLOGY_CHANGE", {"change_type": "NEW_NODE", "address": ("::1", 9044)}),
            ("SCHEMA_CHANGE", {"change_type": "CREATED", "target_type": "KEYSPACE",
                               "keyspace": new_schema}),
        ]
    finally:
        conn.close()


# ------------------------------------------------------------------------------ raw sockets


def raw_socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)


def read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_response(sock: socket.socket):
    """One unframed response envelope: (version, stream, opcode, body), or None at EOF."""
    header = read_exactly(sock, 9)
    if header is None:
        return None
    version, _, stream, opcode, length = struct.unpack(">BBhBi", header)
    body = read_exactly(sock, length)
    assert body is not None
    return version, stream, opcode, body


def read_until_closed(sock: socket.socket) -> list:
    out = []
    while (response := read_response(sock)) is not None:
        out.append(response)
    return out


def error_of(response) -> tuple[int, str]:
    _, _, opcode, body = response
    assert opcode == F.Opcode.ERROR
    reader = F.Reader(body)
    return reader.read_int(), reader.read_string()


def startup(sock: socket.socket, version: int = 4) -> None:
    sock.sendall(F.encode_request_envelope(version, 0, F.Opcode.STARTUP,
                                           F.pack_string_map({"CQL_VERSION": "3.4.7"})))
    response = read_response(sock)
    assert response[0] == 0x80 | version and response[2] == F.Opcode.READY


@pytest.mark.parametrize("version", [0x42, 0x41, 6, 3, 2, 1])
def test_unsupported_versions_get_the_downgrade_error_then_a_close(served, version):
    with raw_socket(served.port) as sock:
        if version < 3:
            sock.sendall(bytes([version, 0, 5, F.Opcode.OPTIONS, 0, 0, 0, 0]))
        else:
            sock.sendall(struct.pack(">BBhBi", version, 0, 5, F.Opcode.OPTIONS, 0))
        (response,) = read_until_closed(sock)
    assert response[0] in (0x83, 0x85) and response[1] == 5
    code, message = error_of(response)
    assert code == 0x000A and "unsupported protocol version" in message


def test_requests_before_startup_are_refused_but_options_work(served):
    with raw_socket(served.port) as sock:
        sock.sendall(F.encode_request_envelope(4, 3, F.Opcode.QUERY,
                                               F.pack_long_string("SELECT v FROM t")
                                               + F.pack_short(1) + bytes([0])))
        code, message = error_of(read_response(sock))
        assert code == 0x000A and "STARTUP" in message
        sock.sendall(F.encode_request_envelope(4, 4, F.Opcode.OPTIONS, b""))
        _, stream, opcode, body = read_response(sock)
        assert (stream, opcode) == (4, F.Opcode.SUPPORTED)
        assert F.Reader(body).read_string_multimap() == {
            "CQL_VERSION": ["3.4.7"], "COMPRESSION": [], "PROTOCOL_VERSIONS": ["4/v4", "5/v5"]}


def test_bad_request_body_is_answered_and_the_connection_stays(served):
    with raw_socket(served.port) as sock:
        startup(sock)
        sock.sendall(F.encode_request_envelope(4, 9, F.Opcode.QUERY, b"\x00\x00\x00\x10abc"))
        response = read_response(sock)
        assert response[1] == 9 and error_of(response)[0] == 0x000A
        sock.sendall(F.encode_request_envelope(4, 10, 0x33, b""))  # unknown opcode
        assert error_of(read_response(sock))[0] == 0x000A
        sock.sendall(F.encode_request_envelope(4, 11, F.Opcode.QUERY,
                                               F.pack_long_string("SELECT v FROM t")
                                               + F.pack_short(1) + bytes([0])))
        _, stream, opcode, _ = read_response(sock)
        assert (stream, opcode) == (11, F.Opcode.RESULT)


def test_v5_framing_starts_after_ready(served):
    with raw_socket(served.port) as sock:
        startup(sock, 5)
        query = F.encode_request_envelope(5, 1, F.Opcode.QUERY, F.pack_long_string("SELECT v FROM t")
                                          + F.pack_short(1) + F.pack_uint(0))
        options = F.encode_request_envelope(5, 2, F.Opcode.OPTIONS, b"")
        sock.sendall(F.encode_segments([query, options]))
        decoder, envelopes = F.SegmentDecoder(), []
        while len(envelopes) < 2:
            data = sock.recv(65536)
            assert data
            decoder.feed(data)
            while (segment := decoder.next_segment()) is not None:
                payload = segment.payload
                while payload:
                    _, _, stream, opcode, length = struct.unpack_from(">BBhBi", payload)
                    envelopes.append((stream, opcode))
                    payload = payload[9 + length:]
        assert sorted(envelopes) == [(1, F.Opcode.RESULT), (2, F.Opcode.SUPPORTED)]
        sock.sendall(b"\x00" * 10)  # a segment with a bad CRC: closed without an answer
        assert sock.recv(100) == b""


@pytest.mark.parametrize("data", [
    struct.pack(">BBhBi", 4, 0, 1, F.Opcode.OPTIONS, 2**31 - 1),  # oversized
    struct.pack(">BBhBi", 4, 0, 1, F.Opcode.OPTIONS, -5),  # negative length
    struct.pack(">BBhBi", 0x84, 0, 1, F.Opcode.OPTIONS, 0),  # response direction
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not CQL at all
])
def test_broken_streams_get_at_most_a_protocol_error_then_a_close(served, data):
    with raw_socket(served.port) as sock:
        sock.sendall(data)
        responses = read_until_closed(sock)
    assert len(responses) <= 1
    for response in responses:
        assert error_of(response)[0] == 0x000A


def test_garbage_never_hurts_the_server_and_other_connections_keep_working(served):
    cluster = make_cluster(served.port, protocol_version=4)
    session = cluster.connect()
    rng = random.Random(1234)
    try:
        valid = F.encode_request_envelope(4, 1, F.Opcode.STARTUP,
                                          F.pack_string_map({"CQL_VERSION": "3.4.7"}))
        for i in range(60):
            with raw_socket(served.port) as sock:
                if i % 3 == 0:
                    payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
                else:  # a valid start, then mutated or truncated bytes
                    payload = bytearray(valid + F.encode_request_envelope(
                        4, 2, F.Opcode.QUERY, F.pack_long_string("SELECT v FROM t")
                        + F.pack_short(1) + bytes([0])))
                    for _ in range(rng.randrange(1, 4)):
                        payload[rng.randrange(len(payload))] = rng.randrange(256)
                    payload = bytes(payload[:rng.randrange(1, len(payload) + 1)])
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                for response in read_until_closed_or_idle(sock):
                    assert response[2] in (F.Opcode.ERROR, F.Opcode.READY, F.Opcode.RESULT,
                                           F.Opcode.SUPPORTED)
                    if response[2] == F.Opcode.ERROR:
                        assert error_of(response)[0] in (0x000A, 0x2200)
            assert session.execute("SELECT v FROM t").one().v == 42
    finally:
        cluster.shutdown()
    assert served.server.connections  # the driver's connection is still there


def read_until_closed_or_idle(sock: socket.socket) -> list:
    """After we half-closed: the server may answer and keep the socket open (it waits for
    more of a truncated envelope), so stop at EOF or after a short idle period."""
    sock.settimeout(0.2)
    out = []
    try:
        while (response := read_response(sock)) is not None:
            out.append(response)
    except (socket.timeout, AssertionError):
        pass
    return out


def test_in_flight_bound_pauses_reading_until_answers_drain():
    st = ServerThread(max_in_flight=4, resume_in_flight=2)
    try:
        with raw_socket(st.port) as sock:
            startup(sock)
            query = F.pack_long_string("SELECT block") + F.pack_short(1) + bytes([0])
            sock.sendall(b"".join(F.encode_request_envelope(4, i, F.Opcode.QUERY, query)
                                  for i in range(1, 11)))
            wait_until(lambda: st.processor.blocked == 4, what="4 requests in flight")
            (conn,) = st.server.connections
            assert st.on_loop(lambda: (conn._busy, len(conn.running))) == (True, 4)
            assert st.processor.blocked == 4
            st.on_loop(lambda: st.processor.block_gate.set())
            streams = sorted(read_response(sock)[1] for _ in range(10))
            assert streams == list(range(1, 11))
            assert st.processor.blocked == 10
    finally:
        st.close()


def test_close_ends_requests_still_running_without_answering_them():
    """Requests in flight when the server closes are ended (their coroutines closed, as their
    Tasks were cancelled before): close returns, the client gets EOF and no answer, and the
    loop keeps running when what they waited for happens later."""
    st = ServerThread()
    loop_errors: list = []
    st.on_loop(lambda: st.loop.set_exception_handler(lambda loop, context: loop_errors.append(context)))
    sock = raw_socket(st.port)
    try:
        startup(sock)
        query = F.pack_long_string("SELECT block") + F.pack_short(1) + bytes([0])
        sock.sendall(b"".join(F.encode_request_envelope(4, i, F.Opcode.QUERY, query) for i in (1, 2, 3)))
        wait_until(lambda: st.processor.blocked == 3, what="3 requests in flight")
        (conn,) = st.server.connections
        st.call(st.server.close())
        assert st.on_loop(lambda: len(conn.running)) == 0
        sock.settimeout(DEADLINE_S)
        assert sock.recv(100) == b""  # closed, and nothing answered
        st.on_loop(lambda: st.processor.block_gate.set())
        st.on_loop(lambda: None)  # a later pass of the loop: nothing raised meanwhile
        assert loop_errors == []
    finally:
        sock.close()
        st.loop.call_soon_threadsafe(st.loop.stop)
        st.thread.join(DEADLINE_S)
        st.loop.close()


def test_close_stops_listening_and_ends_connections():
    st = ServerThread()
    sock = raw_socket(st.port)
    startup(sock)
    st.close()
    assert sock.recv(10) == b""
    sock.close()
    with pytest.raises(OSError):
        raw_socket(st.port).close()
