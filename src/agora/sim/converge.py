"""Bringing a run to rest, and reading what the replicas hold at rest.

Owns: the convergence procedure a run ends with (heal every fault, let the cluster's own
healing run, then make sure every replica of every key agrees), as a list of pluggable
steps, and the snapshot the checkers judge afterwards: each replica's digest of each key
and the converged value of each key.

Steps are plain functions `step(cluster, keys)`. The default procedure is
`READ_REPAIR_CONVERGENCE`:

1. `heal_everything`: open the network, stop random loss/duplication/reordering, resume
   paused nodes, restart crashed ones, and wait until every node sees every other.
2. `settle`: let writes in flight time out, then let hinted handoff replay what replicas
   missed, until no node holds a hint (at most SETTLE_MS).
3. `read_all_at_all`: read every key at ALL, which repairs every replica that differs
   before it answers (blocking read repair).

`ANTI_ENTROPY_CONVERGENCE` replaces step 3 with `anti_entropy_repair` (Merkle-tree repair
of every range of the keyspace), so the snapshot checks that repair alone converges
(the final values are read at ALL only after the snapshot). The snapshot is taken after
the steps, from the disks themselves, so a step that does not converge is caught.

Does not know: the workload, the faults that ran, or what the checkers conclude.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agora.core import reconcile, rowmaps
from agora.core.errors import AgoraError
from agora.core.types import ReadCommand
from agora.sim.cluster import SimCluster
from agora.sim.results import NotDone

# Virtual time to let the cluster heal itself after the faults end: several gossip rounds,
# and time for a hint replay pass (Cassandra replays a node's hints within ~10 s of seeing
# it come back).
SETTLE_MS = 15_000
# Writes still in flight when the faults end time out within the write timeout (2 s) and
# store their hints then: settle at least this long before asking whether hints remain.
MIN_SETTLE_MS = 2_500
# One anti-entropy repair session (Merkle trees of every range, then streaming) gets this
# long in virtual time before it counts as stuck.
REPAIR_WAIT_MS = 120_000
# How long to wait for every node to see every other after healing.
UP_WAIT_MS = 60_000
# Attempts at reading one key at ALL before the convergence itself is declared failed.
MAX_CONVERGE_ATTEMPTS = 10
# Between two attempts, wait this long (a timeout or an Unavailable is transient here).
RETRY_MS = 1_000

Step = Callable[[SimCluster, "Keys"], None]


class Keys:
    """The workload's keys in one table, with the read commands for them."""

    def __init__(self, cluster: SimCluster, keyspace: str, table: str, keys: Sequence[str]) -> None:
        node = next(h.node for h in cluster.hosts if h.up)
        self.keyspace = keyspace
        self.table = table
        self.tdef = node.schema.schema.table(keyspace, table)
        assert self.tdef is not None, f"no table {keyspace}.{table}"
        self.keys = list(keys)
        self.commands: dict[str, ReadCommand] = {k: rowmaps.read_command(self.tdef, {"k": k}) for k in self.keys}


class ConvergenceFailed(AssertionError):
    """A healed cluster could not be brought to agree (a liveness bug, reported as such)."""


def heal_everything(cluster: SimCluster, keys: Keys) -> None:
    cluster.heal()
    cluster.set_network_faults(loss=0.0, duplicate=0.0, reorder=False, slow=0.0)
    for host in cluster.hosts:
        if host.up and host.paused:
            host.resume()
    for host in cluster.hosts:
        if not host.up:
            host.boot()
    try:
        cluster.wait_until_up(UP_WAIT_MS)
    except NotDone as exc:
        raise ConvergenceFailed(str(exc)) from None


def _hints_pending(cluster: SimCluster) -> bool:
    """Whether any running node still holds hints to hand over (nodes without hinted
    handoff hold none)."""
    for host in cluster.hosts:
        hints = getattr(host.node, "hints", None)
        if hints is not None and hints.pending_by_target():
            return True
    return False


def settle(cluster: SimCluster, keys: Keys) -> None:
    """Let writes still in flight time out (and leave their hints), then let hinted
    handoff replay until no node holds a hint, or SETTLE_MS pass."""
    cluster.run_for(MIN_SETTLE_MS)
    cluster.run_until(lambda: not _hints_pending(cluster), SETTLE_MS)


def anti_entropy_repair(cluster: SimCluster, keys: Keys) -> None:
    """Merkle-tree repair of the keyspace over the whole ring (a repair without `node`
    covers every range), retried through the next node until a session finishes with no
    range failed."""
    report: dict = {}
    for attempt in range(MAX_CONVERGE_ATTEMPTS):
        via = attempt % len(cluster.hosts)
        try:
            report = cluster.repair(via, max_ms=REPAIR_WAIT_MS, keyspace=keys.keyspace)
        except (NotDone, AgoraError) as exc:
            report = {"state": f"failed: {exc}"}
        if report.get("state") == "finished" and not report.get("ranges_failed"):
            return
        cluster.run_for(RETRY_MS)
    raise ConvergenceFailed(f"repair did not finish in {MAX_CONVERGE_ATTEMPTS} attempts; last: {report}")


def read_all_at_all(cluster: SimCluster, keys: Keys) -> None:
    """Read every key at ALL, through each node in turn, until each read succeeds."""
    n = len(cluster.hosts)
    for i, key in enumerate(keys.keys):
        for attempt in range(MAX_CONVERGE_ATTEMPTS):
            fut = cluster.select((i + attempt) % n, keys.keyspace, keys.table, {"k": key}, "ALL")
            cluster.run_until(lambda: fut.done, UP_WAIT_MS)
            if fut.ok:
                break
            cluster.run_for(RETRY_MS)
        else:
            raise ConvergenceFailed(f"key {key}: no read at ALL succeeded in {MAX_CONVERGE_ATTEMPTS} "
                                    f"attempts; last: {fut!r}")


READ_REPAIR_CONVERGENCE: tuple[Step, ...] = (heal_everything, settle, read_all_at_all)
ANTI_ENTROPY_CONVERGENCE: tuple[Step, ...] = (heal_everything, settle, anti_entropy_repair)
CONVERGENCE = {"read-repair": READ_REPAIR_CONVERGENCE, "repair": ANTI_ENTROPY_CONVERGENCE}


def converge(cluster: SimCluster, keys: Keys, steps: Sequence[Step] = READ_REPAIR_CONVERGENCE) -> None:
    for step in steps:
        cluster.record(f"converge {step.__name__}")
        step(cluster, keys)


# ---- the snapshot at rest -----------------------------------------------------------------


def replica_digests(cluster: SimCluster, keys: Keys) -> dict[str, dict[str, str | None]]:
    """key -> replica -> digest of what its disk holds (None: nothing), as a replica would
    answer a digest read now. Replicas come from a running node's ring."""
    node = next(h.node for h in cluster.hosts if h.up)
    out: dict[str, dict[str, str | None]] = {}
    for key, cmd in keys.commands.items():
        replicas, _, _ = node.replicas_for(cmd.table_id, cmd.key)
        held: dict[str, str | None] = {}
        for replica in sorted(replicas):
            host = cluster.host(replica)
            part = host.engine.read(cmd)
            now_s = host.clock_ms() // 1000
            part = reconcile.expire(part, now_s) if part is not None else None
            held[replica] = None if reconcile.is_empty(part) else reconcile.digest(part).hex()
        out[key] = held
    return out


def final_values(cluster: SimCluster, keys: Keys) -> dict[str, tuple[str, int] | None]:
    """key -> (value, writetime) of the converged row, or None for no row, read at ALL."""
    out: dict[str, tuple[str, int] | None] = {}
    for i, key in enumerate(keys.keys):
        fut = cluster.select(i % len(cluster.hosts), keys.keyspace, keys.table, {"k": key}, "ALL",
                             writetime=True)
        try:
            rows = cluster.wait(fut, UP_WAIT_MS)
        except NotDone:
            raise ConvergenceFailed(f"key {key}: the final read at ALL did not finish") from None
        except Exception as exc:
            raise ConvergenceFailed(f"key {key}: the final read at ALL failed: {exc!r}") from None
        out[key] = (rows[0]["v"], rows[0]["writetime(v)"]) if rows and rows[0].get("v") is not None else None
    return out
