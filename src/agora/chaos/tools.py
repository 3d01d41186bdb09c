"""The Debian tools chaos runs need, found or installed: `iptables` (partitions) and
`libfaketime` (a node's skewed clock, from the `faketime` package).

Owns: finding each tool, installing its package with apt-get when it is missing and we
are root (`apt-get install -y`, and if that fails `apt-get update` then install again),
and a `ToolMissing` error that says what to install when that is impossible. A chaos run
never silently skips a fault because a tool is absent.

Does not know: what the tools are used for.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

APT_TIMEOUT_S = 600.0  # a cold `apt-get update` plus one small package on a slow mirror
LIBFAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                     "/usr/local/lib/faketime/libfaketime.so.1")


class ToolMissing(RuntimeError):
    """A tool a fault needs is not installed and could not be installed."""


def _apt_install(package: str) -> str:
    """Install a Debian package; returns apt's last output lines (for the error)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    out = ""
    for steps in ([install], [["apt-get", "update"], install]):
        ok = True
        for argv in steps:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S)
            out = (proc.stdout + proc.stderr)[-600:]
            if proc.returncode != 0:
                ok = False
                break
        if ok:
            return out
    return out


def _ensure(find, package: str, what: str) -> str:
    found = find()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ToolMissing(f"{what} is missing: install the Debian package {package!r} "
                          f"(apt-get install -y {package}); chaos runs need it and cannot install it "
                          f"without root and apt-get")
    out = _apt_install(package)
    found = find()
    if not found:
        raise ToolMissing(f"{what} is missing and `apt-get install -y {package}` did not provide it:\n{out}")
    return found


def iptables() -> str:
    """The iptables binary's path, installed if need be; checked to work (it needs root
    and CAP_NET_ADMIN)."""
    path = _ensure(lambda: shutil.which("iptables"), "iptables", "iptables")
    proc = subprocess.run([path, "-w", "-S", "INPUT"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolMissing(f"iptables cannot list rules here (root with CAP_NET_ADMIN is needed): "
                          f"{proc.stderr.strip()}")
    return path


def _find_libfaketime() -> str | None:
    for pattern in LIBFAKETIME_GLOBS:
        for path in sorted(glob.glob(pattern)):
            if os.path.exists(path):
                return path
    return None


def libfaketime() -> str:
    """The path of libfaketime.so.1 (LD_PRELOAD), installed if need be."""
    return _ensure(_find_libfaketime, "faketime", "libfaketime")
