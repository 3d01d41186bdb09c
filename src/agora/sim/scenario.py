"""Scenario scripts: the protocol's behaviour step by step, in a readable script run on the
simulator, with the expected output written under each step (the data-driven tests of
etcd-io/raft's `testdata/*.txt`, DESIGN.md section 6).

A script is a sequence of blocks separated by blank lines. Lines starting with `#` are
commentary and are kept as they are. A block is one command line, a `----` line, and the
output the command is expected to print:

    write k=a v=apple cl=QUORUM via=1
    ----
    ok

`run_script(text)` runs every command on a fresh simulated cluster (created by the
`cluster` command) and returns the script with each block's output replaced by what the
command printed now: a script passes when that equals the text it came from, and a test
can rewrite the file from it when behaviour changes on purpose. Nodes are numbered from 1
in scripts (`via=1` is 127.0.0.1). The table is `ks.kv (k text PRIMARY KEY, v text)`.

Commands (keyword arguments as `name=value`; node lists as `1 2 3` or `1,2,3`):

    cluster nodes=3 [dcs=1] [rf=3] [commitlog=periodic|batch] [sync_period=10s] [hints=on|off] [seed=1]
    write k=K v=V [cl=QUORUM] [via=1] [ts=MICROS]
    delete k=K [cl=QUORUM] [via=1] [ts=MICROS]
    read k=K [cl=QUORUM] [via=1] [writetime]
    disk k=K [writetime]             what each node's own disk holds (no coordinator, no repair)
    partition 1 | 2 3                both ways;  `partition 1 > 2 3`: only 1's messages to 2, 3 drop
    isolate N / cut DC / heal
    crash N [power-loss] / restart N / stop N / pause N / resume N
    skew N offset=MS [drift=PPM]     N's clock steps to MS off true time and drifts at PPM
    run MS                           let MS of virtual time pass
    wait-up                          until every running node sees every other
    wait-down N [by=1,2]             until the observers' failure detectors convict N
    repairs                          read repairs coordinated so far, per node

Does not know: what is right. The expected output in the file is the claim; the test holds
the code to it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from agora.core.errors import AgoraError, ReadTimeout, Unavailable, WriteTimeout
from agora.core.types import ConsistencyLevel
from agora.sim.cluster import SimCluster
from agora.sim.results import ConnectionLost, SimFuture

SEPARATOR = "----"
REQUEST_WAIT_MS = 30_000  # a command's request gets this long to finish (timeouts are 2..5 s)
CONVERGE_WAIT_MS = 60_000  # wait-up and wait-down give up after this long


class ScriptError(Exception):
    """The script itself is wrong (unknown command, missing argument): not a failed claim."""


def _args(words: list[str]) -> tuple[list[str], dict[str, str]]:
    plain, named = [], {}
    for w in words:
        name, sep, value = w.partition("=")
        if sep:
            named[name] = value
        else:
            plain.append(w)
    return plain, named


def _nodes(words: list[str]) -> list[int]:
    out = []
    for w in words:
        out += [int(x) - 1 for x in w.split(",") if x]
    return out


def describe_error(err: BaseException) -> str:
    """How a failed request prints: the error's name and what it counted."""
    if isinstance(err, Unavailable):
        return f"Unavailable: {err.consistency_name} needs {err.required} replicas, {err.alive} alive"
    if isinstance(err, WriteTimeout):
        return f"WriteTimeout: {err.received} of {err.required} acknowledged"
    if isinstance(err, ReadTimeout):
        return f"ReadTimeout: {err.received} of {err.required} answered"
    if isinstance(err, ConnectionLost):
        return "ConnectionLost"
    return f"{type(err).__name__}: {err}"


class Scenario:
    """The state of one script: its cluster, and one method per command."""

    def __init__(self) -> None:
        self.cluster: SimCluster | None = None

    @property
    def c(self) -> SimCluster:
        if self.cluster is None:
            raise ScriptError("no cluster yet: start the script with `cluster nodes=N`")
        return self.cluster

    def run(self, line: str) -> list[str]:
        words = shlex.split(line)
        handler: Callable | None = getattr(self, "cmd_" + words[0].replace("-", "_"), None)
        if handler is None:
            raise ScriptError(f"unknown command {words[0]!r}")
        plain, named = _args(words[1:])
        out = handler(plain, named)
        return out if isinstance(out, list) else [out]

    # ---- the cluster ----------------------------------------------------------------------

    def cmd_cluster(self, plain, named) -> str:
        n, dcs, rf = int(named.get("nodes", 3)), int(named.get("dcs", 1)), int(named.get("rf", 3))
        layout = [(f"dc{d + 1}", f"r{i + 1}") for d in range(dcs) for i in range(n // dcs)]
        if len(layout) != n:
            raise ScriptError("nodes must divide evenly among datacenters")
        config = {"commitlog_sync": named.get("commitlog", "periodic"),
                  "commitlog_sync_period": named.get("sync_period", "10s"),
                  "hinted_handoff_enabled": named.get("hints", "on") == "on"}
        self.cluster = c = SimCluster(int(named.get("seed", 1)), layout, config=config)
        if dcs == 1:
            replication = {"class": "SimpleStrategy", "replication_factor": rf}
            shown = f"SimpleStrategy RF {rf}"
        else:
            replication = {"class": "NetworkTopologyStrategy", **{f"dc{d + 1}": rf for d in range(dcs)}}
            shown = "NetworkTopologyStrategy " + " ".join(f"dc{d + 1}:{rf}" for d in range(dcs))
        c.wait_until_up(CONVERGE_WAIT_MS)
        c.wait(c.create_keyspace("ks", replication, via=0))
        c.run_until(c.schema_agreed, CONVERGE_WAIT_MS)
        c.wait(c.create_table("ks", "kv", [("k", "text"), ("v", "text")], ["k"], via=0))
        c.run_until(c.schema_agreed, CONVERGE_WAIT_MS)
        where = ", ".join(f"{dc}: {' '.join(str(i + 1) for i, (d, _) in enumerate(layout) if d == dc)}"
                          for dc in c.datacenters())
        return f"{n} nodes up ({where}); ks.kv with {shown}; commitlog {config['commitlog_sync']}"

    # ---- requests -------------------------------------------------------------------------

    def _request(self, fut: SimFuture) -> tuple[bool, object]:
        self.c.run_until(lambda: fut.done, REQUEST_WAIT_MS)
        if not fut.done:
            return False, "no answer"
        if fut.error is not None:
            return False, describe_error(fut.error)
        return True, fut.result()

    def _via(self, named) -> int:
        return int(named.get("via", 1)) - 1

    def _cl(self, named) -> str:
        cl = named.get("cl", "QUORUM").upper()
        if cl not in ConsistencyLevel.__members__:
            raise ScriptError(f"unknown consistency level {cl}")
        return cl

    def cmd_write(self, plain, named) -> str:
        ts = int(named["ts"]) if "ts" in named else None
        fut = self.c.insert(self._via(named), "ks", "kv", {"k": named["k"], "v": named["v"]},
                            self._cl(named), timestamp=ts)
        ok, result = self._request(fut)
        return "ok" if ok else str(result)

    def cmd_delete(self, plain, named) -> str:
        ts = int(named["ts"]) if "ts" in named else None
        fut = self.c.delete(self._via(named), "ks", "kv", {"k": named["k"]}, self._cl(named), timestamp=ts)
        ok, result = self._request(fut)
        return "ok" if ok else str(result)

    def cmd_read(self, plain, named) -> str:
        key = named["k"]
        fut = self.c.select(self._via(named), "ks", "kv", {"k": key}, self._cl(named), writetime=True)
        ok, result = self._request(fut)
        if not ok:
            return str(result)
        return f"{key}={self._shown(result, 'writetime' in plain)}"

    @staticmethod
    def _shown(rows: list[dict], writetime: bool) -> str:
        if not rows:
            return "(none)"
        row = rows[0]
        return f"{row['v']} writetime={row['writetime(v)']}" if writetime else str(row["v"])

    def cmd_disk(self, plain, named) -> str:
        key = named["k"]
        c = self.c
        return "  ".join(f"{i + 1}:{self._shown(c.local_rows(i, 'ks', 'kv', {'k': key}, True), 'writetime' in plain)}"
                         for i in range(len(c.hosts)))

    # ---- faults ---------------------------------------------------------------------------

    def cmd_partition(self, plain, named) -> str:
        sep = "|" if "|" in plain else ">" if ">" in plain else None
        if sep is None:
            raise ScriptError("partition needs `A | B` (both ways) or `A > B` (one way)")
        at = plain.index(sep)
        self.c.partition(_nodes(plain[:at]), _nodes(plain[at + 1:]), one_way=sep == ">")
        return "ok"

    def cmd_isolate(self, plain, named) -> str:
        self.c.isolate(_nodes(plain)[0])
        return "ok"

    def cmd_cut(self, plain, named) -> str:
        self.c.cut_dc(plain[0])
        return "ok"

    def cmd_heal(self, plain, named) -> str:
        self.c.heal()
        return "ok"

    def cmd_crash(self, plain, named) -> str:
        (node,) = _nodes([w for w in plain if w != "power-loss"])
        self.c.crash(node, lose_unsynced="power-loss" in plain)
        return "ok"

    def cmd_restart(self, plain, named) -> str:
        self.c.restart(_nodes(plain)[0])
        return "ok"

    def cmd_stop(self, plain, named) -> str:
        self.c.stop(_nodes(plain)[0])
        return "ok"

    def cmd_pause(self, plain, named) -> str:
        self.c.pause(_nodes(plain)[0])
        return "ok"

    def cmd_resume(self, plain, named) -> str:
        self.c.resume(_nodes(plain)[0])
        return "ok"

    def cmd_skew(self, plain, named) -> str:
        drift = int(named["drift"]) if "drift" in named else None
        self.c.set_clock(_nodes(plain)[0], int(named.get("offset", 0)), drift)
        return "ok"

    # ---- time -----------------------------------------------------------------------------

    def cmd_run(self, plain, named) -> str:
        self.c.run_for(int(plain[0]))
        return "ok"

    def cmd_wait_up(self, plain, named) -> str:
        c = self.c
        return "ok" if c.run_until(c.all_up, CONVERGE_WAIT_MS) else "not converged"

    def cmd_wait_down(self, plain, named) -> str:
        c = self.c
        targets = _nodes(plain)
        observers = _nodes([named["by"]]) if "by" in named else \
            [i for i in range(len(c.hosts)) if i not in targets and c.host(i).up]
        done = c.run_until(lambda: all(not c.sees(o, t) for o in observers for t in targets), CONVERGE_WAIT_MS)
        return "ok" if done else "still seen alive"

    def cmd_repairs(self, plain, named) -> str:
        return "  ".join(f"{i + 1}:{h.coordinator_stats().get('read_repairs', 0)}"
                         for i, h in enumerate(self.c.hosts))


def run_script(text: str) -> str:
    """Run every block of `text` and return the script with the outputs of now."""
    scenario = Scenario()
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            out.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ScriptError(f"line {i + 1}: `{line}` must be followed by a `{SEPARATOR}` line")
        try:
            result = scenario.run(line)
        except (AgoraError, KeyError, ValueError, IndexError) as exc:
            result = [f"error: {exc!r}"]
        out += [line, SEPARATOR, *result]
        i += 2
        while i < len(lines) and lines[i].strip():  # the old expected output
            i += 1
    return "\n".join(out) + "\n"
