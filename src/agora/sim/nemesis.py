"""The nemesis: a seeded schedule of faults that come and go while a workload runs (the
name is Jepsen's).

Owns: choosing, injecting and undoing faults, and recording each in the run's `History`.
Every few seconds of virtual time (FaultSpec.interval_ms) it picks one enabled kind and a
victim, injects it, and schedules its undoing after a duration (FaultSpec.duration_ms),
short enough to end in coordinator timeouts or long enough for the failure detector to
convict, so both paths run. Kinds (`FAULT_KINDS`):

- `partition`: one network cut at a time, replaced by the next: a random split into two
  groups, one node isolated, a one-way cut (a group's messages to the rest are dropped
  while theirs still arrive), or, with several datacenters, a whole datacenter cut off.
- `crash`: a node dies (kill -9: what it applied stays on disk) or, with probability
  `power_loss`, loses power (only what was synced stays); it restarts later. The keys a
  power loss rolled back are recorded, from the disk before and after.
- `pause`: a node stops (SIGSTOP) and resumes later with its inputs queued.
- `skew`: a node's clock steps by up to `max_skew_ms` and drifts by up to
  `max_drift_ppm`; later NTP puts it right (offset and drift back to 0).
- `loss`, `duplicate`, `reorder`: for a while the network drops, duplicates, or reorders
  and delays (the latency tail) messages at random rates.

At most `max_down` nodes are crashed or paused at once. `stop()` undoes everything that
is still in effect, so the run can heal and converge.

Does not know: the workload or what is correct.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agora.core import reconcile
from agora.core.types import ReadCommand
from agora.sim.cluster import SimCluster
from agora.sim.history import History
from agora.sim.scheduler import SimEvent

FAULT_KINDS = ("partition", "crash", "pause", "skew", "loss", "duplicate", "reorder")


@dataclass(frozen=True)
class FaultSpec:
    kinds: tuple[str, ...] = FAULT_KINDS
    interval_ms: tuple[int, int] = (500, 4_000)  # between one fault's start and the next
    duration_ms: tuple[int, int] = (300, 12_000)  # under 2 s: timeouts; over ~5 s: convictions
    max_down: int = 1  # nodes crashed or paused at once
    power_loss: float = 0.5  # the share of crashes that also lose unsynced writes
    max_skew_ms: int = 2_000  # a clock step, either way
    max_drift_ppm: int = 20_000  # 2%: exaggerated so a short run feels it
    max_loss: float = 0.2
    max_duplicate: float = 0.2
    max_slow: float = 0.05  # the share of messages in the latency tail while reordering

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        assert not unknown, f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}"
        assert 0 < self.interval_ms[0] <= self.interval_ms[1]
        assert 0 < self.duration_ms[0] <= self.duration_ms[1]
        assert self.max_down >= 0


class Nemesis:
    """Injects `spec`'s faults into `cluster` from `start()` until `stop()`.
    `key_commands` maps the workload's keys to read commands, to tell which keys a power
    loss rolled back."""

    def __init__(self, cluster: SimCluster, spec: FaultSpec, history: History, rng: random.Random,
                 key_commands: Mapping[str, ReadCommand] | None = None) -> None:
        self.cluster = cluster
        self.spec = spec
        self.history = history
        self.rng = rng
        self.key_commands = dict(key_commands or {})
        self.injected: Counter = Counter()
        self._next: SimEvent | None = None
        self._undo: dict[str, tuple[SimEvent, Callable[[], None]]] = {}  # slot -> (event, undo)
        self._running = False

    # ---- schedule ---------------------------------------------------------------------

    def start(self) -> None:
        self._running = bool(self.spec.kinds)
        if self._running:
            self._schedule_next()

    def _schedule_next(self) -> None:
        self._next = self.cluster.scheduler.schedule(self.rng.randint(*self.spec.interval_ms),
                                                     self._tick, "nemesis")

    def _tick(self) -> None:
        if not self._running:
            return
        kind = self.rng.choice(self.spec.kinds)
        getattr(self, "_inject_" + kind)()
        self._schedule_next()

    def _hold(self, slot: str, undo: Callable[[], None]) -> None:
        """Undo `slot`'s fault after a random duration; a fault already in the slot is
        undone first."""
        self._release(slot)
        event = self.cluster.scheduler.schedule(self.rng.randint(*self.spec.duration_ms),
                                                lambda: self._release(slot), f"undo {slot}")
        self._undo[slot] = (event, undo)

    def _release(self, slot: str) -> None:
        held = self._undo.pop(slot, None)
        if held is not None:
            held[0].cancel()
            held[1]()

    def stop(self) -> None:
        """No new faults; undo every fault still in effect, in a fixed order."""
        self._running = False
        if self._next is not None:
            self._next.cancel()
        for slot in sorted(self._undo):
            self._release(slot)

    def _record(self, kind: str, detail: str = "", nodes=(), keys=()) -> None:
        self.history.fault(self.cluster.now_ms, kind, detail, nodes, keys)

    def _inject(self, kind: str, detail: str = "", nodes=(), keys=()) -> None:
        self.injected[kind] += 1
        self._record(kind, detail, nodes, keys)

    # ---- partitions -------------------------------------------------------------------

    def _inject_partition(self) -> None:
        c, rng = self.cluster, self.rng
        nodes = list(c.nodes)
        shapes = ["split", "isolate", "one-way"] + (["dc-cut"] if len(c.datacenters()) > 1 else [])
        shape = rng.choice(shapes)
        self._release("partition")
        if shape == "dc-cut":
            dc = rng.choice(c.datacenters())
            c.cut_dc(dc)
            self._inject("dc-cut", dc)
        else:
            size = 1 if shape == "isolate" else rng.randint(1, len(nodes) - 1)
            group = sorted(rng.sample(nodes, size))
            c.partition(group, one_way=shape == "one-way")
            rest = [n for n in nodes if n not in group]
            sep = ">" if shape == "one-way" else "|"
            self._inject("partition" if shape != "one-way" else "one-way",
                         f"{' '.join(group)} {sep} {' '.join(rest)}", group)
        self._hold("partition", self._heal)

    def _heal(self) -> None:
        self.cluster.heal()
        self._record("heal")

    # ---- processes --------------------------------------------------------------------

    def _down_count(self) -> int:
        return sum(1 for h in self.cluster.hosts if not h.up or h.paused)

    def _victim(self):
        if self._down_count() >= self.spec.max_down:
            return None
        running = [h for h in self.cluster.hosts if h.up and not h.paused]
        return self.rng.choice(running) if running else None

    def _inject_crash(self) -> None:
        power = self.rng.random() < self.spec.power_loss
        host = self._victim()
        if host is None:
            return
        before = self._disk_digests(host) if power else {}
        host.crash(lose_unsynced=power)
        lost = sorted(k for k, d in before.items() if self._disk_digest(host, k) != d)
        self._inject("power-loss" if power else "crash", host.id, (host.id,), lost)
        self._hold(f"down {host.index:03d}", lambda: self._restart(host))

    def _restart(self, host) -> None:
        host.boot()
        self._record("restart", host.id, (host.id,))

    def _inject_pause(self) -> None:
        host = self._victim()
        if host is None:
            return
        host.pause()
        self._inject("pause", host.id, (host.id,))
        self._hold(f"down {host.index:03d}", lambda: self._resume(host))

    def _resume(self, host) -> None:
        host.resume()
        self._record("resume", host.id, (host.id,))

    def _disk_digests(self, host) -> dict[str, bytes]:
        return {key: self._disk_digest(host, key) for key in sorted(self.key_commands)}

    def _disk_digest(self, host, key: str) -> bytes:
        return reconcile.digest(host.engine.read(self.key_commands[key]))

    # ---- clocks -----------------------------------------------------------------------

    def _inject_skew(self) -> None:
        rng, spec = self.rng, self.spec
        host = rng.choice(self.cluster.hosts)
        offset = rng.randint(-spec.max_skew_ms, spec.max_skew_ms)
        drift = rng.randint(-spec.max_drift_ppm, spec.max_drift_ppm)
        self.cluster.set_clock(host.index, offset, drift)
        self._inject("skew", f"{host.id} offset={offset}ms drift={drift}ppm", (host.id,))
        self._hold(f"clock {host.index:03d}", lambda: self._reset_clock(host))

    def _reset_clock(self, host) -> None:
        self.cluster.set_clock(host.index, 0, 0)
        self._record("clock-reset", host.id, (host.id,))

    # ---- network weather ----------------------------------------------------------------

    def _inject_loss(self) -> None:
        rate = round(self.rng.uniform(0.01, self.spec.max_loss), 3)
        self.cluster.set_network_faults(loss=rate)
        self._inject("loss", f"{rate}")
        self._hold("loss", lambda: self._weather_over("loss", loss=0.0))

    def _inject_duplicate(self) -> None:
        rate = round(self.rng.uniform(0.01, self.spec.max_duplicate), 3)
        self.cluster.set_network_faults(duplicate=rate)
        self._inject("duplicate", f"{rate}")
        self._hold("duplicate", lambda: self._weather_over("duplicate", duplicate=0.0))

    def _inject_reorder(self) -> None:
        slow = round(self.rng.uniform(0.0, self.spec.max_slow), 3)
        self.cluster.set_network_faults(reorder=True, slow=slow)
        self._inject("reorder", f"slow={slow}")
        self._hold("reorder", lambda: self._weather_over("reorder", reorder=False, slow=0.0))

    def _weather_over(self, kind: str, **faults) -> None:
        self.cluster.set_network_faults(**faults)
        self._record(f"{kind}-over")
