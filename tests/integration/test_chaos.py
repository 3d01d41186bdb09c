"""Chaos against real node processes (issue 5, item 4), loopback subnet 127.0.50: a 3-node
RF 3 cluster runs the cassandra-driver workload while the nemesis kills (-9), pauses
(SIGSTOP), partitions (iptables) and skews the clock (libfaketime) of real nodes; after
healing and repair the simulator's checkers judge the recorded history and find nothing.

The faults are shown to have happened and been felt: the killed node came back with a new
pid, iptables rules existed during each partition and none is left, operations failed or
ended unknown or were held up while faults were in effect, and the skewed node's writes carried its
skewed clock (timestamps far from the wall clock, and acknowledged writes lost to them).
And the judge can convict: the same real history, doctored in one record, is reported."""

from __future__ import annotations

import copy
import subprocess

import pytest
from cassandra import InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout
from cassandra.cluster import NoHostAvailable

from agora.chaos import tools
from agora.chaos.firewall import TAG_PREFIX, Firewall
from agora.chaos.nemesis import FAULT_KINDS
from agora.chaos.report import ops_during_faults, skewed_writes, summary_lines
from agora.chaos.run import ChaosOptions, run
from agora.chaos.workload import classify
from agora.sim.checkers import Replication, check, version_of
from agora.sim.history import History

SUBNET = "127.0.50"
DURATION_S = 28.0  # one episode of each fault kind (the nemesis runs each once whatever the duration)
SEED = 2


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    base = tmp_path_factory.mktemp("chaos")
    options = ChaosOptions(nodes=3, rf=3, duration_s=DURATION_S, faults=FAULT_KINDS, seed=SEED, subnet=SUBNET,
                           directory=str(base / "run"), history_path=str(base / "history.jsonl"))
    result = run(options)
    print("\n" + "\n".join(summary_lines(result)))
    return result


def test_the_checkers_find_nothing_wrong_in_a_real_chaos_run(chaos):
    assert chaos.error is None, chaos.error
    assert chaos.anomalies == []
    checks = chaos.checks
    assert checks.ok, [v.describe() for v in checks.violations[:5]]
    assert checks.unversioned_writes == 0  # every acknowledged write's timestamp is known
    assert checks.reads_checked > 200 and checks.final_checked == 8 and checks.keys_converged == 8
    outcomes = {op.outcome for op in chaos.history.ops}
    assert {"ok", "fail", "info"} <= outcomes and "pending" not in outcomes
    # the JSON lines file is the whole history: judged again from the file, the same verdict
    with open(chaos.options.history_path) as f:
        again = History.from_jsonl(f)
    assert len(again.ops) == len(chaos.history.ops) and len(again.faults) == len(chaos.history.faults)
    replay = check(again, Replication(3), final=chaos.final, replicas=chaos.replicas)
    assert replay.ok and len(replay.superseded) == len(checks.superseded)


def test_every_fault_happened_and_the_clients_felt_it(chaos):
    assert chaos.faults["kill"] >= 1 and chaos.faults["pause"] >= 1 and chaos.faults["skew"] >= 1
    assert chaos.faults["partition"] + chaos.faults["one-way"] >= 1
    ev = chaos.evidence
    assert ev.kills and all(old != new and new > 0 for _, old, new in ev.kills)  # restarted: a new process
    assert ev.pauses
    for rules in ev.partition_rules:  # the rules were really there during each partition ...
        assert rules and all("-j DROP" in r and TAG_PREFIX in r and f"{SUBNET}." in r for r in rules)
    assert chaos.rules_left == []  # ... and none is left
    listed = subprocess.run([tools.iptables(), "-w", "-S"], capture_output=True, text=True, check=True).stdout
    assert f"{SUBNET}." not in listed

    during = ops_during_faults(chaos)
    for kind in ("kill", "pause", "partition"):
        bad, held, total = during[kind]  # held: the faulted node answered, after a second or more
        assert bad + held > 0, f"no operation failed, timed out or was held while a {kind} was in effect ({total} ran)"

    skew_node = next(n for n in chaos.history.faults if n.kind == "skew").nodes[0]
    (start, end, offset) = ev.skews[0]
    skewed = skewed_writes(chaos)
    assert skewed, "no write carried the skewed clock"
    assert all(op.node == skew_node for op, _ in skewed)  # only the skewed coordinator's stamps
    assert any(abs(off / 1000 - offset) < 1.0 for _, off in skewed)  # the step itself, as applied
    assert all((off > 0) == (offset > 0) for _, off in skewed)
    assert chaos.checks.superseded, "the skewed clock made no acknowledged write lose"


def _doctor(history: History):
    """An ok QUORUM/ALL read that saw the newest write acknowledged at QUORUM/ALL before it,
    and an older acknowledged write of the same key: (read, newer write, older write)."""
    strong = ("QUORUM", "ALL")
    writes = [w for w in history.ops if w.kind == "write" and w.ok and w.cl in strong and w.timestamp]
    for r in history.ops:
        if r.kind != "read" or not r.ok or r.scan or r.cl not in strong or r.value is None:
            continue
        seen = next((w for w in writes if w.key == r.key and w.value == r.value and w.complete_ms < r.invoke_ms),
                    None)
        if seen is None:
            continue
        older = [w for w in writes if w.key == r.key and w.complete_ms < seen.invoke_ms
                 and version_of("write", w.timestamp, w.value) < version_of("write", seen.timestamp, seen.value)]
        if older:
            return r, seen, older[-1]
    raise AssertionError("the run recorded no read to doctor")


def test_the_same_real_history_doctored_in_one_record_is_convicted(chaos):
    rep = Replication(3)
    read, seen, older = _doctor(chaos.history)

    stale = copy.deepcopy(chaos.history)
    stale.ops[read.index].value, stale.ops[read.index].timestamp = older.value, older.timestamp
    kinds = {v.kind for v in check(stale, rep).violations}
    assert "stale-quorum-read" in kinds, kinds

    phantom = copy.deepcopy(chaos.history)
    phantom.ops[read.index].value = "nobody.1"
    assert "phantom-read" in {v.kind for v in check(phantom, rep).violations}

    failed = copy.deepcopy(chaos.history)  # the write the read saw, recorded as certainly failed
    failed.ops[seen.index].outcome = "fail"
    assert "phantom-read" in {v.kind for v in check(failed, rep).violations}

    key = read.key
    final = dict(chaos.final)
    final[key] = (older.value, older.timestamp)  # the cluster "converged" to an older write
    lost = {v.kind for v in check(chaos.history, rep, final=final).violations}
    assert lost & {"lost-write", "resurrection"}, lost  # (resurrection when the newest was a delete)
    replicas = copy.deepcopy(chaos.replicas)
    first = sorted(replicas[key])[0]
    replicas[key][first] = '["c9.9", 1]'  # one replica holds something else
    assert "divergence" in {v.kind for v in check(chaos.history, rep, replicas=replicas).violations}


def test_driver_errors_are_recorded_as_fail_only_when_nothing_happened():
    assert classify(Unavailable("x"), attempted=True) == "fail"
    assert classify(InvalidRequest("x"), attempted=True) == "fail"
    assert classify(NoHostAvailable("x", {}), attempted=False) == "fail"
    assert classify(NoHostAvailable("x", {}), attempted=True) == "info"
    assert classify(WriteTimeout("x", write_type=0), attempted=True) == "info"
    assert classify(OperationTimedOut("x"), attempted=True) == "info"
    assert classify(ConnectionResetError("x"), attempted=True) == "info"


def test_rules_of_a_dead_chaos_process_are_removed():
    fw = Firewall()
    dead_pid = 2 ** 22 + 17  # above pid_max's default: no such process
    rule = ["INPUT", "-i", "lo", "-s", f"{SUBNET}.9", "-d", f"{SUBNET}.8", "-m", "comment", "--comment",
            f"{TAG_PREFIX}{dead_pid}", "-j", "DROP"]
    subprocess.run([fw.binary, "-w", "-I", *rule], check=True)
    try:
        assert any(f"{TAG_PREFIX}{dead_pid}" in line for line in fw.listed(all_processes=True))
        assert fw.remove_stale() >= 1
        assert not any(f"{TAG_PREFIX}{dead_pid}" in line for line in fw.listed(all_processes=True))
    finally:
        subprocess.run([fw.binary, "-w", "-D", *rule], capture_output=True)
