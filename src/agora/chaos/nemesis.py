"""The nemesis on real node processes: a seeded schedule of faults that come and go while
the driver workload runs (the sim's `agora.sim.nemesis`, acting on processes, packets and
clocks instead of simulator objects).

Owns: choosing, injecting and undoing faults, recording each in the run's `History`
(injections and undoings both), and the evidence that each really happened (pids before
and after a kill, the iptables rules present during a partition, the skew windows).

Kinds (`FAULT_KINDS`):

- `kill`: SIGKILL one node (`kill -9`: what reached its RocksDB WAL survives), restart it
  after the hold, and wait until the cluster sees it up again.
- `pause`: SIGSTOP one node, SIGCONT after the hold (its sockets stay open; peers and
  clients time out on it, then the failure detector convicts it).
- `partition`: iptables rules between node addresses (`agora.chaos.firewall`): one node
  cut from the others both ways, or a one-way cut (one node's packets to the others are
  dropped while theirs still arrive, or the reverse).
- `skew`: step the wall clock of the node running under libfaketime
  (`agora.chaos.clock`) by `skew_s` seconds, ahead or behind, and back to 0 after the
  hold. Its coordinator-stamped writes then carry skewed timestamps.

Faults run one at a time: each kind once in a seeded order (always, even past the
deadline, so a run has every fault it asked for), then again in new orders while time
remains; an episode is a quiet gap, the injection, a hold and the undoing; `stop()` ends
the schedule after the episode in progress. At most
one node is down or cut off at once, so every quorum stays possible most of the time and
the history shows successes as well as failures. `undo_all()` undoes whatever is in
effect (the run calls it, in a `finally`, before healing).

Does not know: the workload or what is correct.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agora.chaos.clock import FakeClock
from agora.chaos.firewall import Firewall
from agora.runtime.cluster import LocalCluster
from agora.sim.history import History

FAULT_KINDS = ("kill", "pause", "partition", "skew")
RESTART_TIMEOUT_S = 60.0  # a restarted node rejoins (a busy 2-core machine is slow to start Python)


@dataclass(frozen=True)
class FaultSpec:
    kinds: tuple[str, ...] = FAULT_KINDS
    gap_s: tuple[float, float] = (1.0, 2.0)  # quiet time before each injection
    hold_s: tuple[float, float] = (3.0, 5.0)  # how long a fault stays: timeouts, then convictions
    skew_s: tuple[float, float] = (6.0, 12.0)  # the size of a clock step, either way
    skew_ahead: float = 0.75  # the share of clock steps that go ahead (ahead makes later writes lose)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        assert not unknown, f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}"
        assert 0 <= self.gap_s[0] <= self.gap_s[1] and 0 < self.hold_s[0] <= self.hold_s[1]
        assert 0 < self.skew_s[0] <= self.skew_s[1] and 0 <= self.skew_ahead <= 1


@dataclass
class Evidence:
    """What the faults left behind, for tests and the report."""

    kills: list[tuple[str, int, int]] = field(default_factory=list)  # (node, pid killed, pid after restart)
    pauses: list[tuple[str, int]] = field(default_factory=list)  # (node, pid stopped)
    partition_rules: list[list[str]] = field(default_factory=list)  # the iptables rules listed during each cut
    skews: list[tuple[int, int, float]] = field(default_factory=list)  # (from ms, to ms, offset s)
    windows: list[tuple[str, int, int, str]] = field(default_factory=list)  # (kind, injected ms, undone ms, node)


class Nemesis:
    def __init__(self, cluster: LocalCluster, history: History, now_ms: Callable[[], int], seed: int,
                 spec: FaultSpec, firewall: Firewall | None, clock: FakeClock | None, skew_node: str | None,
                 lock: threading.Lock | None = None) -> None:
        assert "partition" not in spec.kinds or firewall is not None
        assert "skew" not in spec.kinds or (clock is not None and skew_node is not None)
        self.cluster = cluster
        self.history = history
        self.now_ms = now_ms
        self.rng = random.Random(seed)
        self.spec = spec
        self.firewall = firewall
        self.clock = clock
        self.skew_node = skew_node
        self.lock = lock or threading.Lock()  # the history's lock, shared with the workload
        self.evidence = Evidence()
        self._stop = threading.Event()
        self.first_cycle_done = threading.Event()  # every kind has been injected and undone once
        self._thread: threading.Thread | None = None
        self._undo: tuple[str, Callable[[], None]] | None = None  # the fault in effect
        self.error: BaseException | None = None

    # ---- the schedule ------------------------------------------------------------------------

    def start(self, deadline: float) -> None:
        """Run episodes in a thread until `deadline` (time.monotonic()) leaves no room for one."""
        self._thread = threading.Thread(target=self._run, args=(deadline,), name="chaos-nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the schedule after the episode in progress (its fault undone)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(RESTART_TIMEOUT_S * 2)
            assert not self._thread.is_alive(), "the nemesis did not finish"

    def _run(self, deadline: float) -> None:
        try:
            first = True
            while not self._stop.is_set():
                for kind in self.rng.sample(self.spec.kinds, len(self.spec.kinds)):
                    gap, hold = self.rng.uniform(*self.spec.gap_s), self.rng.uniform(*self.spec.hold_s)
                    if not first and (self._stop.is_set() or time.monotonic() + gap + hold > deadline):
                        return
                    time.sleep(gap)  # a quiet span by design, not a wait for a condition
                    self.inject(kind)
                    time.sleep(hold)
                    self.undo_all()
                first = False
                self.first_cycle_done.set()
        except BaseException as exc:  # reported by the run; the faults are undone there
            self.error = exc
        finally:
            self.first_cycle_done.set()

    def _record(self, kind: str, detail: str, nodes: tuple[str, ...]) -> int:
        with self.lock:
            at = self.now_ms()
            self.history.fault(at, kind, detail, nodes)
        return at

    # ---- faults ---------------------------------------------------------------------------------

    def inject(self, kind: str) -> None:
        assert self._undo is None, "one fault at a time"
        getattr(self, f"_inject_{kind}")()

    def undo_all(self) -> None:
        """Undo the fault in effect, if any."""
        if self._undo is not None:
            kind, undo = self._undo
            self._undo = None
            undo()

    def _victim(self) -> str:
        return self.rng.choice([n.name for n in self.cluster.nodes])

    def _window(self, kind: str, start_ms: int, node: str) -> None:
        self.evidence.windows.append((kind, start_ms, self.now_ms(), node))

    def _inject_kill(self) -> None:
        name = self._victim()
        n = self.cluster.node(name)
        pid = self.cluster.pid(n)
        assert pid is not None, f"{name} is not running"
        self.cluster.stop(name, kill=True)
        start = self._record("kill", f"kill -9 {name} (pid {pid})", (n.node_id,))

        def undo() -> None:
            self.cluster.spawn(n)
            new_pid = self.cluster.pid(n)
            self._record("restart", f"{name} (pid {new_pid})", (n.node_id,))
            self.cluster.wait_up([n], timeout_s=RESTART_TIMEOUT_S)
            self.evidence.kills.append((name, pid, new_pid or 0))
            self._window("kill", start, n.node_id)
        self._undo = ("kill", undo)

    def _inject_pause(self) -> None:
        name = self._victim()
        n = self.cluster.node(name)
        pid = self.cluster.pid(n)
        self.cluster.pause(name)
        start = self._record("pause", f"SIGSTOP {name} (pid {pid})", (n.node_id,))
        self.evidence.pauses.append((name, pid or 0))

        def undo() -> None:
            self.cluster.resume(name)
            self._record("resume", f"SIGCONT {name}", (n.node_id,))
            self._window("pause", start, n.node_id)
        self._undo = ("pause", undo)

    def _inject_partition(self) -> None:
        name = self._victim()
        n = self.cluster.node(name)
        others = [m.address for m in self.cluster.nodes if m.name != name]
        shape = self.rng.choice(("isolate", "one-way-out", "one-way-in"))
        if shape == "isolate":
            self.firewall.cut([n.address], others)
            kind, detail = "partition", f"{name} cut off both ways from {', '.join(others)}"
        elif shape == "one-way-out":
            self.firewall.cut([n.address], others, one_way=True)
            kind, detail = "one-way", f"packets from {name} to {', '.join(others)} dropped"
        else:
            self.firewall.cut(others, [n.address], one_way=True)
            kind, detail = "one-way", f"packets from {', '.join(others)} to {name} dropped"
        start = self._record(kind, detail, (n.node_id,))
        self.evidence.partition_rules.append(self.firewall.listed())

        def undo() -> None:
            self.firewall.heal()
            self._record("heal", "iptables rules removed", (n.node_id,))
            self._window("partition", start, n.node_id)
        self._undo = ("partition", undo)

    def _inject_skew(self) -> None:
        n = self.cluster.node(self.skew_node)
        size = self.rng.uniform(*self.spec.skew_s)
        offset = round(size if self.rng.random() < self.spec.skew_ahead else -size, 3)
        self.clock.set_offset(offset)
        start = self._record("skew", f"{n.name} clock {offset:+.3f} s", (n.node_id,))

        def undo() -> None:
            self.clock.set_offset(0.0)
            end = self._record("skew-reset", f"{n.name} clock back to real time", (n.node_id,))
            self.evidence.skews.append((start, end, offset))
            self._window("skew", start, n.node_id)
        self._undo = ("skew", undo)
