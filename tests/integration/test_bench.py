"""Smoke test of `agora bench`: a short YCSB-A run through the real driver against a 3-node cluster."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import make_cluster


@pytest.fixture(scope="module")
def bench_cluster(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory, "bench", subnet="127.0.40")
    yield cluster
    cluster.down(kill=True)


@pytest.mark.timeout(60)
def test_bench_workload_a_smoke(bench_cluster, tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "bench", "--hosts", "127.0.40.1", "--workload", "a", "--keys", "200",
         "--duration", "2", "--concurrency", "8", "--json", str(out), "--dir", str(bench_cluster.dir)],
        capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["operations"] > 0
    assert doc["errors"] == 0, doc["errors_by_type"]
    lat = doc["latency_us"]
    assert 0 < lat["p50_us"] <= lat["p95_us"] <= lat["p99_us"] <= lat["p99.9_us"] <= lat["max_us"]
    assert set(doc["latency_by_op_us"]) == {"read", "write"}
    assert doc["server_cpu"] and doc["server_cpu"]["us_per_op"] > 0
    assert doc["protocol_versions"] == [5]  # the highest both the driver and the node speak
    assert "throughput" in proc.stdout


@pytest.mark.timeout(60)
def test_bench_rate_and_chart(bench_cluster, tmp_path):
    """--rate is an open loop: the operation count follows rate x duration, not the cluster's speed."""
    out, chart = tmp_path / "rate.json", tmp_path / "rate.png"
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "bench", "--hosts", "127.0.40.1", "--workload", "write", "--keys", "200",
         "--duration", "2", "--rate", "200", "--processes", "2", "--json", str(out), "--chart", str(chart),
         "--dir", str(bench_cluster.dir), "--quiet", "--protocol-version", "4"],
        capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["errors"] == 0, doc["errors_by_type"]
    assert 300 <= doc["operations"] <= 440, doc["operations"]  # 200/s x 2 s = 400 intended
    assert doc["protocol_versions"] == [4]  # pinned
    assert doc["latency_windows_1s"] and doc["timeline_100ms"]
    png = chart.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.timeout(120)
def test_bench_kill_9_under_quorum_writes_fails_no_request(bench_cluster, tmp_path):
    """The issue's availability run, small: QUORUM writes at a steady rate, kill -9 of node3
    two seconds in, its restart nine seconds later. The survivors convict it in between (their
    logs say so), so the run covers the kill, the conviction and the return; not one request
    may fail or take a second, and the per-100 ms timeline records the whole run."""
    out = tmp_path / "kill.json"
    proc = subprocess.run(
        [sys.executable, "-m", "agora", "bench", "--hosts", "127.0.40.1,127.0.40.2", "--workload", "write",
         "--cl", "QUORUM", "--keys", "500", "--duration", "14", "--rate", "300", "--processes", "2",
         "--concurrency", "300", "--kill", "node3@2", "--restart-after", "9", "--json", str(out),
         "--dir", str(bench_cluster.dir), "--quiet"],
        capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert [e["event"] for e in doc["events"]] == ["kill -9 node3", "start node3"]
    assert doc["errors"] == 0, doc["errors_by_type"]
    assert doc["latency_us"]["over_1s"] == 0 and doc["latency_us"]["max_us"] < 1_000_000
    timeline = doc["timeline_100ms"]
    assert len(timeline) >= 135 and sum(ok for ok, _, _ in timeline) == doc["operations"]
    node3 = bench_cluster.node("node3")
    for name in ("node1", "node2"):
        log = (bench_cluster.dir / name / "node.log").read_text()
        assert f"node {node3.address}:7000 is now DOWN" in log, name
    assert bench_cluster.is_running(node3)
    assert "kill -9 node3" in proc.stdout  # the timeline printed with its events
