"""Node options: names, defaults, units and validation. Pure (the runtime reads the file).

Owns: the one table of node options. Names follow Cassandra's cassandra.yaml where the
concept is the same (`num_tokens`, `seeds`, `phi_convict_threshold`, `commitlog_sync`,
`write_request_timeout` ...). Durations accept an integer number of milliseconds or a string
with a unit ("2000ms", "2s", "3h"), as Cassandra 4.1 does; sizes an integer number of bytes or a
string with a binary unit ("1024KiB", "1MiB"), as its DataStorageSpec does. Anything wrong
raises ConfigError naming the option.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields

from agora.core.errors import ConfigError

DEFAULT_INTERNODE_PORT = 7000  # Cassandra's storage_port
DEFAULT_NATIVE_PORT = 9042  # Cassandra's native_transport_port

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(option: str, value) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{option}: expected a duration, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{option}: must not be negative")
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|min|h|d)?\s*", value)
        if m:
            return int(m.group(1)) * _UNITS_MS[m.group(2) or "ms"]
    raise ConfigError(f"{option}: expected a duration such as 2000ms or 2s, got {value!r}")


_UNITS_BYTES = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


AUTO = "auto"
FILE_CACHE_MIN_BYTES = 512 * 1024 * 1024
FILE_CACHE_RAM_FRACTION = 8  # "auto": one eighth of the machine's memory, at least the minimum


def auto_file_cache_bytes() -> int:
    """What `file_cache_size: auto` means on this machine: an eighth of its physical memory,
    and never less than 512 MiB (Cassandra's chunk-cache size). RocksDB-based stores size
    their block cache from memory the same way (TiKV: 45 %; CockroachDB recommends 25 %);
    an eighth leaves room for several nodes on one machine, as `agora up` runs them."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    return max(FILE_CACHE_MIN_BYTES, ram // FILE_CACHE_RAM_FRACTION)


def parse_size_bytes(option: str, value) -> int:
    """A size in bytes: an integer (bytes) or a string such as "1024KiB" (B, KiB, MiB, GiB)."""
    if isinstance(value, bool):
        raise ConfigError(f"{option}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{option}: must not be negative")
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*", value)
        if m:
            return int(m.group(1)) * _UNITS_BYTES[m.group(2) or "B"]
    raise ConfigError(f"{option}: expected a size such as 1024KiB or 1MiB, got {value!r}")

@dataclass
class NodeConfig:
    """Every option a node takes. Field metadata: 'kind' drives parsing, 'doc' the docs."""

    cluster_name: str = field(default="Agora Cluster", metadata={"kind": "str", "doc": "nodes only talk to nodes of the same cluster"})
    listen_address: str = field(default="127.0.0.1", metadata={"kind": "ip", "doc": "address for internode traffic and, here, for clients"})
    storage_port: int = field(default=DEFAULT_INTERNODE_PORT, metadata={"kind": "port", "doc": "internode port"})
    native_transport_port: int = field(default=DEFAULT_NATIVE_PORT, metadata={"kind": "port", "doc": "CQL port"})
    seeds: list = field(default_factory=list, metadata={"kind": "seeds", "doc": "addresses (ip or ip:port) of nodes to contact first"})
    dc: str = field(default="dc1", metadata={"kind": "name", "doc": "this node's datacenter (Cassandra's cassandra-rackdc.properties)"})
    rack: str = field(default="rack1", metadata={"kind": "name", "doc": "this node's rack"})
    num_tokens: int = field(default=16, metadata={"kind": "int", "min": 1, "max": 1024, "doc": "virtual nodes"})
    data_directory: str = field(default="data", metadata={"kind": "str", "doc": "RocksDB data directory"})
    commitlog_sync: str = field(default="periodic", metadata={"kind": "choice", "choices": ("periodic", "batch"), "doc": "periodic: fsync every commitlog_sync_period; batch: fsync before acknowledging"})
    commitlog_sync_period: int = field(default=10_000, metadata={"kind": "duration", "doc": "fsync interval in periodic mode"})
    write_request_timeout: int = field(default=2_000, metadata={"kind": "duration", "doc": "how long a coordinator waits for write acks"})
    read_request_timeout: int = field(default=5_000, metadata={"kind": "duration", "doc": "how long a coordinator waits for read answers"})
    request_timeout: int = field(default=10_000, metadata={"kind": "duration", "doc": "other requests (schema, admin)"})
    phi_convict_threshold: float = field(default=8.0, metadata={"kind": "float", "min": 1.0, "max": 16.0, "doc": "failure detector sensitivity"})
    gossip_interval: int = field(default=1_000, metadata={"kind": "duration", "doc": "one gossip round per interval"})
    hinted_handoff_enabled: bool = field(default=True, metadata={"kind": "bool", "doc": "store hints for replicas that miss writes"})
    max_hint_window: int = field(default=3 * 3_600_000, metadata={"kind": "duration", "doc": "stop hinting a replica down longer than this"})
    tombstone_gc_interval: int = field(default=3_600_000, metadata={"kind": "duration", "doc": "how often the tombstone compaction pass walks every table, purging tombstones older than the table's gc_grace_seconds (0: never)"})
    debug_crash_after_batchlog: bool = field(default=False, metadata={"kind": "bool", "doc": "FOR TESTS ONLY: a coordinator of a LOGGED batch exits its process right after the batchlog write is acknowledged"})
    repair_interval: int = field(default=0, metadata={"kind": "duration", "doc": "scheduled anti-entropy repair: every interval this node repairs its primary ranges of every keyspace (0: off; run `agora repair` by hand)"})
    hinted_handoff_throttle: int = field(default=1024 * 1024, metadata={"kind": "size", "doc": "hint replay rate per node, bytes per second (0: unthrottled)"})
    file_cache_size: int = field(default_factory=auto_file_cache_bytes, metadata={"kind": "size", "auto": auto_file_cache_bytes, "doc": "RocksDB block cache: uncompressed data blocks kept in memory for reads (Cassandra's chunk cache); filled as blocks are read, so it costs memory only as data is read; auto: an eighth of the machine's memory, at least 512MiB"})

    @property
    def local_id(self) -> str:
        return f"{self.listen_address}:{self.storage_port}"

    def seed_ids(self) -> list[str]:
        out = []
        for s in self.seeds:
            out.append(s if ":" in s else f"{s}:{self.storage_port}")
        return out


def _check_kind(name: str, meta: dict, value):
    kind = meta["kind"]
    if kind == "duration":
        return parse_duration_ms(name, value)
    if kind == "size":
        if value == AUTO and "auto" in meta:
            return meta["auto"]()
        return parse_size_bytes(name, value)
    if kind in ("int", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        lo, hi = (1, 65535) if kind == "port" else (meta.get("min"), meta.get("max"))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{name}: {value} is out of range [{lo}, {hi}]")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        if not meta["min"] <= value <= meta["max"]:
            raise ConfigError(f"{name}: {value} is out of range [{meta['min']}, {meta['max']}]")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if kind == "choice":
        if value not in meta["choices"]:
            raise ConfigError(f"{name}: expected one of {', '.join(meta['choices'])}, got {value!r}")
        return value
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except (ValueError, TypeError):
            raise ConfigError(f"{name}: {value!r} is not an IP address") from None
        return value
    if kind == "seeds":
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ConfigError(f"{name}: expected a list of addresses")
        for s in value:
            host = s.rsplit(":", 1)[0] if s.count(":") == 1 else s
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(f"{name}: {s!r} is not an address (ip or ip:port)") from None
        return value
    if kind == "name":
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ConfigError(f"{name}: expected a name of letters, digits, _ . -, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def config_from_dict(options: dict) -> NodeConfig:
    """Validate `options` (as read from the YAML file) into a NodeConfig."""
    if not isinstance(options, dict):
        raise ConfigError("the config file must be a mapping of option: value")
    known = {f.name: f for f in fields(NodeConfig)}
    values = {}
    for name, value in options.items():
        if name not in known:
            close = [k for k in known if k.split("_")[0] == str(name).split("_")[0]]
            hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
            raise ConfigError(f"unknown option {name!r}{hint}")
        values[name] = _check_kind(name, dict(known[name].metadata), value)
    return NodeConfig(**values)


def option_docs() -> list[tuple[str, object, str]]:
    """(name, default, doc) for every option: the docs table reads this."""
    out = []
    for f in fields(NodeConfig):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        out.append((f.name, default, f.metadata["doc"]))
    return out
