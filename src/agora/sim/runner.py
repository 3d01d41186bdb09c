"""One simulated run from one seed, end to end, and the swarm of many: build a cluster,
run a workload while the nemesis injects faults, heal and converge, check the history,
and report (issue 5, items 2 and 3).

Owns: `SimOptions` (everything a run depends on besides its seed, each expressible on
the `agora sim` command line, so `command_line()` reproduces any run exactly), the
topology and replication derived from them, the run itself (`run`), its `RunReport`,
and `swarm_options`: the randomized options of a swarm member, derived from its seed.

Randomness: the workload, the nemesis and the swarm's choices each draw from their own
`random.Random` named after the seed ("agora-sim/<seed>/workload", ...), like the
cluster's own sources, so enabling a fault kind does not change which keys the clients
pick.

Does not know: wall-clock time (the caller measures ops per second: the simulator must
not read a clock) or how to print (the report gives lines; `agora.cli.sim` prints them).
"""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from agora.core.errors import AgoraError
from agora.sim.checkers import CheckReport, Replication, check
from agora.sim.cluster import SimCluster
from agora.sim.converge import (CONVERGENCE, ConvergenceFailed, Keys, Step, converge, final_values,
                                replica_digests)
from agora.sim.history import History
from agora.sim.nemesis import FAULT_KINDS, FaultSpec, Nemesis
from agora.sim.report import summary_lines, violation_lines
from agora.sim.workload import WorkloadSpec, Workload

MIN_NODES, MAX_NODES = 3, 9
MAX_DCS = 3
DEFAULT_RF = 3  # per datacenter, as most deployments
# Virtual time a workload may take per operation before the run is declared stuck: far
# beyond what timeouts allow (each client operation ends within the client timeout).
MAX_VIRTUAL_MS_PER_OP = 2_000
UP_WAIT_MS = 60_000  # for the cluster to form and agree on the schema
# The run checks whether the workload has finished once per this much virtual time (a
# check after every event costs more than the events)
WORKLOAD_SLICE_MS = 100
COMMITLOG_SYNC_PERIOD = "2s"  # periodic mode: short, so power loss and syncs both happen in short runs
# Runs re-encode and compare every n-th delivered message (`Network.check_roundtrip`): the
# codec's own property tests cover round trips; here a sample keeps watch at 1/8 the cost.
ROUNDTRIP_CHECK_EVERY = 8
# The cyclic garbage collector's first-generation threshold during a run. A run allocates
# a great many short-lived objects (messages, effects, events) that reference counting
# frees; collecting every 700 allocations (Python's default) cost ~8% of a run.
GC_GEN0_THRESHOLD = 50_000
SWARM_RUN_MS = 20_000  # a swarm member's workload lasts about this long in virtual time
MIN_SWARM_THINK_MS, MAX_SWARM_THINK_MS = 20, 2_000
SWARM_SCANS = 0.1  # swarms scan more than single runs: coverage over speed


@dataclass(frozen=True)
class SimOptions:
    seed: int = 1
    nodes: int = 5
    dcs: int = 1
    ops: int = 1_000
    faults: tuple[str, ...] = ("partition", "crash", "skew", "loss")
    rf: int = DEFAULT_RF  # replicas per datacenter (capped by the nodes there)
    commitlog: str = "periodic"  # "periodic" | "batch"
    timestamps: str = "coordinator"  # "coordinator" | "client"
    keys: int = 8
    clients: int = 8
    think_ms: int = 60  # a client waits 0..think_ms between an answer and its next request
    hints: bool = True  # hinted handoff on (off: only read repair heals replicas)
    scans: float = 0.02  # the share of reads that scan the whole table (each costs a read per range)
    converge: str = "read-repair"  # how the run is brought to rest: "read-repair" | "repair"
    read_levels: tuple[str, ...] | None = None  # None: every level that makes sense here
    write_levels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        assert 1 <= self.dcs <= MAX_DCS, f"--dcs must be 1..{MAX_DCS}"
        assert max(MIN_NODES, self.dcs) <= self.nodes <= MAX_NODES, f"--nodes must be {MIN_NODES}..{MAX_NODES}"
        assert self.commitlog in ("periodic", "batch") and self.timestamps in ("coordinator", "client")
        assert self.rf >= 1 and self.ops >= 0 and self.keys >= 1 and self.clients >= 1 and self.think_ms >= 0
        assert 0.0 <= self.scans <= 1.0, "--scans is a share of the reads, 0..1"
        assert self.converge in CONVERGENCE, f"converge: one of {', '.join(CONVERGENCE)}"
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        assert not unknown, f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}"

    # ---- topology -------------------------------------------------------------------

    def layout(self) -> list[tuple[str, str]]:
        """Nodes split over dc1..dcN as evenly as possible (the first ones get one more),
        racks r1..r3 in turn within each."""
        out = []
        for d in range(self.dcs):
            count = self.nodes // self.dcs + (1 if d < self.nodes % self.dcs else 0)
            out += [(f"dc{d + 1}", f"r{i % 3 + 1}") for i in range(count)]
        return out

    def replication(self) -> dict:
        per_dc = Counter(dc for dc, _ in self.layout())
        if self.dcs == 1:
            return {"class": "SimpleStrategy", "replication_factor": min(self.rf, self.nodes)}
        return {"class": "NetworkTopologyStrategy", **{dc: min(self.rf, n) for dc, n in sorted(per_dc.items())}}

    def levels(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(read levels, write levels): the given ones, or all that can be met here (and
        ANY for writes, when hinted handoff can acknowledge it)."""
        rep = Replication.from_options(self.replication())
        usable = ["ONE"] + [name for name, n in (("TWO", 2), ("THREE", 3)) if rep.rf >= n] + ["QUORUM", "ALL"]
        if self.dcs > 1:
            usable += ["LOCAL_ONE", "LOCAL_QUORUM", "EACH_QUORUM"]
        writes = usable + (["ANY"] if self.hints else [])
        return tuple(self.read_levels or usable), tuple(self.write_levels or writes)

    # ---- the parts ------------------------------------------------------------------

    def workload_spec(self) -> WorkloadSpec:
        reads, writes = self.levels()
        skew = 50 if self.timestamps == "client" else 0  # client clocks disagree a little
        return WorkloadSpec(ops=self.ops, keys=self.keys, clients=self.clients, read_levels=reads,
                            write_levels=writes, timestamps=self.timestamps, client_skew_ms=skew,
                            think_ms=(0, self.think_ms), scan_fraction=self.scans)

    def fault_spec(self) -> FaultSpec:
        return FaultSpec(kinds=tuple(self.faults), max_down=max(1, (self.nodes - 1) // 2))

    def command_line(self) -> str:
        """The `agora sim` arguments that reproduce this run."""
        parts = [f"--seed {self.seed}", f"--nodes {self.nodes}", f"--dcs {self.dcs}", f"--ops {self.ops}",
                 f"--faults {','.join(self.faults) or 'none'}", f"--rf {self.rf}",
                 f"--commitlog {self.commitlog}", f"--timestamps {self.timestamps}",
                 f"--keys {self.keys}", f"--clients {self.clients}", f"--think-ms {self.think_ms}"]
        if not self.hints:
            parts.append("--no-hints")
        if self.scans != SimOptions.scans:
            parts.append(f"--scans {self.scans}")
        if self.converge != "read-repair":
            parts.append(f"--converge {self.converge}")
        if self.read_levels:
            parts.append(f"--read-levels {','.join(self.read_levels)}")
        if self.write_levels:
            parts.append(f"--write-levels {','.join(self.write_levels)}")
        return "agora sim " + " ".join(parts)


@dataclass
class RunReport:
    options: SimOptions
    history: History
    checks: CheckReport
    faults: Counter = field(default_factory=Counter)
    virtual_ms: int = 0
    read_repairs: int = 0
    trace_hash: str = ""
    error: str | None = None  # the run itself failed (convergence, a simulator assertion)

    @property
    def ok(self) -> bool:
        return self.error is None and self.checks.ok

    client_ops: int = 0  # operations the clients issued (a scan is one, with a record per key)

    @property
    def ops(self) -> int:
        return self.client_ops

    def summary_lines(self) -> list[str]:
        return summary_lines(self)

    def violation_lines(self) -> list[str]:
        return violation_lines(self)


def build_cluster(options: SimOptions, keep_trace: bool = False) -> SimCluster:
    """A formed cluster with keyspace ks (the options' replication) and table
    kv (k text PRIMARY KEY, v text), schema agreed everywhere."""
    config = {"commitlog_sync": options.commitlog, "commitlog_sync_period": COMMITLOG_SYNC_PERIOD,
              "hinted_handoff_enabled": options.hints}
    cluster = SimCluster(options.seed, options.layout(), config=config, keep_trace=keep_trace,
                         network={"check_roundtrip": ROUNDTRIP_CHECK_EVERY})
    cluster.wait_until_up(UP_WAIT_MS)
    cluster.wait(cluster.create_keyspace("ks", options.replication(), via=0))
    assert cluster.run_until(cluster.schema_agreed, UP_WAIT_MS), "no schema agreement"
    cluster.wait(cluster.create_table("ks", "kv", [("k", "text"), ("v", "text")], ["k"], via=0))
    assert cluster.run_until(cluster.schema_agreed, UP_WAIT_MS), "no schema agreement"
    return cluster


@contextmanager
def _fewer_collections():
    old = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def run(options: SimOptions, steps: Sequence[Step] | None = None, keep_trace: bool = False) -> RunReport:
    """Run `options` from its seed and check it, ending with the convergence `steps`
    (default: the ones `options.converge` names). Never raises for what the run finds: a
    violation or a failed convergence is in the report."""
    steps = CONVERGENCE[options.converge] if steps is None else steps
    with _fewer_collections():
        return _run(options, steps, keep_trace)


def _run(options: SimOptions, steps: Sequence[Step], keep_trace: bool) -> RunReport:
    cluster = build_cluster(options, keep_trace)
    label = cluster.seed_label
    history = History()
    workload = Workload(cluster, options.workload_spec(), history, random.Random(f"{label}/workload"))
    keys = Keys(cluster, "ks", "kv", workload.keys)
    nemesis = Nemesis(cluster, options.fault_spec(), history, random.Random(f"{label}/nemesis"),
                      keys.commands)
    report = RunReport(options, history, CheckReport())
    final = replicas = None
    try:
        workload.start()
        nemesis.start()
        deadline = cluster.now_ms + max(60_000, options.ops * MAX_VIRTUAL_MS_PER_OP)
        while not workload.done and cluster.now_ms < deadline:  # checked per slice, not per event
            cluster.run_for(WORKLOAD_SLICE_MS)
        nemesis.stop()
        if not workload.done:
            raise ConvergenceFailed(f"the workload did not finish by {cluster.now_ms} ms")
        converge(cluster, keys, steps)
        replicas = replica_digests(cluster, keys)
        final = final_values(cluster, keys)
    except (AssertionError, AgoraError) as exc:
        # a failed convergence, or an assertion of the protocol or the simulator: a finding
        # of this seed like a violation, reported with its replay
        report.error = f"at {cluster.now_ms} ms: {type(exc).__name__}: {exc}"
    report.faults = nemesis.injected
    report.client_ops = workload.issued
    rep = Replication.from_options(options.replication())
    report.checks = check(history, rep, durable_acks=options.commitlog == "batch",
                          final=final, replicas=replicas)
    report.virtual_ms = cluster.now_ms
    report.read_repairs = sum(h.coordinator_stats().get("read_repairs", 0) for h in cluster.hosts)
    report.trace_hash = cluster.trace_hash()
    return report


# ---- the swarm ------------------------------------------------------------------------


def swarm_options(seed: int, ops: int, faults: Sequence[str] | None = None,
                  converge: str | None = None) -> SimOptions:
    """A swarm member's options, drawn from its seed: topology, replication factor,
    durability mode, timestamps, hints, key and client counts, the fault mix (a random
    non-empty subset of every kind, or exactly `faults` when given) and the convergence
    (either, or `converge` when given)."""
    rng = random.Random(f"agora-sim/{seed}/swarm")
    dcs = rng.choice((1, 1, 2, 3))
    nodes = rng.randint(max(3, dcs), MAX_NODES)
    kinds = tuple(faults) if faults is not None else \
        tuple(k for k in FAULT_KINDS if rng.random() < 0.6) or (rng.choice(FAULT_KINDS),)
    clients = rng.randint(2, 12)
    # Spread the operations over SWARM_RUN_MS of virtual time, so faults come and go while
    # they run (a client spends think_ms / 2 thinking on average).
    think = min(MAX_SWARM_THINK_MS, max(MIN_SWARM_THINK_MS, 2 * SWARM_RUN_MS * clients // max(1, ops)))
    return SimOptions(seed=seed, nodes=nodes, dcs=dcs, ops=ops, faults=kinds,
                      rf=rng.choice((2, 3, 3)), commitlog=rng.choice(("periodic", "batch")),
                      timestamps=rng.choice(("coordinator", "client")),
                      keys=rng.randint(2, 12), clients=clients, think_ms=think, hints=rng.random() < 0.7,
                      converge=converge or rng.choice(sorted(CONVERGENCE)), scans=SWARM_SCANS)
