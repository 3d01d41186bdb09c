"""Gossip: spreads every node's endpoint state (heartbeat and application states such as
STATUS, TOKENS, DC, RACK, SCHEMA) to every other node, and decides who is UP or DOWN.

Owns: the endpoint-state map, the local node's heartbeat and version counter, the set of live
peers, the gossip round and the SYN/ACK/ACK2 exchange. It deliberately does not know what the
application-state keys mean (the lead's node code sets and reads them as strings), how
messages are encoded (`messages.py` + the codec) or how phi is computed
(`failure_detector.py`). It is a sans-I/O machine: inputs plus `now_ms`, effects out.

Rules come from Cassandra's `gms/Gossiper.java` (GossipTask, examineGossiper,
applyStateLocally, handleMajorStateChange, applyNewStates, notifyFailureDetector,
doStatusCheck, stop, markAsShutdown) and the verb handlers
`GossipDigest{Syn,Ack,Ack2}VerbHandler.java` and `GossipShutdownVerbHandler.java`:

- Every `interval_ms` (1 s) a round bumps the local heartbeat, sends a SYN (a digest
  (endpoint, generation, max version) of every known endpoint) to one random live peer; to one
  random unreachable peer with probability unreachable / (live + 1); and, if the live peer was
  not a seed or fewer peers are live than there are seeds, to a random seed (always while no
  peer is live, else with probability seeds / (live + unreachable)). Then every known peer is
  interpreted by the phi-accrual detector (`failure_detector.py`: the paper's normal model,
  not Cassandra's exponential one) and convicted (marked DOWN) if phi > threshold.
- SYN -> the receiver compares digests: it requests what it lacks (a newer generation or
  version) and sends, in its ACK, state with versions newer than the SYN sender's. ACK -> the
  SYN sender applies that state and answers the requests with an ACK2. ACK2 -> applied.
- Applying a state: an unknown endpoint is added ("node_joined"); a larger generation means
  the node restarted and its whole state is replaced ("node_restarted"); the same generation
  merges the heartbeat and every application state whose version is newer; an older
  generation is ignored. A newer heartbeat (or a new or restarted node) is a heartbeat
  arrival for the failure detector, whoever relayed it.
- Shutdown (Cassandra's Gossiper.stop and markAsShutdown). `shutdown()` sets the local STATUS
  to "shutdown", sends `GossipShutdown` to every live peer and stops gossip: no more rounds,
  and every later gossip message is ignored (Cassandra's handlers drop messages while the
  gossiper is disabled). The receiver marks the node DOWN at once, without waiting for phi,
  and records STATUS "shutdown" in its copy of the node's state at SHUTDOWN_VERSION, above any
  version the incarnation can have reached, on its heartbeat as well (Cassandra's
  forceHighestPossibleVersionUnsafe). So the mark outlives any in-flight ACK or relay of that
  incarnation, and it spreads by ordinary gossip to nodes that missed the announcement. A node
  whose current incarnation has STATUS "shutdown" is never UP and none of its state counts as
  a heartbeat; it comes back through the normal path: a new generation, then an ACK from it.

Where we differ from Cassandra, and why:

- Marking UP. Cassandra marks a node alive only after it answers an ECHO. We use the gossip
  exchange itself as the echo: a node becomes UP when an ACK or ACK2 arrives from it -- the
  reply half of a round trip we started, proof it is alive now. When a third party tells us
  of a fresh heartbeat (new node, restart, or a newer heartbeat) of a node that is not UP, we
  send that node a SYN at once (at most one per `interval_ms`), so its ACK arrives a round
  trip later, as Cassandra's echo would. Marking UP on a relayed heartbeat alone would wrongly
  revive a dead node whose last heartbeats reach us late (e.g. after a partition heals).
- A SYN's receiver also sends the full state of every endpoint the SYN did not mention (the
  sender has never heard of it). Cassandra instead runs a "shadow round" at startup; this is
  the same information, sent when it is needed, and still only state the peer lacks.
- A restart of a node we held as UP is reported as "node_restarted" then DOWN (Cassandra's
  StorageService.onRestart calls onDead), then UP when it answers.
- The heartbeat of a merged state is the newer of ours and theirs (Cassandra overwrites it),
  and only a newer heartbeat version feeds the detector (Cassandra compares it against the
  largest version of any state, a quirk).
- A requested state whose generation changed since the request is sent whole, never as a
  version delta of a different incarnation.
- Our GossipShutdown names the endpoint and its generation (Cassandra's has no payload): a
  farewell must come from the node it names, and one from an older incarnation is ignored.
  One from a newer incarnation than we know marks the node DOWN but records nothing: we hold
  no state of that incarnation to put the mark on.
- A node that learns of a shutdown by gossip (the mark relayed from a peer that received the
  announcement) marks the node DOWN at once too; Cassandra waits for the conviction.
- Not here (yet): Cassandra's MAX_GENERATION_DIFFERENCE sanity check (it needs wall time),
  the other dead states (LEFT, removed, hibernate), eviction of long-dead endpoints,
  quarantine of removed ones.

Events (agora.core.effects.Event): "node_joined" NodeId; "node_state" (NodeId, key, value)
for each application state we learn or that changes, STATUS first then by key, emitted after
the whole state is applied (a handler reading TOKENS on a STATUS change sees the new tokens);
"status_change" (NodeId, "UP" | "DOWN"); "node_restarted" NodeId. `set_local_state` and
`shutdown` return a "node_state" event for the local node too. A received shutdown gives
"status_change" (node, "DOWN") (if it was UP) then "node_state" (node, "STATUS", "shutdown").

Determinism: every choice uses the injected `rng` over sorted lists; sets and dicts of node ids
are only ever iterated sorted.
"""

from __future__ import annotations

import random
from typing import Any

from agora.core.effects import CancelTimer, Event, Log, Send, SetTimer
from agora.core.membership.failure_detector import DEFAULT_PHI_CONVICT_THRESHOLD, PhiAccrualDetector
from agora.core.membership.messages import (
    MAX_APP_STATE_KEY_CHARS,
    MAX_APP_STATE_VALUE_CHARS,
    MAX_APP_STATES,
    MAX_COUNTER,
    MAX_GOSSIP_ENDPOINTS,
    EndpointState,
    EndpointStates,
    GossipDigest,
    GossipDigestAck,
    GossipDigestAck2,
    GossipDigestSyn,
    GossipShutdown,
    HeartbeatState,
    VersionedValue,
)
from agora.core.types import NodeId

ROUND_TIMER = ("gossip", "round")

EVENT_NODE_JOINED = "node_joined"
EVENT_NODE_STATE = "node_state"
EVENT_STATUS_CHANGE = "status_change"
EVENT_NODE_RESTARTED = "node_restarted"
STATUS_UP = "UP"
STATUS_DOWN = "DOWN"
# The STATUS value of a node that announced a clean shutdown (Cassandra's VersionedValue.SHUTDOWN).
STATUS_SHUTDOWN = "shutdown"

# Gossip round period (Cassandra: Gossiper.intervalInMillis).
DEFAULT_INTERVAL_MS = 1000
# Endpoints we keep state for. Equal to the per-message limit, so that a SYN carrying one
# digest per known endpoint always fits; learning more is refused with a warning.
MAX_KNOWN_ENDPOINTS = MAX_GOSSIP_ENDPOINTS
# The application state whose change is announced first (Cassandra's applyNewStates runs
# STATUS notifications before the others).
STATUS_KEY = "STATUS"
# `newer_than` argument that selects a whole state: every version is > -1.
_WHOLE_STATE = -1
# The version a receiver gives the STATUS "shutdown" and the heartbeat it records for a node
# that announced its shutdown: the largest the wire allows, so nothing that incarnation said
# before can supersede the mark (Cassandra: HeartBeatState.forceHighestPossibleVersionUnsafe).
SHUTDOWN_VERSION = MAX_COUNTER


class Gossiper:
    """One node's gossip and liveness machine. See the module docstring for the rules."""

    def __init__(self, local: NodeId, cluster_name: str, seeds: list[NodeId], generation: int,
                 rng: random.Random, phi_convict_threshold: float = DEFAULT_PHI_CONVICT_THRESHOLD,
                 interval_ms: int = DEFAULT_INTERVAL_MS) -> None:
        if not 0 <= generation <= MAX_COUNTER:
            raise ValueError(f"generation {generation} out of range")
        if interval_ms <= 0:
            raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
        self.local = local
        self.cluster_name = cluster_name
        self.seeds: tuple[NodeId, ...] = tuple(sorted(set(seeds) - {local}))
        self.rng = rng
        self.interval_ms = interval_ms
        # Cassandra seeds the detector with two gossip intervals (FD_INITIAL_VALUE_MS).
        self.detector = PhiAccrualDetector(phi_convict_threshold, initial_interval_ms=2 * interval_ms)
        self._version = 0
        self._states: dict[NodeId, EndpointState] = {
            local: EndpointState(HeartbeatState(generation, self._next_version()))}
        self._up: set[NodeId] = set()
        self._last_probe_ms: dict[NodeId, int] = {}
        self._shut_down = False

    # ---- local state ----------------------------------------------------------------------

    def _next_version(self) -> int:
        """Cassandra's VersionGenerator: one counter for heartbeat and application states."""
        self._version += 1
        return self._version

    def set_local_state(self, key: str, value: str) -> list:
        """Set an application state of the local node; it spreads with the next rounds."""
        if not (isinstance(key, str) and 1 <= len(key) <= MAX_APP_STATE_KEY_CHARS):
            raise ValueError(f"bad application state key {key!r}")
        if not (isinstance(value, str) and len(value) <= MAX_APP_STATE_VALUE_CHARS):
            raise ValueError(f"bad value for application state {key}")
        state = self._states[self.local]
        states = state.as_dict()
        if key not in states and len(states) >= MAX_APP_STATES:
            raise ValueError(f"more than {MAX_APP_STATES} application states")
        states[key] = VersionedValue(value, self._next_version())
        self._states[self.local] = EndpointState.build(state.heartbeat, states)
        return [Event(EVENT_NODE_STATE, (self.local, key, value))]

    def _bump_heartbeat(self) -> None:
        state = self._states[self.local]
        heartbeat = HeartbeatState(state.generation, self._next_version())
        self._states[self.local] = EndpointState(heartbeat, state.app_states)

    # ---- inputs ---------------------------------------------------------------------------

    def start(self, now_ms: int) -> list:
        """Arm the round timer; the first round runs one interval from now."""
        if self._shut_down:
            raise RuntimeError("gossip was shut down; a restart is a new Gossiper with a new generation")
        return [SetTimer(ROUND_TIMER, self.interval_ms)]

    def shutdown(self, now_ms: int) -> list:
        """Leave cleanly (Cassandra's Gossiper.stop): set the local STATUS to "shutdown", tell
        every live peer with a GossipShutdown, and stop gossiping for good. The driver should
        give the sends a moment to leave before it closes the connections (Cassandra waits
        shutdown_announce_in_ms, 2 s). A second call does nothing."""
        if self._shut_down:
            return []
        out = self.set_local_state(STATUS_KEY, STATUS_SHUTDOWN)
        self._shut_down = True
        farewell = GossipShutdown(self.local, self._states[self.local].generation)
        out.extend(Send(peer, farewell) for peer in sorted(self._up))
        out.append(CancelTimer(ROUND_TIMER))
        out.append(Log("info", f"gossip: announced shutdown to {len(self._up)} live peers"))
        return out

    def on_timer(self, timer_id: Any, now_ms: int) -> list:
        """One gossip round (Cassandra's GossipTask.run), then re-arm the timer."""
        if timer_id != ROUND_TIMER:
            raise ValueError(f"not a gossip timer: {timer_id!r}")
        if self._shut_down:
            return []
        self._bump_heartbeat()
        syn = self._make_syn()
        out: list = [Send(target, syn) for target in self._round_targets()]
        self._status_check(now_ms, out)
        out.append(SetTimer(ROUND_TIMER, self.interval_ms))
        return out

    def on_message(self, source: NodeId, msg: Any, now_ms: int) -> list:
        if source == self.local:
            return [Log("warning", f"gossip: ignoring {type(msg).__name__} from ourselves")]
        if self._shut_down:
            return [Log("debug", f"gossip: ignoring {type(msg).__name__} from {source}: shut down")]
        if isinstance(msg, GossipDigestSyn):
            return self._on_syn(source, msg)
        if isinstance(msg, GossipDigestAck):
            return self._on_ack(source, msg, now_ms)
        if isinstance(msg, GossipDigestAck2):
            return self._on_ack2(source, msg, now_ms)
        if isinstance(msg, GossipShutdown):
            return self._on_shutdown(source, msg)
        raise TypeError(f"gossip: not a gossip message: {type(msg).__name__}")

    # ---- queries --------------------------------------------------------------------------

    def endpoint_state(self, node: NodeId) -> EndpointState | None:
        return self._states.get(node)

    def known_nodes(self) -> list[NodeId]:
        return sorted(self._states)

    def live_nodes(self) -> list[NodeId]:
        return sorted(self._up | {self.local})

    def is_alive(self, node: NodeId) -> bool:
        return node == self.local or node in self._up

    @property
    def is_shut_down(self) -> bool:
        """Whether `shutdown()` was called: this gossiper no longer runs rounds or answers."""
        return self._shut_down

    def app_state(self, node: NodeId, key: str) -> str | None:
        state = self._states.get(node)
        value = None if state is None else state.get(key)
        return None if value is None else value.value

    def generation_of(self, node: NodeId) -> int | None:
        state = self._states.get(node)
        return None if state is None else state.generation

    # ---- the round ------------------------------------------------------------------------

    def _make_syn(self) -> GossipDigestSyn:
        digests = tuple(GossipDigest(endpoint, state.generation, state.max_version)
                        for endpoint, state in sorted(self._states.items()))
        return GossipDigestSyn(self.cluster_name, digests)

    def _round_targets(self) -> list[NodeId]:
        """Who gets this round's SYN: a live peer, maybe an unreachable one, maybe a seed."""
        live = sorted(self._up)
        unreachable = sorted(ep for ep in self._states if ep != self.local and ep not in self._up)
        targets: list[NodeId] = []
        gossiped_to_seed = False
        if live:
            peer = live[self.rng.randrange(len(live))]
            targets.append(peer)
            gossiped_to_seed = peer in self.seeds
        if unreachable and self.rng.random() < len(unreachable) / (len(live) + 1):
            targets.append(unreachable[self.rng.randrange(len(unreachable))])
        if not gossiped_to_seed or len(live) < len(self.seeds):
            seed = self._maybe_seed(len(live), len(unreachable))
            if seed is not None:
                targets.append(seed)
        return list(dict.fromkeys(targets))  # one SYN per target, first choice first

    def _maybe_seed(self, live_count: int, unreachable_count: int) -> NodeId | None:
        """Cassandra's maybeGossipToSeed: always while alone, else with probability
        seeds / (live + unreachable), so partitions of non-seeds heal through the seeds."""
        if not self.seeds:
            return None
        if live_count > 0:
            probability = len(self.seeds) / (live_count + unreachable_count)
            if self.rng.random() > probability:
                return None
        return self.seeds[self.rng.randrange(len(self.seeds))]

    def _status_check(self, now_ms: int, out: list) -> None:
        """Cassandra's doStatusCheck: interpret every peer, convict the UP ones phi condemns."""
        for endpoint in sorted(self._states):
            if endpoint == self.local:
                continue
            if self.detector.interpret(endpoint, now_ms) and endpoint in self._up:
                self._mark_down(endpoint, out)

    # ---- the exchange ---------------------------------------------------------------------

    def _on_syn(self, source: NodeId, syn: GossipDigestSyn) -> list:
        if syn.cluster_name != self.cluster_name:
            return [Log("warning", f"gossip: ignoring SYN from {source}: cluster name "
                                   f"{syn.cluster_name!r} is not ours ({self.cluster_name!r})")]
        requests, states = self._examine(syn.digests)
        return [Send(source, GossipDigestAck(requests, states))]

    def _examine(self, digests: tuple[GossipDigest, ...]) -> tuple[tuple[GossipDigest, ...], EndpointStates]:
        """Cassandra's examineGossiper: what to request, and what to send, for a SYN."""
        requests: list[GossipDigest] = []
        deltas: dict[NodeId, EndpointState] = {}
        for digest in sorted(digests, key=lambda d: d.endpoint):
            endpoint = digest.endpoint
            local = self._states.get(endpoint)
            if local is None or digest.generation > local.generation:
                if endpoint != self.local:
                    requests.append(GossipDigest(endpoint, digest.generation, 0))
            elif digest.generation < local.generation:
                deltas[endpoint] = local
            elif digest.max_version > local.max_version:
                requests.append(GossipDigest(endpoint, digest.generation, local.max_version))
            elif digest.max_version < local.max_version:
                delta = local.newer_than(digest.max_version)
                if delta is not None:
                    deltas[endpoint] = delta
        mentioned = {digest.endpoint for digest in digests}
        for endpoint in sorted(self._states):
            if endpoint not in mentioned:
                deltas[endpoint] = self._states[endpoint]
        return tuple(requests), tuple(sorted(deltas.items()))

    def _on_ack(self, source: NodeId, ack: GossipDigestAck, now_ms: int) -> list:
        out: list = []
        self._apply_states(source, ack.states, now_ms, out)
        replies: dict[NodeId, EndpointState] = {}
        for request in ack.requests:
            local = self._states.get(request.endpoint)
            if local is None:
                continue
            since = request.max_version if request.generation == local.generation else _WHOLE_STATE
            delta = local.newer_than(since)
            if delta is not None:
                replies[request.endpoint] = delta
        out.insert(0, Send(source, GossipDigestAck2(tuple(sorted(replies.items())))))
        self._on_answer(source, now_ms, out)
        return out

    def _on_ack2(self, source: NodeId, ack2: GossipDigestAck2, now_ms: int) -> list:
        out: list = []
        self._apply_states(source, ack2.states, now_ms, out)
        self._on_answer(source, now_ms, out)
        return out

    def _on_answer(self, source: NodeId, now_ms: int, out: list) -> None:
        """An ACK or ACK2 from `source` closes a round trip we opened: it is alive -- unless
        its current incarnation announced its shutdown (this answer was overtaken by the
        announcement on the way; it comes back as a new generation)."""
        state = self._states.get(source)
        if state is not None and source not in self._up and not _is_shut_down(state):
            self._mark_up(source, now_ms, out)

    # ---- shutdown ---------------------------------------------------------------------------

    def _on_shutdown(self, source: NodeId, msg: GossipShutdown) -> list:
        """Cassandra's GossipShutdownVerbHandler -> markAsShutdown."""
        if msg.endpoint != source:
            return [Log("warning", f"gossip: ignoring a shutdown of {msg.endpoint} sent by {source}")]
        state = self._states.get(source)
        if state is None:
            return [Log("debug", f"gossip: ignoring a shutdown of unknown node {source}")]
        if msg.generation < state.generation:
            return [Log("debug", f"gossip: ignoring a shutdown of {source}'s older generation {msg.generation}")]
        out: list = [Log("info", f"gossip: node {source} announced its shutdown")]
        if msg.generation > state.generation:
            # A restart we have not heard of yet, already over: down, but no state to mark.
            if source in self._up:
                self._mark_down(source, out)
            return out
        self._mark_shut_down(source, state, out)
        return out

    def _mark_shut_down(self, endpoint: NodeId, state: EndpointState, out: list) -> None:
        """Record STATUS "shutdown" at SHUTDOWN_VERSION, and mark `endpoint` DOWN."""
        states = state.as_dict()
        changed = states.get(STATUS_KEY, VersionedValue("", 0)).value != STATUS_SHUTDOWN
        states[STATUS_KEY] = VersionedValue(STATUS_SHUTDOWN, SHUTDOWN_VERSION)
        self._states[endpoint] = EndpointState.build(HeartbeatState(state.generation, SHUTDOWN_VERSION), states)
        self.detector.remove(endpoint)  # that incarnation's cadence is history
        if endpoint in self._up:
            self._mark_down(endpoint, out)
        if changed:
            self._announce(endpoint, ((STATUS_KEY, states[STATUS_KEY]),), out)

    # ---- applying remote state ------------------------------------------------------------

    def _apply_states(self, source: NodeId, states: EndpointStates, now_ms: int, out: list) -> None:
        """Cassandra's notifyFailureDetector + applyStateLocally, endpoint by endpoint."""
        for endpoint, remote in sorted(states, key=lambda item: item[0]):
            if endpoint == self.local:  # nobody knows our state better than we do
                if remote.generation > self._states[self.local].generation:
                    out.append(Log("warning", f"gossip: {source} holds a newer generation "
                                              f"({remote.generation}) of our own address"))
                continue
            local = self._states.get(endpoint)
            if local is None:
                fresh = self._learn_new(endpoint, remote, now_ms, out)
            elif remote.generation > local.generation:
                fresh = self._learn_restart(endpoint, remote, now_ms, out)
            elif remote.generation == local.generation:
                fresh = self._merge(endpoint, local, remote, now_ms, out)
            else:
                fresh = False  # an older incarnation: stale news
            if fresh and endpoint != source and endpoint not in self._up:
                self._probe(endpoint, now_ms, out)

    def _learn_new(self, endpoint: NodeId, remote: EndpointState, now_ms: int, out: list) -> bool:
        if len(self._states) >= MAX_KNOWN_ENDPOINTS:
            out.append(Log("warning", f"gossip: ignoring {endpoint}: already {MAX_KNOWN_ENDPOINTS} endpoints"))
            return False
        self._states[endpoint] = remote
        alive = not _is_shut_down(remote)
        if alive:
            self.detector.heartbeat(endpoint, now_ms)
        out.append(Event(EVENT_NODE_JOINED, endpoint))
        out.append(Log("info", f"gossip: node {endpoint} is now part of the cluster"))
        self._announce(endpoint, remote.app_states, out)
        return alive

    def _learn_restart(self, endpoint: NodeId, remote: EndpointState, now_ms: int, out: list) -> bool:
        """Cassandra's handleMajorStateChange for a known node: replace its whole state."""
        self._states[endpoint] = remote
        out.append(Event(EVENT_NODE_RESTARTED, endpoint))
        out.append(Log("info", f"gossip: node {endpoint} restarted (generation {remote.generation})"))
        if endpoint in self._up:
            self._mark_down(endpoint, out)
        # A new incarnation: relearn its heartbeat cadence from scratch.
        self.detector.remove(endpoint)
        alive = not _is_shut_down(remote)
        if alive:
            self.detector.heartbeat(endpoint, now_ms)
        self._announce(endpoint, remote.app_states, out)
        return alive

    def _merge(self, endpoint: NodeId, local: EndpointState, remote: EndpointState,
               now_ms: int, out: list) -> bool:
        """Same incarnation (Cassandra's applyNewStates): keep the newer of each piece.
        Returns whether the heartbeat advanced (and is news of life: a shutdown mark is not)."""
        advanced = remote.heartbeat.version > local.heartbeat.version
        states = local.as_dict()
        changed: list[tuple[str, VersionedValue]] = []
        for key, value in remote.app_states:
            current = states.get(key)
            if current is None and len(states) >= MAX_APP_STATES:
                out.append(Log("warning", f"gossip: dropping state {key} of {endpoint}: too many states"))
            elif current is None or value.version > current.version:
                states[key] = value
                changed.append((key, value))
        if not advanced and not changed:
            return False
        heartbeat = remote.heartbeat if advanced else local.heartbeat
        merged = self._states[endpoint] = EndpointState.build(heartbeat, states)
        if _is_shut_down(merged):  # it announced its shutdown; we hear of it second-hand
            self.detector.remove(endpoint)
            if endpoint in self._up:
                self._mark_down(endpoint, out)
            advanced = False
        elif advanced:
            self.detector.heartbeat(endpoint, now_ms)
        self._announce(endpoint, tuple(changed), out)
        return advanced

    def _announce(self, endpoint: NodeId, changed: tuple[tuple[str, VersionedValue], ...], out: list) -> None:
        for key, value in sorted(changed, key=lambda item: (item[0] != STATUS_KEY, item[0])):
            out.append(Event(EVENT_NODE_STATE, (endpoint, key, value.value)))

    # ---- liveness -------------------------------------------------------------------------

    def _probe(self, endpoint: NodeId, now_ms: int, out: list) -> None:
        """Our stand-in for Cassandra's ECHO: a SYN whose ACK will mark `endpoint` UP."""
        last = self._last_probe_ms.get(endpoint)
        if last is not None and now_ms - last < self.interval_ms:
            return
        self._last_probe_ms[endpoint] = now_ms
        out.append(Send(endpoint, self._make_syn()))

    def _mark_up(self, endpoint: NodeId, now_ms: int, out: list) -> None:
        self._up.add(endpoint)
        if not self.detector.is_alive(endpoint, now_ms):
            # Alive by a round trip, yet its arrival history would convict it at the next
            # round: start that history afresh rather than flap DOWN again.
            self.detector.remove(endpoint)
            self.detector.heartbeat(endpoint, now_ms)
        out.append(Event(EVENT_STATUS_CHANGE, (endpoint, STATUS_UP)))
        out.append(Log("info", f"gossip: node {endpoint} is now UP"))

    def _mark_down(self, endpoint: NodeId, out: list) -> None:
        self._up.discard(endpoint)
        out.append(Event(EVENT_STATUS_CHANGE, (endpoint, STATUS_DOWN)))
        out.append(Log("info", f"gossip: node {endpoint} is now DOWN"))


def _is_shut_down(state: EndpointState) -> bool:
    """Whether this incarnation announced its shutdown (its STATUS says so)."""
    status = state.get(STATUS_KEY)
    return status is not None and status.value == STATUS_SHUTDOWN
