"""Server-side DESCRIBE: result shapes cqlsh reads, Cassandra's CREATE layout, errors in
Cassandra's words, and CREATE statements that rebuild the schema they describe (read back by
a small reader of exactly this layout, and compared with the driver's export_as_string)."""

from __future__ import annotations

import re
import uuid

import pytest

from agora.core.errors import InvalidRequest
from agora.core.schema.model import (
    TABLE_OPTIONS, KeyspaceDef, Schema, TableDef, TypeDef, identifier, replication_options,
)
from agora.core.schema.types import INT, TEXT, deserialize, parse_type
from agora.cql import describe as d
from agora.cql.backend import ClusterView

from .test_system_tables import NTS, SIMPLE, cluster, driver_keyspaces, node, sample_schema


def result(rows) -> list[dict]:
    names = [c.name for c in rows.columns]
    return [{n: deserialize(c.type, v) for n, c, v in zip(names, rows.columns, row)}
            for row in rows.rows]


def run(kind: str, schema: Schema | None = None, view: ClusterView | None = None, **kw):
    rows = d.describe(kind, schema or sample_schema(), view or cluster(), **kw)
    assert all((c.keyspace, c.table) == ("system", "describe") for c in rows.columns)
    return rows


# ------------------------------------------------------------------------------ a reader


_LITERAL = re.compile(r"\s*(?:'((?:[^']|'')*)'|(0x[0-9a-fA-F]*)|(-?[0-9][0-9.]*(?:E-?[0-9]+)?)"
                      r"|(true|false)|([{}:,]))")


def literal(text: str):
    """A CQL constant or map literal, as DESCRIBE prints them."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _LITERAL.match(text, pos)
        assert m, f"cannot read {text[pos:]!r}"
        tokens.append(m.groups())
        pos = m.end()

    def value(i):
        s, hexa, num, boolean, punct = tokens[i]
        if s is not None:
            return s.replace("''", "'"), i + 1
        if hexa is not None:
            return bytes.fromhex(hexa[2:]), i + 1
        if num is not None:
            return (float(num) if re.search("[.E]", num) else int(num)), i + 1
        if boolean is not None:
            return boolean == "true", i + 1
        assert punct == "{"
        out, i = {}, i + 1
        while tokens[i][4] != "}":
            k, i = value(i)
            assert tokens[i][4] == ":"
            out[k], i = value(i + 1)
            if tokens[i][4] == ",":
                i += 1
        return out, i + 1

    v, end = value(0)
    assert end == len(tokens)
    return v


def read_keyspace(text: str) -> KeyspaceDef:
    m = re.fullmatch(r"CREATE KEYSPACE (\S+) WITH replication = (\{.*\})"
                     r"  AND durable_writes = (true|false);", text)
    assert m, text
    return KeyspaceDef(identifier(m[1]), replication_options(literal(m[2])), m[3] == "true")


def _name_and_rest(line: str) -> tuple[str, str]:
    m = re.fullmatch(r'\s*("(?:[^"]|"")*"|\w+) (.*)', line)
    return identifier(m[1]), m[2]


def read_type(text: str, udts) -> TypeDef:
    m = re.fullmatch(r"CREATE TYPE (\S+)\.(\S+) \(\n(.*)\n\);", text, re.S)
    assert m, text
    fields = [_name_and_rest(line) for line in m[3].split(",\n")]
    return TypeDef(identifier(m[1]), identifier(m[2]), tuple(n for n, _ in fields),
                   tuple(parse_type(t, udts) for _, t in fields))


def read_table(text: str, udts, table_id: uuid.UUID) -> TableDef:
    m = re.fullmatch(r"CREATE TABLE (\S+)\.(\S+) \(\n(.*)\n\) WITH (.*);", text, re.S)
    assert m, text
    columns, statics, key, single = {}, set(), None, None
    for line in m[3].split(",\n"):
        if line.startswith("    PRIMARY KEY ("):
            key = line[len("    PRIMARY KEY ("):-1]
            continue
        name, rest = _name_and_rest(line)
        if rest.endswith(" PRIMARY KEY"):
            single, rest = name, rest[:-len(" PRIMARY KEY")]
        if rest.endswith(" static"):
            statics.add(name)
            rest = rest[:-len(" static")]
        columns[name] = parse_type(rest, udts)
    if single is not None:
        pk, ck = [single], []
    else:
        head, _, tail = key.partition(")") if key.startswith("(") else (key, "", "")
        parts = [p.strip() for p in head.lstrip("(").split(",")]
        pk = parts if key.startswith("(") else parts[:1]
        ck = [p.strip() for p in (tail.lstrip(", ").split(",") if key.startswith("(")
                                  else parts[1:]) if p.strip()]
        pk, ck = [identifier(p) for p in pk], [identifier(c) for c in ck]
    orders, options = {}, {}
    for prop in m[4].split("\n    AND "):
        if prop.startswith("CLUSTERING ORDER BY ("):
            for item in prop[len("CLUSTERING ORDER BY ("):-1].split(", "):
                col, order = item.rsplit(" ", 1)
                orders[identifier(col)] = order.lower()
        else:
            name, value = prop.split(" = ", 1)
            options[name] = literal(value)
    keyed = set(pk) | set(ck)
    return TableDef.build(
        identifier(m[1]), identifier(m[2]),
        partition_key=[(n, columns[n]) for n in pk],
        clustering=[(n, columns[n], orders[n]) for n in ck],
        static=[(n, t) for n, t in columns.items() if n in statics],
        regular=[(n, t) for n, t in columns.items() if n not in keyed and n not in statics],
        options=options, table_id=table_id)


def same_table(a: TableDef, b: TableDef) -> None:
    assert (a.keyspace, a.name) == (b.keyspace, b.name)
    assert sorted(a.columns, key=lambda c: c.name) == sorted(b.columns, key=lambda c: c.name)
    for name in TABLE_OPTIONS:
        assert a.option(name) == b.option(name), name


# ------------------------------------------------------------------------------ round trips


def test_describe_schema_rebuilds_the_schema():
    schema = sample_schema()
    rows = result(run("schema", schema))
    assert {r["keyspace_name"] for r in rows} == {"ks", "multi"}  # no system keyspaces
    for row in rows:
        text = row["create_statement"]
        ks = row["keyspace_name"]
        udts = {u.name: u.user_type() for u in schema.types(ks)}.get
        if row["type"] == "keyspace":
            assert read_keyspace(text) == schema.keyspace(ks)
        elif row["type"] == "type":
            assert read_type(text, udts) == schema.type(ks, row["name"])
        else:
            assert row["type"] == "table"
            original = schema.table(ks, row["name"])
            same_table(read_table(text, udts, original.id), original)


def test_odd_names_and_options_survive():
    s = Schema().with_keyspace(KeyspaceDef("Quoted", SIMPLE), 1)
    t = TableDef.build("Quoted", "select", partition_key=[("from", INT)],
                       regular=[('we"ird', TEXT), ("Upper", parse_type("frozen<list<int>>"))],
                       options={"bloom_filter_fp_chance": 0.0001, "crc_check_chance": 0.5,
                                "extensions": {"x": b"\x01\xff"}, "read_repair_chance": 0.25,
                                "comment": "don't", "speculative_retry": "NONE"})
    s = s.with_table(t, 2)
    [ks_row, table_row] = result(run("keyspace", s, keyspace="Quoted"))
    assert ks_row["name"] == '"Quoted"' and table_row["name"] == '"select"'
    text = table_row["create_statement"]
    assert text.startswith('CREATE TABLE "Quoted"."select" (\n    "from" int PRIMARY KEY,\n')
    assert "bloom_filter_fp_chance = 1.0E-4" in text
    assert "read_repair_chance = 0.25" in text and "dclocal_read_repair_chance" not in text
    assert "extensions = {'x': 0x01ff}" in text
    same_table(read_table(text, None, t.id), t)
    assert read_keyspace(ks_row["create_statement"]) == s.keyspace("Quoted")


def test_layout_matches_cassandra():
    [row] = result(run("table", keyspace="ks", name="users"))
    assert row["create_statement"] == (
        "CREATE TABLE ks.users (\n"
        "    id uuid PRIMARY KEY,\n"
        "    name text\n"
        ") WITH additional_write_policy = '99p'\n"
        "    AND bloom_filter_fp_chance = 0.01\n"
        "    AND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}\n"
        "    AND cdc = false\n"
        "    AND comment = ''\n"
        "    AND compaction = {'class': 'org.apache.cassandra.db.compaction."
        "SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}\n"
        "    AND compression = {'chunk_length_in_kb': '16', 'class': "
        "'org.apache.cassandra.io.compress.LZ4Compressor'}\n"
        "    AND crc_check_chance = 1.0\n"
        "    AND default_time_to_live = 0\n"
        "    AND extensions = {}\n"
        "    AND gc_grace_seconds = 864000\n"
        "    AND max_index_interval = 2048\n"
        "    AND memtable_flush_period_in_ms = 0\n"
        "    AND min_index_interval = 128\n"
        "    AND read_repair = 'BLOCKING'\n"
        "    AND speculative_retry = '99p';")
    [ks] = result(run("keyspace", keyspace="multi", only=True))
    assert ks["create_statement"] == (
        "CREATE KEYSPACE multi WITH replication = {'class': 'NetworkTopologyStrategy', "
        "'dc1': '3', 'dc2': '2'}  AND durable_writes = false;")
    [internals] = result(run("table", keyspace="ks", name="users", with_internals=True))
    table_id = sample_schema().table("ks", "users").id
    assert f") WITH ID = {table_id}\n    AND additional_write_policy" in \
        internals["create_statement"]


def test_statements_agree_with_the_driver_export():
    """Same columns, key, clustering order and option values as the driver's own
    export_as_string of the metadata it parsed from our system_schema rows."""
    schema = sample_schema()
    keyspaces, _, _ = driver_keyspaces(schema)

    def parts(text: str) -> tuple:
        head, _, props = text.rstrip(";").partition("\n) WITH ")
        lines = head.split("\n")
        props = [p for p in props.split("\n    AND ") if not p.startswith("extensions")]
        return lines[0], sorted(lines[1:]), sorted(props)

    for t in schema.tables():
        ours = result(run("table", schema, keyspace=t.keyspace, name=t.name))[0]
        theirs = keyspaces[t.keyspace].tables[t.name].export_as_string()
        ours_parts, their_parts = parts(ours["create_statement"]), parts(theirs)
        assert ours_parts[0] == their_parts[0]
        # the driver spells nested frozen types in full (schema text); we as Cassandra does
        norm = [re.sub(r"frozen<(list|set|map|tuple)", r"\1", line).rstrip(",")
                for line in ours_parts[1]]
        theirs_norm = [re.sub(r"frozen<(list|set|map|tuple)", r"\1", line).rstrip(",")
                       for line in their_parts[1]]
        assert [re.sub(r">+", ">", x) for x in norm] == \
            [re.sub(r">+", ">", x) for x in theirs_norm]
        assert ours_parts[2] == their_parts[2]
    ks = result(run("keyspace", schema, keyspace="ks", only=True))[0]["create_statement"]
    assert ks.rstrip(";").replace("  AND", " AND") == \
        keyspaces["ks"].as_cql_query().replace("  AND", " AND")


# ------------------------------------------------------------------------------ shapes


def test_keyspaces_listing():
    rows = run("keyspaces")
    assert [c.name for c in rows.columns] == ["keyspace_name", "type", "name"]
    assert [r["name"] for r in result(rows)] == ["ks", "multi", "system", "system_schema"]
    assert {r["type"] for r in result(rows)} == {"keyspace"}


def test_keyspaces_sort_ignoring_case():
    s = Schema().with_keyspace(KeyspaceDef("b", SIMPLE), 1) \
        .with_keyspace(KeyspaceDef("A", SIMPLE), 1).with_keyspace(KeyspaceDef("c", SIMPLE), 1)
    names = [r["name"] for r in result(run("keyspaces", s))]
    assert names == ['"A"', "b", "c", "system", "system_schema"]


def test_tables_listing_with_and_without_use():
    everywhere = result(run("tables"))
    assert ("ks", "table", "events") in [(r["keyspace_name"], r["type"], r["name"])
                                        for r in everywhere]
    assert {r["keyspace_name"] for r in everywhere} == {"ks", "multi", "system",
                                                        "system_schema"}
    ks_names = [r["keyspace_name"] for r in everywhere]
    assert ks_names == sorted(ks_names)  # grouped by keyspace, as cqlsh prints them
    in_ks = result(run("tables", session_keyspace="ks"))
    assert [r["name"] for r in in_ks] == ["events", "users"]
    types_ = result(run("types", session_keyspace="ks"))
    assert [r["name"] for r in types_] == ["address", "person"]
    assert result(run("functions")) == [] and result(run("aggregates")) == []
    assert [c.name for c in run("functions").columns] == ["keyspace_name", "type", "name"]


def test_keyspace_element_order_types_before_their_users():
    rows = run("keyspace", keyspace="ks")
    assert [c.name for c in rows.columns] == ["keyspace_name", "type", "name",
                                              "create_statement"]
    assert [(r["type"], r["name"]) for r in result(rows)] == [
        ("keyspace", "ks"), ("type", "address"), ("type", "person"), ("table", "events"),
        ("table", "users")]
    s = Schema().with_keyspace(KeyspaceDef("k", SIMPLE), 1)
    z = TypeDef("k", "z", ("a",), (INT,))
    a = TypeDef("k", "a", ("inner",), (z.user_type(frozen=True),))
    s = s.with_type(z, 2).with_type(a, 3)
    assert [r["name"] for r in result(run("keyspace", s, keyspace="k"))][1:] == ["z", "a"]


def test_keyspace_from_session_and_full_schema():
    rows = result(run("keyspace", session_keyspace="multi"))
    assert [r["name"] for r in rows] == ["multi", "hits"]
    full = result(run("full_schema"))
    assert {r["keyspace_name"] for r in full} == {"ks", "multi", "system", "system_schema"}
    local = next(r for r in full if r["name"] == "local")
    assert local["create_statement"].startswith("CREATE TABLE system.local (\n    key text "
                                                "PRIMARY KEY,\n")
    system = next(r for r in full if r["type"] == "keyspace" and r["name"] == "system")
    assert system["create_statement"] == ("CREATE KEYSPACE system WITH replication = "
                                          "{'class': 'LocalStrategy'}  AND durable_writes = "
                                          "true;")


def test_generic_name_resolution():
    assert result(run("name", name="ks"))[0]["type"] == "keyspace"
    [t] = result(run("name", name="users", session_keyspace="ks"))
    assert (t["type"], t["name"]) == ("table", "users")
    [t] = result(run("name", keyspace="system", name="local"))
    assert t["keyspace_name"] == "system"
    with pytest.raises(InvalidRequest, match="'nope' not found in keyspace 'ks'"):
        run("name", name="nope", session_keyspace="ks")
    with pytest.raises(InvalidRequest, match="'nope' not found in keyspaces"):
        run("name", name="nope")


def test_type_and_table_elements():
    [u] = result(run("type", keyspace="ks", name="person"))
    assert u["create_statement"] == ("CREATE TYPE ks.person (\n    name text,\n"
                                     "    home frozen<address>,\n    tags frozen<set<text>>\n);")
    [t] = result(run("table", name="events", session_keyspace="ks"))
    text = t["create_statement"]
    assert "    PRIMARY KEY ((tenant, day), at, seq)\n) WITH CLUSTERING ORDER BY " \
           "(at DESC, seq ASC)\n    AND additional_write_policy" in text
    lines = text.split("\n")
    assert lines[1:6] == ["    tenant text,", "    day int,", "    at timestamp,",
                          "    seq bigint,", "    owner text static,"]
    assert '    "Mixed" text,' in lines and "    pair tuple<int, text>," in lines
    assert "    frozen_map frozen<map<text, list<int>>>," in lines


def test_errors_in_cassandras_words():
    cases = [
        (dict(kind="keyspace", keyspace="nope"), "'nope' not found in keyspaces"),
        (dict(kind="table", keyspace="nope", name="t"), "'nope' not found in keyspaces"),
        (dict(kind="table", keyspace="ks", name="t"), "Table 't' not found in keyspace 'ks'"),
        (dict(kind="type", keyspace="ks", name="u"),
         "User defined type 'u' not found in 'ks'"),
        (dict(kind="table", name="t"), "No keyspace specified and no current keyspace"),
        (dict(kind="keyspace"), "No keyspace specified and no current keyspace"),
        (dict(kind="function", keyspace="ks", name="f"),
         "User defined function 'f' not found in 'ks'"),
        (dict(kind="tables", session_keyspace="gone"), "'gone' not found in keyspaces"),
    ]
    for kw, message in cases:
        kind = kw.pop("kind")
        with pytest.raises(InvalidRequest) as e:
            run(kind, **kw)
        assert str(e.value) == message
    with pytest.raises(ValueError):
        run("nonsense", name="x", keyspace="ks")


# ------------------------------------------------------------------------------ cluster


def test_cluster_without_keyspace():
    rows = run("cluster")
    assert [c.name for c in rows.columns] == ["cluster", "partitioner", "snitch"]
    [row] = result(rows)
    assert row == {"cluster": "Test Cluster", "partitioner": "Murmur3Partitioner",
                   "snitch": "DynamicEndpointSnitch"}
    assert len(run("cluster", session_keyspace="system").columns) == 3


def test_cluster_range_ownership():
    view = ClusterView("Test Cluster", node(1, (-300, 300)),
                       (node(2, (-100,)), node(3, (100,), dc="dc2"), node(4, ())))
    rows = run("cluster", view=view, session_keyspace="ks")
    assert [c.name for c in rows.columns][-1] == "range_ownership"
    assert rows.columns[-1].type.cql_name() == "map<text, list<text>>"
    [row] = result(rows)
    owners = dict(row["range_ownership"])
    assert list(owners) == ["-300", "-100", "100", "300"]  # ring order
    assert owners["-300"] == ["/127.0.0.1:7000", "/127.0.0.2:7000", "/127.0.0.3:7000"]
    assert owners["100"] == ["/127.0.0.3:7000", "/127.0.0.1:7000", "/127.0.0.2:7000"]
    nts = dict(result(run("cluster", view=view, session_keyspace="multi"))[0]
               ["range_ownership"])
    assert all(len(v) == 3 for v in nts.values())  # dc1 has 2 nodes, dc2 one
    with pytest.raises(InvalidRequest, match="'gone' not found in keyspaces"):
        run("cluster", session_keyspace="gone")


def test_java_double():
    assert [d.java_double(x) for x in (0.01, 1.0, 0.1, 0.0001, 1e7, 0.0, 12345.5, 1.5e-10)] \
        == ["0.01", "1.0", "0.1", "1.0E-4", "1.0E7", "0.0", "12345.5", "1.5E-10"]


def test_reserved_words_are_quoted():
    assert d.maybe_quote("select") == '"select"'
    assert d.maybe_quote("selects") == "selects"
    assert d.maybe_quote("Mixed") == '"Mixed"'
    assert d.maybe_quote('a"b') == '"a""b"'


def test_nts_replication_literal():
    assert d.keyspace_cql(KeyspaceDef("x", NTS)) == (
        "CREATE KEYSPACE x WITH replication = {'class': 'NetworkTopologyStrategy', "
        "'dc1': '3', 'dc2': '2'}  AND durable_writes = true;")
