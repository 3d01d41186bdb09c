"""A local cluster of real node processes on 127.0.0.1 ... 127.0.0.N: create, start, stop,
kill, wait until up. The `agora` CLI and the integration tests both drive clusters through
this one class, so tests exercise exactly what users run.

Owns: the cluster directory layout (`cluster.json`, and per node `nodeN/agora.yaml`,
`nodeN/data/`, `nodeN/node.log`, `nodeN/pid`) and process lifecycle. It knows nothing of
the protocol: it asks nodes how they are through the admin client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from agora.core.errors import ConfigError
from agora.runtime.admin_client import AdminClient, AdminError

CLUSTER_FILE = "cluster.json"
DEFAULT_CLUSTER_NAME = "Agora Local"
DEFAULT_SUBNET = "127.0.0"
NODE_START_TIMEOUT_S = 60.0  # generous: a 9-node cluster starting on a busy 2-core machine
STOP_TIMEOUT_S = 20.0  # graceful stop before we give up and SIGKILL
MAX_SEEDS_PER_DC = 2  # like Cassandra's advice: a few seeds per datacenter, never all nodes
POLL_INTERVAL_S = 0.1


@dataclass
class NodeEntry:
    name: str
    address: str
    dc: str
    rack: str

    @property
    def node_id(self) -> str:
        return f"{self.address}:7000"


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = POLL_INTERVAL_S):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing we wait for may fail until it is ready
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{extra}")
        time.sleep(interval_s)


def parse_dc_layout(nodes: int | None, dcs: list[str] | None, racks: int) -> list[tuple[str, str]]:
    """[(dc, rack)] per node from `--nodes N` or `--dc NAME:COUNT ...`."""
    layout: list[tuple[str, str]] = []
    if dcs:
        for spec in dcs:
            name, _, count = spec.partition(":")
            if not name or not count.isdigit() or int(count) < 1:
                raise ConfigError(f"--dc expects NAME:COUNT, got {spec!r}")
            layout += [(name, f"rack{i % racks + 1}") for i in range(int(count))]
    else:
        layout = [("dc1", f"rack{i % racks + 1}") for i in range(nodes or 3)]
    if len(layout) > 254:
        raise ConfigError("at most 254 nodes fit on 127.0.0.x")
    return layout


class LocalCluster:
    def __init__(self, directory: str | Path = ".agora"):
        self.dir = Path(directory).resolve()
        self.nodes: list[NodeEntry] = []
        # node name -> extra environment for its process whenever it is spawned (the chaos
        # nemesis runs a node under a fake clock this way); not saved with the cluster
        self.node_env: dict[str, dict[str, str]] = {}
        path = self.dir / CLUSTER_FILE
        if path.exists():
            self.nodes = [NodeEntry(**n) for n in json.loads(path.read_text())["nodes"]]

    # ---- layout ------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return bool(self.nodes)

    def create(self, layout: list[tuple[str, str]], overrides: dict | None = None,
               subnet: str = DEFAULT_SUBNET) -> None:
        """Nodes get addresses subnet.1, subnet.2 ... (default 127.0.0.x); several clusters can
        share a machine on different loopback subnets (127.0.1.x ...), all on the same ports."""
        if not subnet.startswith("127.") or subnet.count(".") != 2:
            raise ConfigError(f"subnet must look like 127.A.B (loopback only), got {subnet!r}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes = [NodeEntry(f"node{i + 1}", f"{subnet}.{i + 1}", dc, rack)
                      for i, (dc, rack) in enumerate(layout)]
        seeds: list[str] = []
        for dc in dict.fromkeys(dc for dc, _ in layout):
            seeds += [n.address for n in self.nodes if n.dc == dc][:MAX_SEEDS_PER_DC]
        for n in self.nodes:
            ndir = self.dir / n.name
            (ndir / "data").mkdir(parents=True, exist_ok=True)
            options = {"cluster_name": DEFAULT_CLUSTER_NAME, "listen_address": n.address, "seeds": seeds,
                       "dc": n.dc, "rack": n.rack, "data_directory": str(ndir / "data")}
            options.update(overrides or {})
            (ndir / "agora.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
        (self.dir / CLUSTER_FILE).write_text(json.dumps({"nodes": [asdict(n) for n in self.nodes]}, indent=2))

    def node(self, name_or_address: str) -> NodeEntry:
        for n in self.nodes:
            if name_or_address in (n.name, n.address, n.node_id):
                return n
        raise ConfigError(f"no node {name_or_address!r} in {self.dir} "
                          f"(nodes: {', '.join(n.name for n in self.nodes)})")

    @property
    def cluster_name(self) -> str:
        if not self.nodes:
            return DEFAULT_CLUSTER_NAME
        options = yaml.safe_load(self.config_path(self.nodes[0]).read_text()) or {}
        return options.get("cluster_name", DEFAULT_CLUSTER_NAME)

    def config_path(self, n: NodeEntry) -> Path:
        return self.dir / n.name / "agora.yaml"

    def log_path(self, n: NodeEntry) -> Path:
        return self.dir / n.name / "node.log"

    # ---- processes -----------------------------------------------------------------------

    def pid(self, n: NodeEntry) -> int | None:
        path = self.dir / n.name / "pid"
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        return pid if pid and _process_alive(pid) else None

    def is_running(self, n: NodeEntry) -> bool:
        return self.pid(n) is not None

    def spawn(self, n: NodeEntry) -> int:
        """Start the node's process (detached) unless it is already running."""
        pid = self.pid(n)
        if pid is not None:
            return pid
        logf = open(self.log_path(n), "ab")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.node_env.get(n.name, {}))
        proc = subprocess.Popen([sys.executable, "-m", "agora", "node", "--config", str(self.config_path(n))],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=str(self.dir))
        logf.close()
        (self.dir / n.name / "pid").write_text(str(proc.pid))
        return proc.pid

    def start(self, names: list[str] | None = None, wait: bool = True) -> None:
        targets = [self.node(x) for x in names] if names else list(self.nodes)
        for n in targets:
            self.spawn(n)
        if wait:
            self.wait_up(targets)

    def wait_up(self, targets: list[NodeEntry] | None = None, timeout_s: float = NODE_START_TIMEOUT_S) -> None:
        """Wait until every running node answers and sees every running node UP (so a
        restarted node is known to be back by its peers too, not only by itself)."""
        for n in targets or []:
            if not self.is_running(n):
                raise RuntimeError(f"{n.name} is not running; see {self.log_path(n)}")
        for n in [m for m in self.nodes if self.is_running(m)]:
            def ready(n=n):
                if not self.is_running(n):
                    raise RuntimeError(f"{n.name} exited; see {self.log_path(n)}")
                running = {m.node_id for m in self.nodes if self.is_running(m)}
                with AdminClient(n.address, self.cluster_name) as c:
                    status = c.call("status", {}, timeout_s=5.0)
                if status.get("pid") != self.pid(n):  # another cluster's node on this address?
                    raise RuntimeError(f"{n.address} is answered by process {status.get('pid')}, "
                                       f"not by {n.name} (pid {self.pid(n)})")
                up = {s["node"] for s in status["nodes"] if s["up"]}
                return running <= up
            wait_until(ready, timeout_s, f"{n.name} to be up and see the cluster")

    def stop(self, name: str, kill: bool = False, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        n = self.node(name)
        pid = self.pid(n)
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            wait_until(lambda: not _process_alive(pid), timeout_s, f"{n.name} to exit")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _process_alive(pid), 5.0, f"{n.name} to die")
        (self.dir / n.name / "pid").unlink(missing_ok=True)
        return True

    def pause(self, name: str) -> None:
        os.kill(self._pid_or_fail(name), signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.kill(self._pid_or_fail(name), signal.SIGCONT)

    def _pid_or_fail(self, name: str) -> int:
        pid = self.pid(self.node(name))
        if pid is None:
            raise ConfigError(f"{name} is not running")
        return pid

    def down(self, kill: bool = False) -> list[str]:
        stopped = []
        for n in self.nodes:
            if self.stop(n.name, kill=kill):
                stopped.append(n.name)
        return stopped

    def client(self, name: str | None = None) -> AdminClient:
        """An admin client to `name`, or to the first node that answers."""
        if name is not None:
            return AdminClient(self.node(name).address, self.cluster_name)
        for n in self.nodes:
            if self.is_running(n):
                return AdminClient(n.address, self.cluster_name)
        raise AdminError("NoHostAvailable", "no node of the cluster is running", {})


def _process_alive(pid: int) -> bool:
    try:  # reap it if it is our own exited child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
