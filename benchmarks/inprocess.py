"""Three real nodes in one process, driven by a minimal pipelined CQL client: the server CPU
per QUORUM write and read, the glue included, measured without other processes in the way.

    python benchmarks/inprocess.py [--ops 20000] [--inflight 64] [--pause-ms 0] [--workloads write,read,mixed]
                                   [--profile out.prof]

A tool for speed work, beside `benchmarks/hotpath.py` (which times the stages one by one):
`agora bench` measures the server CPU of three node processes that share two cores with two
driver processes, so one run differs from the next by ±10 % and more. Here the three nodes
(`NodeRuntime` + `CqlServer`: RocksDB in a temporary directory, internode TCP and CQL on
loopback) run on one event loop in this process, and the client is a few lines that send
pre-encoded v4 EXECUTE frames with up to `--inflight` in flight on one connection per node,
round robin, and only count the answers. The CPU time of this process per operation is then
the cluster's CPU per operation plus a client that costs a few microseconds; it moves by a
few percent from run to run. `--profile` writes a cProfile of the measured phase (call
counts per operation are exact; the times are inflated by the profiler).

Owns nothing the node uses. Workloads: QUORUM writes of 100-byte values to `--keys` keys,
then QUORUM reads of them, then a 50/50 mix (YCSB A's shape); `count` times `SELECT count(*)`
over the loaded rows at ONE and at QUORUM (CPU per row: scans, merge, paging).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import contextlib
import gc
import logging
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from agora.core.config import NodeConfig  # noqa: E402
from agora.cql import frames as F  # noqa: E402
from agora.cql.processor import Processor  # noqa: E402
from agora.runtime.cql_backend import RuntimeBackend  # noqa: E402
from agora.runtime.cql_server import CqlServer  # noqa: E402
from agora.runtime.server import GC_THRESHOLDS, NodeRuntime  # noqa: E402

HOSTS = ("127.0.0.91", "127.0.0.92", "127.0.0.93")
INTERNODE_PORT, CQL_PORT = 7300, 9300
VALUE_SIZE = 100
_HEADER = struct.Struct(">BBhBi")  # a v4 envelope header, to read the answers
QUORUM, ONE = 0x0004, 0x0001


PROTOCOL = 4  # --protocol: 5 wraps every request in its own v5 segment, as the Python driver does


def _frame(stream: int, opcode: int, body: bytes) -> bytes:
    return F.encode_request_envelope(PROTOCOL, stream, opcode, body)


def _flags(flags: int) -> bytes:
    return flags.to_bytes(4 if PROTOCOL >= 5 else 1, "big")  # v5: [int] flags, v4: [byte]


def _query(text: str, consistency: int = ONE) -> bytes:
    return F.pack_long_string(text) + F.pack_short(consistency) + _flags(0)


def _execute(prepared: tuple[bytes, bytes], values: list[bytes], consistency: int) -> bytes:
    statement_id, metadata_id = prepared
    return (F.pack_short_bytes(statement_id)
            + (F.pack_short_bytes(metadata_id) if PROTOCOL >= 5 else b"")
            + F.pack_short(consistency) + _flags(0x01)
            + F.pack_short(len(values)) + b"".join(F.pack_bytes(v) for v in values))


class Client(asyncio.Protocol):
    """One CQL connection (v4, or v5 with segments once READY): send frames, count answers,
    keep the body of the last ones."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiters: dict[int, asyncio.Future] = {}
        self.on_answer = None
        self.errors = 0
        self.transport = None
        self.segments = None  # a SegmentDecoder once v5 framing is on

    def connection_made(self, transport) -> None:
        self.transport = transport

    def write(self, frame: bytes) -> None:
        self.transport.write(frame if self.segments is None else F.encode_segment(frame, True))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if self.segments is None:
            buf += data
        else:
            self.segments.feed(data)
            while (segment := self.segments.next_segment()) is not None:
                buf += segment.payload
        pos = 0
        while len(buf) - pos >= 9:
            _v, _f, stream, opcode, length = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 9 < length:
                break
            body = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            if opcode == F.Opcode.ERROR:
                self.errors += 1
                if self.errors <= 3:
                    print("error:", body[4:200], file=sys.stderr)
            fut = self.waiters.pop(stream, None)
            if fut is not None:
                fut.set_result((opcode, body))
            elif self.on_answer is not None:
                self.on_answer(self, stream)
        del buf[:pos]

    async def call(self, stream: int, opcode: int, body: bytes) -> tuple[int, bytes]:
        fut = asyncio.get_running_loop().create_future()
        self.waiters[stream] = fut
        self.write(_frame(stream, opcode, body))
        return await fut


async def _start_nodes(root: str) -> list:
    nodes = []
    for i, host in enumerate(HOSTS):
        cfg = NodeConfig(cluster_name="inprocess", listen_address=host, storage_port=INTERNODE_PORT,
                         native_transport_port=CQL_PORT, seeds=[HOSTS[0], HOSTS[1]],
                         data_directory=os.path.join(root, f"n{i}"))
        runtime = NodeRuntime(cfg)
        await runtime.start()
        cql = CqlServer(Processor(RuntimeBackend(runtime)), runtime, host, CQL_PORT)
        await cql.start()
        nodes.append((runtime, cql))
    await _wait_until(lambda: all(len([n for n in HOSTS if rt.node.is_alive(f"{n}:{INTERNODE_PORT}")]) == 3
                                  and len(set(rt.node.ring.owners)) == 3 for rt, _ in nodes),
                      "the three nodes to see each other")
    return nodes


async def _wait_until(predicate, what: str, timeout_s: float = 60.0) -> None:
    """Poll `predicate` on the event loop (the nodes run on it meanwhile) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


async def _connect(host: str) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(Client, host, CQL_PORT)
    opcode, _ = await client.call(0, F.Opcode.STARTUP, F.pack_string_map({"CQL_VERSION": "3.0.0"}))
    assert opcode == F.Opcode.READY, opcode
    if PROTOCOL >= 5:
        client.segments = F.SegmentDecoder()
    return client


async def _prepare(client: Client, text: str) -> tuple[bytes, bytes]:
    """The statement id and (v5) the result metadata id."""
    body = F.pack_long_string(text) + (_flags(0) if PROTOCOL >= 5 else b"")
    opcode, body = await client.call(1, F.Opcode.PREPARE, body)
    assert opcode == F.Opcode.RESULT, body
    (n,) = struct.unpack_from(">H", body, 4)
    if PROTOCOL < 5:
        return body[6:6 + n], b""
    (m,) = struct.unpack_from(">H", body, 6 + n)
    return body[6:6 + n], body[8 + n:8 + n + m]


async def _run(clients: list[Client], frames: list[bytes], ops: int, inflight: int,
               pause_s: float = 0.0) -> tuple[float, float]:
    """Send `ops` frames (cycling through `frames`), `inflight` at a time in all, each slot
    waiting `pause_s` after an answer before its next request; return the process CPU
    seconds spent (user, system)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    state = {"sent": 0, "answered": 0}
    n_frames = len(frames)

    def send(client: Client, stream: int) -> None:
        i = state["sent"]
        state["sent"] = i + 1
        client.write(_with_stream(frames[i % n_frames], stream))

    def on_answer(client: Client, stream: int) -> None:
        state["answered"] += 1
        if state["sent"] < ops:
            if pause_s:
                loop.call_later(pause_s, send, client, stream)
            else:
                send(client, stream)
        elif state["answered"] == ops and not done.done():
            done.set_result(None)

    for c in clients:
        c.on_answer = on_answer
    t0 = os.times()
    for k in range(min(inflight, ops)):
        send(clients[k % len(clients)], 100 + k)
    await done
    t1 = os.times()
    for c in clients:
        c.on_answer = None
    return t1.user - t0.user, t1.system - t0.system


@contextlib.contextmanager
def _measured(args, tag: str):
    """Around a measured phase: cProfile it (--profile: stats to PROFILE.<tag>), and under
    callgrind (--callgrind) count its instructions only, in a dump named <tag>. Yields
    whether a profiler is on (it slows every pass)."""
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    if args.callgrind:  # count instructions of the measured passes only
        os.system(f"callgrind_control --instr=on {os.getpid()} >/dev/null")
    yield profiler is not None
    if args.callgrind:
        os.system(f"callgrind_control --dump={tag} {os.getpid()} >/dev/null")
        os.system(f"callgrind_control --instr=off {os.getpid()} >/dev/null")
    if profiler:
        profiler.disable()
        profiler.dump_stats(f"{args.profile}.{tag}")


async def _count(client: Client, args) -> None:
    """`SELECT count(*)` over the loaded rows at ONE and at QUORUM, one at a time: CPU per row
    counted (the replicas' scans, the coordinator's merge and the CQL layer's paging)."""
    print(f"three nodes in one process, SELECT count(*) over {args.keys:,} rows, best of {args.repeat}")
    for name, cl in (("ONE", ONE), ("QUORUM", QUORUM)):
        query = _query("SELECT count(*) FROM bench.kv", cl)
        best = None
        with _measured(args, f"count-{name}"):
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), os.times()
                opcode, body = await client.call(3, F.Opcode.QUERY, query)
                c1, wall = os.times(), time.perf_counter() - t0
                assert opcode == F.Opcode.RESULT, body[4:200]
                (count,) = struct.unpack(">q", body[-8:])  # one row, one bigint column: the last 8 bytes
                if count != args.keys:
                    raise SystemExit(f"count(*) at {name} gave {count}, not {args.keys}")
                cpu = (c1.user - c0.user) + (c1.system - c0.system)
                if best is None or cpu < best[0]:
                    best = (cpu, wall)
        cpu, wall = best
        print(f"  {name:6s} count(*)     {cpu / args.keys * 1e6:7.2f} µs CPU per row ({wall:.2f} s)")


def _with_stream(frame: bytes, stream: int) -> bytes:
    return frame[:2] + stream.to_bytes(2, "big") + frame[4:]


async def main(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    root = tempfile.mkdtemp(prefix="agora-inprocess-")
    nodes = await _start_nodes(root)
    clients = [await _connect(h) for h in HOSTS]
    c0 = clients[0]
    for stream, text in enumerate((
            "CREATE KEYSPACE IF NOT EXISTS bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}",
            "CREATE TABLE IF NOT EXISTS bench.kv (k bigint PRIMARY KEY, v blob)"
            + (f" WITH speculative_retry = '{args.speculative_retry}'" if args.speculative_retry else "")), start=2):
        opcode, body = await c0.call(stream, F.Opcode.QUERY, _query(text))
        assert opcode == F.Opcode.RESULT, body
    await _wait_until(lambda: all(rt.node.schema.schema.table("bench", "kv") is not None for rt, _ in nodes),
                      "the table to reach every node")
    ins = [await _prepare(c, "INSERT INTO bench.kv (k, v) VALUES (?, ?)") for c in clients][0]
    sel = [await _prepare(c, "SELECT v FROM bench.kv WHERE k = ?") for c in clients][0]
    rng = random.Random(7)
    values = [os.urandom(VALUE_SIZE) for _ in range(16)]
    keys = [rng.randrange(args.keys) for _ in range(4096)]
    writes = [_frame(0, F.Opcode.EXECUTE, _execute(ins, [struct.pack(">q", k), values[k & 15]], QUORUM)) for k in keys]
    reads = [_frame(0, F.Opcode.EXECUTE, _execute(sel, [struct.pack(">q", k)], QUORUM)) for k in keys]
    mixed = [w if rng.random() < 0.5 else r for w, r in zip(writes, reads)]
    load = [_frame(0, F.Opcode.EXECUTE, _execute(ins, [struct.pack(">q", k), values[k & 15]], QUORUM))
            for k in range(args.keys)]
    await _run(clients, load, args.keys, args.inflight)
    gc.freeze()  # as a node does after start-up (agora.runtime.server)
    gc.set_threshold(*GC_THRESHOLDS)
    stats = [rt.node.reads.stats for rt, _ in nodes]
    chosen = [(name, frames) for name, frames in (("write", writes), ("read", reads), ("mixed 50/50", mixed))
              if name.split()[0] in args.workloads]
    if chosen:
        pause = f", a {args.pause_ms:g} ms pause after each answer" if args.pause_ms else ""
        print(f"three nodes in one process, {args.inflight} in flight{pause}, {args.ops} operations per workload")
    for name, frames in chosen:
        await _run(clients, frames, min(args.ops, 2000), args.inflight)  # warm up
        before = {k: sum(s[k] for s in stats) for k in stats[0]}
        best = None
        with _measured(args, name.split()[0]) as profiling:
            for _ in range(1 if profiling else args.repeat):
                t0 = time.perf_counter()
                user, system = await _run(clients, frames, args.ops, args.inflight, args.pause_ms / 1000)
                wall = time.perf_counter() - t0
                if best is None or user + system < sum(best):
                    best = (user, system)
        counts = ", ".join(f"{k.replace('_', ' ')} {sum(s[k] for s in stats) - before[k]}" for k in before)
        user, system = (x / args.ops * 1e6 for x in best)
        print(f"  QUORUM {name:12s} {user + system:7.1f} µs CPU per operation (user {user:.0f}, system "
              f"{system:.0f}; {args.ops / wall:,.0f} ops/s on one core; {counts})")
    if "count" in args.workloads:
        await _count(c0, args)
    errors = sum(c.errors for c in clients)
    if errors:
        print(f"  {errors} error answers", file=sys.stderr)
    for c in clients:
        c.transport.close()
    for runtime, cql in nodes:
        await cql.close()
        await runtime.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--inflight", type=int, default=64,
                    help="requests in flight in all (fewer means fewer requests per event-loop pass, "
                         "and more CPU per request)")
    ap.add_argument("--pause-ms", type=float, default=0.0,
                    help="each slot waits this long after an answer before its next request, so the "
                         "process sleeps between requests as a node does at a low rate")
    ap.add_argument("--workloads", default="write,read,mixed", type=lambda v: v.split(","),
                    help="which of write, read, mixed (the 50/50 mix) and count (SELECT count(*) over the "
                         "--keys rows at ONE and QUORUM, CPU per row) to run (default the first three)")
    ap.add_argument("--repeat", type=int, default=3, help="passes per workload; the least CPU is printed")
    ap.add_argument("--callgrind", action="store_true",
                    help="under `valgrind --tool=callgrind --instr-atstart=no`: instructions of the "
                         "measured passes only, one dump per workload (repeatable, unlike CPU time)")
    ap.add_argument("--speculative-retry", metavar="POLICY",
                    help="the table's speculative_retry (default 99p); NONE makes read counts under "
                         "callgrind repeatable: its slowness turns the latency threshold into noise")
    ap.add_argument("--profile", help="write cProfile stats of each workload to PROFILE.<workload>")
    ap.add_argument("--protocol", type=int, choices=(4, 5), default=4,
                    help="native protocol version; with 5 each request travels in its own segment, "
                         "as the Python driver sends them (the client's CRCs then count too)")
    a = ap.parse_args()
    PROTOCOL = a.protocol
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(a))
