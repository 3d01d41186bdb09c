"""Errors the protocol machines raise or report, named as Cassandra names them.

Owns: the error vocabulary shared by coordinator, replica, CQL server and CLI. Each request
error carries the fields the CQL native protocol puts in its ERROR body (spec v4 section 9),
so the CQL layer can encode them without knowing where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass


class AgoraError(Exception):
    """Base of every error Agora reports on purpose."""


class ProtocolError(AgoraError):
    """Bad bytes or a bad message from a peer or client: close that connection, keep running."""


class ConfigError(AgoraError):
    """A bad node option; the message names the option."""


class InvalidRequest(AgoraError):
    """The request is well-formed but cannot be served (unknown table, bad key ...)."""


class SchemaError(InvalidRequest):
    """A schema change conflicts with existing schema (already exists, does not exist)."""


@dataclass
class Unavailable(AgoraError):
    """Too few live replicas to even try: raised before anything is sent."""

    consistency: int
    required: int
    alive: int

    def __str__(self) -> str:
        return (f"Cannot achieve consistency level {self.consistency_name}: "
                f"{self.required} replicas required, {self.alive} alive")

    @property
    def consistency_name(self) -> str:
        from agora.core.types import ConsistencyLevel
        return ConsistencyLevel(self.consistency).name


class TruncateError(AgoraError):
    """A TRUNCATE was recorded but not every live node had it within the time allowed (it
    still reaches them as the schema spreads)."""


@dataclass
class WriteTimeout(AgoraError):
    """Too few replicas acknowledged a write within write_request_timeout."""

    consistency: int
    received: int
    required: int
    write_type: str = "SIMPLE"  # SIMPLE, BATCH, UNLOGGED_BATCH, COUNTER, BATCH_LOG, CAS, VIEW, CDC

    def __str__(self) -> str:
        return (f"Operation timed out - received only {self.received} responses "
                f"(required {self.required})")


# Cassandra's RequestFailureReason: the code a CQL v5 failure map (Read_failure, Write_failure)
# gives each failed replica. A replica answers a failure with a text; `failure_code` maps it.
FAILURE_UNKNOWN = 0
FAILURE_INCOMPATIBLE_SCHEMA = 3  # the replica does not know the table
_UNKNOWN_TABLE = "unknown table id "


def unknown_table_error(table_id: bytes) -> str:
    """A replica's answer to a request for a table it does not know."""
    return _UNKNOWN_TABLE + table_id.hex()


def failure_code(error: str) -> int:
    """The failure-map code of a replica's error answer."""
    return FAILURE_INCOMPATIBLE_SCHEMA if error.startswith(_UNKNOWN_TABLE) else FAILURE_UNKNOWN


@dataclass
class ReplicaFailure(AgoraError):
    """Replicas answered with an error, so few enough remain that the level cannot be met:
    said at once rather than after the request's timeout. `failures` maps each failed
    replica's node id ("ip:port") to its failure code (`failure_code`); the CQL codec sends
    their addresses. WriteFailure and ReadFailure add what their CQL errors carry."""

    consistency: int
    received: int
    required: int
    failures: dict

    def __str__(self) -> str:
        return (f"Operation failed - received {self.received} responses and "
                f"{len(self.failures)} failures")

    @property
    def num_failures(self) -> int:
        return len(self.failures)


@dataclass
class WriteFailure(ReplicaFailure):
    """A write's replicas failed (a storage failure, a table they do not know, a replica not
    serving after a long downtime): CQL Write_failure, 0x1500."""

    write_type: str = "SIMPLE"


@dataclass
class ReadTimeout(AgoraError):
    """Too few replicas answered a read within read_request_timeout."""

    consistency: int
    received: int
    required: int
    data_present: bool

    def __str__(self) -> str:
        return (f"Operation timed out - received only {self.received} responses "
                f"(required {self.required}, data {'present' if self.data_present else 'absent'})")


@dataclass
class ReadFailure(ReplicaFailure):
    """A read's replicas failed: CQL Read_failure, 0x1300."""

    data_present: bool


@dataclass
class AlreadyExists(SchemaError):
    """CREATE of a keyspace or table that exists (CQL error 0x2400 carries both names)."""

    keyspace: str
    table: str = ""

    def __str__(self) -> str:
        if self.table:
            return f"Cannot add already existing table \"{self.table}\" to keyspace \"{self.keyspace}\""
        return f"Cannot add existing keyspace \"{self.keyspace}\""


class CqlSyntaxError(AgoraError):
    """The statement text does not parse (CQL error 0x2000)."""


class ConfigurationError(InvalidRequest):
    """A schema statement that is valid CQL but not a valid configuration (CQL 0x2300)."""


@dataclass
class Unprepared(AgoraError):
    """EXECUTE of a statement id this node does not know (CQL 0x2500); the driver re-prepares."""

    statement_id: bytes

    def __str__(self) -> str:
        return f"Prepared query with ID {self.statement_id.hex()} not found"


class Overloaded(AgoraError):
    """Too much in flight: only for real overload (the driver then tries every other node)."""
