"""COUNT(*)'s bare rows (`rowview.rows_of(..., bare=True)`) are the rows `rows_of` gives,
without their values: the same partition key, clustering key and static-only flag for any
partition view, with cells of dropped and unknown columns, collection cells, tombstones and
static rows among them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agora.core.schema import types as T
from agora.core.schema.model import DroppedColumn, TableDef
from agora.core.types import Cell, Partition, Row
from agora.cql.rowview import rows_of

TABLE = TableDef.build("ks", "t", partition_key=[("k", T.INT)], clustering=[("c", T.TEXT, "asc")],
                       static=[("s", T.TEXT)],
                       regular=[("v", T.TEXT), ("m", T.MapType(T.TEXT, T.TEXT)), ("gone", T.TEXT)])
TABLE = TableDef(TABLE.keyspace, TABLE.name, TABLE.id, TABLE.columns,
                 dropped={"gone": DroppedColumn(2, T.TEXT, "regular")})  # cells at ts <= 2 are dropped

cells = st.builds(Cell, st.integers(0, 4), st.sampled_from([None, b"", b"x"]))
paths = st.sampled_from([("v", b""), ("m", T.encode_ckey([(T.TEXT, False)], [b"a"])),
                         ("m", T.encode_ckey([(T.TEXT, False)], [b"b"])), ("gone", b""), ("x", b"")])
row_cells = st.dictionaries(paths, cells, max_size=4)
markers = st.none() | st.builds(Cell, st.integers(0, 4), st.just(b""))


@st.composite
def partitions(draw):
    rows = {}
    for ckey in draw(st.lists(st.sampled_from([b"a", b"b", b"c"]), unique=True, max_size=3)):
        rows[ckey] = Row((ckey,), draw(markers), None, draw(row_cells))
    static = draw(st.none() | st.builds(lambda cs: Row((), None, None, cs),
                                        st.dictionaries(st.sampled_from([("s", b""), ("x", b"")]), cells,
                                                        max_size=2)))
    return Partition(TABLE.id.bytes, (7).to_bytes(4, "big", signed=True), None, [], static, rows)


def _shape(rows):
    return [(r.key, r.ckey, r.static_only) for r in rows]


@settings(max_examples=500, deadline=None)
@given(partitions(), st.booleans())
def test_bare_rows_are_the_rows(p, static_only):
    assert _shape(rows_of(TABLE, p, static_only, bare=True)) == _shape(rows_of(TABLE, p, static_only))
