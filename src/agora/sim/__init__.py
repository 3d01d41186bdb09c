"""The deterministic simulator: many nodes in one process on virtual time, joined by a
simulated network that carries real encoded bytes; one integer seed reproduces a run
(DESIGN.md section 2).

Modules: `scheduler` (virtual time, the event heap), `network` (latency, loss, duplication,
reordering, partitions), `host` (one machine: executes a node's effects as the runtime
does, crash/restart/pause), `cluster` (building nodes, client API, faults, trace),
`results` (client futures).
"""

from agora.sim.cluster import SimCluster
from agora.sim.results import ConnectionLost, NotDone, SimFuture

__all__ = ["SimCluster", "SimFuture", "ConnectionLost", "NotDone"]
