"""Chaos against real node processes (issue 5, item 4): the simulator's checkers judge a
history recorded by the real cassandra-driver against real nodes while they are killed
(-9), paused (SIGSTOP), cut off from each other (iptables rules between loopback
addresses) and run on a skewed clock (libfaketime).

Modules:

- `tools`: the Debian tools the faults need (iptables, libfaketime), installed when
  missing and we are root; a clear error otherwise.
- `firewall`: partitions as tagged iptables rules, always removed.
- `clock`: one node's wall clock under libfaketime, its offset changed while it runs.
- `workload`: driver clients writing, deleting and reading, recording `agora.sim.history`
  records; write timestamps known exactly (client-stamped, or coordinator-stamped with a
  witness row that tells the coordinator's timestamp afterwards).
- `nemesis`: the fault schedule on real processes.
- `heal`: undo every fault, let hints replay, repair every node, snapshot the replicas.
- `run`: one whole run (cluster, workload and nemesis, healing, `agora.sim.checkers.check`).
- `report`: what a run says to a person.

Owns nothing of the protocol; it drives `agora.runtime.cluster.LocalCluster` and judges
with `agora.sim.checkers`, unchanged.
"""
