"""The systems under test, started and stopped on loopback by the benchmark scripts themselves:
a 3-member etcd cluster (127.0.60.1-3, static bootstrap), one Redis (127.0.61.1, no
persistence) and a 3-node Agora cluster (127.0.62.1-3, through agora.runtime.cluster).

Owns: command lines and configuration of each system, process lifecycle (start, wait until
serving, pid lookup, kill -9, stop) and data directories under a temporary directory. Each
class is a context manager; leaving it stops everything it started."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ETCD_SUBNET, REDIS_ADDR, AGORA_SUBNET = "127.0.60", "127.0.61.1", "127.0.62"
ETCD_CLIENT_PORT, ETCD_PEER_PORT, REDIS_PORT, CQL_PORT = 2379, 2380, 6379, 9042
START_TIMEOUT_S = 60.0


def _wait_port(host: str, port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} not listening after {timeout_s:.0f} s")
            time.sleep(0.1)


def _stop(proc: subprocess.Popen | None, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _TempDir:
    def __init__(self, prefix: str, base: str | None):
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Etcd:
    """Three etcd members, each on its own loopback address with client port 2379 and peer port
    2380; default settings (fsync of the WAL before acknowledging, 100 ms heartbeat, 1 s election
    timeout). The v3 API's gRPC service is what the load generator speaks; the JSON gateway on
    the same port is used only for control (status, leader)."""

    def __init__(self, members: int = 3, base_dir: str | None = None, binary: str = "etcd"):
        self.n, self.binary = members, shutil.which(binary) or binary
        self.tmp = _TempDir("bench-etcd-", base_dir)
        self.procs: dict[str, subprocess.Popen] = {}
        self.addresses = {f"m{i + 1}": f"{ETCD_SUBNET}.{i + 1}" for i in range(members)}

    @property
    def endpoints(self) -> list[str]:
        return [f"{a}:{ETCD_CLIENT_PORT}" for a in self.addresses.values()]

    def start(self) -> "Etcd":
        initial = ",".join(f"{n}=http://{a}:{ETCD_PEER_PORT}" for n, a in self.addresses.items())
        for name, addr in self.addresses.items():
            cmd = [self.binary, "--name", name, "--data-dir", str(self.tmp.path / name),
                   "--listen-client-urls", f"http://{addr}:{ETCD_CLIENT_PORT}",
                   "--advertise-client-urls", f"http://{addr}:{ETCD_CLIENT_PORT}",
                   "--listen-peer-urls", f"http://{addr}:{ETCD_PEER_PORT}",
                   "--initial-advertise-peer-urls", f"http://{addr}:{ETCD_PEER_PORT}",
                   "--initial-cluster", initial, "--initial-cluster-token", "bench",
                   "--initial-cluster-state", "new", "--logger", "zap", "--log-level", "error",
                   "--log-outputs", str(self.tmp.path / f"{name}.log")]
            self.procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                start_new_session=True)
        for addr in self.addresses.values():
            _wait_port(addr, ETCD_CLIENT_PORT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.leader() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("etcd elected no leader")
            time.sleep(0.2)
        return self

    def _status(self, name: str) -> dict:
        req = urllib.request.Request(f"http://{self.addresses[name]}:{ETCD_CLIENT_PORT}/v3/maintenance/status",
                                     data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.loads(r.read())

    def leader(self) -> str | None:
        """The member name of the current leader, as the live members see it."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            try:
                st = self._status(name)
            except OSError:
                continue
            if st.get("leader") and st["leader"] == st.get("header", {}).get("member_id"):
                return name
        return None

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for p in self.procs.values():
            _stop(p)
        self.tmp.remove()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Redis:
    """One Redis, persistence off (`save ""`, `appendonly no`): every command is answered from
    memory by one thread with no replication and no disk, which is why it is the ceiling of
    what one machine serves for this workload, not a peer of the replicated systems."""

    def __init__(self, base_dir: str | None = None, binary: str = "redis-server"):
        self.binary = shutil.which(binary) or binary
        self.tmp = _TempDir("bench-redis-", base_dir)
        self.proc: subprocess.Popen | None = None
        self.address = REDIS_ADDR

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.address}:{REDIS_PORT}"]

    def start(self) -> "Redis":
        cmd = [self.binary, "--bind", self.address, "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
               "--protected-mode", "no", "--dir", str(self.tmp.path), "--logfile", str(self.tmp.path / "redis.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.address, REDIS_PORT)
        return self

    def pids(self) -> dict[str, int]:
        return {"redis": self.proc.pid} if self.proc and self.proc.poll() is None else {}

    def stop(self) -> None:
        _stop(self.proc)
        self.tmp.remove()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Agora:
    """Three Agora nodes (one DC, default node options) in a temporary cluster directory, driven
    through agora.runtime.cluster.LocalCluster, the same class `agora up` uses; `dir` is what
    `agora bench --dir` needs for server CPU and --kill."""

    def __init__(self, nodes: int = 3, base_dir: str | None = None, overrides: dict | None = None):
        from agora.runtime.cluster import LocalCluster, parse_dc_layout

        self.tmp = _TempDir("bench-agora-", base_dir)
        self.dir = self.tmp.path / "cluster"
        self.cluster = LocalCluster(self.dir)
        self.cluster.create(parse_dc_layout(nodes, None, 1), overrides or {}, subnet=AGORA_SUBNET)

    @property
    def hosts(self) -> list[str]:
        return [n.address for n in self.cluster.nodes]

    def start(self) -> "Agora":
        self.cluster.start()
        return self

    def restart_all(self) -> None:
        """Start any node that is down (after a kill) and wait until all are up."""
        self.cluster.start()

    def pids(self) -> dict[str, int]:
        return {n.name: pid for n in self.cluster.nodes if (pid := self.cluster.pid(n)) is not None}

    def save_logs(self, dest: Path) -> None:
        """Copy every node's log into `dest` (the temporary directory goes with stop())."""
        dest.mkdir(parents=True, exist_ok=True)
        for n in self.cluster.nodes:
            log = self.dir / n.name / "node.log"
            if log.exists():
                shutil.copyfile(log, dest / f"{n.name}.log")

    def stop(self) -> None:
        try:
            self.cluster.down(kill=True)
        finally:
            self.tmp.remove()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # manual check: start each system, print its endpoints, stop it
    for cls in (Etcd, Redis):
        with cls() as s:
            print(cls.__name__, s.endpoints, s.pids(), getattr(s, "leader", lambda: None)())
    sys.exit(0)
