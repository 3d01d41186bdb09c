"""Gossip wire messages and the endpoint state they carry.

Owns: `HeartbeatState`, `VersionedValue`, `EndpointState`, `GossipDigest` and the four
gossip verbs `GossipDigestSyn` (20), `GossipDigestAck` (21), `GossipDigestAck2` (22) and
`GossipShutdown` (23), with their strict wire validation. It deliberately knows nothing of how gossip rounds run, of
liveness or of what the application-state keys mean; that is `gossip.py`.

The shapes are Cassandra's (`gms/HeartBeatState.java`, `VersionedValue.java`,
`EndpointState.java`, `GossipDigest.java`, `GossipDigestSyn.java`, `GossipDigestAck.java`,
`GossipDigestAck2.java`, and `GossipShutdownVerbHandler.java` for the shutdown announcement,
Verb.GOSSIP_SHUTDOWN): a node's state is its heartbeat (generation = incarnation, bumped on
every restart; version = a per-incarnation counter bumped every gossip round) plus application
states key -> (value, version). Heartbeat and application-state versions come from one
counter per incarnation, so "the largest version in a state" orders everything a node said.

Wire forms (lists of msgpack-native values, see `agora.core.wire`):

    HeartbeatState   [generation, version]
    VersionedValue   [value, version]
    EndpointState    [generation, heartbeat_version, [[key, value, version], ...]]
    GossipDigest     [endpoint, generation, max_version]
    GossipDigestSyn  [cluster_name, [digest, ...]]
    GossipDigestAck  [[digest, ...], [[endpoint, endpoint_state], ...]]
    GossipDigestAck2 [[[endpoint, endpoint_state], ...]]
    GossipShutdown   [endpoint, generation]

Every `from_wire` checks types, sizes (the named limits below) and uniqueness and raises
`ProtocolError` on anything else; a peer's bad bytes never become an exception of another kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from agora.core.frozen import fast_init
from agora.core.types import NodeId
from agora.core.wire import Message, expect

# ---- limits ---------------------------------------------------------------------------------

# Endpoints in one message (digests, or states). Clusters are tiny (3..100 nodes); Cassandra
# clusters top out around 1000 nodes. A SYN carries one digest per known endpoint, so the
# gossiper never knows more endpoints than this (see gossip.MAX_KNOWN_ENDPOINTS).
MAX_GOSSIP_ENDPOINTS = 1024
# Application states per endpoint: Cassandra's ApplicationState enum has ~30 members.
MAX_APP_STATES = 64
# Characters in an application-state key, e.g. "NATIVE_ADDRESS_AND_PORT" (23).
MAX_APP_STATE_KEY_CHARS = 64
# Characters in an application-state value. TOKENS is the big one: 256 vnode tokens of up to
# 20 digits plus separators is ~5.4 KiB; 64 KiB leaves room for num_tokens in the thousands.
MAX_APP_STATE_VALUE_CHARS = 64 * 1024
# Characters in an endpoint "ip:port"; a bracketed IPv6 address with port is at most 47.
MAX_ENDPOINT_CHARS = 128
# Characters in a cluster name (cassandra.yaml cluster_name; no limit there, 256 is generous).
MAX_CLUSTER_NAME_CHARS = 256
# Generations and versions are non-negative and fit msgpack's signed 64-bit integer
# (Cassandra uses 32-bit ints; a wider range costs nothing here).
MAX_COUNTER = 2**63 - 1
# TCP/UDP port range for the port half of an endpoint.
MAX_PORT = 65535


# ---- field checks ---------------------------------------------------------------------------


# Each check builds its error text only when it fails (they run for every field decoded).


def _check_list(value: Any, what: str, max_len: int) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        expect(False, f"{what}: expected a list")
    if len(value) > max_len:
        expect(False, f"{what}: {len(value)} items > {max_len}")
    return value


def _check_fields(fields: Any, what: str, count: int) -> list | tuple:
    if not isinstance(fields, (list, tuple)):
        expect(False, f"{what}: expected a list")
    if len(fields) != count:
        expect(False, f"{what}: expected {count} fields, got {len(fields)}")
    return fields


def _check_counter(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        expect(False, f"{what}: expected an int")
    if not 0 <= value <= MAX_COUNTER:
        expect(False, f"{what}: {value} out of range")
    return value


def _check_str(value: Any, what: str, min_len: int, max_len: int) -> str:
    if not isinstance(value, str):
        expect(False, f"{what}: expected a str")
    if not min_len <= len(value) <= max_len:
        expect(False, f"{what}: length {len(value)} not in [{min_len}, {max_len}]")
    return value


# Endpoints that passed `check_endpoint` (validity is a property of the string alone, and a
# cluster has few): checked once, then looked up. Cleared when full, so it stays bounded.
_VALID_ENDPOINTS: dict[str, None] = {}
_MAX_VALID_ENDPOINTS_KEPT = 4096


def check_endpoint(value: Any, what: str = "endpoint") -> NodeId:
    """A NodeId "host:port": non-empty host, decimal port in 1..65535."""
    if type(value) is str and value in _VALID_ENDPOINTS:
        return value
    _check_endpoint(value, what)
    if type(value) is str:
        if len(_VALID_ENDPOINTS) >= _MAX_VALID_ENDPOINTS_KEPT:
            _VALID_ENDPOINTS.clear()
        _VALID_ENDPOINTS[value] = None
    return value


def _check_endpoint(value: Any, what: str) -> None:
    _check_str(value, what, 3, MAX_ENDPOINT_CHARS)
    host, sep, port = value.rpartition(":")
    expect(sep == ":" and host != "", f"{what}: {value!r} is not host:port")
    expect(port.isascii() and port.isdigit() and len(port) <= 5, f"{what}: bad port in {value!r}")
    expect(1 <= int(port) <= MAX_PORT, f"{what}: port out of range in {value!r}")


# ---- state ----------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class HeartbeatState:
    """generation: the node's incarnation (Cassandra: seconds since the epoch at startup, and
    strictly larger after each restart). version: bumped every gossip round."""

    generation: int
    version: int

    def to_wire(self) -> list:
        return [self.generation, self.version]

    @classmethod
    def from_wire(cls, fields: Any) -> HeartbeatState:
        generation, version = _check_fields(fields, "heartbeat", 2)
        return cls(_check_counter(generation, "generation"), _check_counter(version, "heartbeat version"))


@fast_init
@dataclass(frozen=True, slots=True)
class VersionedValue:
    """One application state's value and the version it was set at."""

    value: str
    version: int

    def to_wire(self) -> list:
        return [self.value, self.version]

    @classmethod
    def from_wire(cls, fields: Any) -> VersionedValue:
        value, version = _check_fields(fields, "versioned value", 2)
        return cls(_check_str(value, "app state value", 0, MAX_APP_STATE_VALUE_CHARS),
                   _check_counter(version, "app state version"))


@fast_init
@dataclass(frozen=True, slots=True)
class EndpointState:
    """Everything gossip knows about one endpoint: heartbeat and application states.

    app_states is a tuple of (key, VersionedValue) sorted by key: canonical, hashable, and
    iterated in the same order in every process.
    """

    heartbeat: HeartbeatState
    app_states: tuple[tuple[str, VersionedValue], ...] = ()
    # Derived on first use and kept (the state is immutable): not part of its value.
    _max_version: int | None = field(default=None, init=False, repr=False, compare=False)
    _by_key: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def generation(self) -> int:
        return self.heartbeat.generation

    @property
    def max_version(self) -> int:
        """The largest version of the heartbeat or any application state (Cassandra's
        Gossiper.getMaxEndpointStateVersion)."""
        m = self._max_version
        if m is None:
            m = self.heartbeat.version
            for _, v in self.app_states:
                if v.version > m:
                    m = v.version
            object.__setattr__(self, "_max_version", m)
        return m

    def get(self, key: str) -> VersionedValue | None:
        by_key = self._by_key
        if by_key is None:
            by_key = {}
            for k, v in self.app_states:
                by_key.setdefault(k, v)  # the first of a repeated key, as a scan finds it
            object.__setattr__(self, "_by_key", by_key)
        return by_key.get(key)

    def as_dict(self) -> dict[str, VersionedValue]:
        return dict(self.app_states)

    @classmethod
    def build(cls, heartbeat: HeartbeatState, states: dict[str, VersionedValue]) -> EndpointState:
        return cls(heartbeat, tuple(sorted(states.items())))

    def newer_than(self, version: int) -> EndpointState | None:
        """The part of this state with version > `version`, or None if nothing is newer
        (Cassandra's Gossiper.getStateForVersionBiggerThan). The heartbeat always travels
        along: the receiver keeps whichever heartbeat is newer."""
        states = tuple((k, v) for k, v in self.app_states if v.version > version)
        if self.heartbeat.version <= version and not states:
            return None
        return EndpointState(self.heartbeat, states)

    def to_wire(self) -> list:
        apps = [[k, v.value, v.version] for k, v in self.app_states]
        return [self.heartbeat.generation, self.heartbeat.version, apps]

    @classmethod
    def from_wire(cls, fields: Any) -> EndpointState:
        # The usual, well-formed case in one pass of inline checks; anything else goes
        # through the checks below, which name what is wrong.
        if type(fields) is list and len(fields) == 3:
            generation, hb_version, apps = fields
            if type(generation) is int and type(hb_version) is int \
                    and 0 <= generation <= MAX_COUNTER and 0 <= hb_version <= MAX_COUNTER \
                    and type(apps) is list and len(apps) <= MAX_APP_STATES:
                states = {}
                for item in apps:
                    if type(item) is not list or len(item) != 3:
                        break
                    key, value, version = item
                    if type(key) is not str or not 1 <= len(key) <= MAX_APP_STATE_KEY_CHARS \
                            or key in states or type(value) is not str \
                            or len(value) > MAX_APP_STATE_VALUE_CHARS \
                            or type(version) is not int or not 0 <= version <= MAX_COUNTER:
                        break
                    states[key] = VersionedValue(value, version)
                else:
                    return cls(HeartbeatState(generation, hb_version), tuple(sorted(states.items())))
        return cls._from_wire_checked(fields)

    @classmethod
    def _from_wire_checked(cls, fields: Any) -> EndpointState:
        generation, hb_version, apps = _check_fields(fields, "endpoint state", 3)
        heartbeat = HeartbeatState.from_wire([generation, hb_version])
        states: dict[str, VersionedValue] = {}
        for item in _check_list(apps, "app states", MAX_APP_STATES):
            key, value, version = _check_fields(item, "app state", 3)
            _check_str(key, "app state key", 1, MAX_APP_STATE_KEY_CHARS)
            expect(key not in states, f"app state key {key!r} repeated")
            states[key] = VersionedValue.from_wire([value, version])
        return cls.build(heartbeat, states)


@fast_init
@dataclass(frozen=True, slots=True)
class GossipDigest:
    """What one side knows of one endpoint: its generation and largest version."""

    endpoint: NodeId
    generation: int
    max_version: int

    def to_wire(self) -> list:
        return [self.endpoint, self.generation, self.max_version]

    @classmethod
    def from_wire(cls, fields: Any) -> GossipDigest:
        if type(fields) is list and len(fields) == 3:  # the usual case, checked inline
            endpoint, generation, max_version = fields
            if type(endpoint) is str and endpoint in _VALID_ENDPOINTS \
                    and type(generation) is int and 0 <= generation <= MAX_COUNTER \
                    and type(max_version) is int and 0 <= max_version <= MAX_COUNTER:
                return cls(endpoint, generation, max_version)
        endpoint, generation, max_version = _check_fields(fields, "digest", 3)
        return cls(check_endpoint(endpoint), _check_counter(generation, "digest generation"),
                   _check_counter(max_version, "digest max_version"))


EndpointStates = tuple[tuple[NodeId, EndpointState], ...]  # sorted by endpoint


def _digests_to_wire(digests: tuple[GossipDigest, ...]) -> list:
    return [d.to_wire() for d in digests]


def _digests_from_wire(value: Any) -> tuple[GossipDigest, ...]:
    digests = tuple(GossipDigest.from_wire(d) for d in _check_list(value, "digests", MAX_GOSSIP_ENDPOINTS))
    expect(len({d.endpoint for d in digests}) == len(digests), "digests: endpoint repeated")
    return digests


def _states_to_wire(states: EndpointStates) -> list:
    return [[endpoint, state.to_wire()] for endpoint, state in states]


def _states_from_wire(value: Any) -> EndpointStates:
    states: dict[NodeId, EndpointState] = {}
    for item in _check_list(value, "endpoint states", MAX_GOSSIP_ENDPOINTS):
        endpoint, state = _check_fields(item, "endpoint state entry", 2)
        check_endpoint(endpoint)
        if endpoint in states:
            expect(False, f"endpoint states: {endpoint!r} repeated")
        states[endpoint] = EndpointState.from_wire(state)
    return tuple(sorted(states.items()))


# ---- verbs ----------------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class GossipDigestSyn(Message):
    """Opens a gossip exchange: the sender's digest of every endpoint it knows."""

    VERB: ClassVar[int] = 20
    cluster_name: str
    digests: tuple[GossipDigest, ...]

    def to_wire(self) -> list:
        return [self.cluster_name, _digests_to_wire(self.digests)]

    @classmethod
    def from_wire(cls, fields: Any) -> GossipDigestSyn:
        cluster_name, digests = _check_fields(fields, "GossipDigestSyn", 2)
        return cls(_check_str(cluster_name, "cluster_name", 0, MAX_CLUSTER_NAME_CHARS),
                   _digests_from_wire(digests))


@fast_init
@dataclass(frozen=True, slots=True)
class GossipDigestAck(Message):
    """Answers a SYN: `requests` are digests (endpoint, generation, version we hold) of state
    the SYN's sender should send back; `states` is state the SYN's sender lacks."""

    VERB: ClassVar[int] = 21
    requests: tuple[GossipDigest, ...]
    states: EndpointStates

    def to_wire(self) -> list:
        return [_digests_to_wire(self.requests), _states_to_wire(self.states)]

    @classmethod
    def from_wire(cls, fields: Any) -> GossipDigestAck:
        requests, states = _check_fields(fields, "GossipDigestAck", 2)
        return cls(_digests_from_wire(requests), _states_from_wire(states))


@fast_init
@dataclass(frozen=True, slots=True)
class GossipDigestAck2(Message):
    """Closes an exchange: the state the ACK requested."""

    VERB: ClassVar[int] = 22
    states: EndpointStates

    def to_wire(self) -> list:
        return [_states_to_wire(self.states)]

    @classmethod
    def from_wire(cls, fields: Any) -> GossipDigestAck2:
        (states,) = _check_fields(fields, "GossipDigestAck2", 1)
        return cls(_states_from_wire(states))


@fast_init
@dataclass(frozen=True, slots=True)
class GossipShutdown(Message):
    """A node's farewell: `endpoint` (the sender itself) is shutting down cleanly and will not
    answer again in incarnation `generation` (Cassandra's GOSSIP_SHUTDOWN). Cassandra's carries
    no payload and trusts the connection's peer; ours names the endpoint, to be checked against
    the sender, and the generation, so that a farewell delayed past a restart is recognised as
    stale."""

    VERB: ClassVar[int] = 23
    endpoint: NodeId
    generation: int

    def to_wire(self) -> list:
        return [self.endpoint, self.generation]

    @classmethod
    def from_wire(cls, fields: Any) -> GossipShutdown:
        endpoint, generation = _check_fields(fields, "GossipShutdown", 2)
        return cls(check_endpoint(endpoint), _check_counter(generation, "shutdown generation"))


GOSSIP_MESSAGES: tuple[type[Message], ...] = (GossipDigestSyn, GossipDigestAck, GossipDigestAck2, GossipShutdown)
