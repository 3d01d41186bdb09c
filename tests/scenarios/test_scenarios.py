"""Scenario scripts (`tests/scenarios/*.txt`): the protocol's behaviour step by step on the
simulator, each step with the output it must print (`agora.sim.scenario`).

A script passes when running it reproduces its own text. When behaviour changes on
purpose, regenerate the expected outputs with `AGORA_REWRITE_SCENARIOS=1 pytest
tests/scenarios` and review the diff like code."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from agora.sim.scenario import run_script

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(HERE.glob("*.txt"))
REWRITE = os.environ.get("AGORA_REWRITE_SCENARIOS") == "1"


def test_every_issue_scenario_is_here():
    names = {p.stem for p in SCRIPTS}
    assert {"quorum_write_read", "stale_read_at_one", "read_repair_at_all", "last_write_wins",
            "multi_dc_local_vs_each_quorum", "crash_loses_unsynced_writes"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(script: Path):
    expected = script.read_text()
    actual = run_script(expected)
    if REWRITE:
        script.write_text(actual)
        return
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            "expected", "actual"))
        pytest.fail(f"{script.name} no longer behaves as written:\n{diff}")


def test_a_wrong_claim_fails():
    script = "cluster nodes=3 rf=3\n----\n\nwrite k=a v=apple cl=ALL via=1\n----\nok\n\nread k=a cl=ONE via=2\n----\na=banana\n"
    assert "a=apple" in run_script(script)
    assert run_script(script) != script
