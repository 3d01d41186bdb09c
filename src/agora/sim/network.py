"""The simulated network: every internode message becomes real bytes through the real codec
(`agora.core.codec`), waits a seeded random latency, and is decoded again at the receiver.

Owns: latency per link (a range per link class: the same datacenter, or between
datacenters; any single link can be overridden), faults (random loss, duplication,
optional reordering, and partitions as a set of blocked directed pairs), and the statistics
of what it did. All chance comes from the one `random.Random` it is given, drawn in the
order messages are sent, so the same seed gives the same deliveries.

Semantics, chosen to match the runtime's TCP transport unless a fault says otherwise:

- Delivery is FIFO per directed link (TCP) unless `reorder=True`, when each message takes
  its own latency and later messages may overtake earlier ones.
- A message is delivered only if its link is open both when it is sent and when it
  arrives: a partition that starts while a message is in flight drops it, as a broken
  connection would.
- Loss drops a message silently; duplication delivers a second copy with its own latency.
- Latency is uniform over the link's range, except that with probability `slow` a message
  takes SLOW_LATENCY_MS instead (the distribution's tail). Every fault setting can change
  while a run goes on; the cluster's `set_network_faults` does it.
- A payload the receiver cannot decode is our own bug (both ends run our codec), so it is
  an assertion, never a dropped message. With `check_roundtrip`, re-encoding the decoded
  message must give back the same bytes, which catches encoders and decoders that disagree;
  `check_roundtrip=n` checks every n-th message only (by sequence number, so the same ones
  on every run), for long runs where the check would cost more than it finds.
- A coordinator sends one message object to several replicas; it is encoded once and the
  same bytes go to each (messages are values: nothing changes them between sends), and
  those bytes are decoded once, at the first arrival: the later receivers get the same
  decoded value (nothing changes a message after it arrives either; every payload still
  crosses as bytes through the real decoder).

Does not know: nodes, crashes or pauses. The cluster decides what a delivery means
(`deliver(envelope, message)`) and is told about drops (`on_drop(envelope, reason)`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agora.core import codec
from agora.core.errors import ProtocolError
from agora.core.types import NodeId
from agora.sim.scheduler import Scheduler

INTRA_DC_LATENCY_MS = (1, 5)  # one datacenter: a LAN hop, inclusive range
INTER_DC_LATENCY_MS = (30, 80)  # between datacenters: a continent apart
# The tail of the latency distribution: with probability `slow`, a message takes this long
# instead (a retransmission after a lost segment, a GC pause on a switch, a congested link).
# 200 ms .. 1.5 s straddles the coordinators' speculative-retry thresholds and stays under
# their 2 s write timeout, so a slow message is late rather than lost.
SLOW_LATENCY_MS = (200, 1_500)


@dataclass(slots=True)
class Envelope:
    """One message on the wire. `tag` is the sender-side context the cluster attaches (the
    target incarnation it was sent to); the network carries it untouched."""

    seq: int
    source: NodeId
    target: NodeId
    payload: bytes
    sent_ms: int
    kind: str  # the message's class name, for traces and statistics
    tag: Any = None
    copy: bool = False  # a duplicate made by the network
    # Shared by every envelope carrying the same payload object: [the decoded message, or
    # None until the first of them arrives]
    decoded: list | None = None


@dataclass
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped_blocked: int = 0
    dropped_loss: int = 0
    duplicated: int = 0
    bytes_sent: int = 0
    by_verb: dict = field(default_factory=dict)


class Network:
    def __init__(self, scheduler: Scheduler, rng: random.Random, dc_of: Callable[[NodeId], str],
                 deliver: Callable[[Envelope, Any], None],
                 on_drop: Callable[[Envelope, str], None] | None = None, *,
                 intra_dc_ms: tuple[int, int] = INTRA_DC_LATENCY_MS,
                 inter_dc_ms: tuple[int, int] = INTER_DC_LATENCY_MS,
                 loss: float = 0.0, duplicate: float = 0.0, reorder: bool = False,
                 slow: float = 0.0, slow_ms: tuple[int, int] = SLOW_LATENCY_MS,
                 check_roundtrip: bool | int = True) -> None:
        for lo, hi in (intra_dc_ms, inter_dc_ms):
            assert 0 <= lo <= hi, f"bad latency range {(lo, hi)}"
        assert 0.0 <= loss < 1.0 and 0.0 <= duplicate < 1.0 and 0.0 <= slow <= 1.0
        assert 0 <= slow_ms[0] <= slow_ms[1], f"bad latency range {slow_ms}"
        self.scheduler = scheduler
        self.rng = rng
        self.dc_of = dc_of
        self.deliver = deliver
        self.on_drop = on_drop or (lambda envelope, reason: None)
        self.intra_dc_ms = intra_dc_ms
        self.inter_dc_ms = inter_dc_ms
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.slow = slow
        self.slow_ms = slow_ms
        self.check_roundtrip = check_roundtrip
        self._roundtrip_every = 0 if check_roundtrip is False else int(check_roundtrip)
        # the last message encoded, its bytes, and the decode cell its envelopes share
        self._encoded: tuple[Any, bytes, list] | None = None
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self._link_latency: dict[tuple[NodeId, NodeId], tuple[int, int]] = {}
        self._link_last_ms: dict[tuple[NodeId, NodeId], int] = {}  # FIFO: last arrival per link
        self._range_cache: dict[tuple[NodeId, NodeId], tuple[int, int]] = {}  # link -> latency range
        self._seq = 0
        self.stats = NetworkStats()

    # ---- latency ------------------------------------------------------------------------

    def latency_range(self, source: NodeId, target: NodeId) -> tuple[int, int]:
        link = (source, target)
        cached = self._range_cache.get(link)
        if cached is None:
            cached = self._link_latency.get(link) or \
                (self.intra_dc_ms if self.dc_of(source) == self.dc_of(target) else self.inter_dc_ms)
            self._range_cache[link] = cached
        return cached

    def set_latency(self, source: NodeId, target: NodeId, lo_ms: int, hi_ms: int,
                    both_ways: bool = True) -> None:
        """Override one link's latency range (a slow or distant node)."""
        assert 0 <= lo_ms <= hi_ms
        self._link_latency[(source, target)] = (lo_ms, hi_ms)
        if both_ways:
            self._link_latency[(target, source)] = (lo_ms, hi_ms)
        self._range_cache.clear()

    # ---- partitions ---------------------------------------------------------------------

    def block(self, source: NodeId, target: NodeId) -> None:
        """Drop everything from `source` to `target` (one direction only)."""
        if source != target:
            self.blocked.add((source, target))

    def unblock(self, source: NodeId, target: NodeId) -> None:
        self.blocked.discard((source, target))

    def partition(self, group_a: Iterable[NodeId], group_b: Iterable[NodeId]) -> None:
        """Cut every link between the two groups, both ways. Links inside a group stay."""
        group_a, group_b = sorted(set(group_a)), sorted(set(group_b))
        for a in group_a:
            for b in group_b:
                self.block(a, b)
                self.block(b, a)

    def heal(self) -> None:
        """Open every blocked link."""
        self.blocked.clear()

    def is_blocked(self, source: NodeId, target: NodeId) -> bool:
        return (source, target) in self.blocked

    # ---- sending ------------------------------------------------------------------------

    def encode(self, message: Any) -> bytes:
        """The message's bytes through the real codec, reusing the last encoding when the
        same message object goes to another target."""
        last = self._encoded
        if last is not None and last[0] is message:
            return last[1]
        payload = codec.encode(message)
        self._encoded = (message, payload, [None])
        return payload

    def send(self, source: NodeId, target: NodeId, message: Any, tag: Any = None) -> Envelope:
        last = self._encoded  # `encode`, inlined: one of these per message
        if last is not None and last[0] is message:
            payload, decoded = last[1], last[2]
        else:
            payload, decoded = codec.encode(message), [None]
            self._encoded = (message, payload, decoded)
        self._seq = seq = self._seq + 1
        name = type(message).__name__
        envelope = Envelope(seq, source, target, payload, self.scheduler.now_ms, name, tag, False, decoded)
        stats = self.stats
        stats.sent += 1
        stats.bytes_sent += len(payload)
        by_verb = stats.by_verb
        by_verb[name] = by_verb.get(name, 0) + 1
        if (source, target) in self.blocked:
            stats.dropped_blocked += 1
            self.on_drop(envelope, "blocked")
            return envelope
        # Draw chance in a fixed order per message, whatever the fault settings, so that
        # turning one fault on does not shift every later draw of the others.
        random = self.rng.random
        lost = random() < self.loss
        duplicated = random() < self.duplicate
        if lost:
            stats.dropped_loss += 1
            self.on_drop(envelope, "lost")
            return envelope
        self._schedule(envelope)
        if duplicated:
            stats.duplicated += 1
            copy = Envelope(envelope.seq, source, target, payload, envelope.sent_ms, name, tag, True, decoded)
            self._schedule(copy)
        return envelope

    def _schedule(self, envelope: Envelope) -> None:
        link = (envelope.source, envelope.target)
        lo, hi = self._range_cache.get(link) or self.latency_range(envelope.source, envelope.target)
        random = self.rng.random
        if random() < self.slow:  # drawn always, so `slow` shifts no other draw
            lo, hi = self.slow_ms
        at = self.scheduler.now_ms + lo + int(random() * (hi - lo + 1))  # uniform over lo..hi
        if not self.reorder:
            last = self._link_last_ms.get(link, 0)
            if last > at:
                at = last
            self._link_last_ms[link] = at
        self.scheduler.post_at(at, self._arrive, envelope)

    def _arrive(self, envelope: Envelope) -> None:
        if (envelope.source, envelope.target) in self.blocked:
            self.stats.dropped_blocked += 1
            self.on_drop(envelope, "blocked in flight")
            return
        cell = envelope.decoded
        message = None if cell is None else cell[0]
        if message is None:
            try:
                message = codec.decode(envelope.payload)
            except ProtocolError as exc:  # both ends are our codec: this is our bug
                raise AssertionError(f"undecodable message {envelope.source}->{envelope.target}: "
                                     f"{exc}; payload {envelope.payload[:64].hex()}") from exc
            if cell is not None:
                cell[0] = message
        every = self._roundtrip_every
        if every and envelope.seq % every == 0:
            again = codec.encode(message)
            assert again == envelope.payload, (
                f"codec round trip changed a {type(message).__name__}: "
                f"{envelope.payload[:64].hex()} -> {again[:64].hex()}")
        self.stats.delivered += 1
        self.deliver(envelope, message)
