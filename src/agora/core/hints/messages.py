"""Internode messages of hinted handoff: a stored hint travelling to its target, and the
target's acknowledgement (Cassandra's HINT_REQ / HINT_RSP verbs, net/Verb.java).

Owns: the two message shapes and their strict decoding. A `HintReq` carries exactly what a
`MutationReq` does and the target applies it the same way (`agora.core.replica`); it has its
own verb so that replay is visible as such in traces and never mixes with the write path's
acknowledgements. The coordinator deletes a hint only on a `HintRsp` without error.
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.frozen import fast_init
from agora.core.messages import PartitionsMessage
from agora.core.wire import Acknowledgement


@fast_init
@dataclass(frozen=True, slots=True)
class HintReq(PartitionsMessage):
    """Apply these partition fragments (one stored hint) on the receiving node."""

    VERB = 40


@fast_init
@dataclass(frozen=True, slots=True)
class HintRsp(Acknowledgement):
    """The hint is applied (error None), or why it was not."""

    VERB = 41
