#!/usr/bin/env python3
"""Drives the official chromadb package for ragged's interop tests (tests/interop.rs).

Subcommands (all exchange JSON files so the Rust side compares values bit for bit):

  build DIR                 build the varied reference store with chromadb itself
  dump DIR OUT.json         in a fresh process, write what `collection.get()` returns for every
                            collection of every tenant and database
  probe DIR SPEC.json OUT   count, query (nearest neighbour, or the neighbours of given vectors),
                            `get` by ids, `where` and `where_document` answers
  migrations DIR OUT.json   the `migrations` table of a chromadb-created store (template source)
  hold DIR                  keep a chromadb client open on DIR until stdin closes
  build-drop DIR            three collections for the drop tests (`docs` is the big one, last)
  delete DIR NAME           chromadb's own `client.delete_collection` (NAME in ragged's form)
  recreate DIR NAME N DIM   create NAME with chromadb and add N records: ids r0.., documents
                            "recreated i", metadata {"k": i}, no arrays
  delete-ids DIR NAME ID..  chromadb's own `collection.delete(ids=[ID, ...])`

Typed values in the JSON: ["str", s], ["int", i], ["float", bits-of-f64], ["bool", b], arrays as
["str[]", [...]] and so on; embeddings are lists of float32 bit patterns.
"""
import json
import os
import sqlite3
import struct
import sys
import time

import numpy as np


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def typed(value):
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, float):
        return ["float", f64_bits(value)]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, list):
        if not value:
            return ["empty[]", []]
        kinds = {typed(v)[0] for v in value}
        if len(kinds) != 1:
            raise SystemExit(f"mixed array {value!r}")
        kind = kinds.pop()
        return [kind + "[]", [typed(v)[1] for v in value]]
    raise SystemExit(f"unexpected metadata value {value!r}")


def typed_metadata(meta):
    if meta is None:
        return None
    return {k: typed(v) for k, v in meta.items()}


def records(rng, prefix, start, n, arrays):
    ids, docs, metas = [], [], []
    for i in range(start, start + n):
        ids.append(f"{prefix}{i}")
        if i % 17 == 5:
            docs.append(None)
        elif i % 11 == 3:
            docs.append(f"ünïcødé doc {i} \u2603 " + "lorem ipsum " * (i % 7))
        else:
            docs.append(f"document number {i}")
        if i % 13 == 7:
            metas.append(None)
            continue
        meta = {
            "s": f"str{i}",
            "i": i * 7 - 1000,
            "big": (1 << 40) + i,
            "f": i * 0.25,
            "b": i % 2 == 0,
            "third": i / 3.0,
            "tiny": -i * 1.1e-7,
        }
        if i % 5 == 0:
            meta["only_some"] = "x"
        if arrays and i % 3 == 0:
            meta["tags"] = [f"t{i % 4}", f"u{i % 5}"]
            meta["nums"] = [i, i + 1, -i]
            meta["flts"] = [i * 0.5, 1.0 / (i + 1)]
            meta["flags"] = [True, i % 2 == 0]
        metas.append(meta)
    return ids, docs, metas


def add_in_batches(col, rng, prefix, n, dim, batch, arrays=True):
    for start in range(0, n, batch):
        k = min(batch, n - start)
        ids, docs, metas = records(rng, prefix, start, k, arrays)
        emb = rng.standard_normal((k, dim)).astype(np.float32)
        col.add(ids=ids, embeddings=emb, documents=docs, metadatas=metas)


def mutate(col, rng, prefix, n, dim, updates, upserts, deletes):
    if updates:
        sel = rng.choice(n, size=updates, replace=False)
        ids = [f"{prefix}{i}" for i in sel]
        half = len(ids) // 2
        col.update(ids=ids[:half],
                   embeddings=rng.standard_normal((half, dim)).astype(np.float32),
                   metadatas=[{"s": "updated", "only_some": None, "newkey": 1.5}] * half,
                   documents=[f"updated doc {x}" for x in ids[:half]])
        col.update(ids=ids[half:], metadatas=[{"i": -1}] * (len(ids) - half))
    if upserts:
        existing = [f"{prefix}{i}" for i in rng.choice(n, size=upserts // 2, replace=False)]
        new = [f"{prefix}new{i}" for i in range(upserts - len(existing))]
        ids = existing + new
        col.upsert(ids=ids, embeddings=rng.standard_normal((len(ids), dim)).astype(np.float32),
                   metadatas=[{"upserted": True, "f": 2.0}] * len(ids),
                   documents=[f"upserted {x}" for x in ids])
    if deletes:
        sel = rng.choice(n, size=deletes, replace=False)
        col.delete(ids=[f"{prefix}{i}" for i in sel])


def build(path):
    import chromadb
    from chromadb.config import Settings

    rng = np.random.default_rng(7)
    client = chromadb.PersistentClient(path=path)
    # Below the 1000-record flush threshold: everything stays in the write-ahead log.
    small = client.create_collection("small_l2", metadata={"owner": "tests", "n": 3, "r": 0.5, "ok": True},
                                     embedding_function=None)
    add_in_batches(small, rng, "s", 300, 8, 100)
    mutate(small, rng, "s", 300, 8, updates=20, upserts=10, deletes=15)
    # Above the threshold with a tail, cosine through the configuration API.
    big = client.create_collection("big_cosine", configuration={"hnsw": {"space": "cosine"}},
                                   embedding_function=None)
    add_in_batches(big, rng, "b", 2500, 16, 500)
    mutate(big, rng, "b", 2500, 16, updates=40, upserts=30, deletes=60)
    add_in_batches(big, rng, "late", 30, 16, 30)
    # Inner product through the legacy `hnsw:space` metadata, flushed exactly once.
    ip = client.create_collection("ip_legacy", metadata={"hnsw:space": "ip", "hnsw:M": 8},
                                  embedding_function=None)
    add_in_batches(ip, rng, "p", 1200, 8, 1200)
    mutate(ip, rng, "p", 1200, 8, updates=0, upserts=0, deletes=100)
    # Every record deleted.
    gone = client.create_collection("all_deleted", embedding_function=None)
    add_in_batches(gone, rng, "g", 40, 4, 40)
    gone.delete(ids=[f"g{i}" for i in range(40)])
    # Never written to: chroma has no dimension for it yet. chromadb's default embedding function
    # (all-MiniLM-L6-v2, recorded in the schema, never run here).
    client.create_collection("never_added")
    # Another tenant and database.
    admin = chromadb.AdminClient(Settings(is_persistent=True, persist_directory=path))
    admin.create_tenant("tenant1")
    admin.create_database("dbx", tenant="tenant1")
    other = chromadb.PersistentClient(path=path, tenant="tenant1", database="dbx")
    col = other.create_collection("elsewhere", configuration={"hnsw": {"space": "l2"}}, embedding_function=None)
    add_in_batches(col, rng, "e", 25, 4, 25)
    print("built", path)


def client_for(path, name):
    """A client on the tenant and database of a ragged name, and the plain name."""
    import chromadb

    parts = name.split("/")
    if len(parts) == 3:
        return chromadb.PersistentClient(path=path, tenant=parts[0], database=parts[1]), parts[2]
    return chromadb.PersistentClient(path=path), name


def build_drop(path):
    """Three collections; `docs` is above the flush threshold (HNSW files, pickle) and written
    last, so it owns the highest `embeddings.id` values, which sqlite hands out again after a
    drop. `acme/prod/docs` shares its plain name in another tenant and database."""
    import chromadb
    from chromadb.config import Settings

    rng = np.random.default_rng(11)
    client = chromadb.PersistentClient(path=path)
    notes = client.create_collection("notes", metadata={"owner": "tests", "n": 3}, embedding_function=None)
    add_in_batches(notes, rng, "n", 300, 8, 100)
    mutate(notes, rng, "n", 300, 8, updates=10, upserts=6, deletes=8)
    admin = chromadb.AdminClient(Settings(is_persistent=True, persist_directory=path))
    admin.create_tenant("acme")
    admin.create_database("prod", tenant="acme")
    other = chromadb.PersistentClient(path=path, tenant="acme", database="prod")
    col = other.create_collection("docs", configuration={"hnsw": {"space": "ip"}}, embedding_function=None)
    add_in_batches(col, rng, "o", 150, 4, 150)
    docs = client.create_collection("docs", configuration={"hnsw": {"space": "cosine"}},
                                    metadata={"purpose": "dropped"}, embedding_function=None)
    add_in_batches(docs, rng, "d", 1500, 16, 500)
    mutate(docs, rng, "d", 1500, 16, updates=20, upserts=10, deletes=30)
    print("built", path)


def delete(path, name):
    client, plain = client_for(path, name)
    client.delete_collection(plain)


def recreate(path, name, n, dim):
    n, dim = int(n), int(dim)
    client, plain = client_for(path, name)
    col = client.create_collection(plain, embedding_function=None)
    rng = np.random.default_rng(5)
    col.add(ids=[f"r{i}" for i in range(n)],
            embeddings=rng.standard_normal((n, dim)).astype(np.float32),
            documents=[f"recreated {i}" for i in range(n)],
            metadatas=[{"k": i} for i in range(n)])


def delete_ids(path, name, *ids):
    client, plain = client_for(path, name)
    client.get_collection(plain, embedding_function=None).delete(ids=list(ids))


def collection_handles(path):
    """(ragged name, collection) for every collection of every tenant and database."""
    import chromadb

    con = sqlite3.connect(f"file:{os.path.join(path, 'chroma.sqlite3')}?mode=ro", uri=True)
    pairs = con.execute("select tenant_id, name from databases order by tenant_id, name").fetchall()
    con.close()
    out = []
    for tenant, database in pairs:
        client = chromadb.PersistentClient(path=path, tenant=tenant, database=database)
        for c in client.list_collections():
            name = c.name
            default = tenant == "default_tenant" and database == "default_database"
            out.append((name if default else f"{tenant}/{database}/{name}",
                        client.get_collection(name, embedding_function=None)))
    return sorted(out, key=lambda p: p[0])


def dump(path, out_path):
    started = time.monotonic()
    result = {}
    for name, col in collection_handles(path):
        got = col.get(include=["embeddings", "documents", "metadatas"])
        embeddings = got["embeddings"]
        rows = []
        for i, rid in enumerate(got["ids"]):
            vector = np.asarray(embeddings[i], dtype=np.float32)
            rows.append({"id": rid, "document": got["documents"][i],
                         "metadata": typed_metadata(got["metadatas"][i]),
                         "embedding": vector.view(np.uint32).tolist()})
        result[name] = {"count": col.count(), "metadata": typed_metadata(col.metadata),
                        "records": rows}
    result = {"collections": result, "seconds": time.monotonic() - started}
    with open(out_path, "w") as f:
        json.dump(result, f)


def probe(path, spec_path, out_path):
    """SPEC: {collection: {"query_ids": [...], "where": {...}|null, "where_document": {...}|null,
    "get_ids": [...], "query_vectors": [[float, ...], ...], "n_results": k}}, every key optional."""
    with open(spec_path) as f:
        spec = json.load(f)
    started = time.monotonic()
    handles = dict(collection_handles(path))
    first_open = {}
    result = {}
    for name, asks in spec.items():
        col = handles[name]
        t = time.monotonic()
        count = col.count()
        first_open[name] = time.monotonic() - t
        answer = {"count": count, "nearest": {}}
        if asks.get("query_ids"):
            got = col.get(ids=asks["query_ids"], include=["embeddings"])
            vectors = {rid: got["embeddings"][i] for i, rid in enumerate(got["ids"])}
            for rid in asks["query_ids"]:
                q = col.query(query_embeddings=[vectors[rid]], n_results=1, include=["distances"])
                answer["nearest"][rid] = q["ids"][0][0]
        if asks.get("get_ids") is not None:
            answer["got_ids"] = sorted(col.get(ids=asks["get_ids"], include=[])["ids"])
        if asks.get("query_vectors"):
            q = col.query(query_embeddings=np.asarray(asks["query_vectors"], dtype=np.float32),
                          n_results=asks["n_results"], include=["distances"])
            answer["neighbours"] = q["ids"]
        if asks.get("where") is not None:
            answer["where_ids"] = sorted(col.get(where=asks["where"], include=[])["ids"])
        if asks.get("where_document") is not None:
            answer["where_document_ids"] = sorted(
                col.get(where_document=asks["where_document"], include=[])["ids"])
        result[name] = answer
    with open(out_path, "w") as f:
        json.dump({"collections": result, "first_count_seconds": first_open,
                   "seconds": time.monotonic() - started}, f)


def migrations(path, out_path):
    con = sqlite3.connect(f"file:{os.path.join(path, 'chroma.sqlite3')}?mode=ro", uri=True)
    rows = con.execute("select dir, version, filename, sql, hash from migrations order by rowid").fetchall()
    ddl = dict(con.execute("select name, sql from sqlite_master where name in ('migrations','acquire_write')"))
    config = con.execute("select id, config_json_str from embeddings_queue_config").fetchall()
    with open(out_path, "w") as f:
        json.dump({"chromadb": __import__("chromadb").__version__,
                   "bootstrap": [ddl["migrations"], ddl["acquire_write"]],
                   "queue_config": config,
                   "migrations": [dict(zip(["dir", "version", "filename", "sql", "hash"], r)) for r in rows]},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "build":
        build(*args)
    elif command == "dump":
        dump(*args)
    elif command == "probe":
        probe(*args)
    elif command == "migrations":
        migrations(*args)
    elif command == "hold":
        # Keep a client open on the store until stdin closes (the "chroma is running" case).
        import chromadb
        client = chromadb.PersistentClient(path=args[0])
        for c in client.list_collections():
            client.get_collection(c.name).count()
        print("ready", flush=True)
        sys.stdin.read()
    elif command == "build-drop":
        build_drop(*args)
    elif command == "delete":
        delete(*args)
    elif command == "recreate":
        recreate(*args)
    elif command == "delete-ids":
        delete_ids(*args)
    elif command == "empty":
        import chromadb
        chromadb.PersistentClient(path=args[0]).heartbeat()
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
