"""One chaos run against real node processes, start to verdict.

Owns: the run's shape and its cleanup. It creates a fresh cluster (`LocalCluster`, one
process per loopback address of `subnet`), puts one node (seeded choice) under a fake
clock when skew is among the faults, creates the schema through the driver, runs the
driver workload (`agora.chaos.workload`) and the nemesis (`agora.chaos.nemesis`) together
for `duration_s`, heals and repairs (`agora.chaos.heal`), fills in the coordinator-stamped
writes' timestamps from their witness rows, and judges the history with the simulator's
checkers (`agora.sim.checkers.check`), unchanged. Whatever happens, the `finally` removes
every iptables rule, puts the clock back, and kills the cluster (its directory is kept on
a violation or an error, for the node logs, or with `keep`).

Durability: the nodes run the default periodic commit log, but a kill -9 loses nothing a
node acknowledged (the RocksDB WAL is written before the ack; only a power loss, which no
fault here causes, could lose it), so the checkers run with `durable_acks=True`.

Does not know: wording (`agora.chaos.report`) or argument parsing (`agora.cli.chaos`).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agora.chaos import heal
from agora.chaos.nemesis import FAULT_KINDS, Evidence, FaultSpec, Nemesis
from agora.chaos.workload import KV_TABLE, STAMPS_TABLE, DriverWorkload, WorkloadSpec, connect, schema_statements
from agora.core.errors import ConfigError
from agora.runtime.cluster import LocalCluster, parse_dc_layout
from agora.sim.checkers import CheckReport, Replication, check
from agora.sim.history import History

KEYSPACE = "chaos"
DEFAULT_SUBNET = "127.0.90"  # away from `agora up`'s 127.0.0 and the integration tests' subnets
# Node options for chaos clusters: a coordinator gives up on a read before the client does
# (driver timeout 5 s), so the history mostly holds the coordinator's verdict.
NODE_OVERRIDES = {"read_request_timeout": 2_000}
INJECTED_KINDS = ("kill", "pause", "partition", "one-way", "skew")


@dataclass(frozen=True)
class ChaosOptions:
    nodes: int = 3
    rf: int = 3
    duration_s: float = 60.0
    faults: tuple[str, ...] = FAULT_KINDS
    seed: int = 1
    clients: int = 6
    keys: int = 8
    subnet: str = DEFAULT_SUBNET
    directory: str | None = None  # default: a fresh temporary directory
    keep: bool = False  # keep the cluster directory even when the run passes
    history_path: str | None = None
    fault_spec: FaultSpec | None = None  # default: FaultSpec(kinds=faults)

    def __post_init__(self) -> None:
        if not 1 <= self.rf <= self.nodes <= 9:
            raise ConfigError(f"need 1 <= rf <= nodes <= 9, got rf {self.rf} and {self.nodes} nodes")
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        if unknown:
            raise ConfigError(f"unknown fault kind {unknown[0]!r}; known: {', '.join(FAULT_KINDS)}")
        if self.duration_s <= 0:
            raise ConfigError("the duration must be positive")

    def command_line(self) -> str:
        return (f"agora chaos --nodes {self.nodes} --rf {self.rf} --duration {self.duration_s:g} "
                f"--faults {','.join(self.faults) or 'none'} --seed {self.seed} --clients {self.clients} "
                f"--keys {self.keys}")


@dataclass
class ChaosResult:
    options: ChaosOptions
    history: History = field(default_factory=History)
    checks: CheckReport | None = None
    anomalies: list[str] = field(default_factory=list)  # witness rows that contradict an outcome
    evidence: Evidence = field(default_factory=Evidence)
    faults: Counter = field(default_factory=Counter)
    repairs: list[dict] = field(default_factory=list)
    skew_node: str | None = None
    wall_start_us: int = 0  # the wall clock (epoch microseconds) at history time 0
    elapsed_s: float = 0.0
    directory: str = ""
    final: dict = field(default_factory=dict)  # key -> (value, writetime) or None after healing
    replicas: dict = field(default_factory=dict)  # key -> node -> what it holds after healing
    rules_left: list[str] = field(default_factory=list)  # our iptables rules after cleanup (must be none)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.checks is not None and self.checks.ok and not self.anomalies


class _Run:
    def __init__(self, options: ChaosOptions) -> None:
        self.o = options
        self.result = ChaosResult(options)
        self.t0 = time.monotonic()
        self.result.wall_start_us = time.time_ns() // 1000
        self.rng = random.Random(options.seed)
        self.firewall = None
        self.clock = None
        self.driver = None
        self.session = None
        self.nemesis: Nemesis | None = None
        self.workload: DriverWorkload | None = None
        self.cluster: LocalCluster | None = None  # set as soon as created, so cleanup kills it

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    # ---- setup ---------------------------------------------------------------------------------

    def setup(self) -> LocalCluster:
        from agora.chaos.clock import FakeClock
        from agora.chaos.firewall import Firewall

        o = self.o
        base = Path(o.directory) if o.directory else Path(tempfile.mkdtemp(prefix="agora-chaos-"))
        self.result.directory = str(base)
        cluster = LocalCluster(base / "cluster")
        if cluster.exists:
            raise ConfigError(f"{cluster.dir} already holds a cluster; chaos runs start a fresh one")
        cluster.create(parse_dc_layout(o.nodes, None, 1), dict(NODE_OVERRIDES), subnet=o.subnet)
        self.cluster = cluster
        if "partition" in o.faults:
            self.firewall = Firewall()
            self.firewall.remove_stale()
        if "skew" in o.faults:
            self.clock = FakeClock(base / "clock-offset")
            self.result.skew_node = self.rng.choice([n.name for n in cluster.nodes])
            cluster.node_env[self.result.skew_node] = self.clock.env()
        cluster.start()
        self.driver, self.session = connect([n.address for n in cluster.nodes])
        for stmt in schema_statements(KEYSPACE, o.rf):
            self.session.execute(stmt)
        self.driver.refresh_schema_metadata()
        return cluster

    # ---- the run ---------------------------------------------------------------------------------

    def run_faults(self, cluster: LocalCluster) -> None:
        o, r = self.o, self.result
        by_address = {n.address: n.node_id for n in cluster.nodes}
        spec = WorkloadSpec(clients=o.clients, keys=o.keys)
        self.workload = DriverWorkload(self.session, KEYSPACE, spec, r.history, self.rng.getrandbits(64),
                                       self.now_ms, lambda host: by_address[host.address])
        self.nemesis = Nemesis(cluster, r.history, self.now_ms, self.rng.getrandbits(64),
                               o.fault_spec or FaultSpec(kinds=o.faults), self.firewall, self.clock, r.skew_node)
        r.evidence = self.nemesis.evidence
        deadline = time.monotonic() + o.duration_s
        self.workload.start()
        self.nemesis.start(deadline)
        time.sleep(o.duration_s)  # the run's length is the point: nothing to poll
        self.nemesis.first_cycle_done.wait()  # every fault kind asked for, even past the duration
        self.nemesis.stop()
        self.workload.stop()
        if self.nemesis.error is not None:
            raise RuntimeError(f"the nemesis failed: {self.nemesis.error!r}") from self.nemesis.error
        if self.workload.errors:
            raise RuntimeError(f"a client failed: {self.workload.errors[0]!r}") from self.workload.errors[0]

    def heal_and_check(self, cluster: LocalCluster) -> None:
        r = self.result
        r.history.fault(self.now_ms(), "heal-all", "every fault undone; hints, then repair on every node")
        heal.heal_everything(cluster, self.firewall, self.clock)
        heal.settle(cluster)
        r.repairs = heal.repair_every_node(cluster, KEYSPACE)
        r.replicas, r.final = heal.snapshot(cluster, self.session, KEYSPACE, KV_TABLE, self.workload.keys)
        r.anomalies = self.workload.learn_stamps(heal.read_stamps(self.session, KEYSPACE, STAMPS_TABLE))
        r.checks = check(r.history, Replication(self.o.rf), durable_acks=True, final=r.final,
                         replicas=r.replicas)

    def cleanup(self, cluster: LocalCluster | None) -> None:
        r = self.result
        if self.nemesis is not None:
            try:
                self.nemesis.undo_all()
            except Exception as exc:  # the cluster is killed below anyway
                r.error = r.error or f"undoing the last fault failed: {exc!r}"
        if self.firewall is not None:
            self.firewall.heal()
            r.rules_left = self.firewall.listed()
        if self.clock is not None:
            self.clock.set_offset(0.0)
        if self.driver is not None:
            self.driver.shutdown()
        if cluster is not None:
            for n in cluster.nodes:  # a stopped process ignores SIGKILL until resumed
                if cluster.is_running(n):
                    cluster.resume(n.name)
            cluster.down(kill=True)


def run(options: ChaosOptions) -> ChaosResult:
    """One chaos run (module docstring). Errors of the run itself (a node that never came
    back, a repair that never finished) end up in `result.error`, not raised."""
    state = _Run(options)
    r = state.result
    try:
        cluster = state.setup()
        state.run_faults(cluster)
        state.heal_and_check(cluster)
    except Exception as exc:
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        state.cleanup(state.cluster)
        r.faults = Counter(f.kind for f in r.history.faults if f.kind in INJECTED_KINDS)
        r.elapsed_s = time.monotonic() - state.t0
        if options.history_path:
            with open(options.history_path, "w") as f:
                for line in r.history.to_jsonl():
                    f.write(line + "\n")
        if r.directory and not options.directory and r.ok and not options.keep:
            shutil.rmtree(r.directory, ignore_errors=True)
    return r
