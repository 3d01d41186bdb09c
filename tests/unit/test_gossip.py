"""Gossip: a few Gossipers joined by a tiny in-memory network on virtual time, plus the wire
validation of the gossip messages."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from heapq import heappop, heappush
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.effects import Event, Log, Send, SetTimer
from agora.core.errors import ProtocolError
from agora.core.membership.gossip import ROUND_TIMER, Gossiper
from agora.core.membership.messages import (
    MAX_GOSSIP_ENDPOINTS,
    EndpointState,
    GossipDigest,
    GossipDigestAck,
    GossipDigestAck2,
    GossipDigestSyn,
    HeartbeatState,
    VersionedValue,
)

VERBS = {cls.VERB: cls for cls in (GossipDigestSyn, GossipDigestAck, GossipDigestAck2)}
CLUSTER = "Test Cluster"


def addr(i: int) -> str:
    return f"127.0.0.{i + 1}:7000"


def encode(msg) -> bytes:
    return msgpack.packb([msg.VERB, *msg.to_wire()], use_bin_type=True)


def decode(data: bytes):
    verb, *fields = msgpack.unpackb(data, raw=False)
    return VERBS[verb].from_wire(fields)


class Net:
    """Nodes, a message delay of 1..5 ms, timers; everything on one virtual clock.

    Messages cross as msgpack bytes. A paused node neither receives nor fires timers; a
    blocked pair of nodes drops messages both ways."""

    def __init__(self, seed: int, n: int, *, seeds: int = 1, threshold: float = 8.0) -> None:
        self.rng = random.Random(seed)
        self.now = 0
        self.threshold = threshold
        self.seed_nodes = [addr(i) for i in range(seeds)]
        self._queue: list[tuple[int, int, str, str, Any]] = []
        self._seq = 0
        self._timer_token: dict[tuple[str, Any], int] = {}
        self.nodes: dict[str, Gossiper] = {}
        self.paused: set[str] = set()
        self.blocked: set[frozenset[str]] = set()
        self.trace: list[tuple[int, str, str]] = []
        self.events: list[tuple[int, str, str, Any]] = []
        for i in range(n):
            self.boot(addr(i), generation=1)

    # -- driving --
    def boot(self, node: str, generation: int) -> Gossiper:
        g = Gossiper(node, CLUSTER, self.seed_nodes, generation, random.Random(self.rng.getrandbits(64)),
                     phi_convict_threshold=self.threshold)
        self.nodes[node] = g
        self.paused.discard(node)
        self._apply(node, g.start(self.now))
        return g

    def pause(self, node: str) -> None:
        self.paused.add(node)

    def resume(self, node: str) -> None:
        self.paused.discard(node)
        self._apply(node, self.nodes[node].start(self.now))

    def set_state(self, node: str, key: str, value: str) -> None:
        self._apply(node, self.nodes[node].set_local_state(key, value))

    def run_until(self, t: int) -> None:
        while self._queue and self._queue[0][0] <= t:
            when, _, kind, node, payload = heappop(self._queue)
            self.now = when
            if node in self.paused:
                continue
            if kind == "timer":
                timer_id, token = payload
                if self._timer_token.get((node, timer_id)) == token:
                    self._apply(node, self.nodes[node].on_timer(timer_id, when))
            else:
                source, data = payload
                self._apply(node, self.nodes[node].on_message(source, decode(data), when))
        self.now = t

    def run_for(self, ms: int) -> None:
        self.run_until(self.now + ms)

    def _push(self, when: int, kind: str, node: str, payload: Any) -> None:
        self._seq += 1
        heappush(self._queue, (when, self._seq, kind, node, payload))

    def _apply(self, node: str, effects: list) -> None:
        for effect in effects:
            self.trace.append((self.now, node, repr(effect)))
            if isinstance(effect, Send):
                if frozenset((node, effect.target)) not in self.blocked:
                    delay = self.rng.randint(1, 5)
                    self._push(self.now + delay, "msg", effect.target, (node, encode(effect.message)))
            elif isinstance(effect, SetTimer):
                self._timer_token[(node, effect.timer_id)] = self._seq + 1
                self._push(self.now + effect.delay_ms, "timer", node, (effect.timer_id, self._seq + 1))
            elif isinstance(effect, Event):
                self.events.append((self.now, node, effect.kind, effect.detail))
            else:
                assert isinstance(effect, Log), effect

    # -- observing --
    def others(self, node: str) -> list[str]:
        return [n for n in sorted(self.nodes) if n != node and n not in self.paused]

    def status_events(self, about: str, status: str, since: int = 0) -> dict[str, int]:
        """observer -> first time it reported `about` as `status` at or after `since`."""
        seen: dict[str, int] = {}
        for t, observer, kind, detail in self.events:
            if kind == "status_change" and detail == (about, status) and t >= since:
                seen.setdefault(observer, t)
        return seen

    def run_until_true(self, predicate, limit_ms: int, step_ms: int = 100) -> int:
        """Advance until predicate() holds; returns the virtual time it took."""
        start = self.now
        while not predicate():
            assert self.now - start < limit_ms, f"not within {limit_ms} ms"
            self.run_for(step_ms)
        return self.now - start

    def all_see_all_up(self) -> bool:
        everyone = sorted(n for n in self.nodes if n not in self.paused)
        return all(self.nodes[n].live_nodes() == everyone for n in everyone)


def converged_net(seed: int, n: int, **kw) -> Net:
    net = Net(seed, n, **kw)
    for i in range(n):
        net.set_state(addr(i), "STATUS", "NORMAL")
        net.set_state(addr(i), "HOST_ID", f"host-{i}")
    net.run_until_true(net.all_see_all_up, limit_ms=15_000)
    return net


# ---- membership and state ---------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 5, 9])
def test_cluster_forms_and_state_spreads(n):
    net = Net(seed=n, n=n, seeds=2 if n > 3 else 1)
    for i in range(n):
        net.set_state(addr(i), "STATUS", "NORMAL")
        net.set_state(addr(i), "TOKENS", ",".join(str(i * 1000 + k) for k in range(4)))
    took = net.run_until_true(net.all_see_all_up, limit_ms=15_000)
    assert took <= 6_000
    for g in net.nodes.values():
        assert g.known_nodes() == sorted(net.nodes)
        for i in range(n):
            assert g.app_state(addr(i), "STATUS") == "NORMAL"
            assert g.generation_of(addr(i)) == 1
    # a state set later on one node reaches every node within a few rounds
    net.set_state(addr(n - 1), "SCHEMA", "5a3c0c5e-0000-4000-8000-000000000001")
    took = net.run_until_true(
        lambda: all(g.app_state(addr(n - 1), "SCHEMA") == "5a3c0c5e-0000-4000-8000-000000000001"
                    for g in net.nodes.values()), limit_ms=10_000)
    assert took <= 5_000


def test_events_announce_joins_states_and_up():
    net = converged_net(seed=7, n=3)
    observer, subject = addr(0), addr(2)
    mine = [(kind, detail) for _, o, kind, detail in net.events if o == observer]
    assert ("node_joined", subject) in mine
    assert ("node_state", (subject, "STATUS", "NORMAL")) in mine
    assert ("node_state", (subject, "HOST_ID", "host-2")) in mine
    assert ("status_change", (subject, "UP")) in mine
    assert mine.index(("node_joined", subject)) < mine.index(("status_change", (subject, "UP")))
    # a later change is announced once, with its new value
    net.set_state(subject, "STATUS", "LEAVING")
    net.run_for(5_000)
    changes = [d for _, o, k, d in net.events if o == observer and k == "node_state" and d[0] == subject
               and d[1] == "STATUS"]
    assert changes == [(subject, "STATUS", "NORMAL"), (subject, "STATUS", "LEAVING")]
    # the local node reports its own changes too
    assert net.nodes[subject].set_local_state("LOAD", "123.0") == [Event("node_state", (subject, "LOAD", "123.0"))]


def test_status_is_announced_before_other_keys():
    net = Net(seed=3, n=2)
    net.set_state(addr(1), "TOKENS", "1,2,3")
    net.set_state(addr(1), "DC", "dc1")
    net.set_state(addr(1), "STATUS", "NORMAL")
    net.run_until_true(net.all_see_all_up, limit_ms=10_000)
    keys = [d[1] for _, o, k, d in net.events if o == addr(0) and k == "node_state" and d[0] == addr(1)]
    assert keys == ["STATUS", "DC", "TOKENS"]


def test_queries():
    g = Gossiper(addr(0), CLUSTER, [addr(0), addr(1)], 42, random.Random(1))
    assert g.seeds == (addr(1),)  # never our own seed
    assert g.known_nodes() == [addr(0)] and g.live_nodes() == [addr(0)]
    assert g.is_alive(addr(0)) and not g.is_alive(addr(1))
    assert g.generation_of(addr(0)) == 42 and g.generation_of(addr(1)) is None
    assert g.app_state(addr(0), "DC") is None
    g.set_local_state("DC", "dc1")
    assert g.app_state(addr(0), "DC") == "dc1"
    state = g.endpoint_state(addr(0))
    assert state.get("DC").value == "dc1" and state.heartbeat.generation == 42
    assert g.start(0) == [SetTimer(ROUND_TIMER, 1000)]
    with pytest.raises(ValueError):
        g.set_local_state("", "x")
    with pytest.raises(ValueError):
        g.on_timer(("other", "timer"), 0)


def test_a_lone_node_gossips_to_a_seed_each_round():
    g = Gossiper(addr(1), CLUSTER, [addr(0)], 1, random.Random(1))
    out = g.on_timer(ROUND_TIMER, 1000)
    sends = [e for e in out if isinstance(e, Send)]
    assert [s.target for s in sends] == [addr(0)]
    assert sends[0].message == GossipDigestSyn(CLUSTER, (GossipDigest(addr(1), 1, 2),))
    assert out[-1] == SetTimer(ROUND_TIMER, 1000)


def test_cluster_name_mismatch_is_ignored_with_a_log():
    g = Gossiper(addr(0), CLUSTER, [], 1, random.Random(1))
    out = g.on_message(addr(1), GossipDigestSyn("Other Cluster", (GossipDigest(addr(1), 1, 5),)), 0)
    assert len(out) == 1 and isinstance(out[0], Log) and "Other Cluster" in out[0].text
    assert g.known_nodes() == [addr(0)]


def test_syn_answer_requests_what_we_lack_and_sends_what_they_lack():
    g = Gossiper(addr(0), CLUSTER, [], 5, random.Random(1))
    g.set_local_state("STATUS", "NORMAL")  # version 2
    g.set_local_state("DC", "dc1")  # version 3
    syn = GossipDigestSyn(CLUSTER, (GossipDigest(addr(0), 5, 2), GossipDigest(addr(1), 1, 9)))
    [reply] = g.on_message(addr(1), syn, 0)
    assert reply.target == addr(1)
    ack = reply.message
    assert ack.requests == (GossipDigest(addr(1), 1, 0),)
    [(endpoint, delta)] = ack.states
    assert endpoint == addr(0)
    assert delta.app_states == (("DC", VersionedValue("dc1", 3)),)  # only what is newer than 2
    # an older generation of us is answered with our whole state
    [reply] = g.on_message(addr(1), GossipDigestSyn(CLUSTER, (GossipDigest(addr(0), 4, 99),)), 0)
    assert reply.message.states == ((addr(0), g.endpoint_state(addr(0))),)


# ---- failure detection ------------------------------------------------------------------


def test_silent_node_is_convicted_by_all_and_comes_back_when_it_resumes():
    net = converged_net(seed=11, n=5)
    net.run_for(30_000)  # let every detector learn a heartbeat cadence
    victim = addr(3)
    paused_at = net.now
    net.pause(victim)
    net.run_until_true(lambda: all(not net.nodes[o].is_alive(victim) for o in net.others(victim)),
                       limit_ms=30_000)
    downs = net.status_events(victim, "DOWN", since=paused_at)
    assert sorted(downs) == net.others(victim)
    slowest = max(downs.values()) - paused_at
    # threshold 8 (Cassandra's default): conviction after 8*ln(10) = 18.4 mean heartbeat
    # inter-arrival times. Observers see a peer's heartbeat advance every 0.7..1.4 s, so 15..28 s
    # across seeds and cluster sizes 3..9; 21.9 s for this seed.
    assert 15_000 <= slowest <= 28_000, slowest
    # the others still see each other
    for o in net.others(victim):
        assert net.nodes[o].live_nodes() == net.others(victim)
    resumed_at = net.now
    net.resume(victim)
    took = net.run_until_true(net.all_see_all_up, limit_ms=10_000)
    assert took <= 3_000
    assert sorted(net.status_events(victim, "UP", since=resumed_at)) == net.others(victim)
    # it was paused, not restarted: nobody saw a new generation
    assert not [e for e in net.events if e[2] == "node_restarted"]
    # and its own view: the pause did not make it convict everybody else
    assert not [e for e in net.events if e[1] == victim and e[2] == "status_change" and e[3][1] == "DOWN"]


@pytest.mark.parametrize("seed,n", [(5, 3), (5, 5), (5, 9)])
def test_threshold_3_convicts_within_about_ten_seconds(seed, n):
    """3 * ln(10) = 6.9 mean intervals: 6..13 s across seeds and sizes 3..9."""
    net = converged_net(seed=seed, n=n, threshold=3.0)
    net.run_for(30_000)
    paused_at = net.now
    victim = addr(n - 1)
    net.pause(victim)
    net.run_until_true(lambda: all(not net.nodes[o].is_alive(victim) for o in net.others(victim)),
                       limit_ms=20_000)
    downs = net.status_events(victim, "DOWN", since=paused_at)
    assert sorted(downs) == net.others(victim)
    assert 5_000 <= max(downs.values()) - paused_at <= 13_000
    assert not [e for e in net.events if e[2] == "status_change" and e[3] != (victim, "DOWN")
                and e[3][1] == "DOWN"]  # nobody else was ever convicted


def test_restarted_node_is_announced_and_its_state_replaced():
    net = converged_net(seed=13, n=5)
    net.run_for(20_000)
    victim = addr(2)
    net.pause(victim)
    net.run_until_true(lambda: all(not net.nodes[o].is_alive(victim) for o in net.others(victim)),
                       limit_ms=30_000)
    restarted_at = net.now
    net.boot(victim, generation=2)  # a new process: knows nothing but itself and the seeds
    net.set_state(victim, "STATUS", "NORMAL")
    net.run_until_true(net.all_see_all_up, limit_ms=10_000)
    for o in net.others(victim):
        g = net.nodes[o]
        assert g.generation_of(victim) == 2
        assert g.app_state(victim, "HOST_ID") is None  # the old incarnation's state is gone
        assert g.app_state(victim, "STATUS") == "NORMAL"
    restarts = {o for t, o, k, d in net.events if k == "node_restarted" and d == victim and t >= restarted_at}
    assert sorted(restarts) == net.others(victim)
    assert sorted(net.status_events(victim, "UP", since=restarted_at)) == net.others(victim)
    # the new incarnation relearned the cluster
    assert net.nodes[victim].known_nodes() == sorted(net.nodes)


def test_fast_restart_reports_down_then_up():
    net = converged_net(seed=17, n=3)
    net.run_for(10_000)
    victim, observer = addr(1), addr(0)
    net.pause(victim)
    net.run_for(2_000)  # far too short to be convicted
    assert net.nodes[observer].is_alive(victim)
    mark = len(net.events)
    net.boot(victim, generation=2)
    net.run_until_true(net.all_see_all_up, limit_ms=10_000)
    net.run_for(2_000)
    seen = [(k, d) for _, o, k, d in net.events[mark:] if o == observer and d in (victim, (victim, "UP"),
                                                                                 (victim, "DOWN"))]
    assert seen == [("node_restarted", victim), ("status_change", (victim, "DOWN")),
                    ("status_change", (victim, "UP"))]


def test_healed_partition_does_not_revive_a_dead_node():
    """B is cut off; meanwhile X dies. When B rejoins it hears X's last heartbeats, which are
    newer than anything B had. That is old news, not a sign of life: X must stay DOWN at B."""
    net = converged_net(seed=23, n=4)
    net.run_for(20_000)
    b, x = addr(1), addr(3)
    for other in sorted(net.nodes):
        if other != b:
            net.blocked.add(frozenset((b, other)))
    net.run_for(3_000)
    net.pause(x)
    net.run_for(40_000)  # everybody has convicted x; b has convicted everybody
    assert not net.nodes[b].is_alive(x) and not net.nodes[b].is_alive(addr(0))
    x_at_b_before = net.nodes[b].endpoint_state(x).heartbeat.version
    net.blocked.clear()
    net.run_until_true(lambda: net.nodes[b].live_nodes() == [addr(0), b, addr(2)], limit_ms=10_000)
    net.run_for(10_000)
    assert net.nodes[b].endpoint_state(x).heartbeat.version > x_at_b_before  # it did hear the news
    assert not net.nodes[b].is_alive(x)
    assert not [e for e in net.events if e[1] == b and e[3] == (x, "UP") and e[0] > 20_000]


# ---- determinism ------------------------------------------------------------------------


def scenario_trace(seed: int) -> list[tuple[int, str, str]]:
    net = converged_net(seed=seed, n=5)
    net.pause(addr(4))
    net.run_for(25_000)
    net.boot(addr(4), generation=2)
    net.run_for(10_000)
    return net.trace


def trace_digest(seed: int) -> str:
    return hashlib.sha256(repr(scenario_trace(seed)).encode()).hexdigest()


def test_same_seed_same_run():
    first, second = scenario_trace(99), scenario_trace(99)
    assert first == second
    assert any("status_change" in line for _, _, line in first)
    assert scenario_trace(100) != first


def test_same_seed_same_run_across_processes():
    """Set iteration order of strings changes with PYTHONHASHSEED; the run must not."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import test_gossip; print(test_gossip.trace_digest(99))"
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True)
        digests.add(result.stdout.strip())
    assert digests == {trace_digest(99)}


# ---- the wire ---------------------------------------------------------------------------

endpoints = st.builds(lambda a, b, port: f"10.0.{a}.{b}:{port}", st.integers(0, 255), st.integers(0, 255),
                      st.integers(1, 65535))
counters = st.integers(0, 2**63 - 1)
endpoint_states = st.builds(
    lambda gen, hb, apps: EndpointState.build(HeartbeatState(gen, hb), apps),
    counters, counters,
    st.dictionaries(st.text(min_size=1, max_size=12), st.builds(VersionedValue, st.text(max_size=40), counters),
                    max_size=6))
digests = st.builds(GossipDigest, endpoints, counters, counters)
digest_lists = st.lists(digests, max_size=6, unique_by=lambda d: d.endpoint).map(tuple)
state_lists = st.dictionaries(endpoints, endpoint_states, max_size=5).map(lambda d: tuple(sorted(d.items())))
messages = st.one_of(
    st.builds(GossipDigestSyn, st.text(max_size=20), digest_lists),
    st.builds(GossipDigestAck, digest_lists, state_lists),
    st.builds(GossipDigestAck2, state_lists),
)
wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats() | st.text(max_size=12)
    | st.binary(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=25)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_messages_round_trip_through_msgpack(msg):
    assert decode(encode(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(VERBS)), st.lists(wire_values, max_size=4))
def test_random_fields_only_ever_raise_protocol_error(verb, fields):
    try:
        VERBS[verb].from_wire(fields)
    except ProtocolError:
        pass


def _leaf_paths(value, path=()):
    if isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaf_paths(item, path + (i,))
    else:
        yield path


def _replace(value, path, new):
    if not path:
        return new
    copy = list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_mutated_valid_messages_only_ever_raise_protocol_error(msg, data):
    wire = msg.to_wire()
    path = data.draw(st.sampled_from(list(_leaf_paths(wire))))
    mutated = _replace(wire, path, data.draw(wire_values))
    try:
        decoded = type(msg).from_wire(mutated)
    except ProtocolError:
        return
    assert type(msg).from_wire(decoded.to_wire()) == decoded


@pytest.mark.parametrize("fields", [
    None, [], ["c"], ["c", [], 1],
    [1, []],  # cluster name not a string
    ["c", [["127.0.0.1:7000", 1]]],  # short digest
    ["c", [["127.0.0.1:7000", True, 1]]],  # bool is not an int
    ["c", [["127.0.0.1:7000", -1, 1]]],  # negative generation
    ["c", [["127.0.0.1:7000", 1, 2**63]]],  # too big
    ["c", [["127.0.0.1:7000", 1.0, 1]]],  # float
    ["c", [["127.0.0.1", 1, 1]]],  # no port
    ["c", [["127.0.0.1:0", 1, 1]]],  # port 0
    ["c", [["127.0.0.1:99999", 1, 1]]],  # port too big
    ["c", [[":7000", 1, 1]]],  # no host
    ["c", [["127.0.0.1:7\u00b2", 1, 1]]],  # a unicode digit is not a port
    ["c", [[b"127.0.0.1:7000", 1, 1]]],  # bytes, not str
    ["c", [["127.0.0.1:7000", 1, 1], ["127.0.0.1:7000", 2, 2]]],  # repeated endpoint
    ["c" * 257, []],  # cluster name too long
    ["c", [[f"127.0.{i // 256}.{i % 256}:7000", 1, 1] for i in range(MAX_GOSSIP_ENDPOINTS + 1)]],
])
def test_malformed_syn(fields):
    with pytest.raises(ProtocolError):
        GossipDigestSyn.from_wire(fields)


@pytest.mark.parametrize("state", [
    [1, 2],  # short
    [1, 2, {}],  # app states as a map
    [1, 2, [["STATUS", "NORMAL"]]],  # no version
    [1, 2, [["", "NORMAL", 3]]],  # empty key
    [1, 2, [["STATUS", 5, 3]]],  # value not a string
    [1, 2, [["STATUS", "x" * (64 * 1024 + 1), 3]]],  # value too long
    [1, 2, [["STATUS", "a", 3], ["STATUS", "b", 4]]],  # repeated key
    [1, 2, [[f"K{i}", "v", i] for i in range(65)]],  # too many states
])
def test_malformed_endpoint_state(state):
    with pytest.raises(ProtocolError):
        GossipDigestAck2.from_wire([[["127.0.0.1:7000", state]]])
    with pytest.raises(ProtocolError):
        GossipDigestAck.from_wire([[], [["127.0.0.1:7000", state]]])


def test_valid_wire_forms():
    ack = GossipDigestAck.from_wire([[["127.0.0.2:7000", 3, 0]],
                                     [["127.0.0.1:7000", [7, 12, [["STATUS", "NORMAL", 4]]]]]])
    assert ack.requests == (GossipDigest("127.0.0.2:7000", 3, 0),)
    assert ack.states == (("127.0.0.1:7000", EndpointState(HeartbeatState(7, 12),
                                                            (("STATUS", VersionedValue("NORMAL", 4)),))),)
    assert ack.states[0][1].max_version == 12
    assert GossipDigestSyn.from_wire(["c", [["[::1]:7000", 1, 1]]]).digests[0].endpoint == "[::1]:7000"
