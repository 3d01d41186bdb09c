"""A coordinator's view of a cluster built by hand (`agora.core.coordinator.placement.Placement`),
shared by the coordinator unit tests: who is alive, which DC each node is in, request ids, and
proximity (this node, then its DC, then the rest, by name), truncations (`truncations`,
table id -> timestamp) and the read options every table shares (`speculation`, `read_repair`)."""

from __future__ import annotations

from agora.core.coordinator.speculation import DEFAULT


class HandPlacement:
    def __init__(self, local: str, local_dc: str, dcs: dict[str, str], alive):
        self.local, self.local_dc = local, local_dc
        self.dcs = dcs
        self.alive = set(alive)
        self.truncations: dict[bytes, int] = {}
        self.speculation, self.read_repair = DEFAULT, True
        self._req = 0

    def dc_of(self, node):
        return self.dcs.get(node, self.local_dc)

    def is_alive(self, node):
        return node in self.alive

    def serves_reads(self, node):
        return node in self.alive

    def next_req_id(self):
        self._req += 1
        return self._req

    def observe_latency(self, node, ms):
        pass

    def proximity(self, node):
        return (0 if node == self.local else 1 if self.dc_of(node) == self.local_dc else 2, node)

    def truncated_at(self, table_id):
        return self.truncations.get(table_id)

    def read_options(self, table_id):
        return self.speculation, self.read_repair

    def elapsed_ms(self, now_ms):
        return now_ms
