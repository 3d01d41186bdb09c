"""The hot paths' shortcuts give what the plain code gives: fast dataclass construction,
pooled msgpack packing, gossip states' remembered answers and their one-pass decoding."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import ClassVar

import msgpack
import pytest

from agora.core.errors import ProtocolError
from agora.core.frozen import fast_init
from agora.core.membership.messages import (EndpointState, GossipDigest, HeartbeatState,
                                            VersionedValue)
from agora.core.packing import pack
from agora.core.quorum import Requirement
from agora.core.types import Cell


@fast_init
@dataclass(frozen=True, slots=True)
class _Base:
    KIND: ClassVar[int] = 0
    a: int
    b: str = "x"


@fast_init
@dataclass(frozen=True, slots=True)
class _Sub(_Base):
    c: tuple = ()
    d: list = field(default_factory=list)
    e: int | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "e", self.a * 2)


def test_fast_init_builds_the_same_frozen_values():
    s = _Sub(1, c=(2,))
    assert (s.a, s.b, s.c, s.d, s.e) == (1, "x", (2,), [], 2)
    assert s == _Sub(1, "x", (2,)) and hash(_Base(3)) == hash(_Base(3))
    assert _Sub(1).d is not _Sub(1).d  # a fresh default per instance
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.a = 5
    with pytest.raises(TypeError):
        _Sub()
    assert dataclasses.replace(s, a=4).e == 8 and pickle.loads(pickle.dumps(s)) == s
    assert Cell(1, b"v") == Cell(ts=1, value=b"v", ttl_s=0, ldt_s=0)


def test_pack_is_packb_and_survives_an_unpackable_object():
    for obj in ([1, "a", b"x", None, [1.5, True]], {"k": [1, 2]}, []):
        assert pack(obj) == msgpack.packb(obj, use_bin_type=True)
    with pytest.raises(TypeError):
        pack([object()])
    assert pack([1, 2]) == msgpack.packb([1, 2], use_bin_type=True)  # no leftovers


def _state() -> EndpointState:
    return EndpointState.build(HeartbeatState(3, 40), {"DC": VersionedValue("dc1", 7),
                                                       "LOAD": VersionedValue("10", 52),
                                                       "STATUS": VersionedValue("NORMAL", 9)})


def test_endpoint_state_remembers_max_version_and_lookups_without_changing_its_value():
    s = _state()
    assert s.max_version == 52 and s.max_version == 52
    assert s.get("LOAD").value == "10" and s.get("NOPE") is None
    assert s == _state() and hash(s) == hash(_state()) and "_by_key" not in repr(s)
    assert EndpointState(HeartbeatState(1, 5)).max_version == 5


def test_well_formed_gossip_decodes_the_same_by_either_path_and_bad_input_still_fails():
    wire = _state().to_wire()
    assert EndpointState.from_wire(wire) == EndpointState._from_wire_checked(wire) == _state()
    assert EndpointState.from_wire(tuple(wire)) == _state()  # tuples take the checked path
    for bad in ([3, 40, [["DC", "dc1", 7], ["DC", "dc2", 8]]], [3, -1, []], [3, 40, [["", "v", 1]]],
                [3, 40, [["K", 5, 1]]], [3, 40], "x"):
        with pytest.raises(ProtocolError):
            EndpointState.from_wire(bad)
    assert GossipDigest.from_wire(["127.0.0.1:7000", 1, 2]) == GossipDigest("127.0.0.1:7000", 1, 2)
    for bad in (["127.0.0.1", 1, 2], ["127.0.0.1:7000", -1, 2], ["127.0.0.1:99999", 1, 2]):
        with pytest.raises(ProtocolError):
            GossipDigest.from_wire(bad)


def test_quorum_counting_by_buckets():
    anywhere = Requirement({None: 2})
    assert anywhere.reached(["dc1", "dc2", "dc1"]) == {None: 3} and anywhere.reached([]) == {}
    per_dc = Requirement({"dc1": 2, "dc2": 1})
    got = per_dc.reached(["dc1", "dc3", "dc2", "dc1"])
    assert got == {"dc1": 2, "dc2": 1} and per_dc.satisfied(got)
    assert not per_dc.satisfied({"dc1": 2})
