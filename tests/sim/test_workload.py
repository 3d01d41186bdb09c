"""The seeded client workload and the history it records: what the clients do, what the
records say, and that a fault-free run at strong levels is seen as such by the checkers."""

from __future__ import annotations

import random
from collections import defaultdict

from agora.sim.checkers import Replication, check
from agora.sim.history import History
from agora.sim.workload import CLIENT_TIMEOUT_MS, Workload, WorkloadSpec

from .test_coordinator_sim import kv_cluster


def _run(seed: int, spec: WorkloadSpec, **cluster_args) -> tuple[History, Workload]:
    c = kv_cluster(seed, **cluster_args)
    history = History()
    workload = Workload(c, spec, history, random.Random(seed))
    workload.start()
    assert c.run_until(lambda: workload.done, 600_000)
    return history, workload


def test_without_faults_every_operation_succeeds_and_strong_reads_are_never_stale():
    spec = WorkloadSpec(ops=400, keys=3, clients=6, read_levels=("QUORUM", "ALL"), write_levels=("QUORUM",))
    history, workload = _run(51, spec)
    assert workload.issued == 400
    assert all(op.outcome == "ok" for op in history.ops)
    kinds = {op.kind for op in history.ops}
    assert kinds == {"write", "delete", "read"}
    report = check(history, Replication(3))
    assert report.ok and report.staleness.stale == 0 and report.reads_checked > 100


def test_written_values_are_unique_and_each_read_names_the_write_it_saw():
    history, _ = _run(52, WorkloadSpec(ops=300, keys=2, clients=4))
    values = [op.value for op in history.ops if op.kind == "write"]
    assert len(values) == len(set(values))
    written = {op.value: op for op in history.ops if op.kind == "write"}
    for op in history.ops:
        if op.kind == "read" and op.value is not None:
            assert written[op.value].key == op.key and written[op.value].timestamp == op.timestamp


def test_a_scan_is_one_read_record_per_key_with_the_scans_times():
    spec = WorkloadSpec(ops=200, keys=4, clients=3, read_fraction=0.5, scan_fraction=1.0)
    history, _ = _run(53, spec)
    scans = defaultdict(list)
    for op in history.ops:
        if op.scan:
            scans[(op.client, op.invoke_ms)].append(op)
    assert scans
    for records in scans.values():
        assert sorted(op.key for op in records) == ["k0", "k1", "k2", "k3"]
        assert len({(op.complete_ms, op.outcome, op.cl) for op in records}) == 1


def test_client_timestamps_come_from_each_clients_skewed_clock_and_never_repeat():
    spec = WorkloadSpec(ops=300, keys=2, clients=4, timestamps="client", client_skew_ms=500)
    history, workload = _run(54, spec)
    skews = {c.skew_ms for c in workload.clients}
    assert len(skews) > 1 and all(abs(s) <= 500 for s in skews)
    by_client = defaultdict(list)
    for op in history.ops:
        if op.is_write:
            by_client[op.client].append(op.timestamp)
    for stamps in by_client.values():
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_a_client_whose_coordinator_is_paused_gives_up_after_its_timeout():
    c = kv_cluster(55)
    history = History()
    workload = Workload(c, WorkloadSpec(ops=60, keys=2, clients=3), history, random.Random(1))
    c.pause(1)
    workload.start()
    assert c.run_until(lambda: workload.done, 600_000)
    stuck = [op for op in history.ops if op.error == "ClientTimeout"]
    assert stuck and all(op.node == c.nodes[1] for op in stuck)
    assert all(op.complete_ms - op.invoke_ms == CLIENT_TIMEOUT_MS for op in stuck)
    assert all(op.outcome == "info" for op in stuck)
