"""The verb table: one row per internode message type — its verb number, its class, whether
it is a request or a response, and which timeout governs it.

Owns: the single place that lists every verb (Cassandra's net/Verb.java plays this role).
The codec decodes by this table; docs and tests read it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core import messages as m
from agora.core.hints import messages as h
from agora.core.antientropy import messages as ae
from agora.core.membership import messages as g
from agora.core.batchlog import messages as b
from agora.core.tombstones import messages as t


@dataclass(frozen=True)
class Verb:
    number: int
    message: type
    kind: str  # "request" | "response" | "oneway"
    timeout: str | None  # the config option bounding the wait for its response


VERBS: tuple[Verb, ...] = (
    Verb(m.MutationReq.VERB, m.MutationReq, "request", "write_request_timeout"),
    Verb(m.MutationRsp.VERB, m.MutationRsp, "response", None),
    Verb(m.ReadReq.VERB, m.ReadReq, "request", "read_request_timeout"),
    Verb(m.ReadRsp.VERB, m.ReadRsp, "response", None),
    Verb(m.RangeReadReq.VERB, m.RangeReadReq, "request", "read_request_timeout"),
    Verb(m.RangeReadRsp.VERB, m.RangeReadRsp, "response", None),
    Verb(m.SchemaPush.VERB, m.SchemaPush, "oneway", None),
    Verb(m.SchemaPullReq.VERB, m.SchemaPullReq, "request", "request_timeout"),
    Verb(m.SchemaVersion.VERB, m.SchemaVersion, "oneway", None),
    Verb(g.GossipDigestSyn.VERB, g.GossipDigestSyn, "oneway", None),
    Verb(g.GossipDigestAck.VERB, g.GossipDigestAck, "oneway", None),
    Verb(g.GossipDigestAck2.VERB, g.GossipDigestAck2, "oneway", None),
    Verb(g.GossipShutdown.VERB, g.GossipShutdown, "oneway", None),
    Verb(m.ClientReq.VERB, m.ClientReq, "request", "request_timeout"),
    Verb(m.ClientRsp.VERB, m.ClientRsp, "response", None),
    # anti-entropy repair; trees and pushes are bounded by their own limits (antientropy/)
    Verb(ae.RepairTreeReq.VERB, ae.RepairTreeReq, "request", None),
    Verb(ae.RepairTreeRsp.VERB, ae.RepairTreeRsp, "response", None),
    Verb(ae.RepairSyncReq.VERB, ae.RepairSyncReq, "request", None),
    Verb(ae.RepairSyncRsp.VERB, ae.RepairSyncRsp, "response", None),
    Verb(ae.RepairStreamData.VERB, ae.RepairStreamData, "request", None),
    Verb(ae.RepairStreamAck.VERB, ae.RepairStreamAck, "response", None),
    Verb(h.HintReq.VERB, h.HintReq, "request", "write_request_timeout"),
    Verb(h.HintRsp.VERB, h.HintRsp, "response", None),
    # the batchlog (batchlog/) and the downtime check's purge guard (tombstones/)
    Verb(b.BatchStoreReq.VERB, b.BatchStoreReq, "request", "write_request_timeout"),
    Verb(b.BatchStoreRsp.VERB, b.BatchStoreRsp, "response", None),
    Verb(b.BatchRemove.VERB, b.BatchRemove, "oneway", None),
    Verb(t.PurgeHorizonReq.VERB, t.PurgeHorizonReq, "request", "request_timeout"),
    Verb(t.PurgeHorizonRsp.VERB, t.PurgeHorizonRsp, "response", None),
)

BY_NUMBER: dict[int, Verb] = {v.number: v for v in VERBS}
assert len(BY_NUMBER) == len(VERBS), "verb numbers must be unique"
