"""The `agora` command as a user runs it: up, status, stop --kill, start, down, the demo, and a
bad config file; plus a node shrugging off garbage from a peer and a bad admin request."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from agora.runtime.admin_client import AdminClient, AdminError
from agora.runtime.cluster import LocalCluster


def agora(*args, cwd, timeout=180, check=True):
    proc = subprocess.run([sys.executable, "-m", "agora", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"agora {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workdir(tmp_path):
    yield tmp_path
    LocalCluster(tmp_path / ".agora").down(kill=True)


def test_up_status_stop_start_down(workdir):
    out = agora("up", "--nodes", "3", "--set", "num_tokens=8", cwd=workdir).stdout
    assert "all nodes up" in out
    status = agora("status", cwd=workdir).stdout
    assert status.count("UN") == 3 and "127.0.0.3" in status
    assert agora("stop", "node3", "--kill", cwd=workdir).stdout.strip() == "node3 (127.0.0.3) killed"
    cluster = LocalCluster(workdir / ".agora")
    assert not cluster.is_running(cluster.node("node3"))
    assert "up" in agora("start", "127.0.0.3", cwd=workdir).stdout
    status = agora("status", cwd=workdir).stdout
    assert status.count("UN") == 3
    assert "8 " in status  # --set reached the nodes: 8 tokens each
    assert "stopped node1, node2, node3" in agora("down", cwd=workdir).stdout


def test_bad_config_names_the_option(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen_address: 127.0.0.9\nnum_tokens: lots\n")
    proc = agora("node", "--config", str(bad), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "num_tokens" in proc.stderr
    proc = agora("up", "--set", "commitlog_sync=never", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "commitlog_sync" in proc.stderr


def test_node_survives_garbage_and_bad_requests(workdir):
    agora("up", "--nodes", "1", cwd=workdir)
    for payload in (b"\x00\x00\x00\x05hello", b"\xff" * 64, b"\x7f\xff\xff\xff" + b"x" * 100):
        with socket.create_connection(("127.0.0.1", 7000), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(5)
            try:
                assert s.recv(100) == b""  # the node closes this connection ...
            except ConnectionResetError:
                pass
    cluster = LocalCluster(workdir / ".agora")
    with AdminClient("127.0.0.1", cluster.cluster_name) as c:
        with pytest.raises(AdminError) as err:
            c.call("no_such_op", {})
        assert err.value.kind == "InvalidRequest"
        with pytest.raises(AdminError) as err:
            c.call("write", {"keyspace": "nope", "table": "t", "values": {}})
        assert err.value.kind == "InvalidRequest"
        with pytest.raises(AdminError) as err:
            c.call("create_keyspace", {"name": "bad name!", "replication": {"class": "SimpleStrategy", "replication_factor": "1"}})
        assert err.value.kind == "InvalidRequest"
        with pytest.raises(AdminError) as err:
            c.call("create_keyspace", {"name": "k", "replication": {"class": "NoSuchStrategy"}})
        assert "NoSuchStrategy" in err.value.message
        assert c.call("status", {})["nodes"][0]["up"]  # ... and keeps serving


def test_demo_tells_the_story(workdir):
    out = agora("demo", cwd=workdir, timeout=300).stdout
    assert "[{'name': 'Alice'}]" in out  # the seed's SELECT, through the real driver
    assert "Unavailable" in out
    assert "replayed its hint" in out
    assert out.count("node3: {'id': 2, 'name': 'Bob'}") == 1  # delivered by hinted handoff
    assert "a stale read" in out
    assert out.count("node3: {'id': 3, 'name': 'Carol'}") == 1  # stale before, repaired after
    assert "'state': 'banana'" in out and "'state': 'apple'" not in out
