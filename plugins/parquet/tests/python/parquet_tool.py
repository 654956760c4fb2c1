"""Reads and writes ragged Parquet collections with pyarrow, pandas and DuckDB, for interop tests.

dump COLLECTION_DIR OUT.json  -- read the directory with pandas and with DuckDB; both must agree
write COLLECTION_DIR IN.json  -- write the records with pyarrow as two parts plus _collection.json
Records are JSON objects: id, document (or null), metadata (JSON text or null) and embedding as a
list of float32 bit patterns, so comparisons are exact.
"""
import json
import sys

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def as_records(frame):
    records = []
    for row in frame.itertuples(index=False):
        records.append({
            "id": row.id,
            "document": None if pd.isna(row.document) else row.document,
            "metadata": None if pd.isna(row.metadata) else row.metadata,
            "embedding": np.asarray(row.embedding, dtype=np.float32).view(np.uint32).tolist(),
        })
    return records


def dump(directory, out):
    with_pandas = as_records(pd.read_parquet(directory))
    with_duckdb = as_records(duckdb.sql(
        f"SELECT id, document, metadata, embedding FROM read_parquet('{directory}/part-*.parquet')"
    ).df())
    if with_pandas != with_duckdb:
        sys.exit("pandas and DuckDB read different records")
    json.dump(with_pandas, open(out, "w"))


def write(directory, source):
    import os
    records = json.load(open(source))
    dimension = len(records[0]["embedding"])
    os.makedirs(directory, exist_ok=True)
    schema = pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("document", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("embedding", pa.list_(pa.field("item", pa.float32()), dimension), nullable=False),
    ])
    halves = [records[: len(records) // 2], records[len(records) // 2:]]
    parts = []
    for number, half in enumerate(halves, start=1):
        vectors = np.array([r["embedding"] for r in half], dtype=np.uint32).view(np.float32)
        table = pa.table({
            "id": [r["id"] for r in half],
            "document": [r["document"] for r in half],
            "metadata": [r["metadata"] for r in half],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dimension),
        }, schema=schema)
        name = f"part-{number:06d}.parquet"
        pq.write_table(table, f"{directory}/{name}")
        parts.append({"file": name, "rows": len(half)})
    collection = {"name": os.path.basename(directory), "dimension": dimension, "metric": "cosine"}
    json.dump({"format": 1, "collection": collection, "parts": parts}, open(f"{directory}/_collection.json", "w"))


if __name__ == "__main__":
    {"dump": dump, "write": write}[sys.argv[1]](*sys.argv[2:])
