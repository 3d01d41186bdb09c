"""The hot path's stages, timed one by one in this process: what a QUORUM write and a QUORUM
read cost on the CPU piece by piece, without the network, the event loop or other processes
in the way. A tool for speed work: run it before and after a change to a stage.

    python benchmarks/hotpath.py [--n 20000]

Owns nothing the node uses; it drives the node's own code: the CQL envelope decoder and
request parser, the statement processor (over an in-memory backend whose writes do nothing,
so only the statement layer is timed), the internode codec, the RocksDB engine (a fresh
database in a temporary directory) and the digest. Times are wall-clock microseconds per
call, best of three passes, on an otherwise idle machine; a busy machine makes them larger.

Per QUORUM write with RF 3 the cluster runs: one CQL request (decode, processor, encode of
the answer), the mutation encoded once for two remote replicas and decoded by each, three
applies (one local), two acknowledgements encoded and decoded. Per QUORUM read: one CQL
request, one local data read, one remote digest read (request encoded and decoded, a read, a
digest, the answer encoded and decoded) and the coordinator's digest of its own data. The
sums printed at the end are of these stages only; the rest of the measured server CPU per
operation (`agora bench`) is the event loop, the sockets, the coordinators' bookkeeping,
timers and futures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from agora.core import codec, reconcile  # noqa: E402
from agora.core.messages import MutationReq, MutationRsp, ReadReq, ReadRsp  # noqa: E402
from agora.core.schema import types as T  # noqa: E402
from agora.core.schema.model import Schema  # noqa: E402
from agora.core.types import Cell, Partition, ReadCommand, Row  # noqa: E402
from agora.cql.frames_envelope import Envelope, Opcode  # noqa: E402
from agora.cql.frames_requests import decode_request  # noqa: E402
from agora.cql.frames_responses import encode_result  # noqa: E402
from agora.cql.processor import Processor  # noqa: E402
from agora.cql.requests import QueryParams, Session  # noqa: E402
from agora.cql.results import Void  # noqa: E402
from agora.storage.memory import MemoryEngine  # noqa: E402
from agora.storage.rocks import RocksEngine  # noqa: E402

VALUE_SIZE = 100


class _Backend:
    """A one-node backend for the statement layer: writes are dropped (only the statement
    layer is timed), reads come from an in-memory engine."""

    def __init__(self) -> None:
        self.schema = Schema()
        self.engine = MemoryEngine()
        self._ts = 1_000_000

    def timestamp(self) -> int:
        self._ts += 1
        return self._ts

    def now_s(self) -> int:
        return 1_700_000_000

    async def write(self, partitions, cl, write_type="SIMPLE") -> None:
        return None

    async def read(self, cmd, cl):
        stored = self.engine.read(cmd)
        return None if stored is None else reconcile.live_view(stored, self.now_s())

    async def schema_change(self, change) -> str:
        self.schema = change(self.schema, self.timestamp())
        return "version"

    async def wait_schema_agreement(self, timeout_s: float) -> bool:
        return True


def _best_us(fn, items, passes: int = 3) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def _execute_body(prepared, values: list[bytes], version: int = 5) -> bytes:
    """An EXECUTE body as the driver encodes it (cassandra.protocol.ExecuteMessage)."""
    import io

    from cassandra.protocol import ExecuteMessage

    msg = ExecuteMessage(prepared.statement_id, values, consistency_level=4, skip_meta=True,
                         result_metadata_id=prepared.result_metadata_id)
    buf = io.BytesIO()
    msg.send_body(buf, version)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="calls per stage (default 20000)")
    n = ap.parse_args().n
    stages: dict[str, float] = {}
    keys = [b"k%08d" % i for i in range(n)]
    value = os.urandom(VALUE_SIZE)

    # ---- CQL: request decoding, the statement layer, the answer ------------------------
    backend = _Backend()
    processor = Processor(backend)
    session = Session()
    run = asyncio.new_event_loop().run_until_complete
    run(processor.query("CREATE KEYSPACE ks WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}", QueryParams(), session))
    run(processor.query("CREATE TABLE ks.kv (k blob PRIMARY KEY, v blob)", QueryParams(), session))
    insert = run(processor.prepare("INSERT INTO ks.kv (k, v) VALUES (?, ?)", None, session))
    select = run(processor.prepare("SELECT v FROM ks.kv WHERE k = ?", None, session))
    insert_envs = [Envelope(5, 0, 1, Opcode.EXECUTE, _execute_body(insert, [k, value]))
                   for k in keys]
    select_envs = [Envelope(5, 0, 1, Opcode.EXECUTE, _execute_body(select, [k]))
                   for k in keys]
    stages["cql: decode EXECUTE (insert)"] = _best_us(decode_request, insert_envs)
    inserts = [decode_request(e) for e in insert_envs]
    selects = [decode_request(e) for e in select_envs]

    async def execute_all(requests):
        for r in requests:
            await processor.execute(r.statement_id, r.result_metadata_id, r.params, session)

    def per_call(requests):
        t0 = time.perf_counter()
        run(execute_all(requests))
        return (time.perf_counter() - t0) / len(requests) * 1e6

    stages["cql: processor, INSERT"] = min(per_call(inserts) for _ in range(3))
    table = backend.schema.table("ks", "kv")
    for k in keys:  # rows for the SELECTs to find
        p = Partition(table.id.bytes, T.serialize(T.BLOB, k))
        p.rows[b""] = Row((), Cell(1, b""), None, {("v", b""): Cell(1, value)})
        backend.engine.apply([p])
    stages["cql: processor, SELECT (memory read)"] = min(per_call(selects) for _ in range(3))
    stages["cql: encode result (void)"] = _best_us(lambda _: encode_result(5, 1, Void()), keys)

    # ---- internode codec ---------------------------------------------------------------
    tid = os.urandom(16)
    parts = []
    for i, k in enumerate(keys):
        p = Partition(tid, k)
        p.rows[b""] = Row((), Cell(1000 + i, b""), None, {("v", b""): Cell(1000 + i, os.urandom(VALUE_SIZE))})
        parts.append(p)
    mutations = [MutationReq(i, (p,)) for i, p in enumerate(parts)]
    stages["codec: encode mutation"] = _best_us(codec.encode, mutations)
    encoded = [codec.encode(m) for m in mutations]
    stages["codec: decode mutation"] = _best_us(codec.decode, encoded)
    acks = [codec.encode(MutationRsp(i)) for i in range(n)]
    stages["codec: encode ack"] = _best_us(lambda i: codec.encode(MutationRsp(i)), range(n))
    stages["codec: decode ack"] = _best_us(codec.decode, acks)
    commands = [ReadCommand(tid, k) for k in keys]
    read_reqs = [ReadReq(i, c, True) for i, c in enumerate(commands)]
    stages["codec: encode read request"] = _best_us(codec.encode, read_reqs)
    stages["codec: decode read request"] = _best_us(codec.decode, [codec.encode(m) for m in read_reqs])

    # ---- storage and digests -----------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="agora-hotpath-") as d:
        engine = RocksEngine(str(Path(d) / "db"))
        stages["storage: apply, new row"] = _best_us(lambda p: engine.apply([p]), parts, passes=1)
        later = []
        for i, p in enumerate(parts):
            q = Partition(tid, p.key)
            q.rows[b""] = Row((), Cell(10_000_000 + i, b""), None,
                              {("v", b""): Cell(10_000_000 + i, os.urandom(VALUE_SIZE))})
            later.append(q)
        stages["storage: apply, overwrite"] = _best_us(lambda p: engine.apply([p]), later, passes=1)
        stages["storage: read partition"] = _best_us(engine.read, commands)
        stored = [engine.read(c) for c in commands]
        stages["reconcile: digest"] = _best_us(reconcile.digest, stored)
        digests = [ReadRsp(i, None, reconcile.digest(p)) for i, p in enumerate(stored)]
        stages["codec: encode digest answer"] = _best_us(codec.encode, digests)
        stages["codec: decode digest answer"] = _best_us(codec.decode, [codec.encode(m) for m in digests])
        engine.close()

    width = max(map(len, stages))
    print(f"{'stage':<{width}}  µs per call")
    for name, us in stages.items():
        print(f"{name:<{width}}  {us:8.2f}")
    s = stages
    write = (s["cql: decode EXECUTE (insert)"] + s["cql: processor, INSERT"] + s["cql: encode result (void)"]
             + s["codec: encode mutation"] + 2 * s["codec: decode mutation"] + 3 * s["storage: apply, overwrite"]
             + 2 * (s["codec: encode ack"] + s["codec: decode ack"]))
    read = (s["cql: decode EXECUTE (insert)"] + s["cql: processor, SELECT (memory read)"]
            + s["codec: encode read request"] + s["codec: decode read request"] + 2 * s["storage: read partition"]
            + 2 * s["reconcile: digest"] + s["codec: encode digest answer"] + s["codec: decode digest answer"])
    print(f"\nstages of one QUORUM write (RF 3), summed: {write:.0f} µs")
    print(f"stages of one QUORUM read (RF 3), summed:  {read:.0f} µs "
          "(the SELECT's processor time includes an in-memory read)")


if __name__ == "__main__":
    main()
