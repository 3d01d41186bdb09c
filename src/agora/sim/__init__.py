"""The deterministic simulator: many nodes in one process on virtual time, joined by a
simulated network that carries real encoded bytes; one integer seed reproduces a run
(DESIGN.md section 2).

Modules: `scheduler` (virtual time, the event heap), `network` (latency, loss, duplication,
reordering, partitions), `clock` (a machine's clock skew and drift), `host` (one machine:
executes a node's effects as the runtime does, crash/restart/pause), `cluster` (building
nodes, client API, faults, trace), `results` (client futures).

On top of those, the simulation tier (issue 5): `workload` (seeded clients),
`nemesis` (seeded faults that come and go), `history` (the recorded operations and
faults, plain records), `checkers` (what a correct history is, over a history alone),
`converge` (healing a run and reading the replicas at rest), `runner` (one run or a
swarm, end to end), `report` (what a run says to a person) and `scenario` (readable
step-by-step scripts with their expected output).
"""

from agora.sim.cluster import SimCluster
from agora.sim.results import ConnectionLost, NotDone, SimFuture

__all__ = ["SimCluster", "SimFuture", "ConnectionLost", "NotDone"]
