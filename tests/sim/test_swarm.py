"""The simulation tier: a swarm of short seeded runs with every fault kind, each healed and
checked (`agora.sim.runner`); proof that the checkers catch deliberately broken variants
of the protocol within a bounded number of seeds; reproducibility of whole runs; and the
`agora sim` command.

A failing seed here prints its replay command: `agora sim <options>` reproduces the run
byte for byte, with the violation and the operations that led to it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

import agora.core.coordinator.read as read_coordinator
import agora.core.coordinator.write as write_coordinator
from agora.cli.main import main
from agora.core.quorum import Requirement
from agora.core.types import ConsistencyLevel as CL
from agora.sim.nemesis import FAULT_KINDS
from agora.sim.runner import SimOptions, run, swarm_options

REPO = Path(__file__).resolve().parents[2]
CI_SEEDS = range(1, 201)  # a few hundred short seeds: well under two minutes on one core
CI_OPS = 200
# A broken variant must be caught within this many seeds of a workload aimed at it.
MAX_SEEDS_TO_CATCH = 10


def _failure(report) -> str:
    return "\n".join(report.summary_lines() + report.violation_lines())


def test_a_swarm_of_short_seeds_with_every_fault_kind_passes():
    seen: Counter = Counter()
    shapes: set = set()
    stale = superseded = 0
    for seed in CI_SEEDS:
        options = swarm_options(seed, CI_OPS)
        report = run(options)
        assert report.ok, _failure(report)
        seen.update(report.faults)
        shapes.add((options.dcs, options.commitlog, options.timestamps))
        stale += report.checks.staleness.stale
        superseded += len(report.checks.superseded)
    injected = {"one-way": "partition", "dc-cut": "partition", "power-loss": "crash"}
    assert {injected.get(k, k) for k in seen} == set(FAULT_KINDS), seen
    assert seen["one-way"] and seen["dc-cut"] and seen["power-loss"] and seen["crash"]
    assert {dcs for dcs, _, _ in shapes} == {1, 2, 3} and len(shapes) >= 10
    assert stale > 0 and superseded > 0  # the measurements measure something


# ---- the checkers can fail ------------------------------------------------------------------


def _first_caught(options: SimOptions) -> tuple[int, object] | None:
    """The first seed of `options` whose run finds a violation, and its report."""
    for seed in range(1, MAX_SEEDS_TO_CATCH + 1):
        report = run(replace(options, seed=seed))
        if not report.ok:
            return seed, report
    return None


def _caught_and_innocent(monkeypatch, options: SimOptions) -> set[str]:
    """Assert the broken variant patched in is caught within MAX_SEEDS_TO_CATCH seeds, and
    that the same seed passes once the patch is undone (the break, not the checker, made
    the violation). Returns the kinds of violation found."""
    caught = _first_caught(options)
    assert caught is not None, f"the broken variant went unnoticed for {MAX_SEEDS_TO_CATCH} seeds"
    seed, report = caught
    monkeypatch.undo()
    honest = run(replace(options, seed=seed))
    assert honest.ok, _failure(honest)
    return {v.kind for v in report.checks.violations}


def _one_reply_for(level: CL, real):
    def requirement(cl, rf, local_dc, per_dc):
        return Requirement({None: 1}) if cl == level else real(cl, rf, local_dc, per_dc)
    return requirement


QUORUM_ONLY = SimOptions(nodes=3, ops=300, faults=FAULT_KINDS, read_levels=("QUORUM",),
                         write_levels=("QUORUM",), think_ms=100)


def test_a_quorum_write_acknowledged_after_one_reply_is_caught(monkeypatch):
    monkeypatch.setattr(write_coordinator, "requirement", _one_reply_for(CL.QUORUM, write_coordinator.requirement))
    kinds = _caught_and_innocent(monkeypatch, QUORUM_ONLY)
    assert kinds <= {"stale-quorum-read", "resurrection", "lost-write"} and kinds


def test_a_quorum_read_that_asks_one_replica_is_caught(monkeypatch):
    monkeypatch.setattr(read_coordinator, "requirement", _one_reply_for(CL.QUORUM, read_coordinator.requirement))
    assert _caught_and_innocent(monkeypatch, QUORUM_ONLY) & {"stale-quorum-read", "resurrection"}


def test_read_repair_that_repairs_nothing_is_caught_by_convergence(monkeypatch):
    monkeypatch.setattr(read_coordinator.reconcile, "repair_for", lambda merged, version: None)
    options = SimOptions(nodes=5, ops=300, faults=("partition", "loss"), think_ms=1000, hints=False)
    assert "divergence" in _caught_and_innocent(monkeypatch, options)


def test_batch_mode_acknowledging_before_the_sync_is_caught(monkeypatch):
    from agora.core.replica.replica import Replica

    real_init = Replica.__init__

    def unsynced(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.sync_writes = False  # acknowledge from the log's buffer, as periodic mode does

    monkeypatch.setattr(Replica, "__init__", unsynced)
    # Writes at ONE that partitions keep on one replica, then that replica loses power.
    options = SimOptions(nodes=3, ops=300, faults=("crash", "partition", "loss"), commitlog="batch",
                         think_ms=1000, read_levels=("QUORUM", "ALL"), write_levels=("ONE",), hints=False)
    assert "lost-write" in _caught_and_innocent(monkeypatch, options)


# ---- reproducibility ---------------------------------------------------------------------------

REPRO = SimOptions(seed=17, nodes=5, dcs=2, ops=300, faults=FAULT_KINDS, timestamps="client", think_ms=150)


def _fingerprint(options: SimOptions) -> tuple[str, list[str]]:
    report = run(options)
    return report.trace_hash, list(report.history.to_jsonl())


def test_the_same_seed_reproduces_the_run_byte_for_byte_and_another_seed_does_not():
    first = _fingerprint(REPRO)
    assert _fingerprint(REPRO) == first
    assert _fingerprint(replace(REPRO, seed=18))[0] != first[0]


def test_the_same_seed_reproduces_the_run_in_another_process():
    expected = run(REPRO).trace_hash
    code = ("from tests.sim.test_swarm import REPRO; from agora.sim.runner import run; "
            "print(run(REPRO).trace_hash)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "123"},
                         check=True, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == expected


# ---- the command ----------------------------------------------------------------------------


def test_agora_sim_prints_what_happened(capsys, tmp_path):
    history = tmp_path / "history.jsonl"
    code = main(["sim", "--seed", "3", "--nodes", "4", "--ops", "300", "--faults", "partition,crash,skew,loss",
                 "--history", str(history)])
    out = capsys.readouterr().out
    assert code == 0, out
    for needle in ("operations: 300", "faults injected:", "stale reads:", "superseded writes",
                   "read repairs:", "simulated client operations per second", "OK"):
        assert needle in out
    assert len(history.read_text().splitlines()) >= 300


def test_agora_sim_swarm_and_a_violation_with_its_replay(capsys, monkeypatch):
    assert main(["sim", "--swarm", "2", "--seed", "5", "--ops", "100"]) == 0
    assert "swarm: 2 seeds passed" in capsys.readouterr().out
    monkeypatch.setattr(write_coordinator, "requirement", _one_reply_for(CL.QUORUM, write_coordinator.requirement))
    seed, _ = _first_caught(QUORUM_ONLY)
    code = main(["sim", "--seed", str(seed), "--nodes", "3", "--ops", "300", "--faults", "all",
                 "--read-levels", "QUORUM", "--write-levels", "QUORUM", "--think-ms", "100"])
    out = capsys.readouterr().out
    assert code == 1
    assert "VIOLATION stale-quorum-read" in out or "VIOLATION" in out
    assert f"replay: agora sim --seed {seed} --nodes 3" in out
    assert "trace of key" in out


def test_agora_sim_rejects_unknown_faults(capsys):
    assert main(["sim", "--faults", "meteor"]) == 2
    assert "unknown fault kind 'meteor'" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [1, 2])
def test_swarm_options_are_a_function_of_the_seed(seed):
    assert swarm_options(seed, 100) == swarm_options(seed, 100)
