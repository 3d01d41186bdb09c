"""The one table from Agora's error classes to the CQL native protocol's ERROR codes and the
extra fields each code carries after `[int] code [string] message`.

Owns: `ERROR_CODES` (the table, data only), `rule_for(exc)` (the rule an exception is
answered with: the nearest class in its MRO that has one; anything else is Server_error)
and `WRITE_TYPES` (the only write types the driver can decode). The frame codec
(`agora.cql.frames_responses.encode_error`) writes the fields; docs and tests read this same
table.

Deliberately does not know: byte layout (the codec), retry policies (the driver's; see
cql-compat.md section 6 for what each code makes it do).

Where the rules come from: native_protocol_v4.spec / v5.spec section 9 (codes and bodies),
shared/cql-compat.md section 6, and cassandra-driver 3.30.1 `cassandra/protocol.py`
(`WriteType.name_to_value`: any other write type string is a KeyError that defuncts the
driver's connection).
"""

from __future__ import annotations

from dataclasses import dataclass

from agora.core.errors import (AlreadyExists, ConfigurationError, CqlSyntaxError, InvalidRequest,
                               Overloaded, ProtocolError, ReadFailure, ReadTimeout, TruncateError,
                               Unavailable, Unprepared, WriteFailure, WriteTimeout)

SERVER_ERROR = 0x0000
PROTOCOL_ERROR = 0x000A

# Extra-field kinds, written by the codec: "consistency" [consistency], "int" [int],
# "byte" [byte] (a bool is 0/1), "string" [string], "write_type" [string] checked against
# WRITE_TYPES, "short_bytes" [short bytes], "failures" (v4: [int] how many; v5: the reason map
# [int] n, then n times [inetaddr without port][short] code).
FIELD_KINDS = ("consistency", "int", "byte", "string", "write_type", "short_bytes", "failures")

WRITE_TYPES = ("SIMPLE", "BATCH", "UNLOGGED_BATCH", "COUNTER", "BATCH_LOG", "CAS", "VIEW", "CDC")


@dataclass(frozen=True, slots=True)
class ErrorRule:
    error_class: type
    code: int
    name: str  # the spec's name for the code
    fields: tuple[tuple[str, str], ...] = ()  # (kind, attribute of the exception), in wire order


ERROR_CODES: tuple[ErrorRule, ...] = (
    ErrorRule(ProtocolError, PROTOCOL_ERROR, "Protocol_error"),
    ErrorRule(Unavailable, 0x1000, "Unavailable",
              (("consistency", "consistency"), ("int", "required"), ("int", "alive"))),
    ErrorRule(Overloaded, 0x1001, "Overloaded"),
    ErrorRule(TruncateError, 0x1003, "Truncate_error"),
    ErrorRule(WriteTimeout, 0x1100, "Write_timeout",
              (("consistency", "consistency"), ("int", "received"), ("int", "required"),
               ("write_type", "write_type"))),
    ErrorRule(ReadTimeout, 0x1200, "Read_timeout",
              (("consistency", "consistency"), ("int", "received"), ("int", "required"),
               ("byte", "data_present"))),
    ErrorRule(ReadFailure, 0x1300, "Read_failure",
              (("consistency", "consistency"), ("int", "received"), ("int", "required"),
               ("failures", "failures"), ("byte", "data_present"))),
    ErrorRule(WriteFailure, 0x1500, "Write_failure",
              (("consistency", "consistency"), ("int", "received"), ("int", "required"),
               ("failures", "failures"), ("write_type", "write_type"))),
    ErrorRule(CqlSyntaxError, 0x2000, "Syntax_error"),
    ErrorRule(InvalidRequest, 0x2200, "Invalid"),  # SchemaError too
    ErrorRule(ConfigurationError, 0x2300, "Config_error"),
    ErrorRule(AlreadyExists, 0x2400, "Already_exists",
              (("string", "keyspace"), ("string", "table"))),
    ErrorRule(Unprepared, 0x2500, "Unprepared", (("short_bytes", "statement_id"),)),
)

SERVER_ERROR_RULE = ErrorRule(Exception, SERVER_ERROR, "Server_error")

_BY_CLASS = {rule.error_class: rule for rule in ERROR_CODES}
assert len(_BY_CLASS) == len(ERROR_CODES), "one rule per class"
assert all(kind in FIELD_KINDS for rule in ERROR_CODES for kind, _ in rule.fields)


def rule_for(exc: BaseException) -> ErrorRule:
    """The rule of the most specific class of `exc` that has one (AlreadyExists before
    SchemaError's InvalidRequest); Server_error for everything else."""
    for cls in type(exc).__mro__:
        rule = _BY_CLASS.get(cls)
        if rule is not None:
            return rule
    return SERVER_ERROR_RULE
