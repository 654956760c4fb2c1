"""What a Python user would write with the official clients, timed by `cargo xtask bench`.

    baseline.py backfill CHROMA_DIR                 let chromadb apply its log (builds the HNSW files)
    baseline.py migrate CHROMA_DIR LANCE_DIR NAME   chromadb get, 1000 at a time -> pyarrow -> lancedb
    baseline.py verify CHROMA_DIR LANCE_DIR NAME RATE SEED
                                                    counts, id sets, then a RATE sample compared field by field

The target table of `verify` is one ragged wrote: columns id, text, metadata_json, vector.
"""

import json
import math
import random
import sys

import chromadb
import lancedb
import numpy as np
import pyarrow as pa

PAGE = 1000
INCLUDE = ["documents", "metadatas", "embeddings"]


def backfill(chroma_dir):
    client = chromadb.PersistentClient(path=chroma_dir)
    for collection in client.list_collections():
        client.get_collection(collection.name).count()


def migrate(chroma_dir, lance_dir, name):
    collection = chromadb.PersistentClient(path=chroma_dir).get_collection(name)
    db = lancedb.connect(lance_dir)
    table = None
    offset = 0
    while True:
        page = collection.get(limit=PAGE, offset=offset, include=INCLUDE)
        if not page["ids"]:
            break
        embeddings = np.asarray(page["embeddings"], dtype=np.float32)
        batch = pa.table(
            {
                "id": page["ids"],
                "text": page["documents"],
                "metadata_json": [None if m is None else json.dumps(m) for m in page["metadatas"]],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.ravel()), embeddings.shape[1]),
            }
        )
        if table is None:
            table = db.create_table(name, batch)
        else:
            table.add(batch)
        offset += len(page["ids"])
    print(f"migrated {offset} records")


def chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def verify(chroma_dir, lance_dir, name, rate, seed):
    collection = chromadb.PersistentClient(path=chroma_dir).get_collection(name)
    table = lancedb.connect(lance_dir).open_table(name)
    source_ids = collection.get(include=[])["ids"]
    target_ids = table.search().select(["id"]).limit(None).to_arrow().column("id").to_pylist()
    problems = []
    if collection.count() != table.count_rows():
        problems.append(f"counts differ: {collection.count()} vs {table.count_rows()}")
    if set(source_ids) != set(target_ids):
        problems.append("id sets differ")
    sample = random.Random(seed).sample(source_ids, math.ceil(rate * len(source_ids)))
    compared = 0
    for ids in chunks(sample, PAGE):
        source = collection.get(ids=ids, include=INCLUDE)
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
        rows = (
            table.search()
            .where(f"id IN ({quoted})")
            .select(["id", "text", "metadata_json", "vector"])
            .limit(None)
            .to_arrow()
            .to_pylist()
        )
        target = {row["id"]: row for row in rows}
        for i, record_id in enumerate(source["ids"]):
            row = target.get(record_id)
            metadata = source["metadatas"][i]
            if (
                row is None
                or row["text"] != source["documents"][i]
                or (None if row["metadata_json"] is None else json.loads(row["metadata_json"])) != metadata
                or not np.array_equal(np.asarray(row["vector"], dtype=np.float32), source["embeddings"][i])
            ):
                problems.append(f"record {record_id} differs")
            compared += 1
    print(f"compared {compared} records: {'; '.join(problems[:5]) or 'every record matches'}")
    return 1 if problems else 0


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "backfill":
        backfill(*args)
    elif command == "migrate":
        migrate(*args)
    elif command == "verify":
        sys.exit(verify(args[0], args[1], args[2], float(args[3]), int(args[4])))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
