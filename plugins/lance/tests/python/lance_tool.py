"""The official lancedb package's side of the lance plugin's interop tests.

Commands (all paths absolute; JSON floats are exchanged as float32/float64 bit patterns):

  build DB SPEC_JSON
      Creates tables with lancedb from a spec written by the Rust test (see interop.rs), the
      way a Python user would: pyarrow tables with extra columns and a vector column of any name.

  dump DB TABLE OUT_JSON [QUERIES_JSON]
      Writes every row as lancedb returns it (tbl.to_arrow()), the schema and its metadata,
      the version, tags and indices; for each query in QUERIES_JSON ({"vectors": [[bits...]], "k": K,
      "where": SQL|null}) the ids `tbl.search(v).limit(k)` returns, in order.

  delete DB TABLE IDS_JSON
      Deletes the rows whose `id` is in the JSON list, with `tbl.delete(...)`.
"""

import json
import struct
import sys

import lancedb
import pyarrow as pa


def f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def typed(value, arrow_type):
    """A cell in a form that keeps its type: ints, float bits, strings, bools, lists."""
    if value is None:
        return None
    if pa.types.is_boolean(arrow_type):
        return ["bool", value]
    if pa.types.is_integer(arrow_type):
        return ["int", value]
    if pa.types.is_float32(arrow_type):
        # Widened to float64 exactly, as ragged does.
        return ["float", f64_bits(float(value))]
    if pa.types.is_floating(arrow_type):
        return ["float", f64_bits(value)]
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ["str", value]
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        inner = arrow_type.value_type
        items = [typed(v, inner) for v in value if v is not None]
        kind = items[0][0] if items else "empty"
        return [kind + "[]", [i[1] for i in items]]
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        # ISO 8601, as Arrow's display (and so ragged) writes it.
        return ["str", value.isoformat()]
    return ["str", str(value)]


def build(db_path, spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    db = lancedb.connect(db_path)
    for table in spec["tables"]:
        columns = {}
        fields = []
        for column in table["columns"]:
            name, kind, values = column["name"], column["type"], column["values"]
            if kind == "vector":
                dim = column["dim"]
                arrow_type = pa.list_(pa.float32(), dim)
                data = [[f32(b) for b in v] if v is not None else None for v in values]
            elif kind == "vector64":
                dim = column["dim"]
                arrow_type = pa.list_(pa.float64(), dim)
                data = values
            elif kind == "string":
                arrow_type, data = pa.string(), values
            elif kind == "int64":
                arrow_type, data = pa.int64(), values
            elif kind == "int32":
                arrow_type, data = pa.int32(), values
            elif kind == "float64":
                arrow_type, data = pa.float64(), values
            elif kind == "float32":
                arrow_type, data = pa.float32(), values
            elif kind == "bool":
                arrow_type, data = pa.bool_(), values
            elif kind == "list_string":
                arrow_type, data = pa.list_(pa.string()), values
            elif kind == "timestamp":
                arrow_type, data = pa.timestamp("s"), values
            else:
                raise SystemExit(f"unknown column type {kind}")
            columns[name] = pa.array(data, type=arrow_type)
            fields.append(pa.field(name, arrow_type, nullable=column.get("nullable", True)))
        schema = pa.schema(fields)
        arrow = pa.Table.from_arrays([columns[f.name] for f in fields], schema=schema)
        # Written in two commits, as an application would add data over time.
        half = max(1, arrow.num_rows // 2)
        tbl = db.create_table(table["name"], arrow.slice(0, half), mode="create")
        if arrow.num_rows > half:
            tbl.add(arrow.slice(half))
        if table.get("index"):
            index = table["index"]
            tbl.create_index(metric=index["metric"], vector_column_name=index["column"], index_type="IVF_HNSW_SQ")


def dump(db_path, table_name, out_path, queries_path=None):
    db = lancedb.connect(db_path)
    tbl = db.open_table(table_name)
    arrow = tbl.to_arrow()
    rows = []
    for row in arrow.to_pylist():
        out = {}
        for field in arrow.schema:
            value = row[field.name]
            if pa.types.is_fixed_size_list(field.type) and pa.types.is_float32(field.type.value_type):
                out[field.name] = None if value is None else [f32_bits(x) for x in value]
            else:
                out[field.name] = typed(value, field.type)
        rows.append(out)
    meta = {k.decode(): v.decode() for k, v in (arrow.schema.metadata or {}).items()}
    result = {
        "rows": rows,
        "schema": [[f.name, str(f.type), f.nullable] for f in tbl.schema],
        "schema_metadata": meta,
        "version": tbl.version,
        "tags": sorted(tbl.tags.list().keys()),
        "count": tbl.count_rows(),
        "indices": [
            [i.index_type, list(i.columns), tbl.index_stats(i.name).distance_type] for i in tbl.list_indices()
        ],
        "searches": [],
    }
    if queries_path:
        with open(queries_path) as f:
            queries = json.load(f)
        for vector in queries["vectors"]:
            search = tbl.search([f32(b) for b in vector])
            if queries.get("where"):
                search = search.where(queries["where"], prefilter=True)
            hits = search.limit(queries["k"]).to_list()
            result["searches"].append([h["id"] for h in hits])
    with open(out_path, "w") as f:
        json.dump(result, f)


def delete(db_path, table_name, ids_path):
    with open(ids_path) as f:
        ids = json.load(f)
    tbl = lancedb.connect(db_path).open_table(table_name)
    quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    tbl.delete(f"id IN ({quoted})")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "build":
        build(*args)
    elif command == "dump":
        dump(*args)
    elif command == "delete":
        delete(*args)
    else:
        raise SystemExit(f"unknown command {command}")
