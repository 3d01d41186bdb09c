"""Network partitions between real nodes on loopback addresses, as iptables rules.

Owns: adding and removing DROP rules for traffic from one node address to another, and
making sure none is ever left behind. Nodes bind their outgoing internode connections to
their own address (`agora.runtime.transport`), so a packet from node A to node B is
`-s A -d B` on the loopback interface whichever side opened the connection; a client (the
driver, the admin client) connects from 127.0.0.1 and is never cut. Rules go on the INPUT
chain of `lo` only: a packet dropped there is silently lost, as on a real network (a drop
in OUTPUT would fail the sender's send() at once with EPERM, which no real partition does).
A symmetric partition is two rules per pair, a one-way cut one.

Every rule carries the comment `agora-chaos-<pid>` of the process that added it. Rules are
removed by `heal()`, which the chaos run calls in a `finally`, and again at exit (atexit),
and a new run first removes rules whose process is gone (a run killed with SIGKILL can do
nothing for itself). Rules of other live processes are never touched.

Does not know: which nodes to cut or when (the nemesis decides).
"""

from __future__ import annotations

import atexit
import os
import shlex
import subprocess
import threading

from agora.chaos import tools

TAG_PREFIX = "agora-chaos-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Firewall:
    """This process's partition rules."""

    def __init__(self) -> None:
        self.binary = tools.iptables()
        self.tag = f"{TAG_PREFIX}{os.getpid()}"
        self._rules: list[tuple[str, str]] = []  # (source, destination) dropped
        self._lock = threading.Lock()
        self._atexit = False
        self.added_total = 0

    # ---- iptables ------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([self.binary, "-w", *args], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _spec(self, source: str, destination: str, tag: str) -> list[str]:
        return ["INPUT", "-i", "lo", "-s", source, "-d", destination,
                "-m", "comment", "--comment", tag, "-j", "DROP"]

    def listed(self, all_processes: bool = False) -> list[str]:
        """The INPUT rules, as `iptables -S` prints them, that carry this process's tag (or
        any chaos tag)."""
        out = []
        for line in self._run("-S", "INPUT").splitlines():
            words = shlex.split(line)
            if "--comment" not in words:
                continue
            comment = words[words.index("--comment") + 1]
            if comment == self.tag or (all_processes and comment.startswith(TAG_PREFIX)):
                out.append(line)
        return out

    def remove_stale(self) -> int:
        """Delete chaos rules left by processes that no longer exist; returns how many."""
        removed = 0
        for line in self.listed(all_processes=True):
            words = shlex.split(line)
            pid = words[words.index("--comment") + 1][len(TAG_PREFIX):]
            if pid.isdigit() and not _alive(int(pid)):
                self._run("-D", *words[1:], check=False)
                removed += 1
        return removed

    # ---- partitions ------------------------------------------------------------------------

    def drop(self, source: str, destination: str) -> None:
        """Drop every packet from address `source` to address `destination`."""
        with self._lock:
            if not self._atexit:
                atexit.register(self.heal)
                self._atexit = True
            self._run("-I", *self._spec(source, destination, self.tag))
            self._rules.append((source, destination))
            self.added_total += 1

    def cut(self, side_a: list[str], side_b: list[str], one_way: bool = False) -> None:
        """Partition two groups of addresses: both directions, or only a -> b."""
        for a in side_a:
            for b in side_b:
                self.drop(a, b)
                if not one_way:
                    self.drop(b, a)

    @property
    def active(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._rules)

    def heal(self) -> None:
        """Remove every rule this process added (idempotent; safe at exit)."""
        with self._lock:
            for source, destination in self._rules:
                self._run("-D", *self._spec(source, destination, self.tag), check=False)
            self._rules.clear()
            # anything with our tag that bookkeeping missed (an insert that raised late)
            for line in self.listed():
                self._run("-D", *shlex.split(line)[1:], check=False)
