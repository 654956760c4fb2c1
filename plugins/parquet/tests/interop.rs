//! Interop with the Python data stack: pandas and DuckDB read what ragged wrote exactly (also
//! after a delete), and ragged reads exactly what pyarrow wrote once a `_collection.json` lists
//! the parts.
//! Needs the venv `cargo xtask venv` prepares; see `ragged_interop::venv_python`.

use std::path::Path;
use std::process::Command;

use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ExtractRequest, LoadMode, LoadRequest, OpenRequest,
    Record,
};
use ragged_plugin_parquet::ParquetStore;
use serde_json::{Value, json};

const DIMENSION: usize = 8;

/// Records covering the corners: unicode, null and empty documents, typed metadata, special floats.
fn records() -> Vec<Record> {
    let specials = [0.0f32, -0.0, 1e-40, f32::MAX, f32::MIN_POSITIVE, 0.1, -7.25, 3.0e-8];
    (0..300)
        .map(|i| Record {
            id: if i == 7 {
                "ünïcödé 字 🦀".to_owned()
            } else {
                format!("rec-{i:04}")
            },
            document: match i % 4 {
                0 => None,
                1 => Some(String::new()),
                _ => Some(format!("document {i} with ünïcödé")),
            },
            metadata: (i % 5 != 0)
                .then(|| format!(r#"{{"int":{i},"float":{i}.0,"flag":{},"tags":["a","b"]}}"#, i % 2 == 0)),
            embedding: (0..DIMENSION)
                .map(|d| {
                    if d == i % DIMENSION {
                        specials[d]
                    } else {
                        (i * d) as f32 / 7.0
                    }
                })
                .collect(),
        })
        .collect()
}

fn as_json(records: &[Record]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "document": r.document,
                    "metadata": r.metadata,
                    "embedding": r.embedding.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn open(location: &Path, access: Access) -> Box<dyn Backend> {
    let request = OpenRequest {
        location: location.display().to_string(),
        options: Default::default(),
        access,
    };
    open_through_ffi::<ParquetStore>(&request).expect("opens")
}

fn tool(python: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/parquet_tool.py");
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "parquet_tool.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn pandas_and_duckdb_read_what_ragged_wrote_exactly() {
    let Some(python) = ragged_interop::venv_python("parquet") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite);
    let info: CollectionInfo =
        serde_json::from_value(json!({"name": "notes", "dimension": DIMENSION, "metric": "l2"})).expect("info");
    let batches = records()
        .chunks(128)
        .map(|c| records_to_batch(c, DIMENSION as u32).expect("batch"))
        .collect();
    let stream = BatchStream::from_batches(canonical_schema(DIMENSION as u32), batches);
    store
        .load(
            &LoadRequest {
                collection: info,
                mode: LoadMode::Create,
            },
            stream,
        )
        .expect("loads");

    let out = dir.path().join("dump.json");
    tool(
        &python,
        &[
            "dump",
            &dir.path().join("notes").display().to_string(),
            &out.display().to_string(),
        ],
    );
    let dumped: Value = serde_json::from_str(&std::fs::read_to_string(out).expect("dump")).expect("json");
    assert_eq!(dumped, as_json(&records()));
}

#[test]
fn pandas_and_duckdb_see_exactly_the_records_a_delete_left() {
    let Some(python) = ragged_interop::venv_python("parquet") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Access::ReadWrite);
    let all = records();
    for (mode, half) in [(LoadMode::Create, &all[..150]), (LoadMode::Append, &all[150..])] {
        let info: CollectionInfo =
            serde_json::from_value(json!({"name": "notes", "dimension": DIMENSION, "metric": "l2"})).expect("info");
        let batch = records_to_batch(half, DIMENSION as u32).expect("batch");
        let stream = BatchStream::from_batches(canonical_schema(DIMENSION as u32), vec![batch]);
        store
            .load(&LoadRequest { collection: info, mode }, stream)
            .expect("loads");
    }
    // Every 7th record of the first part (the unicode id among them), none of the second.
    let doomed: Vec<String> = all[..150]
        .iter()
        .step_by(7)
        .map(|r| r.id.clone())
        .chain(["rec-9999".to_owned()])
        .collect();
    assert_eq!(store.delete("notes", &doomed), Ok(22));
    let kept: Vec<Record> = all.iter().filter(|r| !doomed.contains(&r.id)).cloned().collect();

    let out = dir.path().join("dump.json");
    tool(
        &python,
        &[
            "dump",
            &dir.path().join("notes").display().to_string(),
            &out.display().to_string(),
        ],
    );
    let dumped: Value = serde_json::from_str(&std::fs::read_to_string(out).expect("dump")).expect("json");
    // The untouched second part now comes first, the first part's copy after it.
    let expected = [&kept[128..], &kept[..128]].concat();
    assert_eq!(dumped, as_json(&expected));
}

#[test]
fn ragged_reads_what_pyarrow_wrote_exactly() {
    let Some(python) = ragged_interop::venv_python("parquet") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("records.json");
    std::fs::write(&input, as_json(&records()).to_string()).expect("write input");
    tool(
        &python,
        &[
            "write",
            &dir.path().join("docs").display().to_string(),
            &input.display().to_string(),
        ],
    );

    let store = open(dir.path(), Access::ReadOnly);
    let info = store.describe("docs").expect("describes");
    assert_eq!(
        (info.dimension, info.metric, info.count),
        (DIMENSION as u32, DistanceMetric::Cosine, 300)
    );
    let reader = store
        .extract("docs", &ExtractRequest::records(64, 0))
        .expect("extracts");
    let back: Vec<Record> = reader
        .into_reader()
        .expect("imports")
        .flat_map(|batch| batch_to_records(&batch.expect("batch")).expect("canonical"))
        .collect();
    assert_eq!(as_json(&back), as_json(&records()));
}
